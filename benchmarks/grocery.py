"""A grocery shop end to end, at two sizes: how each stage's time and peak memory grow.

For each size in ``BENCH_GROCERY_HOUSEHOLDS`` (comma-separated, default ``5000,20000``)
households and ``BENCH_GROCERY_PRODUCTS`` products (default 50,000): ``nextbest generate
--shop grocery``, ``nextbest train`` (as of the day before ``T``), ``nextbest features`` and
``nextbest suggest`` at ``T``, each its own process, with its seconds and peak memory (its
own ``VmHWM``); then ``nextbest serve`` on the result: seconds to ready (its first start,
which derives and keeps the scores), the worker's peak memory, and ``/suggest`` p50 / p99
at concurrency 8 for ``BENCH_SERVE_SECONDS`` (default 20). The reference, in the same run:
``/suggest`` on the default shop's 20,000-customer world (``benchmarks.online``'s cache).
Goals (issue 30): every stage at most 6 GB, ready within 2 minutes, p99 within 1.5x the
reference's. Worlds and stores are kept in ``data/bench/grocery-N/``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from benchmarks.features import AS_OF, _own_peak_mb
from benchmarks.serve import KEY, _load, _start, _stop

SIZES = [int(x) for x in os.environ.get("BENCH_GROCERY_HOUSEHOLDS", "5000,20000").split(",")]
PRODUCTS = int(os.environ.get("BENCH_GROCERY_PRODUCTS", "50000"))
TRAINED = (pd.Timestamp(AS_OF) - pd.Timedelta(days=1)).date().isoformat()


def _stage(args: list[str]) -> tuple[float, float]:
    """``nextbest ARGS`` in a process of its own: its seconds and peak memory (MB)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.grocery", "_stage", *args],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        env={**os.environ, "MLFLOW_LOGGING_LEVEL": "WARNING"},
    )
    return time.perf_counter() - started, json.loads(done.stdout.strip().splitlines()[-1])["mb"]


def _worker_peak_mb(server) -> float:
    """The highest ``VmHWM`` among the service's processes (BentoML's worker loads)."""
    peaks = []
    for pid in [server.pid, *_children(server.pid)]:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        peaks += [int(x.split()[1]) / 1024 for x in status.splitlines() if x.startswith("VmHWM")]
    return max(peaks, default=float("nan"))


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        for child in map(int, text):
            found += [child, *_children(child)]
    return found


def _serve(folder: Path, cache: Path, bodies: list[dict]) -> dict:
    server, url, ready = _start(folder, cache)
    try:
        load = asyncio.run(_load(url, "/suggest", bodies, 8))
        return {"ready_s": ready, "mb": _worker_peak_mb(server), **load}
    finally:
        _stop(server)


def _bodies(features: Path) -> list[dict]:
    snapshot = pd.read_parquet(features / "customers.parquet", columns=["customer_id"])
    return [{"customer_id": c} for c in snapshot["customer_id"]]


def run() -> None:
    reference_cache = Path("data/bench") / "online-20000"
    reference = None
    if (reference_cache / "features" / "manifest.json").is_file():
        print("reference: /suggest on the default shop's 20,000-customer world: ", end="")
        reference = _serve(
            Path("data/bench/world-20000"), reference_cache, _bodies(reference_cache / "features")
        )
        print(f"  p50 {reference['p50']:.2f} ms, p99 {reference['p99']:.2f} ms", flush=True)
    print(f"grocery shop, {PRODUCTS:,} products: seconds / peak MB per stage")
    for households in SIZES:
        cache = Path("data/bench") / f"grocery-{households}"
        world = cache / "world"
        rows = {}
        if not (world / "truth" / "meta.json").is_file():
            rows["generate"] = _stage(
                ["generate", "--shop", "grocery", "--customers", str(households), "--products",
                 str(PRODUCTS), "--seed", "4", "--as-of", AS_OF, "--out", str(world),
                 "--overwrite"]
            )  # fmt: skip
        lines = len(pd.read_parquet(world / "orders.parquet", columns=["quantity"]))
        shutil.rmtree(cache / "mlruns", ignore_errors=True)
        rows["train"] = _stage(
            ["train", "--data", str(world), "--as-of", TRAINED, "--mlruns", str(cache / "mlruns")]
        )
        rows["features"] = _stage(
            ["features", "--data", str(world), "--as-of", AS_OF, "--out",
             str(cache / "features"), "--overwrite"]
        )  # fmt: skip
        rows["suggest"] = _stage(
            ["suggest", "--data", str(world), "--as-of", AS_OF, "--features",
             str(cache / "features"), "--mlruns", str(cache / "mlruns"), "--out",
             str(cache / "suggestions"), "--overwrite"]
        )  # fmt: skip
        print(f"{households:,} households, {lines:,} order lines:", flush=True)
        for stage, (seconds, mb) in rows.items():
            print(f"  {stage:>9} {seconds:8.1f} s {mb:8,.0f} MB", flush=True)
        shutil.rmtree(cache / "features" / "prepared", ignore_errors=True)
        print("  serve (first start): ", end="")
        served = _serve(world, cache, _bodies(cache / "features"))
        ratio = f" ({served['p99'] / reference['p99']:.2f}x the reference's)" if reference else ""
        print(
            f"  {'serve':>9} {served['ready_s']:8.1f} s {served['mb']:8,.0f} MB;"
            f" /suggest c=8 {served['rps']:.0f} req/s, p50 {served['p50']:.2f} ms,"
            f" p99 {served['p99']:.2f} ms{ratio}",
            flush=True,
        )


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "_stage":
        from nextbest.cli import main as cli

        os.environ.setdefault("NEXTBEST_PSEUDONYM_KEY", KEY)
        code = cli(sys.argv[2:])
        if code:
            raise SystemExit(code)
        print(json.dumps({"mb": _own_peak_mb()}))
        return
    run()


if __name__ == "__main__":
    main()
