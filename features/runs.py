"""Sort rows into runs of one customer (or one customer x product) in day order, cheaply.

Gaps between purchase days need each customer's rows in day order. Sorting on
(customer_id, day) compares strings and costs several times more than sorting one 64-bit
integer, so :func:`day_runs` sorts on a packed key: the high bits are a hash of
``customer_id``, then the bits of a small integer ``code`` column (a product), and the low
:data:`DAY_BITS` bits the day, counted back from ``today``. Each run of rows with the same
``by`` values gets a number (``run``) to aggregate on.

Two customers whose hashes share the high bits can interleave, and a day more than
``2 ** DAY_BITS - 1`` days before ``today`` does not fit. Neither can go unnoticed:
interleaved rows make one customer (or pair) several runs, which :func:`needs_exact_sort`
sees as a duplicate in the aggregated table, and an old day shows in its ``oldest`` column.
The caller then aggregates again on the exact (``by``, day) sort. The answer is the same
either way; only the time differs.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

#: Days before ``today`` that the packed key orders (2 ** 13 days: about 22 years).
DAY_BITS = 13
_SEED = 0x6E657874


def _packed_key(today: datetime, code: str | None, code_bits: int) -> pl.Expr:
    last = 2**DAY_BITS - 1
    low_bits = DAY_BITS + code_bits
    key = pl.col("customer_id").hash(_SEED) & pl.lit((2**64 - 1) ^ (2**low_bits - 1), pl.UInt64)
    if code is not None:
        key = key | (pl.col(code).cast(pl.UInt64) * pl.lit(2**DAY_BITS, pl.UInt64))
    days_ago = (pl.lit(today) - pl.col("day")).dt.total_days().clip(0, last).cast(pl.UInt64)
    return key | (pl.lit(last, pl.UInt64) - days_ago)


def day_runs(
    frame: pl.LazyFrame,
    *,
    today: datetime,
    code: str | None = None,
    code_bits: int = 0,
    exact: bool = False,
) -> pl.LazyFrame:
    """``frame`` (with ``customer_id``, ``day`` and, if given, an unsigned ``code`` below
    ``2 ** code_bits``) sorted into runs of one customer (x code) in day order, with ``first``
    (the run's first row), ``run`` (its number) and ``days_ago`` (whole days before ``today``).
    ``exact`` sorts on (customer_id, code, day) instead of the packed key."""
    by = ["customer_id"] if code is None else ["customer_id", code]
    new_run = pl.any_horizontal(
        [pl.col(c).shift(1).is_null() | (pl.col(c) != pl.col(c).shift(1)) for c in by]
    )
    order = [*by, "day"] if exact else _packed_key(today, code, code_bits)
    return (
        frame.sort(order)
        .with_columns(first=new_run, days_ago=(pl.lit(today) - pl.col("day")).dt.total_days())
        .with_columns(run=pl.col("first").cum_sum())
    )


def oldest() -> pl.Expr:
    """The aggregation :func:`needs_exact_sort` reads: the run's oldest day, in days ago."""
    return pl.col("days_ago").max().alias("oldest")


def needs_exact_sort(aggregated: pl.DataFrame, by: list[str]) -> bool:
    """Whether runs aggregated after a packed sort must be redone on the exact sort."""
    return bool(
        aggregated.height
        and (
            aggregated.select(by).is_duplicated().any() or aggregated["oldest"].max() >= 2**DAY_BITS
        )
    )
