"""A baseline a business could write, as a model that can be registered and served: a
logistic regression on a few of the snapshot's own columns.

A churn model that does not beat "customers who have not bought for long leave" has not
earned its place. Each kind's rules (recency, RFM, the BG/NBD expectation; the overdue
ratio of a refill) are fitted as :class:`LogisticBaseline` on the same training examples as
the model, so they give calibrated probabilities, explain themselves (a linear model's
contributions are exact) and are stored as JSON, without a booster.

:func:`better_of` decides what a training registers: the model only when it beats the best
of them on the validation cutoff, otherwise that baseline. The gate then judges whichever
was registered against the champion (:mod:`training.champion`), so no version worse than a
rule on its own validation examples ever becomes a first champion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression

#: What ``form`` a stored model's parts name: a LightGBM classifier or this module's.
FORM = "logistic"


class LogisticBaseline(BaseEstimator):
    """Logistic regression of the boolean ``label`` on ``log1p`` of ``columns`` (negative
    values as 0, missing as 0), each standardised on the training examples.

    The same surface as :class:`training.classifier.CalibratedClassifier` where the service
    and the batch read a model: ``features_``, :meth:`predict_proba`, :meth:`raw_scores` on
    a float matrix of ``features_``, :meth:`calibrate`, :meth:`contributions`. The log-odds
    are the probabilities' own (it needs no calibration).

    Memory: the examples' ``columns`` as one float matrix (rows x a few columns).
    """

    def __init__(self, *, label: str, columns: tuple[str, ...] = (), name: str = "") -> None:
        self.label = label
        self.columns = columns
        self.name = name

    def _z(self, x: np.ndarray) -> np.ndarray:
        return (np.log1p(np.nan_to_num(x, nan=0.0).clip(min=0)) - self.mean_) / self.scale_

    @staticmethod
    def _matrix(frame: pd.DataFrame, columns) -> np.ndarray:
        return np.column_stack(
            [frame[c].to_numpy(dtype="float64", na_value=np.nan) for c in columns]
        )

    def fit(self, train: pd.DataFrame) -> LogisticBaseline:
        """Fit on ``train`` (the columns and ``label``)."""
        y = train[self.label].to_numpy(dtype=bool)
        if len(np.unique(y)) < 2:
            raise ValueError(f"{self.label}: baseline examples need both outcomes")
        self.features_ = list(self.columns)
        x = np.log1p(np.nan_to_num(self._matrix(train, self.features_), nan=0.0).clip(min=0))
        self.mean_ = x.mean(axis=0)
        self.scale_ = np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        fitted = LogisticRegression(max_iter=1000).fit((x - self.mean_) / self.scale_, y)
        self.coef_ = fitted.coef_[0].astype(float)
        self.intercept_ = float(fitted.intercept_[0])
        self.calibration_ = {"slope": 1.0, "intercept": 0.0}
        return self

    def raw_scores(self, matrix: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """Log-odds of each row of ``matrix`` (the raw values of ``features_``, in order);
        ``num_threads`` is unused (the classifier's call takes it)."""
        return self._z(np.asarray(matrix, dtype=float)) @ self.coef_ + self.intercept_

    def categories(self) -> list:
        """The category levels of categorical inputs, in order: none."""
        return []

    def log_odds(self, frame: pd.DataFrame) -> np.ndarray:
        """Log-odds of each row of ``frame``."""
        return self.raw_scores(self._matrix(frame, self.features_))

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability that ``label`` is true, for each row of ``frame``."""
        return self.calibrate(self.log_odds(frame))

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Probabilities from log-odds."""
        return expit(np.asarray(raw, dtype=float))

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Each input's share of each row's log-odds (its coefficient times its standardised
        value: exact for a linear model); ``baseline`` holds the intercept."""
        z = self._z(self._matrix(frame, self.features_))
        out = pd.DataFrame(z * self.coef_, columns=self.features_, index=frame.index)
        out["baseline"] = self.intercept_
        return out

    def importance(self) -> pd.Series:
        """Each input's absolute coefficient on its standardised scale."""
        return pd.Series(np.abs(self.coef_), index=self.features_)

    def to_parts(self) -> dict:
        """The learned values as JSON values."""
        return {
            "form": FORM,
            "name": self.name,
            "label": self.label,
            "features": self.features_,
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
        }

    @classmethod
    def from_parts(cls, parts: dict) -> LogisticBaseline:
        """The fitted baseline that :meth:`to_parts` describes."""
        model = cls(label=parts["label"], columns=tuple(parts["features"]), name=parts["name"])
        model.features_ = list(parts["features"])
        model.mean_ = np.asarray(parts["mean"], dtype=float)
        model.scale_ = np.asarray(parts["scale"], dtype=float)
        model.coef_ = np.asarray(parts["coef"], dtype=float)
        model.intercept_ = float(parts["intercept"])
        model.calibration_ = {"slope": 1.0, "intercept": 0.0}
        return model


@dataclass(frozen=True)
class Choice:
    """What a training registers: ``"model"`` or a baseline's name, and why."""

    scorer: str
    reason: str


def better_of(
    metrics: pd.DataFrame, servable: dict, metric: str, greater_is_better: bool = True
) -> Choice:
    """The model, if its ``metric`` on the validation cutoff beats every servable baseline's;
    otherwise the best of those baselines (a tie goes to the baseline: the simpler rule).

    ``metrics``: one row per scorer (``model`` and the baselines); ``servable``: the
    baselines that can be registered, by name."""
    sign = 1.0 if greater_is_better else -1.0
    rivals = [name for name in servable if name in metrics.index]
    if not rivals:
        return Choice("model", "no baseline can be served")
    best = max(rivals, key=lambda name: sign * float(metrics.loc[name, metric]))
    own, theirs = float(metrics.loc["model", metric]), float(metrics.loc[best, metric])
    if sign * own > sign * theirs:
        return Choice("model", f"the model's {metric} {own:.4f} beats {best}'s {theirs:.4f}")
    return Choice(
        best,
        f"the model's {metric} {own:.4f} does not beat the {best} baseline's {theirs:.4f} on"
        " the validation cutoff: the baseline is registered instead",
    )
