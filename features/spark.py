"""The feature build on Spark: the tables of :func:`features.build.build_features`, computed
by the same Polars functions on each executor's customer partition.

Two passes, as the single-machine build in partitions (:mod:`features.partitions`):

1. **Population parameters.** Each customer partition's purchase summary (frequency,
   recency, T, spend) is computed on the executors; the distinct summary rows with their
   counts are collected to the driver, where the RFM quintile edges and the lifetimes fits
   are computed exactly as :func:`features.build.fit_population` computes them.
2. **Features.** Every table is keyed by its customer (an anonymous event by each customer
   whose cookie or device identity claims it), tagged with its table name, and
   ``repartition(n, key)`` brings each customer's rows to one partition; ``mapInArrow``
   runs :func:`features.build.build_features` on each whole partition (its Arrow batches
   combined first) and returns both tables, written as Parquet parts.

Spark reads the contract's Parquet tables (files or folders of parts); a CSV table is
refused. ``pyspark`` is the optional ``spark`` dependency group and needs Java 17.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa

from cdp.contract import STITCHABLE_ID_TYPES, TABLES
from cdp.errors import BadInputError
from cdp.io import is_parquet, locate_tables, type_table
from cdp.privacy import load_suppression, suppressed
from cdp.time import AsOf, as_utc
from features.build import (
    POPULATION_COLUMNS,
    FeatureTables,
    PopulationParams,
    build_features,
    population_of,
    purchase_summary,
)
from features.config import FeatureConfig
from features.engagement import EVENT_COLUMNS
from features.inputs import (
    FeatureInputs,
    of_known_customers,
    read_tables_for,
    settle_times,
    typed_lazy,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: The tables each customer's rows come from (products go to every partition whole).
KEYED = ("customers", "orders", "identities", "consents", "events")
KEY, TABLE = "_customer", "_table"


def session(master: str | None = None, conf: dict[str, str] | None = None) -> SparkSession:
    """A Spark session set up for the build: UTC session time zone, Arrow, timestamps
    written as microseconds, executors on this Python (``PYSPARK_PYTHON``)."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("nextbest")
    if master:
        builder = builder.master(master)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # pandas writes TIMESTAMP(NANOS), which Spark refuses: read as longs, see read_table
        "spark.sql.legacy.parquet.nanosAsLong": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    } | (conf or {})
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as error:  # py4j's gateway error when there is no Java
        raise BadInputError(
            f"Spark did not start ({type(error).__name__}: {str(error)[:200]}): it needs Java 17"
            " (apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"
        ) from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def parquet_tables(folder: Path) -> dict[str, Path]:
    """The contract's tables, refused unless each is Parquet (a file or a folder of parts)."""
    files, problems = locate_tables(Path(folder))
    if problems:
        raise BadInputError(f"{folder}: {problems[0]}")
    csv = sorted(p.name for p in files.values() if not is_parquet(p))
    if csv:
        raise BadInputError(
            f"{folder}: the Spark engine reads Parquet tables; {', '.join(csv)}: CSV"
            " (write them as Parquet, or build without --engine spark)"
        )
    return files


def read_contract(spark: SparkSession, folder: Path) -> dict[str, DataFrame]:
    """The contract's keyed tables as Spark frames (contract columns only)."""
    files = parquet_tables(folder)
    frames = {}
    for name in KEYED:
        if name not in files:
            continue
        frame = read_table(spark, files[name], name)
        columns = [c.name for c in TABLES[name].columns if c.name in frame.columns]
        if name == "events":
            columns = [c for c in EVENT_COLUMNS if c in frame.columns]
        frames[name] = frame.select(*columns)
    return frames


