"""``make bench``: run every benchmark, each in its own process, and print its figures.

``BENCH_CUSTOMERS`` (comma-separated, default ``10000,100000``) sizes the world benchmark;
``BENCH_FEATURE_CUSTOMERS`` and ``BENCH_TRAIN_CUSTOMERS`` (default ``1000000``) the feature
and the training benchmarks, whose world is generated once into data/bench/ (about two
minutes); ``BENCH_SPARK_CUSTOMERS`` (default ``100000``) the Spark one;
``BENCH_BIG_CUSTOMERS`` (default ``4000000``) the world built in partitions (generated in
chunks once, about 10 minutes); ``BENCH_UPLIFT_CUSTOMERS`` and ``BENCH_UPLIFT_DAYS`` (default
20,000 and 28) the simulation of ``make eval-uplift``; ``BENCH_ONLINE_CUSTOMERS`` and
``BENCH_ONLINE_ROWS`` (default 20,000 and ``0,200000,1000000``) the loads with an online log;
``BENCH_GROCERY_HOUSEHOLDS`` and ``BENCH_GROCERY_PRODUCTS`` (default ``5000,20000`` and
50,000) the grocery shop end to end.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys


def main() -> None:
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        flush=True,
    )
    for module in (
        "benchmarks.world",
        "benchmarks.features",
        "benchmarks.spark",
        "benchmarks.big",
        "benchmarks.train",
        "benchmarks.serve",
        "benchmarks.online",
        "benchmarks.grocery",
        "benchmarks.nba",
        "benchmarks.uplift",
    ):
        subprocess.run([sys.executable, "-m", module], check=True)


if __name__ == "__main__":
    main()
