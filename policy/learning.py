"""Learning from feedback: acceptance and conversion rates, exploration and propensities.

**Rates.** Every answer an action got feedback on is one exposure of it (``shown``,
``accepted``, ``dismissed``, ``converted``: :mod:`serving.memory.feedback`); it was accepted when
any of its feedback is ``accepted`` or ``converted``, converted when any is ``converted``.
An action's acceptance rate is the mean of a Beta posterior: a Beta prior of mean
``rate`` and weight ``strength`` exposures (``feedback_prior`` in ``actions.yaml``) plus
the counts, so ten exposures move it little and ten thousand decide it. A segment's rate
is shrunk the same way towards its action's rate. The policy multiplies the model's
probability by the rate *relative to the prior mean* (:class:`Factors`): with no feedback
every factor is 1 and the ranking is the models' alone.

**Propensities.** Every answer logs, for each eligible action, the probability with which
it was put first: the deterministic ranking logs 1 for the first and 0 for the rest; with
an exploration rate ``epsilon`` (``NEXTBEST_EXPLORATION``, 0 by default) the first slot is
a uniformly drawn eligible action with probability ``epsilon`` (:func:`explore`), and each
action's real probability is logged. Escalation of a frustrated customer is never explored
away. These logs let a new policy be judged offline (:mod:`policy.offpolicy`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from policy.ranking import Ranking


@dataclass(frozen=True)
class Prior:
    """A Beta prior of mean ``rate`` worth ``strength`` exposures."""

    rate: float = 0.2
    strength: float = 20.0


@dataclass(frozen=True)
class Factors:
    """Multipliers of the model probability, by action and by (action, segment)."""

    by_action: dict[str, float]
    by_segment: dict[tuple[str, str], float]

    def of(self, segment: str | None) -> dict[str, float]:
        """action -> factor for a customer of ``segment``."""
        out = dict(self.by_action)
        for (action, seg), factor in self.by_segment.items():
            if seg == segment:
                out[action] = factor
        return out


NO_FEEDBACK = Factors({}, {})


def rates(exposures: pd.DataFrame, prior: Prior, by: list[str]) -> pd.DataFrame:
    """Exposures, acceptances, conversions and the posterior acceptance and conversion rates
    per group of ``by``.

    ``exposures``: one row per exposure with booleans ``accepted`` and ``converted`` (and the
    ``by`` columns)."""
    counts = exposures.groupby(by, sort=True).agg(
        shown=("accepted", "size"), accepted=("accepted", "sum"), converted=("converted", "sum")
    )
    s = prior.strength
    counts["acceptance_rate"] = (counts["accepted"] + prior.rate * s) / (counts["shown"] + s)
    counts["conversion_rate"] = (counts["converted"] + prior.rate * s) / (counts["shown"] + s)
    return counts.reset_index()


def learn(exposures: pd.DataFrame, prior: Prior) -> Factors:
    """The factors of the exposures' acceptance rates (columns ``action``, ``segment``,
    ``accepted``, ``converted``): per action shrunk to the prior, per segment shrunk to its
    action's rate."""
    if exposures.empty:
        return NO_FEEDBACK
    per_action = rates(exposures, prior, ["action"]).set_index("action")
    by_action = (per_action["acceptance_rate"] / prior.rate).to_dict()
    known = exposures.dropna(subset=["segment"])
    by_segment = {}
    if not known.empty:
        per = rates(known, prior, ["action", "segment"])
        base = per["action"].map(per_action["acceptance_rate"])
        s = prior.strength
        rate = (per["accepted"] + base * s) / (per["shown"] + s)
        keys = zip(per["action"], per["segment"], strict=True)
        by_segment = dict(zip(keys, (rate / prior.rate).to_numpy(), strict=True))
    return Factors({k: float(v) for k, v in by_action.items()}, by_segment)


def propensities(ranking: Ranking) -> list[tuple[str, str | None, float]]:
    """The deterministic ranking's propensities: 1 for the first action, 0 for the other
    eligible ones."""
    return [
        (s.action, s.product_id, 1.0 if i == 0 else 0.0)
        for i, s in enumerate(ranking.eligible or ranking.suggestions)
    ]


def explore(
    ranking: Ranking, epsilon: float, rng: np.random.Generator
) -> tuple[Ranking, list[tuple[str, str | None, float]]]:
    """With probability ``epsilon``, put a uniformly drawn eligible action first (the
    others keep their order); returns the answer and every eligible action's probability of
    being first. ``epsilon`` 0, a single eligible action, or a frustrated customer's
    escalation leave the ranking as it is (propensities 1 and 0)."""
    eligible = list(ranking.eligible or ranking.suggestions)
    if epsilon <= 0 or len(eligible) < 2 or ranking.frustrated:
        return ranking, propensities(ranking)
    n = len(eligible)
    chosen = int(rng.integers(n)) if rng.random() < epsilon else 0
    logged = [
        (s.action, s.product_id, (1 - epsilon) * (i == 0) + epsilon / n)
        for i, s in enumerate(eligible)
    ]
    if chosen == 0:
        return ranking, logged
    first = eligible[chosen]
    rest = [s for i, s in enumerate(eligible) if i != chosen]
    shown = [first, *rest][: len(ranking.suggestions)]
    return dataclasses.replace(ranking, suggestions=shown), logged