def read_table(spark: SparkSession, path: Path, name: str) -> DataFrame:
    """Contract table ``name`` from Parquet (a file or a folder of parts), as other tools
    write it: a timestamp column in nanoseconds (pandas' unit, which Spark reads as a long
    under ``spark.sql.legacy.parquet.nanosAsLong``) becomes a timestamp, cut to Spark's
    microseconds the way the single-machine build cuts it (towards the past)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType

    frame = spark.read.parquet(str(path))
    kinds = {c.name: c.kind for c in TABLES[name].columns}
    for field in frame.schema.fields:
        if kinds.get(field.name) == "timestamp" and isinstance(field.dataType, LongType):
            nanos = F.col(field.name)
            micros = F.expr(f"(`{field.name}` - pmod(`{field.name}`, 1000)) div 1000")
            frame = frame.withColumn(
                field.name, F.when(nanos.isNull(), None).otherwise(F.timestamp_micros(micros))
            )
    return frame


def tagged_by_customer(frames: dict[str, DataFrame]) -> DataFrame:
    """One frame of every keyed row: its customer, its table, and its columns as a struct
    named after the table (null for the other tables)."""
    from pyspark.sql import functions as F

    def tag(frame: DataFrame, name: str, key) -> DataFrame:
        columns = [c for c in frame.columns if c != KEY]
        return frame.select(
            key.alias(KEY), F.lit(name).alias(TABLE), F.struct(*columns).alias(name)
        )

    parts = []
    for name, frame in frames.items():
        if name != "events":
            parts.append(tag(frame, name, F.col("customer_id")))
            continue
        parts.append(tag(frame.where(F.col("customer_id").isNotNull()), name, F.col("customer_id")))
        if "identities" in frames:
            links = (
                frames["identities"]
                .where(F.col("id_type").isin(*STITCHABLE_ID_TYPES))
                .select(F.col("id_value").alias("anonymous_id"), F.col("customer_id").alias(KEY))
                .distinct()
            )
            anonymous = frame.where(F.col("customer_id").isNull()).join(links, "anonymous_id")
            parts.append(tag(anonymous, name, F.col(KEY)))
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part, allowMissingColumns=True)
    return union


def split_partition(batches: Iterator[pa.RecordBatch]) -> dict[str, pl.DataFrame]:
    """A partition's rows (:func:`tagged_by_customer`) by table, each unnested from its
    struct; the partition's Arrow batches are combined first."""
    batches = list(batches)
    if not batches:
        return {}
    whole = pl.from_arrow(pa.Table.from_batches(batches).combine_chunks())
    names = [c for c in whole.columns if c not in (KEY, TABLE)]
    return {
        name: whole.filter(pl.col(TABLE) == name).select(pl.col(name).struct.unnest())
        for name in names
    }


def per_customer_partition(
    tagged: DataFrame,
    work: Callable[[dict[str, pl.DataFrame]], dict[str, pd.DataFrame]],
    schemas: dict[str, pa.Schema],
    out: Path,
) -> dict[str, int]:
    """Run ``work`` on each customer partition of ``tagged`` (its tables by name) and write
    each table it returns (pandas frames of ``schemas``) as Parquet parts in ``out/NAME/``.
    Returns the rows written per table."""
    from pyspark.sql.pandas.types import from_arrow_schema

    out_schema = pa.schema(
        [("_kind", pa.string())]
        + [(name, pa.struct(list(schema))) for name, schema in schemas.items()]
    )

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        tables = split_partition(batches)
        if not tables:
            return
        for name, frame in work(tables).items():
            if frame.empty:
                continue
            rows = pa.Table.from_pandas(frame, preserve_index=False)
            rows = rows.cast(schemas[name], safe=False)  # nanoseconds cut to microseconds
            arrays = {f.name: pa.nulls(len(frame), f.type) for f in out_schema if f.name != "_kind"}
            arrays[name] = rows.to_struct_array().combine_chunks()
            arrays["_kind"] = pa.array([name] * len(frame), pa.string())
            yield pa.RecordBatch.from_arrays(
                [arrays[f.name] for f in out_schema], schema=out_schema
            )

    result = tagged.mapInArrow(run, from_arrow_schema(out_schema)).persist()
    try:
        for name in schemas:
            rows = result.where(result["_kind"] == name).select(f"{name}.*")
            rows.write.mode("errorifexists").parquet(str(out / name))
        counts = dict(result.groupBy("_kind").count().collect())
    finally:
        result.unpersist()
    return {name: int(counts.get(name, 0)) for name in schemas}


def _inputs(
    tables: dict[str, pl.DataFrame], products: pl.DataFrame, empty: dict, tokens: set[str]
) -> FeatureInputs:
    """A partition's feature inputs, typed as the single-machine build types a folder:
    customers through the contract loader's rules (defaults, the suppression list), the
    other tables with their timestamps settled."""
    raw = tables["customers"].to_pandas() if "customers" in tables else None
    customers = empty["customers"] if raw is None else type_table("customers", raw)[0]
    if tokens:
        customers = customers[~suppressed(customers["customer_id"], tokens).to_numpy()]
    frames = {"customers": typed_lazy(customers, "customers"), "products": products.lazy()}
    for name in ("orders", "identities", "consents", "events"):
        frame = tables.get(name)
        frames[name] = empty[name] if frame is None else settle_times(frame.lazy())
    if tokens:
        frames = of_known_customers(frames)
    return FeatureInputs(**frames)


