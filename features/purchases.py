"""Purchases per customer: RFM measures, the lifetimes summary and purchase intervals.

Purchases are order lines with ``quantity > 0`` at or before ``as_of``; returns
(``quantity < 0``) are counted apart. A *purchase day* is a UTC calendar day with at least
one purchase; a *gap* is the number of days between two consecutive purchase days.

Everything per customer comes from one pass: the order lines are reduced to one row per
customer and purchase day, sorted by customer and day, and aggregated once. A row's gap is
to the row before it when that row is the same customer's, and a row is among its
customer's last ``recent_gaps`` when the row that many places ahead belongs to someone else
(cheaper than window functions).

The sort is on one 64-bit key rather than on (customer_id, day), which costs several times
more: the high bits are a hash of ``customer_id``, the low :data:`DAY_BITS` bits the day.
Two customers whose hashes share those high bits could interleave; every run of one
customer's rows becomes one group, so that shows as a customer with two groups, and the
history is then computed again with the exact (customer_id, day) sort. So is a history
with a purchase more than ``2 ** DAY_BITS`` days before ``as_of``. Either way the result is
the same; only the time differs.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from features.config import FeatureConfig
from features.exact import exact_sum, on_grid
from features.time import day_of, days_between

#: Days before ``as_of`` that the packed sort key orders (2 ** 13 days: about 22 years).
DAY_BITS = 13
_SEED = 0x6E657874


def daily_purchases(orders: pl.LazyFrame, *, as_of: datetime) -> pl.LazyFrame:
    """One row per customer and purchase day: purchase value and number of orders."""
    return (
        orders.filter((pl.col("ordered_at") <= as_of) & (pl.col("quantity") > 0))
        .group_by("customer_id", pl.col("ordered_at").dt.truncate("1d").alias("day"))
        .agg(
            value=exact_sum(pl.col("amount")),
            orders=pl.col("order_id").n_unique(),
            last_at=pl.col("ordered_at").max(),
        )
    )


def returned_amounts(orders: pl.LazyFrame, *, as_of: datetime) -> pl.LazyFrame:
    """Per customer: the amount refunded for returns at or before ``as_of`` (positive)."""
    return (
        orders.filter((pl.col("ordered_at") <= as_of) & (pl.col("quantity") < 0))
        .group_by("customer_id")
        .agg(returned_amount=-exact_sum(pl.col("amount")))
    )


def purchase_history(
    daily: pl.LazyFrame, *, as_of: datetime, config: FeatureConfig
) -> pl.LazyFrame:
    """Per customer with a purchase by ``as_of``, from :func:`daily_purchases`:

    - RFM: ``recency_days`` (days from the last purchase to ``as_of``), ``purchase_days``
      and ``orders`` (distinct purchase days and orders), ``monetary_total`` /
      ``monetary_mean`` (purchase value in total and per order), ``last_purchase_at``;
    - the lifetimes summary of ``lifetimes.utils.summary_data_from_transaction_data`` with
      daily periods: ``frequency`` = purchase days - 1, ``recency`` = days from the first to
      the last purchase day, ``T`` = days from the first purchase day to ``as_of``'s day,
      ``monetary_value`` = mean value of the repeat purchase days (0 without repeats);
    - intervals: ``gap_mean_days`` / ``gap_median_days`` / ``gap_std_days`` (null with fewer
      than 1 / 1 / 2 gaps); ``gap_trend``, the mean of the last ``config.recent_gaps`` gaps
      over the mean of the earlier ones (above 1: buying less often lately; null unless
      there are earlier gaps); ``spend_last`` / ``spend_before``, purchase value in the last
      ``config.spend_trend_days`` days up to ``as_of``'s day and in as many days before;
      ``spend_trend`` = (last - before) / (last + before), in [-1, 1], null if both are 0.
    """
    history = _history(daily, as_of=as_of, config=config, packed=True).collect(engine="streaming")
    if history["customer_id"].is_duplicated().any() or history["T"].max() >= 2**DAY_BITS:
        history = _history(daily, as_of=as_of, config=config, packed=False).collect()
    return history.drop("run")


def _packed_key(today: datetime) -> pl.Expr:
    """A sort key ordering rows by a hash of the customer, then by day (see the module doc)."""
    last = 2**DAY_BITS - 1
    high = pl.lit((2**64 - 1) ^ last, pl.UInt64)
    days_ago = (pl.lit(today) - pl.col("day")).dt.total_days().clip(0, last).cast(pl.UInt64)
    return (pl.col("customer_id").hash(_SEED) & high) | (pl.lit(last, pl.UInt64) - days_ago)


def _history(daily: pl.LazyFrame, *, as_of: datetime, config: FeatureConfig, packed: bool):
    """The history plan; sums are of exact integers (cents on a 1e-6 grid, whole days)."""
    today = day_of(as_of)
    trend_days = config.spend_trend_days
    customer, day, gap, cents = pl.col("customer_id"), pl.col("day"), pl.col("gap"), pl.col("v")
    first = customer.shift(1).is_null() | (customer != customer.shift(1))
    ahead = customer.shift(-config.recent_gaps)
    age = (pl.lit(today) - day).dt.total_days()
    rows = (
        daily.sort(_packed_key(today) if packed else ["customer_id", "day"])
        .with_columns(
            first=first,
            gap=pl.when(~first).then((day - day.shift(1)).dt.total_days()),
            recent=ahead.is_null() | (ahead != customer),
            v=on_grid(pl.col("value")),
        )
        .with_columns(
            run=pl.col("first").cum_sum(),
            first_v=pl.when(pl.col("first")).then(cents),
            gap_sq=gap * gap,
            recent_gap=pl.when(pl.col("recent")).then(gap),
            earlier_gap=pl.when(~pl.col("recent")).then(gap),
            v_last=pl.when(age < trend_days).then(cents),
            v_before=pl.when((age >= trend_days) & (age < 2 * trend_days)).then(cents),
        )
    )
    sums = ["v", "first_v", "gap", "gap_sq", "recent_gap", "earlier_gap", "v_last", "v_before"]
    counts = ["gap", "recent_gap", "earlier_gap"]
    totals = rows.group_by("run").agg(
        customer.first(),
        day.min().alias("first_day"),
        day.max().alias("last_day"),
        pl.col("last_at").max().alias("last_purchase_at"),
        pl.len().cast(pl.Int64).alias("purchase_days"),
        pl.col("orders").sum().cast(pl.Int64),
        gap.median().alias("gap_median_days"),
        *[pl.col(c).sum().alias(f"{c}_sum") for c in sums],
        *[pl.col(c).count().replace(0, None).alias(f"{c}_n") for c in counts],
    )
    n = pl.col("gap_n").cast(pl.Float64)
    s1, s2 = pl.col("gap_sum").cast(pl.Float64), pl.col("gap_sq_sum").cast(pl.Float64)
    spend_last, spend_before = pl.col("v_last_sum") / 1e6, pl.col("v_before_sum") / 1e6
    return (
        totals.with_columns(
            monetary_total=pl.col("v_sum") / 1e6,
            recency_days=days_between(as_of, pl.col("last_purchase_at")),
            frequency=(pl.col("purchase_days") - 1).cast(pl.Float64),
            recency=(pl.col("last_day") - pl.col("first_day")).dt.total_days().cast(pl.Float64),
            T=(pl.lit(today) - pl.col("first_day")).dt.total_days().cast(pl.Float64),
            gap_mean_days=s1 / n,
            gap_std_days=pl.when(n >= 2).then(((s2 - s1 * s1 / n) / (n - 1)).clip(0).sqrt()),
            gap_trend=(pl.col("recent_gap_sum") / pl.col("recent_gap_n"))
            / (pl.col("earlier_gap_sum") / pl.col("earlier_gap_n")),
            spend_last=spend_last,
            spend_before=spend_before,
            spend_trend=pl.when(spend_last + spend_before > 0).then(
                (spend_last - spend_before) / (spend_last + spend_before)
            ),
        )
        .with_columns(
            monetary_mean=pl.col("monetary_total") / pl.col("orders"),
            monetary_value=pl.when(pl.col("frequency") > 0)
            .then((pl.col("v_sum") - pl.col("first_v_sum")) / 1e6 / pl.col("frequency"))
            .otherwise(0.0),
        )
        .drop(
            "first_day",
            "last_day",
            *[f"{c}_sum" for c in sums],
            *[f"{c}_n" for c in counts],
        )
    )
