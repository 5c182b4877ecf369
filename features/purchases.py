"""Purchases per customer: RFM measures, the lifetimes summary and purchase intervals.

Purchases are order lines with ``quantity > 0`` at or before ``as_of``; returns
(``quantity < 0``) are counted apart. A *purchase day* is a UTC calendar day with at least
one purchase; a *gap* is the number of days between two consecutive purchase days.

Everything per customer comes from one pass: the order lines are reduced to one row per
customer and purchase day, sorted by customer and day, and aggregated once. A row's gap is
to the row before it when that row is the same customer's, and a row is among its
customer's last ``recent_gaps`` when the row that many places ahead belongs to someone else
(cheaper than window functions).

The sort is :func:`features.runs.day_runs` (a packed 64-bit key, with an exact fallback).
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from features.config import FeatureConfig
from features.exact import exact_sum, on_grid, std_from_sums
from features.runs import day_runs, needs_exact_sort, oldest
from features.time import day_of, days_between

#: The columns of :func:`purchase_history` after ``customer_id``: RFM and lifetimes, intervals.
SUMMARY = (
    "last_purchase_at",
    "purchase_days",
    "orders",
    "monetary_total",
    "recency_days",
    "monetary_mean",
    "frequency",
    "recency",
    "T",
    "monetary_value",
)
INTERVALS = (
    "gap_mean_days",
    "gap_median_days",
    "gap_std_days",
    "spend_last",
    "spend_before",
    "gap_trend",
    "spend_trend",
    "gap_cv",
    "basket_lines_mean",
    "basket_trend",
)


def daily_purchases(orders: pl.LazyFrame, *, as_of: datetime) -> pl.LazyFrame:
    """One row per customer and purchase day: purchase value, number of orders and of
    order lines."""
    return (
        orders.filter((pl.col("ordered_at") <= as_of) & (pl.col("quantity") > 0))
        .group_by("customer_id", pl.col("ordered_at").dt.truncate("1d").alias("day"))
        .agg(
            value=exact_sum(pl.col("amount")),
            orders=pl.col("order_id").n_unique(),
            lines=pl.len().cast(pl.Int64),
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
) -> pl.DataFrame:
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
      ``spend_trend`` = (last - before) / (last + before), in [-1, 1], null if both are 0;
    - regularity and baskets: ``gap_cv`` = gap_std_days / gap_mean_days (0: like
      clockwork); ``basket_lines_mean``, order lines per purchase day; ``basket_trend``, the
      mean lines of the last ``config.recent_gaps`` purchase days over the mean of the
      earlier ones (below 1: smaller baskets lately, as a household drifts to another shop;
      null unless there are earlier days).
    """
    history = _history(daily, as_of=as_of, config=config, exact=False).collect(engine="streaming")
    if needs_exact_sort(history, ["customer_id"]):
        history = _history(daily, as_of=as_of, config=config, exact=True).collect(
            engine="streaming"
        )
    return history.select("customer_id", *SUMMARY, *INTERVALS)


def _history(daily: pl.LazyFrame, *, as_of: datetime, config: FeatureConfig, exact: bool):
    """The history plan; sums are of exact integers (cents on a 1e-6 grid, whole days)."""
    today = day_of(as_of)
    trend_days = config.spend_trend_days
    customer, day, gap, cents = pl.col("customer_id"), pl.col("day"), pl.col("gap"), pl.col("v")
    first, age = pl.col("first"), pl.col("days_ago")
    ahead = customer.shift(-config.recent_gaps)
    rows = (
        day_runs(daily, today=today, exact=exact)
        .with_columns(
            gap=pl.when(~first).then((day - day.shift(1)).dt.total_days()),
            recent=ahead.is_null() | (ahead != customer),
            v=on_grid(pl.col("value")),
        )
        .with_columns(
            first_v=pl.when(pl.col("first")).then(cents),
            gap_sq=gap * gap,
            recent_gap=pl.when(pl.col("recent")).then(gap),
            earlier_gap=pl.when(~pl.col("recent")).then(gap),
            v_last=pl.when(age < trend_days).then(cents),
            v_before=pl.when((age >= trend_days) & (age < 2 * trend_days)).then(cents),
            recent_lines=pl.when(pl.col("recent")).then(pl.col("lines")),
            earlier_lines=pl.when(~pl.col("recent")).then(pl.col("lines")),
        )
    )
    sums = ["v", "first_v", "gap", "gap_sq", "recent_gap", "earlier_gap", "v_last", "v_before"]
    sums += ["lines", "recent_lines", "earlier_lines"]
    counts = ["gap", "recent_gap", "earlier_gap", "recent_lines", "earlier_lines"]
    totals = rows.group_by("run").agg(
        customer.first(),
        oldest(),
        day.min().alias("first_day"),
        day.max().alias("last_day"),
        pl.col("last_at").max().alias("last_purchase_at"),
        pl.len().cast(pl.Int64).alias("purchase_days"),
        pl.col("orders").sum().cast(pl.Int64),
        gap.median().alias("gap_median_days"),
        *[pl.col(c).sum().alias(f"{c}_sum") for c in sums],
        *[pl.col(c).count().replace(0, None).alias(f"{c}_n") for c in counts],
    )
    spend_last, spend_before = pl.col("v_last_sum") / 1e6, pl.col("v_before_sum") / 1e6
    return (
        totals.with_columns(
            monetary_total=pl.col("v_sum") / 1e6,
            recency_days=days_between(as_of, pl.col("last_purchase_at")),
            frequency=(pl.col("purchase_days") - 1).cast(pl.Float64),
            recency=(pl.col("last_day") - pl.col("first_day")).dt.total_days().cast(pl.Float64),
            T=(pl.lit(today) - pl.col("first_day")).dt.total_days().cast(pl.Float64),
            gap_mean_days=pl.col("gap_sum") / pl.col("gap_n"),
            gap_std_days=std_from_sums("gap_n", "gap_sum", "gap_sq_sum"),
            gap_trend=(pl.col("recent_gap_sum") / pl.col("recent_gap_n"))
            / (pl.col("earlier_gap_sum") / pl.col("earlier_gap_n")),
            spend_last=spend_last,
            spend_before=spend_before,
            spend_trend=pl.when(spend_last + spend_before > 0).then(
                (spend_last - spend_before) / (spend_last + spend_before)
            ),
            basket_lines_mean=pl.col("lines_sum") / pl.col("purchase_days"),
            basket_trend=(pl.col("recent_lines_sum") / pl.col("recent_lines_n"))
            / (pl.col("earlier_lines_sum") / pl.col("earlier_lines_n")),
        )
        .with_columns(
            gap_cv=pl.when(pl.col("gap_mean_days") > 0).then(
                pl.col("gap_std_days") / pl.col("gap_mean_days")
            ),
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