def prepare(spark: SparkSession, folder: Path) -> tuple[dict, pl.DataFrame, dict, set[str]]:
    """What both passes read: the keyed tables as Spark frames, the products (on the driver,
    through the contract loader), empty inputs per table in the columns Spark reads
    (customers as pandas, to be typed; the rest lazy), and the suppression list's tokens."""
    from cdp.contract import empty_table

    frames = read_contract(spark, folder)
    empty = {"customers": empty_table("customers")}
    for name in ("orders", "identities", "consents", "events"):
        columns = frames[name].columns if name in frames else [c.name for c in TABLES[name].columns]
        if name == "events":
            columns = [c for c in EVENT_COLUMNS if c in columns]
        empty[name] = typed_lazy(empty_table(name), name).select(columns)
    products = pl.from_pandas(read_tables_for("products", folder))
    return frames, products, empty, load_suppression()


def fit_population_on(
    tagged: DataFrame,
    *,
    as_of,
    config: FeatureConfig,
    empty: dict,
    products: pl.DataFrame,
    tokens: set[str],
) -> PopulationParams:
    """Pass 1: the population parameters from the executors' purchase summaries."""
    schema = pa.schema([(c, pa.float64()) for c in POPULATION_COLUMNS])

    def summarise(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        tables = split_partition(batches)
        if not tables:
            return
        inputs = _inputs(tables, products, empty, tokens)
        summary = purchase_summary(inputs, as_of=as_of, config=config)
        yield from (
            summary.select(pl.col(POPULATION_COLUMNS).cast(pl.Float64)).to_arrow().to_batches()
        )

    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    rows = (
        tagged.mapInArrow(summarise, from_arrow_schema(schema))
        .groupBy(*POPULATION_COLUMNS)
        .agg(F.count("*").alias("w"))
        .toArrow()
    )
    # one row per buyer again (repeated by count), in the types the summary has
    types = purchase_summary(
        _inputs({}, products, empty, tokens), as_of=as_of, config=config
    ).schema
    distinct = pl.from_arrow(rows)
    weights = distinct["w"].to_numpy()
    summary = pl.DataFrame(
        {c: np.repeat(distinct[c].to_numpy(), weights) for c in POPULATION_COLUMNS}
    ).cast({c: types[c] for c in POPULATION_COLUMNS})
    return population_of(summary, as_of, config)


def build_on_spark(
    spark: SparkSession,
    data: str | os.PathLike,
    *,
    as_of: AsOf,
    out: str | os.PathLike,
    partitions: int | None = None,
    config: FeatureConfig | None = None,
) -> tuple[FeatureTables, dict[str, int]]:
    """Build the feature tables on Spark and write them as Parquet parts.

    Parameters
    ----------
    spark : SparkSession
        A session (:func:`session`).
    data : str or os.PathLike
        A contract folder of Parquet tables (files or folders of parts), on a path every
        executor reads.
    as_of : AsOf
        The moment; settled to UTC here.
    out : str or os.PathLike
        A folder for ``customers/`` and ``pairs/`` (Parquet parts), on a path every executor
        writes.
    partitions : int, optional
        Customer partitions (``spark.sql.shuffle.partitions`` when not given).
    config : FeatureConfig, optional
        Feature settings; the defaults when not given.

    Returns
    -------
    tuple of (FeatureTables, dict)
        The as-of and population parameters with empty frames of the written tables'
        columns and types (for the manifest), and the rows written per table.
    """

    config = config or FeatureConfig()
    folder, as_of, out = Path(data), as_utc(as_of), Path(out)
    frames, products, empty, tokens = prepare(spark, folder)
    n = partitions or int(spark.conf.get("spark.sql.shuffle.partitions"))
    tagged = tagged_by_customer(frames).repartition(n, KEY)
    population = fit_population_on(
        tagged, as_of=as_of, config=config, empty=empty, products=products, tokens=tokens
    )
    shape = build_features(
        _inputs({}, products, empty, tokens), as_of=as_of, config=config, population=population
    )
    schemas = {name: arrow_schema(getattr(shape, name)) for name in ("customers", "pairs")}

    def build(tables: dict[str, pl.DataFrame]) -> dict[str, pd.DataFrame]:
        inputs = _inputs(tables, products, empty, tokens)
        built = build_features(inputs, as_of=as_of, config=config, population=population)
        return {"customers": built.customers, "pairs": built.pairs}

    rows = per_customer_partition(tagged, build, schemas, out)
    return shape, rows


def arrow_schema(frame: pd.DataFrame) -> pa.Schema:
    """The Arrow schema of a pandas frame as Spark takes it: no pandas metadata, timestamps
    in microseconds (Spark's unit; pandas' nanoseconds are cut to it)."""
    schema = pa.Schema.from_pandas(frame, preserve_index=False).remove_metadata()
    for i, field in enumerate(schema):
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            schema = schema.set(i, field.with_type(pa.timestamp("us", tz=field.type.tz)))
    return schema
