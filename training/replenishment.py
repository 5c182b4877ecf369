"""Replenishment: will this customer rebuy this consumable within W days, and when will it run out?

Two parts, both judged on a later period than they were fitted on:

- the probability of a purchase of the pair in ``(cutoff, cutoff + W]``: a
  :class:`~training.classifier.CalibratedClassifier` on pair features plus some customer
  context; baseline: the overdue-ratio rule (days since last / expected cycle), fitted as
  a :class:`~training.baseline.LogisticBaseline` (registered instead of the classifier when
  the classifier does not beat it on the validation cutoff);
- the run-out date: the pair's cycle is log-normal around its median per-unit cycle; its
  spread is the pair's own coefficient of variation shrunk towards the product's (a pair
  with few gaps says little about its spread). Dates are quantiles *given that the pair was
  not bought again by the cutoff* (an overdue pair's run-out is after the cutoff, not
  before it); the median is the expected run-out date, the 10th-90th percentiles its interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import norm
from sklearn.base import BaseEstimator
from sklearn.metrics import average_precision_score, roc_auc_score

from features.build import FeatureTables, build_features
from features.config import FeatureConfig
from features.inputs import Tables
from features.labels import repurchase_labels
from features.replenishment import MAX_CYCLE_DAYS
from training.baseline import LogisticBaseline
from training.classifier import CalibratedClassifier, select_params
from training.dataset import Cutoffs, calibration_split, examples_by_cutoff

#: Customer columns added to each pair as context.
CONTEXT = (
    "p_alive",
    "recency_days",
    "gap_median_days",
    "views_30d",
    "product_views_30d",
    "support_tickets_30d",
    "sentiment_mean_30d",
    "segment",
)
SHRINK_GAPS = 3.0  # weight of the product's spread, in gaps


def pair_frame_from(customers: pd.DataFrame, pairs: pd.DataFrame, cutoff: datetime) -> pd.DataFrame:
    """The model's input at ``cutoff``: pair features with customer context and ``cutoff``."""
    context = customers[["customer_id", *CONTEXT]].rename(
        columns={c: f"customer_{c}" for c in CONTEXT}
    )
    pairs = pairs.merge(context, on="customer_id", how="left")
    return pairs.assign(cutoff=pd.Timestamp(cutoff))


def pair_frame(built: FeatureTables, cutoff: datetime) -> pd.DataFrame:
    """:func:`pair_frame_from` the tables of a feature build."""
    return pair_frame_from(built.customers, built.pairs, cutoff)


def replenishment_examples(tables: Tables, cutoff: datetime, config: FeatureConfig) -> pd.DataFrame:
    """Pair features at ``cutoff`` with customer context, ``repurchased``, ``next_purchase_at``."""
    pairs = pair_frame(build_features(tables, as_of=cutoff, config=config), cutoff)
    labels = repurchase_labels(tables, pairs, as_of=cutoff, window_days=config.window_days)
    return pairs.merge(labels, on=["customer_id", "product_id"], how="inner")


def replenishment_dataset(
    tables: Tables, config: FeatureConfig, cutoffs: Cutoffs
) -> dict[str, pd.DataFrame]:
    """Pair examples for the cutoffs (their horizon is the repurchase window W)."""
    return examples_by_cutoff(replenishment_examples, tables, config, cutoffs)


