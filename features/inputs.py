"""The contract tables as Polars lazy frames: the only form the feature code reads.

:func:`as_inputs` takes a loaded :class:`~cdp.contract.ContractTables` (pandas) or a
contract folder. From a folder of Parquet files (or folders of part files) the tables are
scanned lazily, so a build
reads only the columns it uses; CSV tables go through the contract loader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa

from cdp.contract import TABLES, ContractTables, dtype_of, empty_table
from cdp.io import is_parquet, locate_tables, read_tables, scan_raw
from cdp.privacy import load_suppression

TIME = pl.Datetime("us", "UTC")


@dataclass(frozen=True)
class FeatureInputs:
    """One lazy frame per contract table, typed as the contract says."""

    customers: pl.LazyFrame
    products: pl.LazyFrame
    orders: pl.LazyFrame
    identities: pl.LazyFrame
    consents: pl.LazyFrame
    events: pl.LazyFrame


def typed_lazy(frame: pd.DataFrame, name: str) -> pl.LazyFrame:
    """A table as a lazy frame, with absent optional contract columns added (default or null)."""
    missing = {
        c.name: pd.Series(c.default, index=frame.index, dtype=dtype_of(c))
        for c in TABLES[name].columns
        if c.name not in frame.columns
    }
    frame = frame.assign(**missing) if missing else frame
    return pl.from_arrow(pa.Table.from_pandas(frame, preserve_index=False)).lazy()


def _scan(path: Path) -> pl.LazyFrame:
    """Scan a Parquet table (a file, or a folder of part files with Hive keys as columns);
    timestamps to UTC microseconds (naive ones are UTC)."""
    return settle_times(scan_raw(path))


def settle_times(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Every timestamp column in UTC microseconds (naive ones are UTC)."""
    fixes = []
    for name, dtype in frame.collect_schema().items():
        if isinstance(dtype, pl.Datetime):
            col = pl.col(name)
            col = col.dt.replace_time_zone("UTC") if dtype.time_zone is None else col
            fixes.append(col.dt.convert_time_zone("UTC").cast(TIME))
    return frame.with_columns(fixes)


#: What the feature functions read: loaded contract tables, feature inputs, or a contract folder.
Tables = ContractTables | FeatureInputs | str | os.PathLike


def as_inputs(tables: Tables) -> FeatureInputs:
    """Feature inputs from loaded tables, or from a contract folder (not validated here;
    rows of customers on the suppression list left out, as the loader leaves them out)."""
    if isinstance(tables, FeatureInputs):
        return tables
    if isinstance(tables, ContractTables):
        return FeatureInputs(**{name: typed_lazy(frame, name) for name, frame in tables.items()})
    folder = Path(tables)
    files, _ = locate_tables(folder)
    if all(is_parquet(p) for p in files.values()):
        frames = {
            name: _scan(files[name]) if name in files else typed_lazy(empty_table(name), name)
            for name in TABLES
        }
        # Optional columns with defaults (locale, pack_size) come from the loader's rules.
        for small in ("products", "customers"):
            frames[small] = typed_lazy(read_tables_for(small, folder), small)
        if load_suppression():  # the loader left out erased customers: their rows go too
            frames = of_known_customers(frames)
        return FeatureInputs(**frames)
    typed, _, _ = read_tables(folder)
    return FeatureInputs(**{name: typed_lazy(frame, name) for name, frame in typed.items()})


def of_known_customers(frames: dict[str, pl.LazyFrame]) -> dict[str, pl.LazyFrame]:
    """The tables without rows of customers missing from ``customers`` (the erased ones, left
    out by the loader); anonymous events stay."""
    kept = frames["customers"].select("customer_id")
    out = dict(frames)
    for name in ("orders", "identities", "consents", "events"):
        known = frames[name].filter(pl.col("customer_id").is_not_null())
        theirs = known.join(kept, on="customer_id", how="semi")
        nobody = frames[name].filter(pl.col("customer_id").is_null())
        out[name] = pl.concat([theirs, nobody]) if name == "events" else theirs
    return out


def read_tables_for(name: str, folder: Path) -> pd.DataFrame:
    """One small table through the contract loader (types, defaults)."""
    typed, _, _ = read_tables(folder, only=(name,))
    return typed[name]


def order_span(tables: ContractTables | FeatureInputs) -> tuple[datetime | None, datetime | None]:
    """The first and the last order time (UTC) in the tables; ``(None, None)`` without orders."""
    times = pl.col("ordered_at")
    first, last = (
        as_inputs(tables).orders.select(times.min(), times.max().alias("last")).collect().row(0)
    )
    return first, last
