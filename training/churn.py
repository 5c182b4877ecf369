"""Churn: a LightGBM classifier on customer features, calibrated on a later time slice,
judged against the rules a business could write itself.

Baselines, all fitted on the same training examples:

- ``recency``: logistic regression on days since the last purchase alone;
- ``bgnbd``: P(no purchase in H) = exp(-E[purchases in H]) from the BG/NBD feature (a
  Poisson reading of the expected count);
- ``rfm_logistic``: logistic regression on log recency, log purchase days, log monetary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from training.metrics import binary_metrics, calibration_table

#: Columns that are not model inputs: identifiers, timestamps, the label, bookkeeping.
NOT_FEATURES = {"customer_id", "country", "last_purchase_at", "cutoff", "churned"}
CATEGORICAL = ("segment", "locale")
RFM = ("recency_days", "purchase_days", "monetary_total")


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The model's input columns of a customer feature frame, in a fixed order."""
    return sorted(c for c in frame.columns if c not in NOT_FEATURES)


def _model_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = frame[columns].copy()
    for name in CATEGORICAL:
        if name in out:
            out[name] = out[name].astype("category")
    return out.astype({c: "float64" for c in columns if c not in CATEGORICAL})


class ChurnModel:
    """LightGBM churn classifier with Platt calibration on a held-out later slice.

    Platt scaling (a logistic regression on the log-odds of the raw score) is strictly
    monotonic, so calibration changes no ranking (isotonic regression would create ties).

    Follows the scikit-learn contract: hyper-parameters are stored unchanged, learned
    state ends in ``_``, ``fit`` returns ``self``.
    """

    def __init__(
        self,
        *,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        random_state: int = 0,
        n_jobs: int = 2,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, train: pd.DataFrame, calibration: pd.DataFrame) -> ChurnModel:
        """Fit on ``train`` examples, then calibrate on the later ``calibration`` examples."""
        for name, frame in (("train", train), ("calibration", calibration)):
            if frame.empty or frame["churned"].nunique() < 2:
                raise ValueError(f"churn {name} examples need both churned and retained customers")
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
        ).fit(_model_frame(train, self.features_), train["churned"].to_numpy())
        self.booster_ = classifier.booster_
        platt = LogisticRegression().fit(
            self._log_odds(calibration).reshape(-1, 1), calibration["churned"].to_numpy()
        )
        self.calibration_ = {
            "slope": float(platt.coef_[0, 0]),
            "intercept": float(platt.intercept_[0]),
        }
        return self

    @classmethod
    def from_parts(cls, booster: lgb.Booster, features: list[str], calibration: dict) -> ChurnModel:
        """A fitted model from its stored parts (a LightGBM booster and JSON values)."""
        model = cls()
        model.booster_, model.features_, model.calibration_ = (
            booster,
            list(features),
            dict(calibration),
        )
        return model

    def _log_odds(self, frame: pd.DataFrame) -> np.ndarray:
        raw = self.booster_.predict(_model_frame(frame, self.features_), raw_score=True)
        return np.asarray(raw, dtype=float)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probability of each customer in ``frame``."""
        c = self.calibration_
        return expit(c["slope"] * self._log_odds(frame) + c["intercept"])


def _logistic(train: pd.DataFrame, columns: list[str]):
    def transform(frame):
        return np.log1p(frame[columns].astype(float).clip(lower=0).fillna(0).to_numpy())

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(transform(train), train["churned"].to_numpy())
    return lambda frame: model.predict_proba(transform(frame))[:, 1]


def baselines(train: pd.DataFrame, horizon_days: int) -> dict:
    """The baseline scorers (frame -> churn probability), fitted on ``train``."""
    expected = f"expected_purchases_{horizon_days}d"
    return {
        "recency": _logistic(train, ["recency_days"]),
        "bgnbd": lambda frame: np.exp(-frame[expected].astype(float).fillna(0).to_numpy()),
        "rfm_logistic": _logistic(train, list(RFM)),
    }


@dataclass
class ChurnResult:
    """A fitted model, the metrics of it and its baselines on validation, calibration curves."""

    model: ChurnModel
    metrics: pd.DataFrame  # one row per scorer ("model" and the baselines)
    calibration: dict[str, pd.DataFrame] = field(default_factory=dict)


def train_churn(
    dataset: dict[str, pd.DataFrame], *, horizon_days: int, model: ChurnModel | None = None
) -> ChurnResult:
    """Train on the older training cutoffs, calibrate on the newest, validate on ``valid``."""
    train_all, valid = dataset["train"], dataset["valid"]
    newest = train_all["cutoff"].max()
    train, calibration = (
        train_all[train_all["cutoff"] < newest],
        train_all[train_all["cutoff"] == newest],
    )
    if train.empty:  # a single training cutoff: calibrate on a later slice is impossible
        raise ValueError("churn training needs at least two training cutoffs")
    model = (model or ChurnModel()).fit(train, calibration)
    scorers = {"model": model.predict_proba, **baselines(train_all, horizon_days)}
    y = valid["churned"].to_numpy()
    rows, curves = [], {}
    for name, score in scorers.items():
        probability = score(valid)
        rows.append({"scorer": name, **binary_metrics(y, probability)})
        curves[name] = calibration_table(y, probability)
    return ChurnResult(model, pd.DataFrame(rows).set_index("scorer"), curves)