class RunoutModel(BaseEstimator):
    """Per-product spread of the log per-unit cycle, learned from training pairs.

    A scikit-learn estimator: ``coverage`` is its hyper-parameter; ``product_sigma_``,
    ``default_sigma_`` and ``scale_`` (which widens every spread so the 10-90 interval
    covers ``coverage`` of the training pairs) are learned by :meth:`fit`."""

    def __init__(self, *, coverage: float = 0.8) -> None:
        self.coverage = coverage

    def fit(self, pairs: pd.DataFrame) -> RunoutModel:
        """Spreads per product from ``pairs``; then the smallest widening of all spreads
        that makes the 10-90 interval cover ``coverage`` of the training pairs' actual next
        purchases (lapses and refills bought elsewhere make the tails heavier than the
        gaps alone show)."""
        sigma = _pair_sigma(pairs)
        by_product = sigma.groupby(pairs["product_id"]).median().dropna()
        self.product_sigma_ = {k: float(v) for k, v in by_product.items()}
        self.default_sigma_ = float(np.nanmedian(sigma))
        bought = pairs[pairs["next_purchase_at"].notna()]
        for scale in np.arange(1.0, 6.01, 0.1):
            self.scale_ = float(round(scale, 2))
            if self.covered(bought) >= self.coverage:
                break
        return self

    @classmethod
    def from_parts(cls, parts: dict) -> RunoutModel:
        """A fitted model from its stored values (hyper-parameters and learned ``_`` ones)."""
        model = cls(**{k: v for k, v in parts.items() if not k.endswith("_")})
        for name in ("product_sigma_", "default_sigma_", "scale_"):
            setattr(model, name, parts.get(name, 1.0 if name == "scale_" else None))
        return model

    def covered(self, bought: pd.DataFrame) -> float:
        """Share of ``bought`` pairs whose next purchase falls in the 10-90 interval."""
        dates = self.predict(bought, quantiles=(0.1, 0.9))
        actual = bought["next_purchase_at"]
        return float(((actual >= dates["runout_p10"]) & (actual <= dates["runout_p90"])).mean())

    def predict(
        self, pairs: pd.DataFrame, quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    ) -> pd.DataFrame:
        """Run-out dates at ``quantiles``, given no purchase of the pair by its cutoff: never
        before the cutoff, never more than :data:`~features.replenishment.MAX_CYCLE_DAYS`
        after the last purchase (or the cutoff, when that is later); NaT without a cycle."""
        product = pairs["product_id"].map(self.product_sigma_).fillna(self.default_sigma_)
        gaps = (pairs["purchase_days"] - 1).clip(lower=0)
        own = _pair_sigma(pairs).fillna(product)
        sigma = np.sqrt((gaps * own**2 + SHRINK_GAPS * product**2) / (gaps + SHRINK_GAPS))
        sigma = (self.scale_ * sigma).clip(lower=0.02).to_numpy()
        # median cycle x last units, within (a tenth of a day, MAX_CYCLE_DAYS)
        median = pairs["expected_cycle_days"].to_numpy(dtype=float).clip(0.1, MAX_CYCLE_DAYS)
        elapsed = (
            (pairs["cutoff"] - pairs["last_purchase_at"]).dt.total_seconds() / 86_400
        ).to_numpy()
        # at most MAX_CYCLE_DAYS on, or the cutoff when it is later still
        longest = np.log(np.maximum(elapsed, MAX_CYCLE_DAYS))
        # Quantile q of the cycle given it exceeds ``elapsed``, through the survival
        # function so that far-overdue pairs (tiny tail probabilities) stay exact.
        tail = norm.sf(np.log(np.maximum(elapsed, 1e-9) / median) / sigma)
        out = {}
        for q in quantiles:
            z = norm.isf(np.maximum((1 - q) * tail, 1e-300))
            # in logs, bounded before exp: wide spreads times z up to 37 overflow otherwise
            days = np.maximum(np.exp(np.minimum(np.log(median) + sigma * z, longest)), elapsed)
            out[f"runout_p{round(q * 100):02d}"] = pairs["last_purchase_at"] + pd.to_timedelta(
                days, unit="D"
            )
        return pd.DataFrame(out, index=pairs.index)


def _pair_sigma(pairs: pd.DataFrame) -> pd.Series:
    """Log-normal sigma from the pair's coefficient of variation of per-unit cycles."""
    cv = pairs["cycle_std_days"] / pairs["cycle_mean_days"]
    return np.sqrt(np.log1p(cv**2))


def precision_at_k(y: ArrayLike, score: ArrayLike, k: int) -> float:
    """Share of positives among the ``k`` highest scores (one cutoff day)."""
    top = np.argsort(-np.asarray(score), kind="stable")[:k]
    return float(np.asarray(y, dtype=bool)[top].mean())


