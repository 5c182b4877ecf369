"""The report of a period (``nextbest report``): the uplift against the control group, over
time and per action (:mod:`policy.uplift`), and the service's own figures (answers, actions
by kind, acceptance and conversion per action, escalations, consent refusals, latency).

Every number the HTML page shows is in the dictionary :func:`summarise` returns
(``report.json``). Memory grows with the customers and the period's answers and order lines.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from policy.learning import Prior, rates
from policy.uplift import outcomes_per_customer, per_action, uplifts
from serving.report.evidence import Evidence, first_answers

#: The days between the points of the over-time series, at most this many points.
POINTS = 60
#: The days before the period whose outcomes adjust the comparison (CUPED, policy.uplift).
LOOKBACK_DAYS = 90
ESCALATION = "escalate_to_human"


def summarise(evidence: Evidence, prior: Prior) -> dict:
    """Every figure of the report, as plain JSON values."""
    e = evidence
    per_customer = outcomes_per_customer(e.groups, e.orders, e.since, e.until)
    before = _before(e)
    overall = uplifts(per_customer, before)
    entries = first_answers(e.answers, e.marketing)
    actions = per_action(e.groups, entries, e.orders, e.until, before)
    warnings = [u.warning for u in overall if u.warning]
    sizes = e.groups["group"].value_counts()
    return _plain(
        {
            "period": {"since": e.since.isoformat(), "until": e.until.isoformat()},
            "holdout": {"share": e.holdout.share, "period": e.holdout.period},
            "estimator": (
                "difference of means per customer as assigned (intention to treat), each"
                f" outcome adjusted by its value in the {LOOKBACK_DAYS} days before (CUPED);"
                " Welch's 95% interval; relative uplift by the delta method"
            ),
            "customers": {
                "treated": int(sizes.get("treated", 0)),
                "control": int(sizes.get("control", 0)),
            },
            "uplift": [u.as_dict() for u in overall],
            "uplift_unadjusted": [u.as_dict() for u in uplifts(per_customer)],
            "per_action": {a: [u.as_dict() for u in us] for a, us in actions.items()},
            "over_time": over_time(e, before),
            "warnings": warnings,
            "service": service_figures(e, prior),
        }
    )


def _before(e: Evidence) -> pd.DataFrame:
    """Each customer's outcomes in the :data:`LOOKBACK_DAYS` before the period."""
    start = e.since - pd.Timedelta(days=LOOKBACK_DAYS)
    return outcomes_per_customer(e.groups, e.orders, start, e.since)


def over_time(e: Evidence, before: pd.DataFrame | None = None) -> list[dict]:
    """The orders-per-customer uplift from ``since`` to each point of the period (at most
    :data:`POINTS` points), with its interval: how the evidence built up."""
    days = max(1, math.ceil((e.until - e.since) / pd.Timedelta(days=1)))
    step = max(1, math.ceil(days / POINTS))
    before = _before(e) if before is None else before
    points = []
    for day in range(step, days + step, step):
        end = min(e.since + pd.Timedelta(days=day), e.until)
        table = outcomes_per_customer(e.groups, e.orders, e.since, end)
        orders = next(u for u in uplifts(table, before) if u.outcome == "orders")
        points.append(
            {
                "until": end.isoformat(),
                "treated_mean": orders.treated_mean,
                "control_mean": orders.control_mean,
                "difference": orders.difference,
                "low": orders.low,
                "high": orders.high,
            }
        )
    return points


def service_figures(e: Evidence, prior: Prior) -> dict:
    """What the service did in the period: answers, actions by kind, acceptance and
    conversion per action (the Beta rates the policy learns from), escalations to a human,
    marketing withheld for consent and for the control group, latency of answers."""
    answers = e.answers
    shown = answers["actions"].explode().dropna()
    latency = answers["latency_ms"].dropna().to_numpy(dtype="float64")
    per_action = []
    if not e.exposures.empty:
        table = rates(e.exposures.astype({"accepted": bool, "converted": bool}), prior, ["action"])
        per_action = table.to_dict(orient="records")
    return {
        "answers": len(answers),
        "answered_customers": int(answers["customer"].nunique()),
        "answers_by_group": {k: int(v) for k, v in answers["group"].value_counts().items()},
        "actions": {k: int(v) for k, v in shown.value_counts().sort_index().items()},
        "acceptance": per_action,
        "escalations": int((shown == ESCALATION).sum()),
        "withheld_for_consent": int(answers["withheld_consent"].sum()),
        "withheld_for_holdout": int(answers["withheld_holdout"].sum()),
        "latency_ms": {
            "answers_timed": int(latency.size),
            "p50": float(np.percentile(latency, 50)) if latency.size else None,
            "p99": float(np.percentile(latency, 99)) if latency.size else None,
            "histogram": _histogram(latency),
        },
        "online_order_lines": e.online_orders,
    }


def _histogram(values: np.ndarray, bins: int = 30) -> dict:
    """Counts of ``values`` in ``bins`` equal bins up to their 99.5th percentile (the last
    bin holds the rest)."""
    if not values.size:
        return {"edges": [], "counts": []}
    top = float(np.percentile(values, 99.5))
    counts, edges = np.histogram(np.minimum(values, top), bins=bins, range=(0.0, top or 1.0))
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def _plain(value):
    """``value`` with numpy scalars as Python numbers and NaN as ``None`` (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
