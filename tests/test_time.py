"""Time is settled once: :func:`cdp.time.as_utc` turns what an edge receives into a UTC
datetime, and only the edges call it; the functions further in take the settled moment."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from cdp.time import as_utc

ROOT = Path(__file__).resolve().parents[1]
#: Where a moment enters: (module, function). Anything else calling as_utc re-normalises.
EDGES = {
    ("nextbest/cli/base.py", "parse_as_of"),  # --as-of, --since, --until
    ("serving/config.py", "from_env"),  # NEXTBEST_NOW
    ("serving/memory/snapshot.py", "load_snapshot"),  # a snapshot's manifest
    ("training/scoring.py", "score"),  # the notebook API, and a snapshot's manifest
    ("training/pipeline.py", "train"),  # the notebook API
    ("training/dataset.py", "training_cutoffs"),
    ("features/build.py", "build_features"),
    ("features/build.py", "fit_population"),
    ("features/partitions.py", "build_partitions"),  # the notebook API
    ("features/spark.py", "build_on_spark"),  # the notebook API
    ("training/spark.py", "score_on_spark"),  # a snapshot's manifest
    ("features/labels.py", "churn_labels"),
    ("features/labels.py", "repurchase_labels"),
    ("features/labels.py", "spend_labels"),
    ("features/labels.py", "next_product_labels"),
    ("features/candidates.py", "next_product_candidates"),  # the notebook API
    ("training/retrain.py", "latest_complete_day"),  # a moment made from the data
    ("cdp/world/config.py", "__post_init__"),  # WorldConfig(as_of=...)
    ("cdp/summary.py", "world_summary"),
}


def test_a_moment_is_settled_to_utc_once():
    settled = as_utc("2025-06-30")
    assert settled == datetime(2025, 6, 30, tzinfo=UTC) and type(settled) is datetime
    assert as_utc(settled) is settled  # already settled: passed through, not rebuilt
    taipei = datetime(2025, 6, 30, 8, tzinfo=timezone(timedelta(hours=8)))
    assert as_utc(taipei) == settled and as_utc(taipei).tzinfo is UTC
    assert as_utc(pd.Timestamp("2025-06-30T00:00:00Z")) == settled


def _calls(tree: ast.AST) -> list[tuple[str, int]]:
    """(enclosing function, line) of every call of as_utc."""
    found = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = function
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = child.name
            if isinstance(child, ast.Call) and getattr(child.func, "id", None) == "as_utc":
                found.append((function, child.lineno))
            visit(child, name)

    visit(tree, "<module>")
    return found


def test_only_the_edges_normalise_a_moment():
    stray = []
    for package in ("cdp", "features", "training", "serving", "nextbest"):
        for path in sorted((ROOT / package).rglob("*.py")):
            module = path.relative_to(ROOT).as_posix()
            if module == "cdp/time.py":
                continue
            for function, line in _calls(ast.parse(path.read_text())):
                if (module, function) not in EDGES:
                    stray.append(f"{module}:{line} in {function}")
    assert not stray, f"as_utc called away from the edges: {stray}"
