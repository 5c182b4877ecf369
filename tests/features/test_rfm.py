"""RFM and the lifetimes summary on hand-built orders with hand-computed answers."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pytest

from conftest import at, contract, tiny_tables
from features.build import build_features
from features.rfm import SEGMENTS, rfm_scores

AS_OF = at(40.5)  # day 40, noon


def _orders() -> pd.DataFrame:
    rows = [
        # order, customer, time, product, quantity, amount
        ("O1", "00001", at(0.25), "P-PRINTER", 1, 30.0),
        ("O1", "00001", at(0.25), "P-INK", 1, 20.0),
        ("O2", "00001", at(10.5), "P-INK", 2, 40.0),
        ("O3", "00001", at(30.1), "P-INK", 1, 10.0),
        ("O4", "00001", at(30.9), "P-INK", 1, 5.0),
        ("R1", "00001", at(35.0), "P-INK", -1, -10.0),  # a return
        ("O5", "00001", at(41.0), "P-INK", 1, 99.0),  # after as_of: ignored
        ("O6", "00002", at(20.0), "P-INK", 1, 25.0),
    ]
    return pd.DataFrame(
        rows, columns=["order_id", "customer_id", "ordered_at", "product_id", "quantity", "amount"]
    )


def _customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["00001", "00002", "00003"],
            "created_at": [at(-10), at(19), at(5)],
            "locale": ["zh-TW", "en", "zh-CN"],
        }
    )


@pytest.fixture(scope="module")
def built():
    tables = contract(customers=_customers(), orders=_orders())
    return build_features(tables, as_of=AS_OF).customers.set_index("customer_id")


def test_rfm_measures(built):
    a = built.loc["00001"]
    assert a["purchase_days"] == 3  # days 0, 10, 30
    assert a["orders"] == 4
    assert a["monetary_total"] == pytest.approx(105.0)
    assert a["monetary_mean"] == pytest.approx(105.0 / 4)
    assert a["recency_days"] == pytest.approx(40.5 - 30.9)
    assert a["tenure_days"] == pytest.approx(50.5)
    assert a["returned_amount"] == pytest.approx(10.0)
    assert a["returns_share"] == pytest.approx(10.0 / 105.0)


def test_lifetimes_summary_columns(built):
    a = built.loc["00001"]
    assert a["frequency"] == 2
    assert a["recency"] == 30  # first to last purchase day
    assert a["T"] == 40  # first purchase day to as_of's day
    assert a["monetary_value"] == pytest.approx((40.0 + 15.0) / 2)  # repeat days only
    b = built.loc["00002"]
    assert (b["frequency"], b["recency"], b["T"], b["monetary_value"]) == (0, 0, 20, 0)


def test_customer_without_purchase(built):
    c = built.loc["00003"]
    assert c["purchase_days"] == 0 and c["monetary_total"] == 0
    assert c["segment"] == "No purchase yet"
    assert pd.isna(c["recency_days"]) and pd.isna(c["r_score"])


def _scored(recency, days, total):
    summary = pl.LazyFrame(
        {"recency_days": [recency], "purchase_days": [days], "monetary_total": [total]}
    )
    edges = {
        "recency_days": [10.0, 30.0, 60.0, 120.0],
        "purchase_days": [1.0, 2.0, 4.0, 8.0],
        "monetary_total": [50.0, 100.0, 200.0, 400.0],
    }
    return rfm_scores(summary, edges).collect().row(0, named=True)


@pytest.mark.parametrize(
    ("recency", "days", "total", "scores", "segment"),
    [
        (5, 9, 500, (5, 5, 5), "Champions"),
        (5, 1, 20, (5, 1, 1), "New"),
        (20, 1, 60, (4, 1, 2), "Promising"),
        (20, 3, 150, (4, 3, 3), "Potential loyalist"),
        (45, 5, 300, (3, 4, 4), "Loyal"),
        (45, 3, 150, (3, 3, 3), "Need attention"),
        (45, 2, 150, (3, 2, 3), "About to sleep"),
        (90, 5, 150, (2, 4, 3), "At risk"),
        (200, 9, 900, (1, 5, 5), "Can't lose them"),
        (90, 1, 10, (2, 1, 1), "Hibernating"),
        (200, 1, 10, (1, 1, 1), "Lost"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_scores_and_segments(recency, days, total, scores, segment):
    row = _scored(recency, days, total)
    assert (row["r_score"], row["f_score"], row["m_score"]) == scores
    assert row["rfm_score"] == scores[0] * 100 + scores[1] * 10 + scores[2]
    assert row["segment"] == segment


def test_segment_map_covers_every_cell():
    assert len(SEGMENTS) == 25
    assert len(set(SEGMENTS.values())) == 11


def test_tiny_tables_build(tmp_path):
    # the shared tiny dataset builds without error and keeps every customer
    tables = contract()
    out = build_features(tables, as_of=at(0, "2024-06-30"))
    assert sorted(out.customers["customer_id"]) == sorted(tiny_tables()["customers"]["customer_id"])
