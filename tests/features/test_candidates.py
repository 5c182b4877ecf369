"""Next-product candidates on a large catalog: capped per customer by a cheap first stage, in
bounded memory."""

from __future__ import annotations

import os
import subprocess
import sys

#: A 50,000-product long-tail grocery catalog, 1,000 households buying 300 distinct products
#: each (some on many days): the candidates, with the process's peak memory.
BIG_CATALOG = """
import numpy as np, pandas as pd
from cdp.contract import ContractTables
from features.candidates import MAX_CANDIDATES, next_product_candidates

rng = np.random.default_rng(5)
products, households, each = 50_000, 1_000, 300
as_of = pd.Timestamp("2025-06-30", tz="UTC")
ids = np.char.add("P", np.arange(products).astype(str))
weights = 1.0 / np.arange(1, products + 1) ** 0.9
weights /= weights.sum()
picks = np.stack([rng.choice(products, each, replace=False, p=weights) for _ in range(households)])
customer = np.repeat(np.char.add("C", np.arange(households).astype(str)), each)
# the first 5 picks of each household are staples, bought on 20 different days
days = np.tile(np.r_[np.full(5, 20), np.ones(each - 5, int)], households)
lines = pd.DataFrame(
    {"customer_id": np.repeat(customer, days), "product_id": np.repeat(ids[picks.ravel()], days)}
)
lines["ordered_at"] = as_of - pd.to_timedelta(rng.integers(1, 360, len(lines)), unit="D")
lines["order_id"] = np.char.add("O", np.arange(len(lines)).astype(str))
lines = lines.assign(quantity=1, amount=2.5)
category = np.char.add("K", (np.arange(products) % 200).astype(str))
catalog = pd.DataFrame(
    {"product_id": ids, "name": ids, "category": category, "consumable": True, "price": 2.5}
)
people = pd.DataFrame({"customer_id": np.unique(customer)})
people["created_at"] = as_of - pd.Timedelta(days=400)


def empty(*columns):
    kind = {c: "datetime64[ns, UTC]" if c.endswith("_at") else "string" for c in columns}
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in kind.items()})


events = ("event_id", "customer_id", "anonymous_id", "occurred_at", "source", "event_type")
tables = ContractTables(
    customers=people,
    identities=empty("customer_id", "id_type", "id_value"),
    consents=empty("customer_id", "purpose", "recorded_at").assign(granted=pd.Series(dtype=bool)),
    products=catalog,
    orders=lines,
    events=empty(*events, "product_id"),
)
context = people[["customer_id"]].assign(
    recency_days=1.0, purchase_days=100, gap_median_days=3.0, monetary_mean=20.0, p_alive=0.9,
    segment="loyal",
)
frame = next_product_candidates(tables, context, as_of=as_of)
per = frame.groupby("customer_id").size()
staples = set(zip(customer.reshape(households, each)[:, :5].ravel(), ids[picks[:, :5].ravel()]))
kept = set(zip(frame["customer_id"], frame["product_id"]))
peak = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM"))
top = frame["family_purchase_days"].max()
print(len(lines), per.max(), MAX_CANDIDATES, int(staples <= kept), top, peak // 1024)
"""


def test_candidates_on_a_50000_product_catalog_are_capped_per_customer_in_bounded_memory():
    """Households that bought 300 distinct products each get at most MAX_CANDIDATES
    candidates, their staples (bought on the most days) among them; the process stays
    under 1.5 GiB at its peak."""
    done = subprocess.run(
        [sys.executable, "-c", BIG_CATALOG],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "POLARS_MAX_THREADS": "2"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines, most, cap, staples_kept, top_days, peak_mb = map(int, done.stdout.split())
    assert lines == 1_000 * (295 + 5 * 20)
    assert most == cap  # 300 bought, cut to the cap
    assert staples_kept == 1 and top_days == 20
    assert peak_mb < 1536, f"peak {peak_mb} MB"


def test_recent_frequency_due_ratio_and_brand_switches_by_hand():
    """One household, two milks of one need (it switched from A to B), coffee once: the
    per-family counts, share of its purchase days, mean gap, due ratio and the need's last
    purchase, counted by hand; rows after the as-of change nothing."""
    import pandas as pd
    from pytest import approx

    from features.candidates import next_product_candidates
    from tests.conftest import at, contract, tiny_tables

    products = pd.DataFrame(
        {
            "product_id": ["MILK-A", "MILK-B", "COFFEE"],
            "name": ["Milk A", "Milk B", "Coffee"],
            "category": ["milk", "milk", "coffee"],
            "consumable": [True, True, True],
            "price": [1.5, 1.6, 9.0],
            "need": ["whole milk", "whole milk", "coffee beans"],
        }
    )
    bought = [  # (day, product)
        (0, "MILK-A"), (10, "MILK-A"), (20, "MILK-A"), (80, "MILK-B"), (88, "MILK-B"),
        (88, "COFFEE"), (200, "MILK-A"),  # day 200 is after the as-of
    ]  # fmt: skip
    orders = pd.DataFrame(
        {
            "order_id": [f"O{i}" for i in range(len(bought))],
            "customer_id": "00001",
            "ordered_at": [at(d) for d, _ in bought],
            "product_id": [p for _, p in bought],
            "quantity": 1,
            "amount": 2.0,
        }
    )
    events = tiny_tables()["events"].assign(product_id=None)
    tables = contract(products=products, orders=orders, events=events)
    as_of = at(90)
    context = pd.DataFrame(
        {"customer_id": ["00001"], "recency_days": 2.0, "purchase_days": 5, "gap_median_days": 10.0,
         "monetary_mean": 2.0, "p_alive": 0.9, "segment": "loyal"}
    )  # fmt: skip
    frame = next_product_candidates(tables, context, as_of=as_of).set_index("product_id")
    a, b, coffee = frame.loc["MILK-A"], frame.loc["MILK-B"], frame.loc["COFFEE"]
    assert (a["family_purchase_days"], a["family_days_30d"], a["family_days_90d"]) == (3, 0, 2)
    assert (b["family_purchase_days"], b["family_days_30d"]) == (2, 2)
    assert (a["family_share"], b["family_share"]) == approx((3 / 5, 2 / 5))  # of 5 days
    assert (a["family_gap_days"], a["family_due"]) == approx((10.0, 70 / 10))  # 20 days, 2 gaps
    assert (b["family_gap_days"], b["family_due"]) == approx((8.0, 2 / 8))
    assert pd.isna(coffee["family_gap_days"])  # bought once: no gap
    assert a["need_purchase_days"] == b["need_purchase_days"] == 5  # days 0, 10, 20, 80, 88
    assert (a["days_since_need"], b["days_since_need"]) == approx((2.0, 2.0))
    assert not a["latest_in_need"] and b["latest_in_need"] and coffee["latest_in_need"]
    # purchase days weighed by age (half at 60 days): MILK-A 90, 80, 70 days old
    assert a["family_recent"] == approx(sum(0.5 ** (age / 60) for age in (90, 80, 70)))
    assert b["family_recent"] == approx(0.5 ** (10 / 60) + 0.5 ** (2 / 60))
    # the customer's purchase days after the family's last: days 80 and 88 after MILK-A's
    assert (a["family_trips_since"], b["family_trips_since"], coffee["family_trips_since"]) == (
        2,
        0,
        0,
    )
