"""A world larger than one build fits in (default 4M customers, ~53M order lines), end to end
on this machine with partitions: ``nextbest generate --chunk-customers`` (once; the world is
kept in data/bench/), ``nextbest validate --partitions``, and the feature build of
``nextbest features --partitions`` without its validation (measured on its own).

Each command runs as a child of this launcher, which holds no data: its peak memory is the
child's ``ru_maxrss`` from ``wait4`` (on Linux that includes the launcher's own resident
memory at ``fork``: about 70 MB here, after Polars counted the rows, so the figures are
that much too high). One build of this world would need ~10 GB for the
build and ~40 GB to validate in one pass (measured at 1M: 2.6 GB and 10 GB).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

AS_OF = "2025-06-30"
CHUNK = 250_000
PARTITIONS = 16


def _run(*command: str) -> tuple[float, float]:
    """Run ``command`` as a child: its wall time (s) and peak resident memory (MB)."""
    start = time.perf_counter()
    child = subprocess.Popen(list(command), stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command[:2])} failed")
    return seconds, usage.ru_maxrss / 1024


def _build(folder: str, out: str) -> None:
    """The feature build in partitions, written as a snapshot: ``nextbest features
    --partitions`` after its validation (measured on its own)."""
    from features.config import FeatureConfig
    from features.io import write_parts
    from features.partitions import build_partitions

    config = FeatureConfig()
    parts = build_partitions(folder, as_of=AS_OF, partitions=PARTITIONS, config=config)
    write_parts(parts, config, folder, out, overwrite=True)


def _show(name: str, result: tuple[float, float] | None) -> None:
    if result is None:
        print(f"{name:>44} {'(kept)':>8}", flush=True)
    else:
        print(f"{name:>44} {result[0]:>8.1f} {result[1]:>8.0f}", flush=True)


def run(customers: int) -> None:
    import polars as pl

    folder = Path("data/bench") / f"world-{customers}-parts"
    meta = folder / "truth" / "meta.json"
    nextbest = shutil.which("nextbest") or "nextbest"
    generate = None
    if not (meta.is_file() and json.loads(meta.read_text())["customers"] == customers):
        generate = _run(
            nextbest, "generate", "--customers", str(customers), "--seed", "1", "--as-of", AS_OF,
            "--out", str(folder), "--chunk-customers", str(CHUNK), "--overwrite",
        )  # fmt: skip
    rows = {
        table: pl.scan_parquet(folder / table / "*.parquet").select(pl.len()).collect().item()
        for table in ("orders", "events")
    }
    print(
        f"\n{customers:,} customers, {rows['orders']:,} order lines, {rows['events']:,} events"
        f" ({folder})"
    )
    print(f"{'step':>44} {'seconds':>8} {'peak MB':>8}", flush=True)
    _show(f"generate --chunk-customers {CHUNK:,}", generate)
    _show("validate --partitions 8", _run(nextbest, "validate", str(folder), "--partitions", "8"))
    out = folder.parent / f"{folder.name}-features"
    build = _run(sys.executable, "-m", "benchmarks.big", "build", str(folder), str(out))
    _show(f"feature build --partitions {PARTITIONS}, written", build)
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["build"]:
        _build(sys.argv[2], sys.argv[3])
    else:
        run(int(os.environ.get("BENCH_BIG_CUSTOMERS", "4000000")))
