"""The feature build on Spark (local[2], a real session) equals the single-machine build."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from features.io import read_snapshot
from test_cli import features_cli

pytestmark = pytest.mark.heavy  # trains models or starts Spark: not in `make test-fast`


@pytest.fixture(scope="module")
def on_spark(small_world_dir, tmp_path_factory):
    """``nextbest features --engine spark`` on the small world, once."""
    out = tmp_path_factory.mktemp("spark") / "features"
    env = {"PYSPARK_PYTHON": sys.executable}
    spark = ("--engine", "spark", "--spark-master", "local[2]", "--partitions", "3")
    done = features_cli(small_world_dir, out, *spark, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_spark_gives_the_single_machine_rows_and_values(on_spark, world):
    customers, pairs, meta = read_snapshot(on_spark)
    one_customers, one_pairs, one_meta = read_snapshot(world / "features")
    # exact for integers and strings, 1e-9 relative for floats
    pd.testing.assert_frame_equal(customers, one_customers, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(pairs, one_pairs, check_exact=False, rtol=1e-9)
    assert meta["rows"] == one_meta["rows"]
    assert meta["engine"] == "spark" and meta["partitions"] == 3
    # the population parameters from the executors' summaries are the single build's
    assert meta["population"] == one_meta["population"]
    assert json.loads((on_spark / "manifest.json").read_text()) == meta
    assert len(list((on_spark / "customers").glob("part-*.parquet"))) >= 1


def test_a_csv_table_is_refused_by_the_spark_engine_before_spark_starts(small_world, tmp_path):
    from conftest import write_folder

    folder = write_folder(small_world.tables, tmp_path / "csv", "csv")
    done = features_cli(folder, tmp_path / "out", "--engine", "spark", "--spark-master", "local[1]")
    assert done.returncode == 2
    assert "Parquet" in done.stderr and "customers.csv" in done.stderr
    assert not (tmp_path / "out").exists()
