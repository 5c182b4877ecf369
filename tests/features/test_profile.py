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


BIG_CATALOG = """
import resource, sys
import numpy as np, pandas as pd
from features.profile import co_purchase_rules, TOP_RULES

rng = np.random.default_rng(7)
products, customers, each = 50_000, 3_000, 300
weights = 1.0 / np.arange(1, products + 1) ** 0.9  # long-tail popularity
weights /= weights.sum()
picks = [rng.choice(products, size=each, replace=False, p=weights) for _ in range(customers)]
bought = pd.DataFrame({
    "customer_id": np.repeat([f"C{c}" for c in range(customers)], each),
    "product_id": np.char.add("P", np.concatenate(picks).astype(str)),
})
rules = co_purchase_rules(bought)
assert rules.groupby("product_id").size().max() <= TOP_RULES
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(len(bought), bought["product_id"].nunique(), len(rules), peak // 1024)
"""


def test_co_purchase_rules_on_a_50000_product_catalog_stay_within_memory():
    """3,000 customers owning 300 products each from a 50,000-product long-tail catalog:
    the rules are found with the process limited to 3 GiB of address space (a products x
    products matrix alone would be 20 GB) and a peak resident memory under 1 GiB."""
    import resource
    import subprocess
    import sys

    limit = 3 * 2**30

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run(
        [sys.executable, "-c", BIG_CATALOG],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=cap,
        env={**__import__("os").environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines, catalog, rules, peak_mb = map(int, done.stdout.split())
    assert lines == 900_000 and catalog > 20_000 and rules > 0
    assert peak_mb < 1024, f"peak {peak_mb} MB"
