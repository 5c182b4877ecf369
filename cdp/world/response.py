"""How simulated customers respond to what they are shown: a known effect, so that a
measurement of uplift can be checked against the truth (``make eval-uplift``).

Two effects, each with a known probability per display:

- **a reminder moves the refill earlier**: a ``replenishment_reminder`` for a product shown
  at ``t`` makes the customer, with probability ``reminder``, buy it at ``t`` instead of at
  their next purchase of it after ``t`` (that line is taken out of the future; when there
  is none in the simulated future, the purchase at ``t`` is a new one, the refill the
  customer would have made elsewhere);
- **a win-back brings a lapsed customer back**: a ``winback_offer`` shown at ``t`` to a
  customer with no purchase in ``[t, until)`` makes them, with probability ``winback``,
  buy their most bought product at ``t``. A customer who would have come back anyway is
  not moved (the offer was not incremental for them).

Other actions have no effect. Each display's draw is a keyed hash of the seed, customer,
action, product and moment, so a run is the same every time and the A/A run (both
probabilities 0) changes nothing. What moved and what was added is the truth: with the
future without any effect, it gives each customer's true uplift.

Pure: frames in, frames out; memory grows with the displays and the future's order lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cdp.errors import BadInputError

REMINDER, WINBACK = "replenishment_reminder", "winback_offer"
#: The columns of the truth of responses: one row per order line added.
TRUTH = ["customer_id", "action", "product_id", "at", "order_id", "moved_from"]


@dataclass(frozen=True)
class Effect:
    """The probability that one display of a reminder or of a win-back works."""

    reminder: float = 0.0
    winback: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("reminder", "winback"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise BadInputError(
                    f"effect {name}: a probability in [0, 1], got {getattr(self, name)}"
                )


def draws(effect: Effect, shown: pd.DataFrame) -> np.ndarray:
    """A uniform number in [0, 1) per display (``customer_id``, ``action``, ``product_id``,
    ``at``), from a hash of the seed and the display."""
    text = (
        str(effect.seed) + "\x1f" + shown["customer_id"].astype(str) + "\x1f"
        + shown["action"].astype(str) + "\x1f" + shown["product_id"].fillna("").astype(str)
        + "\x1f" + shown["at"].astype(str)
    )  # fmt: skip
    hashed = pd.util.hash_pandas_object(text, index=False)
    return (hashed.to_numpy() >> np.uint64(11)).astype("float64") / float(2**53)


def respond(
    effect: Effect,
    shown: pd.DataFrame,
    future: pd.DataFrame,
    history: pd.DataFrame,
    until: pd.Timestamp,
    first_order: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What the displays of one moment do.

    Parameters
    ----------
    shown : DataFrame
        The displays: ``customer_id``, ``action``, ``product_id``, ``at``.
    future : DataFrame
        The order lines still to come (contract ``orders`` columns), after ``at``.
    history : DataFrame
        Order lines so far (for a win-back's product and a new refill's price).
    until : Timestamp
        The end of the simulated period (a win-back works on whoever has no purchase
        before it).
    first_order : int
        The number of the first order id added (``R`` + 9 digits).

    Returns
    -------
    tuple of DataFrame
        The order lines added (contract ``orders`` columns, at the display's moment), the
        future without the lines moved earlier, and the truth (:data:`TRUTH`).
    """
    shown = shown.reset_index(drop=True)
    u = draws(effect, shown)
    chance = np.where(
        shown["action"].eq(REMINDER), effect.reminder,
        np.where(shown["action"].eq(WINBACK), effect.winback, 0.0),
    )  # fmt: skip
    works = shown[u < chance]
    lines, taken = [], []
    bought = future[future["quantity"] > 0]
    reminders = works[works["action"] == REMINDER].drop_duplicates(["customer_id", "product_id"])
    if not reminders.empty:
        pending = bought.merge(reminders[["customer_id", "product_id", "at"]], how="inner")
        pending = pending[pending["ordered_at"] >= pending["at"]]
        nxt = pending.sort_values("ordered_at").drop_duplicates(["customer_id", "product_id"])
        moved = reminders.merge(
            nxt[["customer_id", "product_id", "ordered_at", "quantity", "amount", "order_id"]],
            how="left", on=["customer_id", "product_id"],
        )  # fmt: skip
        price = _last_price(history)
        fresh = moved["ordered_at"].isna()
        fallback = moved.merge(price, how="left", on=["customer_id", "product_id"])
        moved["quantity"] = moved["quantity"].where(~fresh, 1)
        moved["amount"] = moved["amount"].where(~fresh, fallback["unit_price"].fillna(0.0))
        taken.append(nxt[["order_id", "product_id"]])
        lines.append(moved.assign(moved_from=moved["ordered_at"]))
    winbacks = works[works["action"] == WINBACK].drop_duplicates("customer_id")
    if not winbacks.empty:
        coming = set(bought.loc[bought["ordered_at"] < until, "customer_id"])
        lapsed = winbacks[~winbacks["customer_id"].isin(coming)]
        favourite = _favourite(history)
        back = lapsed.drop(columns="product_id").merge(favourite, on="customer_id", how="inner")
        lines.append(back.assign(quantity=1, amount=back["unit_price"], moved_from=pd.NaT))
    columns = ["customer_id", "action", "product_id", "at", "quantity", "amount", "moved_from"]
    added = pd.concat([x[columns] for x in lines], ignore_index=True) if lines else None
    if added is None or added.empty:
        return _no_orders(future), future, pd.DataFrame(columns=TRUTH)
    added = added.sort_values(["at", "customer_id", "action"], kind="stable").reset_index(drop=True)
    numbers = np.arange(first_order, first_order + len(added))
    added["order_id"] = [f"R{n:09d}" for n in numbers]
    orders = pd.DataFrame(
        {
            "order_id": added["order_id"],
            "customer_id": added["customer_id"],
            "ordered_at": added["at"],
            "product_id": added["product_id"],
            "quantity": added["quantity"].astype("int64"),
            "amount": added["amount"].astype("float64"),
        }
    )
    if taken:
        gone = pd.concat(taken).dropna().assign(_gone=True)
        kept = future.merge(gone, how="left", on=["order_id", "product_id"])
        future = future[kept["_gone"].isna().to_numpy()]
    return orders, future, added[TRUTH]


def _last_price(history: pd.DataFrame) -> pd.DataFrame:
    """Each customer's last unit price of each product they bought."""
    bought = history[history["quantity"] > 0].sort_values("ordered_at")
    last = bought.drop_duplicates(["customer_id", "product_id"], keep="last")
    return last.assign(unit_price=last["amount"] / last["quantity"])[
        ["customer_id", "product_id", "unit_price"]
    ]


def _favourite(history: pd.DataFrame) -> pd.DataFrame:
    """Each customer's most bought product (ties: the latest) and its last unit price."""
    bought = history[history["quantity"] > 0]
    counts = bought.groupby(["customer_id", "product_id"], as_index=False).agg(
        n=("order_id", "size"), last=("ordered_at", "max")
    )
    top = counts.sort_values(["n", "last"]).drop_duplicates("customer_id", keep="last")
    return top[["customer_id", "product_id"]].merge(_last_price(history), how="left")


def _no_orders(like: pd.DataFrame) -> pd.DataFrame:
    return like.iloc[0:0]
