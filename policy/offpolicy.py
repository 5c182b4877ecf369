"""Off-policy evaluation: what a new policy's conversion rate would have been, from the
answers the service logged.

Every answer logged each eligible action with its probability, value, feedback factor
and *propensity*: the probability the served policy put it first
(:mod:`policy.learning`). A target policy is a catalog (costs, values): it re-ranks each
answer's logged actions by its own expected value and puts its best first. With ``r`` the
reward of the action served first (converted, or accepted), ``p`` its propensity and
``w = 1[target's first == served first] / p``:

- inverse propensity scoring (IPS): ``mean(w * r)``, unbiased when every action the
  target may choose had a positive propensity; its 95% interval from the normal
  approximation;
- self-normalised IPS (SNIPS): ``sum(w * r) / sum(w)``, a little biased, far less
  variable; its interval by the delta method.

With the deterministic ranking (exploration off) the target is judged only on the answers
where it agrees with the served policy: an honest estimate of anything else needs
exploration (``NEXTBEST_EXPLORATION``), and the report says how many answers matched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cdp.errors import BadInputError
from policy.catalog import Catalog

#: The columns of a logged-decisions table: one row per (answer, eligible action).
COLUMNS = (
    "request_id",
    "action",
    "product_id",
    "probability",
    "value",
    "factor",
    "propensity",
    "first",
    "reward",
)
Z = 1.959963984540054  # the normal quantile of a 95% interval


@dataclass(frozen=True)
class Estimate:
    """A policy value with its 95% interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Report:
    answers: int  # logged answers with a first action
    matched: int  # answers where the target's first is the served first
    logged: Estimate  # the served policy's own rate
    ips: Estimate
    snips: Estimate

    def to_dict(self) -> dict:
        """The report as JSON-able values."""
        return {
            "answers": self.answers,
            "matched": self.matched,
            **{name: vars(getattr(self, name)) for name in ("logged", "ips", "snips")},
        }


def check_decisions(frame: pd.DataFrame, where: object) -> pd.DataFrame:
    """A logged-decisions table checked: its columns, propensities in [0, 1], a positive
    propensity and one action served first per answer (``where`` names it in errors)."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise BadInputError(f"{where}: logged decisions lack columns {missing}")
    bad = ~frame["propensity"].between(0, 1)
    if bad.any():
        raise BadInputError(f"{where}: propensity: {int(bad.sum())} rows outside [0, 1]")
    served = frame[frame["first"].astype(bool)]
    if (served["propensity"] <= 0).any():
        raise BadInputError(f"{where}: propensity: an action served first has propensity 0")
    if served["request_id"].duplicated().any():
        raise BadInputError(f"{where}: first: an answer has more than one action served first")
    return frame


def target_first(decisions: pd.DataFrame, catalog: Catalog) -> pd.Series:
    """request_id -> the action (and product) the target catalog would have put first:
    the best expected value ``probability x factor x value - cost`` of the logged
    eligible actions (ties: the logged order), escalation to a human always first (it is
    eligible only for a frustrated customer, as in :func:`policy.ranking.rank`)."""
    cost = decisions["action"].map({name: a.cost for name, a in catalog.actions.items()})
    if cost.isna().any():
        unknown = sorted(decisions.loc[cost.isna(), "action"].unique())
        raise BadInputError(f"the target catalog has no actions {unknown}")
    ev = decisions["probability"] * decisions["factor"] * decisions["value"] - cost
    ev = ev.where(decisions["action"] != "escalate_to_human", np.inf)
    best = ev.groupby(decisions["request_id"], sort=False).idxmax()
    return pd.Series(best.index.to_numpy(), index=best.to_numpy())


def evaluate(decisions: pd.DataFrame, catalog: Catalog) -> Report:
    """IPS and SNIPS estimates of the target catalog's rate (see the module docstring)."""
    chosen = decisions.index.isin(target_first(decisions, catalog).index)
    first = decisions["first"].astype(bool).to_numpy()
    served = decisions[first]
    match = chosen[first]
    r = served["reward"].to_numpy(dtype=float)
    w = match / served["propensity"].to_numpy(dtype=float)
    n = len(served)
    if n == 0:
        raise BadInputError("no logged answers with an action served first")
    wr = w * r
    ips = wr.mean()
    ips_se = wr.std(ddof=1) / np.sqrt(n) if n > 1 else np.inf
    total = w.sum()
    snips = wr.sum() / total if total > 0 else float("nan")
    snips_se = np.sqrt(np.sum((w * (r - snips)) ** 2)) / total if total > 0 else float("nan")
    mean, se = r.mean(), (r.std(ddof=1) / np.sqrt(n) if n > 1 else np.inf)
    return Report(
        answers=n,
        matched=int(match.sum()),
        logged=_interval(mean, se),
        ips=_interval(ips, ips_se),
        snips=_interval(snips, snips_se),
    )


def _interval(value: float, se: float) -> Estimate:
    return Estimate(float(value), float(value - Z * se), float(value + Z * se))
