"""Uplift: what the suggestions brought that would not have happened anyway, measured against
the global control group (:mod:`policy.holdout`).

**Estimator.** Customers are the unit, in their groups *as assigned* (intention to treat):
every customer the keyed hash put in control or treated counts, whether or not a chatbot
ever asked about them, so nothing the service did can select who is compared. For each
outcome per customer in the period (converted: any order; orders; revenue, net of returns)
the uplift is the difference of the group means, treated minus control, with a 95%
interval from Welch's unequal-variance standard error and the Welch-Satterthwaite degrees
of freedom. Why this one: assignment is random, so the difference of means is unbiased
for the average effect of being treated; the groups differ in size (5% against 95%) and
in spread (the treatment moves the treated), which Welch allows and the pooled t-test does
not; with hundreds of customers per group the means are close to normal (the central
limit theorem), including for revenue, whose heavy tail shows as a wide interval, not as a
wrong one. This is the analysis experimentation platforms run for a difference of means
(Kohavi, Tang and Xu, *Trustworthy Online Controlled Experiments*, 2020, ch. 17). The
relative uplift (treated over control, minus one) has its interval from the delta method.

**Variance reduction (CUPED).** Customers differ far more among themselves than the
suggestions move them, and a control group of a few percent can by chance hold more of the
keen ones. Each outcome is therefore adjusted by the same outcome in the days before the
period (``Y - theta * (X - mean X)``, ``theta = cov(Y, X) / var(X)`` over everyone): ``X``
was fixed before anyone was treated, so the difference of adjusted means estimates the same
uplift, with the part of the spread that the past explains taken out (Deng, Xu, Kohavi and
Walker, "Improving the sensitivity of online controlled experiments by utilizing
pre-experiment data", WSDM 2013). The means reported are the adjusted ones; the unadjusted
comparison is reported beside it.

**Power.** When the interval contains zero although the observed uplift is not zero, the
control group is too small to tell that uplift from chance: :func:`uplift` says how many
control customers would make an interval of the observed spread exclude it (none, when
the treated group alone is too noisy).

**Per action.** Where the audit log holds what a control customer *would* have been shown
(the withheld marketing actions, :class:`policy.ranking.Ranking`'s ``held_out``), the
customers who were shown an action are compared with the control customers who would have
been shown it, each from the first such answer on ("ghost ads": Johnson, Lewis and
Nubbemeyer, *Journal of Marketing Research*, 2017). Both are selected by the same rule,
so the comparison stays fair, but it conditions on being asked at all, and an answer may
hold several actions (what one brought counts for each action shown with it): read it
beside the global figure, not instead of it.

Pure: frames in, frames and numbers out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
from scipy import stats

from cdp.errors import BadInputError

#: The outcomes per customer, in the order reports show them.
OUTCOMES = ("converted", "orders", "revenue")
LEVEL = 0.95


@dataclass(frozen=True)
class Uplift:
    """One outcome's uplift: group sizes and means, the difference with its 95% interval,
    the relative uplift with its own, and the control size the observed uplift needs."""

    outcome: str
    treated_customers: int
    control_customers: int
    treated_mean: float
    control_mean: float
    difference: float
    low: float
    high: float
    relative: float | None
    relative_low: float | None
    relative_high: float | None
    excludes_zero: bool
    #: control customers for an interval of this spread to exclude the observed uplift
    #: (``None``: it already does, or no uplift was observed, or no control size would do)
    control_needed: int | None
    warning: str | None
    #: the CUPED coefficient of the pre-period outcome (``None``: not adjusted)
    theta: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def uplift(outcome: str, treated: np.ndarray, control: np.ndarray) -> Uplift:
    """The uplift of one outcome: ``treated`` and ``control`` are its values per customer.

    Raises :class:`BadInputError` when a group has fewer than two customers (no spread to
    measure)."""
    t, c = np.asarray(treated, dtype="float64"), np.asarray(control, dtype="float64")
    for name, values in (("treated", t), ("control", c)):
        if values.size < 2:
            raise BadInputError(
                f"uplift of {outcome}: the {name} group has {values.size} customers (2 at least)"
            )
    mt, mc = float(t.mean()), float(c.mean())
    vt, vc = float(t.var(ddof=1)), float(c.var(ddof=1))
    at, ac = vt / t.size, vc / c.size
    difference = mt - mc
    se = math.sqrt(at + ac)
    q = _quantile(at, ac, t.size, c.size)
    low, high = difference - q * se, difference + q * se
    excludes = se > 0 and (low > 0 or high < 0)
    relative = relative_low = relative_high = None
    if mc > 0:  # the delta method for mt / mc - 1
        relative = mt / mc - 1
        rse = math.sqrt(at / mc**2 + mt**2 * ac / mc**4)
        relative_low, relative_high = relative - q * rse, relative + q * rse
    needed, warning = None, None
    if not excludes and difference != 0:
        room = (difference / q) ** 2 - at  # what the control's variance may still add
        needed = math.ceil(vc / room) if room > 0 and vc > 0 else None
        warning = (
            f"{outcome}: the interval contains zero; to exclude an uplift of {difference:.4g}"
            + (
                f" the control group needs about {needed:,} customers (has {c.size:,})"
                if needed is not None
                else " more treated customers are needed too (the treated group alone is too noisy)"
            )
        )
    return Uplift(
        outcome, int(t.size), int(c.size), mt, mc, difference, low, high,
        relative, relative_low, relative_high, bool(excludes), needed, warning,
    )  # fmt: skip


def _quantile(at: float, ac: float, nt: int, nc: int) -> float:
    """The t quantile of a two-sided 95% interval with Welch-Satterthwaite's degrees of
    freedom (the normal quantile when both groups have no spread)."""
    denominator = (at**2 / (nt - 1) if at else 0.0) + (ac**2 / (nc - 1) if ac else 0.0)
    if denominator == 0:
        return float(stats.norm.ppf(0.5 + LEVEL / 2))
    df = (at + ac) ** 2 / denominator
    return float(stats.t.ppf(0.5 + LEVEL / 2, df))


def outcomes_per_customer(
    groups: pd.DataFrame, orders: pd.DataFrame, since=None, until=None
) -> pd.DataFrame:
    """Each customer's outcomes in ``[since, until)`` (all of ``orders`` when not given).

    Parameters
    ----------
    groups : DataFrame
        ``customer`` (a pseudonym) and ``group`` (``treated`` or ``control``): everyone as
        assigned; a customer with no order has zeros.
    orders : DataFrame
        Order lines: ``customer``, ``order_id``, ``ordered_at``, ``quantity``, ``amount``
        (currency; negative for returns). Lines of customers not in ``groups`` are ignored.

    Returns
    -------
    DataFrame
        ``customer``, ``group``, ``converted`` (1 when an order with a bought line was
        placed), ``orders`` (such orders), ``revenue`` (net of returns).
    """
    lines = orders
    if since is not None:
        lines = lines[lines["ordered_at"] >= since]
    if until is not None:
        lines = lines[lines["ordered_at"] < until]
    bought = lines[lines["quantity"] > 0]
    counted = bought.groupby("customer")["order_id"].nunique().rename("orders")
    revenue = lines.groupby("customer")["amount"].sum().rename("revenue")
    out = groups[["customer", "group"]].merge(counted, on="customer", how="left")
    out = out.merge(revenue, on="customer", how="left")
    out["orders"] = out["orders"].fillna(0).astype("int64")
    out["revenue"] = out["revenue"].fillna(0.0).astype("float64")
    out["converted"] = (out["orders"] > 0).astype("int64")
    return out[["customer", "group", *OUTCOMES]]


def uplifts(per_customer: pd.DataFrame, before: pd.DataFrame | None = None) -> list[Uplift]:
    """:func:`uplift` of every outcome of :func:`outcomes_per_customer`'s table, adjusted by
    the same outcomes in a period before (``before``, the same form) when given."""
    thetas: dict[str, float | None] = dict.fromkeys(OUTCOMES)
    if before is not None:
        per_customer, thetas = adjusted(per_customer, before)
    treated = per_customer[per_customer["group"] == "treated"]
    control = per_customer[per_customer["group"] == "control"]
    return [
        replace(uplift(o, treated[o].to_numpy(), control[o].to_numpy()), theta=thetas[o])
        for o in OUTCOMES
    ]


def adjusted(
    per_customer: pd.DataFrame, before: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Each outcome less ``theta`` times its pre-period value's deviation from the mean
    (CUPED); a customer missing from ``before`` counts as 0 there. Returns the adjusted
    table and each outcome's ``theta``."""
    past = per_customer[["customer"]].merge(before, on="customer", how="left")
    out, thetas = per_customer.copy(), {}
    for o in OUTCOMES:
        y = per_customer[o].to_numpy(dtype="float64")
        x = past[o].fillna(0).to_numpy(dtype="float64")
        spread = x.var(ddof=1) if x.size > 1 else 0.0
        theta = float(np.cov(y, x)[0, 1] / spread) if spread > 0 else 0.0
        out[o] = y - theta * (x - x.mean())
        thetas[o] = theta
    return out, thetas


def per_action(
    groups: pd.DataFrame,
    entries: pd.DataFrame,
    orders: pd.DataFrame,
    until,
    before: pd.DataFrame | None = None,
) -> dict[str, list[Uplift]]:
    """The uplift of each marketing action, ghost-ads style: ``entries`` holds each
    customer's first answer in the period that showed (treated) or would have shown
    (control) the action (``customer``, ``action``, ``at``); outcomes are counted from
    that moment to ``until`` (adjusted by ``before`` as in :func:`uplifts`). Actions with
    fewer than two customers in either group are left out (the log does not allow it)."""
    out: dict[str, list[Uplift]] = {}
    for action, first in entries.groupby("action", sort=True):
        who = first[["customer", "at"]].merge(groups, on="customer")
        if (who["group"].value_counts().reindex(["treated", "control"]).fillna(0) < 2).any():
            continue
        lines = orders.merge(who[["customer", "at"]], on="customer")
        lines = lines[lines["ordered_at"] >= lines["at"]]
        table = outcomes_per_customer(who, lines, until=until)
        out[str(action)] = uplifts(table, before)
    return out
