"""Metrics for scores of a binary outcome, where a higher score means the outcome is likelier."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


def top_decile_capture(y: np.ndarray, score: np.ndarray) -> float:
    """Share of all positives found in the 10% of examples with the highest scores."""
    y = np.asarray(y, dtype=bool)
    if not y.any():
        return float("nan")
    top = np.argsort(-np.asarray(score), kind="stable")[: max(1, int(np.ceil(0.1 * y.size)))]
    return float(y[top].sum() / y.sum())


def binary_metrics(y: ArrayLike, probability: ArrayLike) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), Brier score, log loss and top-decile capture."""
    y = np.asarray(y, dtype=bool)
    p = np.clip(np.asarray(probability, dtype=float), 1e-6, 1 - 1e-6)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[False, True])),
        "top_decile_capture": top_decile_capture(y, p),
    }


def calibration_table(y: ArrayLike, probability: ArrayLike, bins: int = 10) -> pd.DataFrame:
    """Mean predicted probability and observed rate per quantile bin of the predictions."""
    observed, predicted = calibration_curve(
        np.asarray(y, dtype=bool),
        np.asarray(probability, dtype=float),
        n_bins=bins,
        strategy="quantile",
    )
    return pd.DataFrame({"predicted": predicted, "observed": observed})
