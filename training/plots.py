"""Evaluation plots of a training run (matplotlib figures; the caller saves or logs them).

Every plot shows the model beside its baselines on the validation period, so a reader sees
at once what the model adds over the rules a business could write itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.metrics import roc_curve

if TYPE_CHECKING:  # matplotlib is imported when a plot is drawn (the Agg backend first)
    from matplotlib.figure import Figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roc(y: ArrayLike, scores: dict[str, np.ndarray], title: str) -> Figure:
    """ROC curves of the model and its baselines, each with its AUC."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, score in scores.items():
        fpr, tpr, _ = roc_curve(np.asarray(y, dtype=bool), score)
        points = np.unique(np.linspace(0, fpr.size - 1, 1000).astype(int))
        ax.plot(fpr[points], tpr[points], label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    return fig


def calibration(curves: dict[str, pd.DataFrame], what: str) -> Figure:
    """Predicted against observed rates per bin (:func:`training.metrics.calibration_table`)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, curve in curves.items():
        ax.plot(curve["predicted"], curve["observed"], marker="o", label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(
        xlabel=f"predicted {what} probability",
        ylabel=f"observed {what} rate",
        title="calibration on the validation period",
    )
    ax.legend()
    return fig


def lift(outcome: ArrayLike, scores: dict[str, np.ndarray], what: str) -> Figure:
    """Cumulative share of ``outcome`` (a 0/1 label or an amount) captured when targeting
    the customers with the highest scores first."""
    plt = _pyplot()
    outcome = np.asarray(outcome, dtype=float)
    fig, ax = plt.subplots(figsize=(5, 5))
    share = np.arange(1, outcome.size + 1) / outcome.size
    points = np.unique(np.linspace(0, outcome.size - 1, 1000).astype(int))  # enough to draw
    for name, score in scores.items():
        order = np.argsort(-np.asarray(score), kind="stable")
        captured = np.cumsum(outcome[order]) / outcome.sum()
        ax.plot(share[points], captured[points], label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="random")
    ax.set(
        xlabel="share targeted (highest scores first)",
        ylabel=f"share of {what} captured",
        title="capture (cumulative gains)",
    )
    ax.legend(loc="lower right")
    return fig


def importance(weights: pd.Series, title: str, top: int = 20) -> Figure:
    """The ``top`` inputs by ``weights`` (a model's ``importance()``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    weights.nlargest(top)[::-1].plot.barh(ax=ax, title=title)
    return fig


def errors(days: np.ndarray, title: str) -> Figure:
    """Histogram of signed errors in days (actual - predicted)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(np.clip(days, -90, 90), bins=60)
    ax.axvline(0, color="black", linewidth=1)
    ax.set(xlabel="actual - predicted, days (clipped to ±90)", ylabel="pairs", title=title)
    return fig


def drift(table: pd.DataFrame, moderate: float, major: float, title: str) -> Figure:
    """PSI per feature (largest first) with the moderate and major thresholds."""
    plt = _pyplot()
    shown = table.dropna(subset=["psi"])
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(shown) + 1.5))
    colors = {"major": "tab:red", "moderate": "tab:orange", "stable": "tab:green"}
    ax.barh(shown["feature"], shown["psi"], color=[colors.get(x, "grey") for x in shown["level"]])
    ax.invert_yaxis()
    for x, style in ((moderate, "--"), (major, ":")):
        ax.axvline(x, color="grey", linestyle=style)
    ax.set(xlabel="population stability index", title=title)
    fig.tight_layout()
    return fig
