"""No module imports one that imports it back, directly or through others: the import graph
(grimp, which import-linter builds on; imports inside functions and under ``TYPE_CHECKING``
count) has no cycle, and the check fails when one is added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nextbest", "serving", "policy", "training", "features", "cdp")


def cycles(*packages: str) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan's algorithm, iterative)."""
    graph = grimp.build_graph(*packages, exclude_type_checking_imports=False)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_no_import_cycles():
    assert cycles(*PACKAGES) == []


def test_a_cycle_added_back_is_found(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    truth = tmp_path / "cdp" / "world" / "truth.py"
    truth.write_text(truth.read_text() + "\nfrom cdp.world import generate  # a cycle\n")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from tests.test_cycles import cycles; "
        "print(cycles(*sys.argv[2:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), *PACKAGES],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'cdp.world.generate', 'cdp.world.truth'" in result.stdout
