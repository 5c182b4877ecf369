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
