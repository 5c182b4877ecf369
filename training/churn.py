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

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from training.classifier import CalibratedClassifier, select_params
from training.dataset import calibration_split
from training.metrics import binary_metrics, calibration_table

RFM = ("recency_days", "purchase_days", "monetary_total")


class ChurnModel(CalibratedClassifier):
    """The churn classifier: a :class:`~training.classifier.CalibratedClassifier` of
    ``churned`` (the same hyper-parameters, spelled out as scikit-learn's ``get_params``
    needs)."""

    def __init__(
        self,
        *,
        label: str = "churned",
        n_estimators: int = 100,
        learning_rate: float = 0.15,
        num_leaves: int = 31,
        min_child_samples: int = 50,
        max_train_rows: int | None = 500_000,
        random_state: int = 0,
        n_jobs: int | None = None,
    ) -> None:
        super().__init__(
            label=label,
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            min_child_samples=min_child_samples,
            max_train_rows=max_train_rows,
            random_state=random_state,
            n_jobs=n_jobs,
        )


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
    selection: pd.DataFrame | None = None  # candidate tree sizes and their scores
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # validation, per scorer


def train_churn(
    dataset: dict[str, pd.DataFrame], *, horizon_days: int, model: ChurnModel | None = None
) -> ChurnResult:
    """Train the churn model and judge it and its baselines on the validation cutoff.

    The tree size is picked on the training cutoffs (unless ``model`` is given); the model
    is fitted on the older training cutoffs and calibrated on the newest.

    Parameters
    ----------
    dataset : dict of str to pandas.DataFrame
        ``train`` and ``valid`` examples (:func:`training.dataset.churn_dataset`).
    horizon_days : int
        The churn horizon H of the labels.
    model : ChurnModel, optional
        An unfitted model with fixed hyper-parameters (no selection).

    Returns
    -------
    ChurnResult
        The fitted model, metrics of it and every baseline, calibration curves, the
        selection table and the validation scores.
    """
    train_all, valid = dataset["train"], dataset["valid"]
    selection = None
    if model is None:
        params, selection = select_params(train_all, label="churned", horizon_days=horizon_days)
        model = ChurnModel(**params)
    train, calibration = calibration_split(train_all, model.max_train_rows)
    model = model.fit(train, calibration)
    scorers = {"model": model.predict_proba, **baselines(train_all, horizon_days)}
    y = valid["churned"].to_numpy()
    rows, curves, scores = [], {}, {}
    for name, score in scorers.items():
        scores[name] = probability = score(valid)
        rows.append({"scorer": name, **binary_metrics(y, probability)})
        curves[name] = calibration_table(y, probability)
    metrics = pd.DataFrame(rows).set_index("scorer")
    return ChurnResult(model, metrics, curves, selection, scores)
