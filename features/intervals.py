"""Purchase intervals: the gaps between a customer's purchase days, and spend trends.

A gap is the number of days between two consecutive purchase days (UTC calendar days).
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from features.exact import exact_mean, exact_std, exact_sum
from features.time import day_of, days_between


def purchase_interval_stats(
    daily: pl.LazyFrame, *, as_of: datetime, recent_gaps: int, trend_days: int
) -> pl.LazyFrame:
    """Per customer with a purchase by ``as_of``:

    - ``gap_mean_days`` / ``gap_median_days`` / ``gap_std_days``: of the gaps between
      purchase days (null with fewer than 1 / 1 / 2 gaps);
    - ``gap_trend``: mean of the last ``recent_gaps`` gaps over the mean of the earlier ones
      (above 1: buying less often lately); null unless there are earlier gaps;
    - ``spend_last`` / ``spend_before``: purchase value on purchase days in the last
      ``trend_days`` days up to ``as_of``'s day, and in the ``trend_days`` before those;
      ``spend_trend`` = (last - before) / (last + before), in [-1, 1], null if both are 0.
    """
    today = day_of(as_of)
    age = days_between(today, pl.col("day"))
    # Sorted by customer and day, a row's gap is to the row before it when that row is the
    # same customer's; a row is among its customer's last ``recent_gaps`` when the row that
    # many places ahead belongs to someone else. (Cheaper than window functions.)
    customer = pl.col("customer_id")
    ahead = customer.shift(-recent_gaps)
    gaps = daily.sort("customer_id", "day").with_columns(
        gap=pl.when(customer == customer.shift(1)).then(
            days_between(pl.col("day"), pl.col("day").shift(1))
        ),
        recent=ahead.is_null() | (ahead != customer),
    )
    return (
        gaps.group_by("customer_id")
        .agg(
            gap_mean_days=exact_mean(pl.col("gap"), 1e3),
            gap_median_days=pl.col("gap").median(),
            gap_std_days=exact_std(pl.col("gap")),
            recent_gap_mean=exact_mean(pl.col("gap").filter(pl.col("recent")), 1e3),
            earlier_gap_mean=exact_mean(pl.col("gap").filter(~pl.col("recent")), 1e3),
            spend_last=exact_sum(pl.col("value").filter(age < trend_days)),
            spend_before=exact_sum(
                pl.col("value").filter((age >= trend_days) & (age < 2 * trend_days))
            ),
        )
        .with_columns(
            gap_trend=pl.col("recent_gap_mean") / pl.col("earlier_gap_mean"),
            spend_trend=pl.when(pl.col("spend_last") + pl.col("spend_before") > 0).then(
                (pl.col("spend_last") - pl.col("spend_before"))
                / (pl.col("spend_last") + pl.col("spend_before"))
            ),
        )
        .drop("recent_gap_mean", "earlier_gap_mean")
    )
