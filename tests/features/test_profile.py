"""The frames a chatbot reads beyond model features: by hand, and never from the future."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from features.profile import (
    co_purchase_rules,
    open_tickets,
    owned,
    preferred_channel,
    recent_orders,
)

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")
DAY = pd.Timedelta(days=1)


def _events(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "source", "event_type", "occurred_at"])


def test_tickets_and_channel_count_only_what_happened_by_as_of():
    events = _events(
        [
            ("C1", "web", "page_view", AS_OF - DAY),
            ("C1", "chat", "ticket_opened", AS_OF - 3 * DAY),
            ("C1", "chat", "ticket_opened", AS_OF - 2 * DAY),
            ("C1", "chat", "ticket_resolved", AS_OF - DAY),
            ("C2", "email", "ticket_opened", AS_OF - DAY),
            ("C2", "email", "ticket_resolved", AS_OF + DAY),  # later: not known yet
            ("C2", "web", "page_view", AS_OF + DAY),
            ("C2", "web", "page_view", AS_OF + 2 * DAY),
        ]
    )
    assert open_tickets(events, AS_OF).to_dict() == {"C1": 1, "C2": 1}
    assert preferred_channel(events, AS_OF).to_dict() == {"C1": "chat", "C2": "email"}


def test_recent_orders_newest_first_and_owned_products():
    orders = pd.DataFrame(
        {
            "customer_id": ["C1"] * 4 + ["C2"],
            "order_id": ["O1", "O1", "O2", "O3", "O4"],
            "product_id": ["P1", "P2", "P1", "P3", "P1"],
            "quantity": [1, 2, -1, 1, 1],
            "amount": [10.0, 5.004, -10.0, 7.0, 3.0],
            "ordered_at": [AS_OF - 5 * DAY] * 2 + [AS_OF - DAY, AS_OF + DAY, AS_OF - DAY],
        }
    )
    recent = recent_orders(orders, AS_OF, n=5)
    assert recent["order_id"].tolist() == ["O2", "O1", "O4"]  # O3 is after as-of
    assert recent["amount"].tolist() == [-10.0, 15.0, 3.0] and recent["lines"].tolist() == [1, 2, 1]
    pairs = set(owned(orders, AS_OF).itertuples(index=False, name=None))
    assert pairs == {("C1", "P1"), ("C1", "P2"), ("C2", "P1")}  # a return is not owning


def test_co_purchase_rules_match_a_brute_force_count():
    rng = np.random.default_rng(3)
    rows = [
        (f"C{c}", f"P{p}")
        for c in range(400)
        for p in range(6)
        if rng.random() < (0.6 if p in (0, 1) and c % 2 else 0.25)
    ]
    bought = pd.DataFrame(rows, columns=["customer_id", "product_id"])
    found = co_purchase_rules(bought, min_customers=20, min_lift=1.05, top=10)
    owners = bought.groupby("product_id")["customer_id"].apply(set).to_dict()
    n = bought["customer_id"].nunique()
    expected = set()
    for a, b in itertools.permutations(owners, 2):
        both = len(owners[a] & owners[b])
        confidence = both / len(owners[a])
        lift = confidence / (len(owners[b]) / n)
        if both >= 20 and lift >= 1.05:
            expected.add((a, b, round(confidence, 9), round(lift, 9)))
    got = {
        (r.product_id, r.other, round(r.confidence, 9), round(r.lift, 9))
        for r in found.itertuples()
    }
    assert got == expected and expected  # P0 <-> P1 at least
    assert (found.groupby("product_id")["lift"].apply(lambda s: s.is_monotonic_decreasing)).all()
