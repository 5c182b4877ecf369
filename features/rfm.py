"""RFM: recency, frequency, monetary value, tenure, scores 1-5 and named segments.

Purchases are order lines with ``quantity > 0`` at or before ``as_of``; returns
(``quantity < 0``) are counted apart. A *purchase day* is a UTC calendar day with at least
one purchase.

Scores cut each measure at the population's quintiles (:func:`rfm_edges`): recency (days
since the last purchase; more recent is better), frequency (purchase days) and monetary
total. The edges are a population parameter, like the lifetimes fits: computed once on all
customers and passed in, so that features computed per partition of customers agree with
features computed at once.

Segments follow the R x F grid (the usual RFM segment map):

==========  ============================================================
R \\ F        1                2          3          4          5
==========  ============================================================
5           New              Potential  Potential  Champions  Champions
4           Promising        Potential  Potential  Loyal      Loyal
3           About to sleep   About to   Need       Loyal      Loyal
                             sleep      attention
2           Hibernating      Hib.       At risk    At risk    Can't lose them
1           Lost             Hib.       At risk    At risk    Can't lose them
==========  ============================================================

(Potential = Potential loyalist, Hib. = Hibernating.) Customers without a purchase by
``as_of`` get the segment "No purchase yet" and no scores.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl

from features.exact import exact_sum
from features.time import day_of, days_between

SCORED = ("recency_days", "purchase_days", "monetary_total")

_GRID = {
    5: ["New", "Potential loyalist", "Potential loyalist", "Champions", "Champions"],
    4: ["Promising", "Potential loyalist", "Potential loyalist", "Loyal", "Loyal"],
    3: ["About to sleep", "About to sleep", "Need attention", "Loyal", "Loyal"],
    2: ["Hibernating", "Hibernating", "At risk", "At risk", "Can't lose them"],
    1: ["Lost", "Hibernating", "At risk", "At risk", "Can't lose them"],
}
SEGMENTS = {10 * r + f + 1: name for r, row in _GRID.items() for f, name in enumerate(row)}
NO_PURCHASE = "No purchase yet"


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


def purchase_summary(daily: pl.LazyFrame, *, as_of: datetime) -> pl.LazyFrame:
    """Per customer with a purchase by ``as_of``: RFM measures and the lifetimes summary.

    ``recency_days``: days from the last purchase to ``as_of``. ``purchase_days`` and
    ``orders``: distinct purchase days and orders. ``monetary_total`` / ``monetary_mean``:
    purchase value in total and per order. The lifetimes columns follow
    ``lifetimes.utils.summary_data_from_transaction_data`` with daily periods:
    ``frequency`` = purchase days - 1, ``recency`` = days from the first to the last
    purchase day, ``T`` = days from the first purchase day to ``as_of``'s day,
    ``monetary_value`` = mean value of the repeat purchase days (0 without repeats).
    """
    today = day_of(as_of)
    return (
        daily.group_by("customer_id")
        .agg(
            first_day=pl.col("day").min(),
            last_day=pl.col("day").max(),
            last_purchase_at=pl.col("last_at").max(),
            purchase_days=pl.len().cast(pl.Int64),
            orders=pl.col("orders").sum().cast(pl.Int64),
            monetary_total=exact_sum(pl.col("value")),
            first_day_value=pl.col("value").sort_by("day").first(),
        )
        .with_columns(
            recency_days=days_between(as_of, pl.col("last_purchase_at")),
            monetary_mean=pl.col("monetary_total") / pl.col("orders"),
            frequency=(pl.col("purchase_days") - 1).cast(pl.Float64),
            recency=days_between(pl.col("last_day"), pl.col("first_day")).round(0),
            T=days_between(today, pl.col("first_day")).round(0),
        )
        .with_columns(
            monetary_value=pl.when(pl.col("frequency") > 0)
            .then((pl.col("monetary_total") - pl.col("first_day_value")) / pl.col("frequency"))
            .otherwise(0.0),
        )
        .drop("first_day", "last_day", "first_day_value")
    )


def rfm_edges(summary) -> dict[str, list[float]]:
    """Quintile cut points (20/40/60/80%) of each scored measure over customers who bought."""
    frame = summary.collect() if isinstance(summary, pl.LazyFrame) else summary
    return {
        name: [float(x) for x in np.quantile(frame[name].to_numpy(), [0.2, 0.4, 0.6, 0.8])]
        if frame.height
        else [0.0, 0.0, 0.0, 0.0]
        for name in SCORED
    }


def _above(column: str, edges: list[float]) -> pl.Expr:
    return pl.sum_horizontal([(pl.col(column) > edge).cast(pl.Int8) for edge in edges])


def rfm_scores(summary: pl.LazyFrame, edges: dict[str, list[float]]) -> pl.LazyFrame:
    """Add ``r_score``, ``f_score``, ``m_score`` (1-5, 5 best), ``rfm_score`` and ``segment``."""
    return summary.with_columns(
        r_score=(5 - _above("recency_days", edges["recency_days"])).cast(pl.Int8),
        f_score=(1 + _above("purchase_days", edges["purchase_days"])).cast(pl.Int8),
        m_score=(1 + _above("monetary_total", edges["monetary_total"])).cast(pl.Int8),
    ).with_columns(
        rfm_score=(
            pl.col("r_score").cast(pl.Int16) * 100 + pl.col("f_score") * 10 + pl.col("m_score")
        ).cast(pl.Int16),
        segment=(pl.col("r_score").cast(pl.Int16) * 10 + pl.col("f_score")).replace_strict(
            SEGMENTS, return_dtype=pl.String
        ),
    )
