"""What a chatbot sees about a customer beyond the model features: open support tickets,
the preferred channel, recent orders, what they own, and co-purchase rules.

Pure frame functions of contract tables as of a moment (rows after ``as_of`` are left out),
vectorised; the service indexes their results by customer (:mod:`serving.memory.state`) and a
batch job can call them on the same tables.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

RECENT_ORDERS = 5
MIN_PAIR_CUSTOMERS = 20  # a co-purchase rule needs this many customers owning both
MIN_LIFT = 1.2
TOP_RULES = 5  # rules kept per product, by lift
RULE_BLOCK = 256  # products A whose co-owner counts are held at once


def _until(frame: pd.DataFrame, column: str, as_of: datetime) -> pd.DataFrame:
    return frame[frame[column] <= as_of]


def preferred_channel(events: pd.DataFrame, as_of: datetime) -> pd.Series:
    """customer_id -> the ``source`` of most of their events up to ``as_of`` (ties: the first
    source in name order)."""
    counts = (
        _until(events, "occurred_at", as_of)
        .dropna(subset=["customer_id"])
        .groupby(["customer_id", "source"])
        .size()
        .reset_index(name="n")
        .sort_values(["customer_id", "n"], ascending=[True, False])
        .drop_duplicates("customer_id")
    )
    return counts.set_index("customer_id")["source"]


def open_tickets(events: pd.DataFrame, as_of: datetime) -> pd.Series:
    """customer_id -> support tickets opened and not yet resolved at ``as_of`` (only
    customers with at least one)."""
    events = _until(events, "occurred_at", as_of)
    tickets = events[events["event_type"].isin(["ticket_opened", "ticket_resolved"])]
    balance = (
        tickets.assign(d=np.where(tickets["event_type"] == "ticket_opened", 1, -1))
        .groupby("customer_id")["d"]
        .sum()
    )
    return balance[balance > 0].astype(int)


def recent_orders(orders: pd.DataFrame, as_of: datetime, n: int = RECENT_ORDERS) -> pd.DataFrame:
    """Each customer's ``n`` latest orders up to ``as_of``, newest first: ``customer_id``,
    ``order_id``, ``ordered_at``, ``amount`` (the lines' sum, rounded to cents), ``lines``."""
    per_order = (
        _until(orders, "ordered_at", as_of)
        .groupby(["customer_id", "order_id"])
        .agg(ordered_at=("ordered_at", "max"), amount=("amount", "sum"), lines=("amount", "size"))
        .reset_index()
        .sort_values(["customer_id", "ordered_at"], ascending=[True, False])
    )
    recent = per_order.groupby("customer_id").head(n).reset_index(drop=True)
    return recent.assign(amount=recent["amount"].round(2))


def owned(orders: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """The distinct (customer_id, product_id) pairs bought (quantity > 0) up to ``as_of``."""
    orders = _until(orders, "ordered_at", as_of)
    bought = orders[orders["quantity"] > 0][["customer_id", "product_id"]]
    return bought.drop_duplicates().reset_index(drop=True)


def co_purchase_rules(
    bought: pd.DataFrame,
    *,
    min_customers: int = MIN_PAIR_CUSTOMERS,
    min_lift: float = MIN_LIFT,
    top: int = TOP_RULES,
) -> pd.DataFrame:
    """Rules A -> B among owners of A (``bought``: distinct customer, product pairs): at
    least ``min_customers`` own both and lift = P(B | A) / P(B) >= ``min_lift``; the ``top``
    of each A by lift. Columns ``product_id`` (A), ``other`` (B), ``confidence``, ``lift``.

    Memory grows with the rows of ``bought`` and with :data:`RULE_BLOCK` x products (the
    sparse co-owner counts of one block of products A at a time), never with products²:
    products owned by fewer than ``min_customers`` are left out first (no rule can reach
    them), and each block keeps only its ``top`` rules per product."""
    from scipy import sparse

    columns = ["product_id", "other", "confidence", "lift"]
    customers = bought["customer_id"].nunique()  # P(B) is over every customer in ``bought``
    owners_of = bought.groupby("product_id", sort=False)["customer_id"].transform("size")
    bought = bought[owners_of.to_numpy() >= min_customers]
    if bought.empty:
        return pd.DataFrame(columns=columns)
    c_codes, c_index = pd.factorize(bought["customer_id"])
    p_codes, p_index = pd.factorize(bought["product_id"])
    x = sparse.csc_matrix(
        (np.ones(len(bought)), (c_codes, p_codes)), shape=(len(c_index), len(p_index))
    )
    owners = np.asarray(x.sum(axis=0)).ravel()
    xt = x.T.tocsr()
    blocks = []
    for start in range(0, len(p_index), RULE_BLOCK):
        a_rows = np.arange(start, min(start + RULE_BLOCK, len(p_index)))
        both = (xt[a_rows] @ x).tocoo()  # co-owners of each A in the block and every B
        a, b, n = a_rows[both.row], both.col, both.data
        confidence = n / owners[a]
        lift = confidence / (owners[b] / customers)
        keep = (n >= min_customers) & (lift >= min_lift) & (a != b)
        block = pd.DataFrame({"a": a[keep], "b": b[keep], "c": confidence[keep], "l": lift[keep]})
        block = block.sort_values(["a", "l", "b"], ascending=[True, False, True], kind="stable")
        blocks.append(block.groupby("a", sort=False).head(top))
    found = pd.concat(blocks, ignore_index=True)
    rules = pd.DataFrame(
        {
            "product_id": p_index[found["a"].to_numpy()].astype(str),
            "other": p_index[found["b"].to_numpy()].astype(str),
            "confidence": found["c"].to_numpy(dtype=float),
            "lift": found["l"].to_numpy(dtype=float),
        }
    )
    rules = rules.sort_values(["product_id", "lift"], ascending=[True, False], kind="stable")
    return rules.groupby("product_id").head(top).reset_index(drop=True)
