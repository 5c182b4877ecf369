"""Purchase intervals and spend trend on hand-built purchase days."""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
import pytest

from conftest import at, contract
from features import purchases, runs
from features.build import build_features
from features.config import FeatureConfig


def test_gaps_trend_and_overdue_ratio():
    days = [0, 10, 30, 35, 40, 45]  # gaps 10, 20, 5, 5, 5
    values = [10.0, 10.0, 10.0, 20.0, 30.0, 40.0]
    orders = pd.DataFrame(
        {
            "order_id": [f"O{i}" for i in range(len(days))],
            "customer_id": "00001",
            "ordered_at": [at(d + 0.5) for d in days],
            "product_id": "P-INK",
            "quantity": 1,
            "amount": values,
        }
    )
    as_of = at(55)
    config = FeatureConfig(spend_trend_days=20)
    row = build_features(contract(orders=orders), as_of=as_of, config=config).customers
    row = row.set_index("customer_id").loc["00001"]
    gaps = [10, 20, 5, 5, 5]
    assert row["gap_mean_days"] == pytest.approx(9.0)
    assert row["gap_median_days"] == pytest.approx(5.0)
    assert row["gap_std_days"] == pytest.approx(statistics.stdev(gaps))
    assert row["gap_trend"] == pytest.approx(5.0 / 15.0)  # last 3 gaps vs earlier ones
    assert row["overdue_ratio"] == pytest.approx((55 - 45.5) / 5.0)
    # as_of's day is 55: the last 20 days are days 36..55, the 20 before are 16..35
    assert row["spend_last"] == pytest.approx(30.0 + 40.0)
    assert row["spend_before"] == pytest.approx(10.0 + 20.0)
    assert row["spend_trend"] == pytest.approx((70 - 30) / 100)


def test_one_purchase_day_has_no_gaps():
    orders = pd.DataFrame(
        {
            "order_id": ["O1", "O2"],
            "customer_id": "00001",
            "ordered_at": [at(1.1), at(1.9)],
            "product_id": "P-INK",
            "quantity": 1,
            "amount": 5.0,
        }
    )
    row = build_features(contract(orders=orders), as_of=at(10)).customers
    row = row.set_index("customer_id").loc["00001"]
    assert row["purchase_days"] == 1 and row["orders"] == 2
    assert pd.isna(row["gap_median_days"]) and pd.isna(row["overdue_ratio"])


def _many_customers() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    days = rng.integers(0, 400, size=300)
    return pd.DataFrame(
        {
            "order_id": [f"O{i}" for i in range(days.size)],
            "customer_id": [f"{i % 40:05d}" for i in range(days.size)],
            "ordered_at": [at(d + 0.25) for d in days],
            "product_id": "P-INK",
            "quantity": 1,
            "amount": rng.integers(1, 90, size=days.size).astype(float),
        }
    )


@pytest.mark.parametrize(
    ("day_bits", "why"),
    [(62, "two hash bits: customers share a sort-key prefix"), (6, "purchases 64+ days ago")],
)
def test_packed_sort_falls_back_to_the_exact_sort(monkeypatch, day_bits, why):
    orders = _many_customers()
    customers = pd.DataFrame(
        {"customer_id": sorted(orders["customer_id"].unique()), "created_at": at(-10)}
    )
    tables = contract(orders=orders, customers=customers)
    expected = build_features(tables, as_of=at(420)).customers
    calls = []
    original = purchases._history

    def spy(*args, exact, **kwargs):
        calls.append(exact)
        return original(*args, exact=exact, **kwargs)

    monkeypatch.setattr(runs, "DAY_BITS", day_bits)
    monkeypatch.setattr(purchases, "_history", spy)
    got = build_features(tables, as_of=at(420)).customers
    assert calls[:2] == [False, True], why  # packed, then exact (population fit, then build)
    pd.testing.assert_frame_equal(got, expected)


def test_trip_regularity_basket_trend_and_staples_still_bought():
    """By hand: lines per purchase day, their trend, gaps' spread, and the share of a
    customer's staples (a consumable bought on 3 days or more) still bought."""

    def lines(customer, day, product, n=1):
        return [
            {"customer_id": customer, "ordered_at": at(day + 0.5), "product_id": product}
            for _ in range(n)
        ]

    rows = []
    # 00001: a trip every 10 days, 4, 4, 2, 1, 1 lines; ink on every trip (a staple)
    for day, n in zip([0, 10, 20, 30, 40], [4, 4, 2, 1, 1], strict=True):
        rows += lines("00001", day, "P-INK") + lines("00001", day, "P-PRINTER", n - 1)
    # 00002: ink on days 0, 10, 20 (a staple, 10-day cycle), gone 25 days by day 45
    for day in [0, 10, 20]:
        rows += lines("00002", day, "P-INK")
    # 00003: ink twice (no staple), gaps 5 and 20
    rows += lines("00003", 0, "P-INK") + lines("00003", 5, "P-PRINTER")
    rows += lines("00003", 25, "P-INK")
    orders = pd.DataFrame(rows).assign(
        order_id=[f"O{i}" for i in range(len(rows))], quantity=1, amount=10.0
    )
    built = build_features(contract(orders=orders), as_of=at(45)).customers
    row = built.set_index("customer_id")
    one, two, three = row.loc["00001"], row.loc["00002"], row.loc["00003"]
    assert one["basket_lines_mean"] == pytest.approx(12 / 5)
    assert one["basket_trend"] == pytest.approx((4 / 3) / 4)  # last 3 days vs earlier
    assert one["gap_cv"] == pytest.approx(0.0)  # like clockwork
    assert one["staples"] == 1 and one["staples_kept_share"] == pytest.approx(1.0)
    assert two["staples"] == 1 and two["staples_kept_share"] == pytest.approx(0.0)
    assert pd.isna(two["basket_trend"])  # three days: no earlier ones
    assert three["staples"] == 0 and pd.isna(three["staples_kept_share"])
    assert three["gap_cv"] == pytest.approx(statistics.stdev([5, 20]) / 12.5)
