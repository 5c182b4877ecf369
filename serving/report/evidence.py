"""What a period holds, for the uplift report (:mod:`serving.report.summary`): everyone in
their group as assigned, their orders from the contract folder and from what the service
accepted online, its answers from the audit log and the feedback on them.

Everything is keyed by pseudonym (:func:`cdp.privacy.pseudonym`): the report never holds a
raw id. Memory grows with the customers, the period's order lines and audit lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cdp.errors import BadInputError
from policy.holdout import Holdout

ORDER_COLUMNS = ["customer", "order_id", "product_id", "ordered_at", "quantity", "amount"]
ANSWER_COLUMNS = [
    "at", "route", "customer", "group", "actions", "held_out", "withheld_consent",
    "withheld_holdout", "latency_ms",
]  # fmt: skip
#: The audit routes that are answers with actions (REST /suggest, its batch, MCP).
ANSWER_ROUTES = ("/suggest", "/suggest/batch", "mcp")


@dataclass(frozen=True)
class Evidence:
    """A period's facts: ``groups`` (``customer``, ``group``), order lines (``orders``,
    :data:`ORDER_COLUMNS`, the period's and before), answers (:data:`ANSWER_COLUMNS`) and
    exposures with feedback (``customer``, ``action``, ``accepted``, ``converted``)."""

    since: pd.Timestamp
    until: pd.Timestamp
    holdout: Holdout
    groups: pd.DataFrame
    orders: pd.DataFrame
    answers: pd.DataFrame
    exposures: pd.DataFrame
    online_orders: int  # order lines in the period accepted online
    marketing: tuple[str, ...]  # the catalog's marketing actions


def gather(
    data: Path,
    state: Path,
    mlruns: Path,
    holdout: Holdout,
    since: pd.Timestamp,
    until: pd.Timestamp,
) -> Evidence:
    """The evidence of ``[since, until)`` from a contract folder and a service's state folder
    (its online log, ``NEXTBEST_ONLINE_STORE``'s when set, its audit log and feedback).
    Needs ``NEXTBEST_PSEUDONYM_KEY`` and the service's ``NEXTBEST_HOLDOUT`` settings.

    Raises :class:`BadInputError` when nobody is held out, the folder is no service's state,
    or the audit log's groups disagree with ``holdout`` (other settings than the service's).
    """
    from cdp.privacy import keys, pseudonymise
    from cdp.validation import load_contract
    from serving.config import ServeConfig
    from serving.memory.runtime import open_runtime

    if holdout.share <= 0:
        raise BadInputError(
            "NEXTBEST_HOLDOUT: no control group to compare with (set it, and"
            " NEXTBEST_HOLDOUT_PERIOD, as the service had them)"
        )
    if since >= until:
        raise BadInputError(
            f"--since {since.isoformat()} is not before --until {until.isoformat()}"
        )
    if not (state / "serving.db").is_file():
        raise BadInputError(f"--state: {state} holds no serving.db (a service's --state folder)")
    rt = open_runtime(ServeConfig(state=state, mlruns=mlruns, holdout=holdout), reload=dict)
    contract = load_contract(data)
    customers, orders = contract.customers, contract.orders
    known = customers.loc[customers["created_at"] < until, "customer_id"].astype(str)
    online, online_customers, forgotten = _online_rows(rt)
    names = pd.concat([known, online_customers], ignore_index=True).drop_duplicates()
    ordered = pd.concat([orders["customer_id"], online["customer_id"]]).astype(str)
    ids = pd.concat([names, ordered], ignore_index=True).drop_duplicates()
    pseudonym_of = dict(zip(ids, pseudonymise(ids, keys()[0]), strict=True))  # one HMAC an id
    pseudonyms = names.map(pseudonym_of)
    people = pd.DataFrame({"customer": pseudonyms[~pseudonyms.isin(forgotten)].unique()})
    people["group"] = [rt.group(p) for p in people["customer"]]
    lines = _order_lines(orders, online, pseudonym_of, until)
    answers = _answers(rt.audit.entries(), since, until)
    logged = answers.dropna(subset=["customer"]).drop_duplicates("customer")
    assigned = logged["customer"].map(dict(zip(people["customer"], people["group"], strict=True)))
    mismatched = int((assigned.notna() & (assigned != logged["group"])).sum())
    if mismatched:
        raise BadInputError(
            f"the audit log's groups differ from NEXTBEST_HOLDOUT={holdout.share:g}, period"
            f" {holdout.period!r} for {mismatched:,} answered customers: run with the"
            " service's settings and NEXTBEST_PSEUDONYM_KEY"
        )
    exposures = pd.DataFrame(
        rt.feedback.outcomes(since.to_pydatetime(), until.to_pydatetime()),
        columns=["customer", "action", "accepted", "converted"],
    )
    in_period = online["ordered_at"].between(since, until, inclusive="left")
    marketing = tuple(n for n, a in rt.catalog.actions.items() if a.purpose == "marketing")
    return Evidence(
        since, until, holdout, people, lines, answers, exposures, int(in_period.sum()), marketing
    )


def _online_rows(rt) -> tuple[pd.DataFrame, pd.Series, set[str]]:
    """The order lines accepted online, the customers created online (raw ids, kept in
    memory only) and the pseudonyms erased since."""
    rows, created, forgotten = [], [], set()
    for entry in rt.online.read(rt.online.start):
        if entry.kind == "orders":
            rows.append(rt.unlock(entry.secret))
        elif entry.kind == "customers":
            created.append(str(rt.unlock(entry.secret)["customer_id"]))
        elif entry.kind == "forget":
            forgotten.add(rt.pseudonym(str(rt.unlock(entry.secret)["customer_id"])))
    frame = pd.DataFrame(rows, columns=["customer_id", *ORDER_COLUMNS[1:]])
    frame["ordered_at"] = pd.to_datetime(frame["ordered_at"], utc=True, format="ISO8601")
    return frame, pd.Series(created, dtype=str), forgotten


def _order_lines(
    contract: pd.DataFrame, online: pd.DataFrame, pseudonym_of: dict[str, str], until
) -> pd.DataFrame:
    """Order lines before ``until``, contract and online, each line once (by ``(order_id,
    product_id)``, the identity replay uses: the later arrival wins), by pseudonym
    (``pseudonym_of``: customer id -> pseudonym)."""
    both = pd.concat([contract.assign(arrival=0), online.assign(arrival=1)], ignore_index=True)
    both = both[both["ordered_at"] < until]
    both = both.sort_values("arrival", kind="stable").drop_duplicates(
        ["order_id", "product_id"], keep="last"
    )
    customer = both["customer_id"].astype(str).map(pseudonym_of)
    out = both.assign(customer=customer, amount=both["amount"].astype("float64"))
    return out[ORDER_COLUMNS].reset_index(drop=True)


def _answers(entries, since, until) -> pd.DataFrame:
    """The audit log's answers in ``[since, until)``."""
    rows = []
    for e in entries:
        if e.get("route") not in ANSWER_ROUTES or "eligible" not in e:
            continue
        withheld = e.get("withheld") or {}
        rows.append(
            (
                e["at"], e["route"], e.get("customer"), e.get("group"), e.get("actions") or [],
                [a for a, _ in e.get("held_out") or ()], withheld.get("consent", 0),
                withheld.get("holdout", 0), e.get("latency_ms", np.nan),
            )
        )  # fmt: skip
    frame = pd.DataFrame(rows, columns=ANSWER_COLUMNS)
    frame["at"] = pd.to_datetime(frame["at"], utc=True, format="ISO8601")
    return frame[(frame["at"] >= since) & (frame["at"] < until)].reset_index(drop=True)


def first_answers(answers: pd.DataFrame, marketing: tuple[str, ...]) -> pd.DataFrame:
    """Each customer's first answer in the period that showed (treated) or would have shown
    (control, ``held_out``) each of the ``marketing`` actions: ``customer``, ``action``,
    ``at``."""
    shown = answers[["customer", "at", "actions"]].rename(columns={"actions": "action"})
    ghost = answers[["customer", "at", "held_out"]].rename(columns={"held_out": "action"})
    both = pd.concat([shown, ghost], ignore_index=True).explode("action").dropna()
    both = both[both["action"].isin(marketing)]
    return both.sort_values("at").drop_duplicates(["customer", "action"])[
        ["customer", "action", "at"]
    ]