@dataclass(frozen=True)
class ReplenishmentModel:
    """The repurchase classifier (or its baseline) and the run-out model, scored together."""

    classifier: CalibratedClassifier | LogisticBaseline
    runout: RunoutModel

    def predict(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """``repurchase_probability`` and run-out dates (p10, p50, p90) per row of ``pairs``
        (pair features with customer context and a ``cutoff`` column)."""
        dates = self.runout.predict(pairs)
        return dates.assign(repurchase_probability=self.classifier.predict_proba(pairs))


@dataclass
class ReplenishmentResult:
    classifier: CalibratedClassifier
    runout: RunoutModel
    metrics: pd.DataFrame
    selection: pd.DataFrame | None = None
    scores: dict[str, np.ndarray] | None = None  # validation, per scorer
    runout_errors: np.ndarray | None = None  # actual - predicted run-out, days
    baselines: dict[str, LogisticBaseline] | None = None  # fitted, servable

    @property
    def model(self) -> ReplenishmentModel:
        """The classifier and the run-out model, scored together."""
        return ReplenishmentModel(self.classifier, self.runout)


def train_replenishment(
    dataset: dict[str, pd.DataFrame], *, window_days: int = 14, top_k: int = 100
) -> ReplenishmentResult:
    """Train the repurchase classifier and the run-out model; judge them on ``valid``.

    Parameters
    ----------
    dataset : dict of str to pandas.DataFrame
        ``train`` and ``valid`` pair examples
        (:func:`training.replenishment.replenishment_dataset`).
    window_days : int, default 14
        The repurchase window W of the labels.
    top_k : int, default 100
        The k of precision at k among the metrics.

    Returns
    -------
    ReplenishmentResult
        The fitted models, metrics of them and the baselines, the selection table, the
        validation scores and the run-out errors.
    """
    train_all, valid = dataset["train"], dataset["valid"]
    params, selection = select_params(train_all, label="repurchased", horizon_days=window_days)
    classifier = CalibratedClassifier(label="repurchased", **params)
    classifier = classifier.fit(*calibration_split(train_all, classifier.max_train_rows))
    # Only what was known at the validation cutoff: later next purchases are unseen.
    known = train_all["next_purchase_at"] <= valid["cutoff"].min()
    runout = RunoutModel().fit(
        train_all.assign(next_purchase_at=train_all["next_purchase_at"].where(known))
    )
    y = valid["repurchased"].to_numpy()
    overdue = LogisticBaseline(
        label="repurchased", columns=("cycle_position",), name="overdue_ratio"
    )
    fitted = {"overdue_ratio": overdue.fit(train_all)}
    scores = {
        "model": classifier.predict_proba(valid),
        **{name: baseline.predict_proba(valid) for name, baseline in fitted.items()},
    }
    rows = []
    for name, score in scores.items():
        rows.append(
            {
                "scorer": name,
                "roc_auc": float(roc_auc_score(y, score)),
                "average_precision": float(average_precision_score(y, score)),
                f"precision_at_{top_k}": precision_at_k(y, score, top_k),
            }
        )
    metrics = pd.DataFrame(rows).set_index("scorer")
    bought = valid[valid["next_purchase_at"].notna()]
    dates = runout.predict(bought)
    signed = (bought["next_purchase_at"] - dates["runout_p50"]).dt.total_seconds() / 86_400
    error = signed.abs()
    metrics.loc["model", "runout_mae_days"] = float(error.mean())
    metrics.loc["model", "runout_median_abs_error_days"] = float(error.median())
    metrics.loc["model", "interval_coverage_p10_p90"] = runout.covered(bought)
    naive = (bought["next_purchase_at"] - bought["expected_next_purchase_at"]).dt.total_seconds()
    metrics.loc["overdue_ratio", "runout_mae_days"] = float((naive.abs() / 86_400).mean())
    errors = signed.to_numpy()
    return ReplenishmentResult(classifier, runout, metrics, selection, scores, errors, fitted)
