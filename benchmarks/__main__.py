"""``make bench``: run every benchmark and print its figures.

Sizes: ``BENCH_CUSTOMERS`` (comma-separated, default ``10000,100000``); add 1000000 for the
README's 1M figure (about two minutes and 6 GB of memory).
"""

from __future__ import annotations

import os
import platform

from benchmarks import bench_world


def main() -> None:
    sizes = [int(s) for s in os.environ.get("BENCH_CUSTOMERS", "10000,100000").split(",")]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    bench_world.run(sizes)


if __name__ == "__main__":
    main()
