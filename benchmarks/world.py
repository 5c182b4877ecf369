"""World generation, writing and validation at several sizes.

Reference in the same run: reading the written tables back with plain ``pd.read_parquet``
(the floor for any loader), so ``validate / read`` is what the contract checks cost on top.
Throughput per customer at each size against the smallest shows how generation scales.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pandas as pd

from cdp.io import write_tables
from cdp.validation import validate_folder
from cdp.world.config import WorldConfig
from cdp.world.generate import generate_world


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def run(sizes: list[int]) -> None:
    print("\nworld: generate / write / validate (parquet)")
    header = (
        f"{'customers':>10} {'order lines':>12} {'events':>12} {'generate s':>11} "
        f"{'write s':>8} {'read s':>7} {'validate s':>11} {'validate/read':>14} "
        f"{'us/customer':>12} {'vs smallest':>12}"
    )
    print(header)
    base = None
    for n in sizes:
        world, gen = _timed(
            lambda n=n: generate_world(
                WorldConfig(customers=n, seed=1, as_of=pd.Timestamp("2025-06-30"))
            )
        )
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "world"
            _, write = _timed(lambda folder=folder, world=world: write_tables(world.tables, folder))
            _, read = _timed(
                lambda folder=folder: {p.stem: pd.read_parquet(p) for p in folder.glob("*.parquet")}
            )
            (_, report), check = _timed(lambda folder=folder: validate_folder(folder))
        assert report.ok
        per_customer = gen / n * 1e6
        base = base or per_customer
        print(
            f"{n:>10,} {len(world.tables['orders']):>12,} {len(world.tables['events']):>12,} "
            f"{gen:>11.1f} {write:>8.1f} {read:>7.1f} {check:>11.1f} {check / read:>14.1f} "
            f"{per_customer:>12.1f} {per_customer / base:>12.2f}"
        )


if __name__ == "__main__":
    import os

    run([int(s) for s in os.environ.get("BENCH_CUSTOMERS", "10000,100000").split(",")])
