"""Real exports: the contract folder as pandas writes it by default (timestamps in
nanoseconds, naive or UTC; text as dictionary columns; ids as large strings) validates and
builds on every engine (one machine, partitions, Spark local[2]) into the features the same
world gives as nextbest writes it."""

from __future__ import annotations

import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.io import read_snapshot
from test_cli import features_cli, nextbest

pytestmark = pytest.mark.heavy  # trains models or starts Spark: not in `make test-fast`

#: text columns written as dictionaries (pandas categoricals) when the table has them
DICTIONARY = ("country", "locale", "category", "event_type", "channel", "purpose", "source")
LARGE = ("customer_id", "product_id", "order_id", "event_id")


@pytest.fixture(scope="module")
def pandas_export(small_world_dir, tmp_path_factory):
    """The small world re-written with ``DataFrame.to_parquet``: every timestamp in
    nanoseconds (the orders' naive, the rest UTC), text columns as dictionaries, ids as large
    strings; one table (orders) as a folder of parts, as Spark writes."""
    folder = tmp_path_factory.mktemp("export") / "world"
    folder.mkdir()
    for path in sorted(small_world_dir.glob("*.parquet")):
        frame = pd.read_parquet(path)
        for column in frame.columns:
            if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
                frame[column] = frame[column].astype("datetime64[ns, UTC]")
                if path.stem == "orders":
                    frame[column] = frame[column].dt.tz_localize(None)
            elif column in DICTIONARY:
                frame[column] = frame[column].astype("category")
            elif column in LARGE:
                frame[column] = frame[column].astype(pd.ArrowDtype(pa.large_string()))
        if path.stem == "orders":
            (folder / "orders").mkdir()
            half = len(frame) // 2
            frame.iloc[:half].to_parquet(folder / "orders" / "part-00000.parquet")
            frame.iloc[half:].to_parquet(folder / "orders" / "part-00001.parquet")
        else:
            frame.to_parquet(folder / path.name)
    return folder


def test_the_export_is_written_as_pandas_writes(pandas_export):
    orders = pq.read_schema(pandas_export / "orders" / "part-00000.parquet")
    assert orders.field("ordered_at").type == pa.timestamp("ns")
    customers = pq.read_schema(pandas_export / "customers.parquet")
    assert customers.field("created_at").type == pa.timestamp("ns", tz="UTC")
    assert pa.types.is_dictionary(customers.field("country").type)
    assert customers.field("customer_id").type == pa.large_string()


@pytest.mark.parametrize(
    "engine",
    [
        pytest.param((), id="one-machine"),
        pytest.param(("--partitions", "3"), id="partitions"),
        pytest.param(
            ("--engine", "spark", "--spark-master", "local[2]", "--partitions", "3"), id="spark"
        ),
    ],
)
def test_a_pandas_export_builds_the_same_features_on_every_engine(
    pandas_export, world, tmp_path, engine
):
    valid = nextbest("validate", str(pandas_export))
    assert valid.returncode == 0, valid.stdout[-2000:] + valid.stderr[-2000:]
    out = tmp_path / "features"
    done = features_cli(pandas_export, out, *engine, env={"PYSPARK_PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr[-3000:]
    customers, pairs, _ = read_snapshot(out)
    one_customers, one_pairs, _ = read_snapshot(world / "features")
    pd.testing.assert_frame_equal(customers, one_customers, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(pairs, one_pairs, check_exact=False, rtol=1e-9)
