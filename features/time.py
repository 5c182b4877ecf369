"""Point-in-time helpers: the only place that turns ``as_of`` (a settled UTC moment,
:mod:`cdp.time`) into filters and day counts."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

DAY_SECONDS = 86_400.0


def day_of(as_of: datetime) -> datetime:
    """The UTC calendar day ``as_of`` falls in (midnight)."""
    return as_of.replace(hour=0, minute=0, second=0, microsecond=0)


def days_between(later: pl.Expr | datetime, earlier: pl.Expr | datetime) -> pl.Expr:
    """``later - earlier`` in fractional days."""
    later = pl.lit(later) if isinstance(later, datetime) else later
    earlier = pl.lit(earlier) if isinstance(earlier, datetime) else earlier
    return (later - earlier).dt.total_microseconds() / (DAY_SECONDS * 1e6)


def within(column: str, as_of: datetime, days: float | None = None) -> pl.Expr:
    """Rows at or before ``as_of`` (and after ``as_of - days`` when ``days`` is given)."""
    expr = pl.col(column) <= as_of
    if days is not None:
        expr &= pl.col(column) > as_of - timedelta(days=days)
    return expr
