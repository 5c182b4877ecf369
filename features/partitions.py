"""Building in customer partitions: memory bounded by one partition, the rows of one build.

Every output row depends on one customer's rows and the population parameters (fitted on
every buyer's purchase summary, :func:`features.build.population_of`). So the customers
are split into ``n`` hash partitions of ``customer_id``. One streaming pass per large table
writes each partition's rows to a temporary folder (:func:`spill`); then each partition's
inputs are the rows of its customers (their orders, consents, identities, their own events
and the anonymous events one of their cookie or device identities claims) plus every
product. The population parameters come first, from each partition's purchase summaries;
then each partition is built with them. Concatenated and sorted, the partitions are one
build (``tests/features/test_partitions.py``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from cdp.contract import STITCHABLE_ID_TYPES
from cdp.io import part_files
from cdp.time import AsOf, as_utc
from features.build import (
    FeatureTables,
    PopulationParams,
    build_features,
    population_of,
    purchase_summary,
)
from features.config import FeatureConfig
from features.engagement import EVENT_COLUMNS
from features.inputs import FeatureInputs, Tables, as_inputs

#: Seed of the partition hash (any fixed value: the rows do not depend on it).
SEED = 20_250_630


def partition_of(column: str, partitions: int) -> pl.Expr:
    """The partition (0 to ``partitions - 1``) of each row by the value of ``column``."""
    return (pl.col(column).hash(SEED) % partitions).cast(pl.Int64)


def spill(inputs: FeatureInputs, partitions: int, folder: Path) -> None:
    """Write each partition's rows of the large tables to ``folder/TABLE/part=K/``, one
    streaming pass per table (Parquet, LZ4): events go to their customer's partition, or
    to the partition of every customer whose cookie or device identity claims them."""
    part = partition_of("customer_id", partitions)

    def sink(frame: pl.LazyFrame, name: str) -> None:
        target = pl.PartitionBy(folder / name, key="part", include_key=False)
        frame.sink_parquet(target, mkdir=True, compression="lz4")

    for name in ("orders", "identities", "consents"):
        sink(getattr(inputs, name).with_columns(part=part), name)
    events = inputs.events.select(EVENT_COLUMNS)
    sink(events.filter(pl.col("customer_id").is_not_null()).with_columns(part=part), "known")
    links = (
        inputs.identities.filter(pl.col("id_type").is_in(STITCHABLE_ID_TYPES))
        .select(pl.col("id_value").alias("anonymous_id"), part=part)
        .unique()
    )
    anonymous = events.filter(pl.col("customer_id").is_null()).join(links, on="anonymous_id")
    sink(anonymous, "anonymous")


def spilled_inputs(inputs: FeatureInputs, folder: Path, k: int, partitions: int) -> FeatureInputs:
    """The inputs of partition ``k`` from a :func:`spill`: its customers' rows (and the
    anonymous events their identities claim) and every product."""

    def read(name: str, like: pl.LazyFrame) -> pl.LazyFrame:
        files = part_files(folder / name / f"part={k}")
        return pl.scan_parquet(files, hive_partitioning=False) if files else like.clear()

    events = inputs.events.select(EVENT_COLUMNS)
    return FeatureInputs(
        customers=inputs.customers.filter(partition_of("customer_id", partitions) == k),
        products=inputs.products,
        orders=read("orders", inputs.orders),
        identities=read("identities", inputs.identities),
        consents=read("consents", inputs.consents),
        events=pl.concat([read("known", events), read("anonymous", events)]),
    )


def build_partitions(
    tables: Tables,
    *,
    as_of: AsOf,
    partitions: int,
    config: FeatureConfig | None = None,
    population: PopulationParams | None = None,
    workdir: str | os.PathLike | None = None,
) -> Iterator[FeatureTables]:
    """Build the feature tables one customer partition at a time.

    Parameters
    ----------
    tables : Tables
        Loaded contract tables, feature inputs, or a contract folder (scanned lazily, so
        only one partition's rows are in memory at a time).
    as_of : AsOf
        The moment; settled to UTC here.
    partitions : int
        How many hash partitions of ``customer_id`` (1 is one build).
    config : FeatureConfig, optional
        Feature settings; the defaults when not given.
    population : PopulationParams, optional
        The population parameters at ``as_of`` (fitted here, on every customer, when not
        given).
    workdir : str or os.PathLike, optional
        Where the partitions' rows are spilled while building (a temporary folder inside
        it, removed at the end; the system's temporary folder when not given).

    Yields
    ------
    FeatureTables
        Partition 0, 1, ...: disjoint customers, each partition's rows sorted as one build
        sorts them.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, not {partitions}")
    config = config or FeatureConfig()
    inputs, as_of = as_inputs(tables), as_utc(as_of)
    if partitions == 1:
        yield build_features(inputs, as_of=as_of, config=config, population=population)
        return
    with tempfile.TemporaryDirectory(prefix="nextbest-partitions-", dir=workdir) as folder:
        spill(inputs, partitions, Path(folder))
        parts = [spilled_inputs(inputs, Path(folder), k, partitions) for k in range(partitions)]
        if population is None:  # each buyer's summary, partition by partition
            summary = pl.concat(
                [purchase_summary(part, as_of=as_of, config=config) for part in parts]
            )
            population = population_of(summary, as_of, config)
        for part in parts:
            yield build_features(part, as_of=as_of, config=config, population=population)


def sample_customers(tables: Tables, customers: int) -> FeatureInputs:
    """The rows of ``customers`` customers picked by the hash of their id (the same sample
    from the same data, whatever the row order), with every product: what training on one
    machine reads when the whole population does not fit (``nextbest train
    --sample-customers``). Anonymous events claimed by a sampled customer's cookie or device
    go with them."""
    if customers < 1:
        raise ValueError(f"a sample needs at least 1 customer, not {customers}")
    inputs = as_inputs(tables)
    chosen = (
        inputs.customers.select("customer_id")
        .with_columns(rank=pl.col("customer_id").hash(SEED))
        .sort("rank", "customer_id")
        .head(customers)
        .select("customer_id")
        .collect()
    )

    def theirs(frame: pl.LazyFrame) -> pl.DataFrame:
        return frame.join(chosen.lazy(), on="customer_id", how="semi").collect()

    identities = theirs(inputs.identities)
    links = identities.filter(pl.col("id_type").is_in(STITCHABLE_ID_TYPES))["id_value"]
    anonymous = inputs.events.filter(
        pl.col("customer_id").is_null() & pl.col("anonymous_id").is_in(links.implode())
    )
    events = pl.concat([theirs(inputs.events), anonymous.collect()])
    return FeatureInputs(
        customers=theirs(inputs.customers).lazy(),
        products=inputs.products,
        orders=theirs(inputs.orders).lazy(),
        identities=identities.lazy(),
        consents=theirs(inputs.consents).lazy(),
        events=events.lazy(),
    )
