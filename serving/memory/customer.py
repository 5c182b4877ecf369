"""One customer's served state, and the rule for which consent record is in force."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from policy.profile import Consumable


def utc(value) -> datetime:
    """A timestamp as a UTC datetime, to the microsecond."""
    return pd.Timestamp(value).tz_convert("UTC").floor("us").to_pydatetime()  # no ns warning


def utc_column(values: pd.Series) -> list[datetime | None]:
    """:func:`utc` of every value of a column at once (None for a missing one)."""
    column = (
        pd.Series(pd.to_datetime(values, utc=True)).dt.floor("us").astype("datetime64[us, UTC]")
    )
    return [None if v is pd.NaT else v for v in column.dt.to_pydatetime()]


def num_column(values: pd.Series) -> list[float | None]:
    """Every value of a column as a float, or None for a missing one."""
    return [None if v != v else v for v in values.to_numpy(dtype=float, na_value=np.nan).tolist()]


def consent_in_force(history: list[tuple[datetime, bool]] | None, now: datetime) -> bool:
    """Whether a purpose's consent is granted at ``now``: the latest record at or before
    ``now`` decides (the data contract's rule); a record dated later is not in force yet, and
    no record means no consent."""
    if not history:
        return False
    i = bisect.bisect_right(history, now, key=lambda record: record[0])
    return i > 0 and history[i - 1][1]


@dataclass
class Customer:
    """One customer's served state (mutable by online updates, under the state's lock)."""

    customer_id: str
    locale: str
    segment: str
    # None for a customer created online (no features yet)
    churn_probability: float | None = None
    clv_12m: float | None = None
    p_alive: float | None = None
    min_sentiment_30d: float | None = None
    last_order_at: datetime | None = None
    usual_gap_days: float | None = None  # median days between purchase days (the snapshot's)
    preferred_channel: str | None = None
    #: purpose -> every record ``(recorded_at, granted)`` in time order
    consents: dict[str, list[tuple[datetime, bool]]] = field(default_factory=dict)
    open_tickets: int = 0
    consumables: dict[str, Consumable] = field(default_factory=dict)
    cycle_days: dict[str, float] = field(default_factory=dict)  # per unit, per consumable
    owned: set[str] = field(default_factory=set)
    recent_orders: list[dict] = field(default_factory=list)
    #: what raises this customer's churn probability most (:mod:`policy.drivers` codes)
    churn_drivers: tuple[str, ...] = ()
    #: the next-product model's best candidates: (product_id, probability, drivers), by
    #: expected value (probability x price) first
    next_products: list[tuple[str, float, tuple[str, ...]]] = field(default_factory=list)
    #: the next-product model's probability of each consumable family they buy
    next_purchase: dict[str, float] = field(default_factory=dict)
