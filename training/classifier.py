"""A LightGBM classifier calibrated on a later time slice, shared by churn and replenishment."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

#: Columns that are not model inputs: identifiers, timestamps, the label, bookkeeping.
NOT_FEATURES = {
    "customer_id",
    "country",
    "last_purchase_at",
    "expected_next_purchase_at",
    "next_purchase_at",
    "cutoff",
    "churned",
    "repurchased",
}
CATEGORICAL = ("segment", "locale", "product_id", "customer_segment")


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The model's input columns of a customer feature frame, in a fixed order."""
    return sorted(c for c in frame.columns if c not in NOT_FEATURES)


def model_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = frame[columns].copy()
    for name in CATEGORICAL:
        if name in out:
            out[name] = out[name].astype("category")
    return out.astype({c: "float64" for c in columns if c not in CATEGORICAL})


class CalibratedClassifier:
    """LightGBM classifier of the boolean column ``label``, with Platt calibration on a
    held-out later slice.

    Platt scaling (a logistic regression on the log-odds of the raw score) is strictly
    monotonic, so calibration changes no ranking (isotonic regression would create ties).

    Follows the scikit-learn contract: hyper-parameters are stored unchanged, learned
    state ends in ``_``, ``fit`` returns ``self``.
    """

    def __init__(
        self,
        *,
        label: str,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        random_state: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.label = label
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, train: pd.DataFrame, calibration: pd.DataFrame) -> CalibratedClassifier:
        """Fit on ``train`` examples, then calibrate on the later ``calibration`` examples."""
        for name, frame in (("train", train), ("calibration", calibration)):
            if frame.empty or frame[self.label].nunique() < 2:
                raise ValueError(
                    f"{self.label}: {name} examples need both outcomes (true and false)"
                )
        self.features_ = feature_columns(train)
        classifier = lgb.LGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            deterministic=True,
            verbose=-1,
        ).fit(model_frame(train, self.features_), train[self.label].to_numpy())
        self.booster_ = classifier.booster_
        platt = LogisticRegression().fit(
            self._log_odds(calibration).reshape(-1, 1), calibration[self.label].to_numpy()
        )
        self.calibration_ = {
            "slope": float(platt.coef_[0, 0]),
            "intercept": float(platt.intercept_[0]),
        }
        return self

    @classmethod
    def from_parts(cls, booster: lgb.Booster, features: list[str], calibration: dict):
        """A fitted model from its stored parts (a LightGBM booster and JSON values)."""
        model = cls.__new__(cls)
        model.booster_, model.features_, model.calibration_ = (
            booster,
            list(features),
            dict(calibration),
        )
        return model

    def _log_odds(self, frame: pd.DataFrame) -> np.ndarray:
        raw = self.booster_.predict(model_frame(frame, self.features_), raw_score=True)
        return np.asarray(raw, dtype=float)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability that ``label`` is true, for each row of ``frame``."""
        c = self.calibration_
        return expit(c["slope"] * self._log_odds(frame) + c["intercept"])
