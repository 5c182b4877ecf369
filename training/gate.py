"""The champion gate: a challenger replaces the champion only when it is better on the same
validation examples by more than noise.

The improvement (challenger minus champion on the gate's metric; for an error metric,
champion minus challenger) is estimated with a paired bootstrap: both models' predictions on
the same examples are re-weighted together (Poisson(1) weights, the large-sample form of
resampling with replacement), so what the two models share cancels and only their
difference varies. The challenger is promoted when the improvement is above ``margin`` with
``confidence`` (the ``1 - confidence`` quantile of the bootstrap improvements exceeds the
margin). With ``confidence=0`` the point estimate decides alone (improvement >= margin).
A version is promoted at once when there is no champion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

BLOCK = 50  # bootstrap replicates computed at once (memory: BLOCK x examples floats)
#: Above this many examples the replicates are drawn on a fixed random subsample of this
#: size and their spread scaled by sqrt(subsample / examples) (the m-out-of-n bootstrap of
#: a smooth statistic): the same interval at a bounded cost.
MAX_EXAMPLES = 50_000


@dataclass(frozen=True)
class Verdict:
    """What the gate found: both scores, the improvement's one-sided bound, the decision."""

    promoted: bool
    challenger: float
    champion: float | None
    lower: float | None  # the improvement's (1 - confidence) bootstrap quantile
    reason: str


def _auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted ROC-AUC of ``score`` for each row of ``weights`` (ties count one half)."""
    order = np.argsort(score, kind="stable")
    s, y, w = score[order], y[order].astype(float), weights[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # groups of equal scores
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * (1 - y), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    total = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + neg / 2)).sum(axis=1) / total


def _mae(y: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return (weights * np.abs(predicted - y)).sum(axis=1) / weights.sum(axis=1)


METRICS = {"roc_auc": _auc, "mae": _mae}


@dataclass(frozen=True)
class Gate:
    """When a challenger replaces the champion: ``metric`` on the same validation examples,
    better by more than ``margin`` with ``confidence`` (module docstring)."""

    metric: str
    greater_is_better: bool = True
    margin: float = 0.0
    confidence: float = 0.95
    resamples: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric: one of {sorted(METRICS)}, got {self.metric!r}")
        if not 0 <= self.confidence < 1:
            raise ValueError(f"confidence must be in [0, 1), got {self.confidence}")

    def score(self, y: ArrayLike, predicted: ArrayLike) -> float:
        """The metric of ``predicted`` against ``y`` on every example once."""
        y, predicted = np.asarray(y, float), np.asarray(predicted, float)
        return float(METRICS[self.metric](y, predicted, np.ones((1, len(y))))[0])

    def judge(
        self, y: ArrayLike, challenger: ArrayLike, champion: ArrayLike | None = None
    ) -> Verdict:
        """Compare the two models' predictions (``champion=None``: no champion yet)."""
        new = self.score(y, challenger)
        if champion is None:
            return Verdict(True, new, None, None, "no champion yet")
        old = self.score(y, champion)
        sign = 1.0 if self.greater_is_better else -1.0
        gain = sign * (new - old)
        lower = None
        if self.confidence > 0:
            gains = self._bootstrap(np.asarray(y, float), challenger, champion) * sign
            lower = float(np.quantile(gains, 1 - self.confidence))
            promoted = lower > self.margin
            bound = f"{1 - self.confidence:.0%} bootstrap quantile {lower:+.4f}"
        else:
            promoted = gain >= self.margin
            bound = "point estimate only"
        verb = "clears" if promoted else "does not clear"
        reason = (
            f"{self.metric} {new:.4f} vs champion {old:.4f}: improvement {gain:+.4f} ({bound})"
            f" {verb} the margin {self.margin:g}"
        )
        return Verdict(promoted, new, old, lower, reason)

    def _bootstrap(self, y: np.ndarray, challenger, champion) -> np.ndarray:
        """Bootstrap replicates of (challenger - champion) on the metric, paired."""
        metric = METRICS[self.metric]
        a, b = np.asarray(challenger, float), np.asarray(champion, float)
        rng = np.random.default_rng(self.seed)
        n, scale, full = len(y), 1.0, None
        if n > MAX_EXAMPLES:
            full = self.score(y, a) - self.score(y, b)
            keep = np.sort(rng.choice(n, size=MAX_EXAMPLES, replace=False))
            y, a, b = y[keep], a[keep], b[keep]
            scale = np.sqrt(MAX_EXAMPLES / n)
        out = []
        for start in range(0, self.resamples, BLOCK):
            size = (min(BLOCK, self.resamples - start), len(y))
            weights = rng.poisson(1.0, size=size).astype(np.float32)
            out.append(metric(y, a, weights) - metric(y, b, weights))
        gains = np.concatenate(out)
        gains = gains[np.isfinite(gains)]
        if full is None:
            return gains
        return full + (gains - gains.mean()) * scale


@dataclass(frozen=True)
class Decision:
    """What the champion gate decided for a new version, and on which scores."""

    kind: str
    version: str
    promoted: bool
    metric: str
    challenger_score: float
    champion_score: float | None
    champion_version: str | None
    run_id: str
    reason: str = ""
    #: what was registered: ``"model"``, or the baseline that the model did not beat
    scorer: str = "model"
    #: why that was registered (:func:`training.baseline.better_of`)
    choice: str = ""
