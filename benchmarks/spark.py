"""The feature build on Spark ``local[2]`` against the single-machine build, on 100k customers.

Where Spark's time goes, each measured on its own in the same run:

- session start: the JVM and the Spark context (``features.spark.session``);
- shuffle: every keyed row read and moved to its customer's partition
  (``repartition(n, customer)``), written nowhere (Spark's ``noop`` format);
- population pass: the shuffle again, the executors' Python workers computing each
  partition's purchase summaries, the distinct summaries collected and fitted on the driver;
- whole build: ``build_on_spark`` (population pass, then the features pass with its Python
  workers running ``build_features`` per partition, and the Parquet writes).

The reference is one single-machine build (population parameters fitted, then the build) in
its own process.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.features import AS_OF, _measure, _own_peak_mb, _world

PARTITIONS = 4  # two per core on local[2]


def _single(folder: Path) -> dict:
    from features.build import build_features, fit_population

    start = time.perf_counter()
    population = fit_population(folder, as_of=AS_OF)
    built = build_features(folder, as_of=AS_OF, population=population)
    return {"seconds": time.perf_counter() - start, "rows": len(built.customers)}


def _spark(folder: Path) -> dict:
    from features.spark import KEY, build_on_spark, read_contract, session, tagged_by_customer

    os.environ["PYSPARK_PYTHON"] = sys.executable
    times = {}
    start = time.perf_counter()
    spark = session("local[2]")
    times["session start"] = time.perf_counter() - start
    try:
        start = time.perf_counter()
        tagged = tagged_by_customer(read_contract(spark, folder)).repartition(PARTITIONS, KEY)
        tagged.write.format("noop").mode("overwrite").save()
        times["shuffle"] = time.perf_counter() - start
        start = time.perf_counter()
        _population_pass(spark, folder)
        times["population pass"] = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            _, rows = build_on_spark(
                spark, folder, as_of=AS_OF, out=Path(tmp) / "out", partitions=PARTITIONS
            )
            times["whole build"] = time.perf_counter() - start
    finally:
        spark.stop()
    return {"seconds": times, "rows": rows["customers"]}


def _population_pass(spark, folder: Path) -> None:
    from cdp.time import as_utc
    from features.config import FeatureConfig
    from features.spark import KEY, fit_population_on, prepare, tagged_by_customer

    frames, products, empty, tokens = prepare(spark, folder)
    fit_population_on(
        tagged_by_customer(frames).repartition(PARTITIONS, KEY),
        as_of=as_utc(AS_OF),
        config=FeatureConfig(),
        empty=empty,
        products=products,
        tokens=tokens,
    )


def _child(which: str, folder: str) -> None:
    result = (_single if which == "single" else _spark)(Path(folder))
    print(json.dumps(result | {"peak_mb": _own_peak_mb()}))


def run(customers: int) -> None:
    folder = _world(customers)
    if shutil.which("java") is None:
        raise SystemExit("the Spark benchmark needs Java 17 (make system-packages)")
    single = _measure("single", folder, "benchmarks.spark")
    spark = _measure("spark", folder, "benchmarks.spark")
    times = spark["seconds"]
    print(f"\nfeatures on Spark local[2], {PARTITIONS} partitions, {customers:,} customers")
    print(f"{'stage':>24} {'seconds':>8}")
    print(f"{'single machine (ref)':>24} {single['seconds']:>8.2f}")
    for stage, seconds in times.items():
        print(f"{'spark ' + stage:>24} {seconds:>8.2f}")
    whole = times["whole build"]
    print(
        f"spark whole build / single machine: {whole / single['seconds']:.1f}x"
        f" ({whole + times['session start']:.0f} s with the session start);"
        f" rows {spark['rows']:,} and {single['rows']:,}"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3:
        _child(sys.argv[1], sys.argv[2])
    else:
        run(int(os.environ.get("BENCH_SPARK_CUSTOMERS", "100000")))
