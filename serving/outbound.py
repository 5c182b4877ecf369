"""Next best actions for every customer at once (``nextbest suggest``): outbound campaigns.

Email, LINE or push before the ink runs out needs the same answer a chatbot gets, for
everyone, ahead of time. :func:`suggest_all` asks the served state the same question
``/suggest`` asks (:meth:`~serving.memory.state.ServingState.ranking`: the same policy, consent
rules, cooldowns and caps), once per customer, and returns the answers as one table; the
benchmark of the policy (``make eval-nba``) scores exactly this table. With a service's
state folder (:func:`with_online_rows`), what the service accepted online is applied first:
a consent withdrawn through any door holds here too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd

from policy.catalog import Catalog
from policy.holdout import Holdout
from policy.profile import Context

#: The columns of ``suggestions.parquet``, one row per customer x rank.
COLUMNS = (
    "customer_id",
    "rank",
    "action",
    "purpose",
    "product_id",
    "probability",
    "expected_value",
    "reason_codes",
    "message",
    "locale",
)


def suggest_all(
    state,
    catalog: Catalog,
    *,
    now: datetime,
    max_actions: int = 3,
    exposures=None,
    context: Context | None = None,
) -> tuple[pd.DataFrame, dict]:
    """The ranked actions of every customer the state knows, at ``now``.

    Parameters
    ----------
    state : ServingState
        The loaded champions and snapshot (:func:`~serving.memory.snapshot.load_snapshot`).
    catalog : Catalog
        The actions and their rules.
    now : datetime
        The moment the answers are for (settled UTC): consent in force then decides.
    max_actions : int, default 3
        Rows per customer at most.
    exposures : callable, optional
        Customer id -> their exposures (cooldowns and caps), as the service keeps them;
        none when not given.
    context : Context, optional
        The channel and locale of the campaign (the customer's own locale by default).

    Returns
    -------
    tuple of (pandas.DataFrame, dict)
        :data:`COLUMNS`, sorted by customer and rank (``nothing_now`` rows included: a
        customer with nothing worth sending is said so); and a summary: rows per action,
        customers, and the marketing candidates withheld for want of consent.
    """
    context = context or Context(channel="outbound")
    records, withheld, held_out, actions = [], 0, 0, Counter()
    for customer_id in sorted(state.customers):
        seen = exposures(customer_id) if exposures else None
        ranking = state.ranking(
            customer_id, context, catalog, now=now, exposures=seen, max_actions=max_actions
        )
        counts = ranking.withheld()
        withheld, held_out = withheld + counts["consent"], held_out + counts["holdout"]
        actions.update(s.action for s in ranking.suggestions)
        records += [
            (customer_id, position, s.action, s.purpose, s.product_id, s.probability,
             s.expected_value, list(s.reason_codes), s.message, ranking.locale)
            for position, s in enumerate(ranking.suggestions, start=1)
        ]  # fmt: skip
    frame = pd.DataFrame.from_records(records, columns=COLUMNS).astype(
        {"rank": "int16", "probability": "float64", "expected_value": "float64"}
    )
    summary = {
        "customers": len(state.customers),
        "rows": len(frame),
        "actions": dict(sorted(actions.items())),
        "withheld_for_consent": withheld,
        "withheld_for_holdout": held_out,
    }
    return frame, summary


def with_online_rows(state, folder: Path, mlruns: Path, now: datetime) -> Callable:
    """Apply to ``state`` what the service whose state folder is ``folder`` accepted online
    (its log: the embedded store in ``serving.db``, or ``NEXTBEST_ONLINE_STORE``), by the rule
    every door follows (:mod:`serving.memory.known`); returns customer id -> their exposures
    (cooldowns and caps) as the service keeps them, for :func:`suggest_all`. Needs
    ``NEXTBEST_PSEUDONYM_KEY`` (the rows are kept encrypted). The folder is only read."""
    from cdp.errors import BadInputError
    from serving.config import ServeConfig
    from serving.memory.runtime import open_runtime, replay

    if not (folder / "serving.db").is_file():
        raise BadInputError(f"--state: {folder} holds no serving.db (a service's --state folder)")
    rt = open_runtime(ServeConfig(state=folder, mlruns=mlruns), reload=dict)
    replay(rt, state)
    state.snapshot_events = None

    def exposures(customer_id: str) -> dict:
        return rt.feedback.exposures(rt.pseudonym(customer_id), now)

    return exposures


def hold_out(state, holdout: Holdout) -> None:
    """Withhold marketing from ``holdout``'s control group (the service's own
    ``NEXTBEST_HOLDOUT`` settings, by ``NEXTBEST_PSEUDONYM_KEY``), as the service does."""
    if holdout.share <= 0:
        return
    from cdp import privacy

    key = privacy.keys()[0]
    state.in_control = lambda customer_id: holdout.in_control(
        privacy.pseudonym(customer_id, key), key
    )
