"""CLV: BG/NBD + Gamma-Gamma value per customer, judged on the spend of a later period.

The model is the population's lifetimes parameters fitted at the validation cutoff
(:func:`features.build.fit_population`, weighted and penalized), applied to each customer's
frequency, recency, T and mean repeat value. It predicts

- ``expected_spend_{H}d``: expected purchases in the next H days x expected order value,
  compared with what the customer really spent in ``(cutoff, cutoff + H]``;
- ``clv_{M}m``: the discounted value over M months of 30 days (lifetimes'
  ``customer_lifetime_value``), what the service shows as the CLV band.

Baseline: the customer's historical spend rate (total spend / days since the first
purchase, at least 30) carried forward over H. Metrics: mean absolute error per customer, RMSE, the
relative error of the total, Spearman rank correlation and the share of the holdout spend
found in the top decile of predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import polars as pl
from numpy.typing import ArrayLike
from scipy.stats import spearmanr
from sklearn.base import BaseEstimator

from features.build import fit_population
from features.clv import LifetimesParams, lifetimes_features
from features.config import FeatureConfig
from features.inputs import Tables
from features.labels import spend_labels

SUMMARY = ("frequency", "recency", "T", "monetary_value")


class ClvModel(BaseEstimator):
    """BG/NBD and Gamma-Gamma fitted on the population (lifetimes), with the CLV settings.

    A scikit-learn estimator: ``clv_months`` and ``monthly_discount_rate`` are its
    hyper-parameters; ``bgnbd_``, ``gamma_gamma_`` (fitted parameters, ``None`` when a fit
    had no answer) and ``mean_repeat_value_`` are learned by :meth:`fit`. Stored as JSON
    (:meth:`to_dict`)."""

    def __init__(self, *, clv_months: int = 12, monthly_discount_rate: float = 0.01) -> None:
        self.clv_months = clv_months
        self.monthly_discount_rate = monthly_discount_rate

    def fit(self, tables: Tables, *, cutoff: datetime, config: FeatureConfig) -> ClvModel:
        """Fit both models on every customer's history up to ``cutoff``."""
        params = fit_population(tables, as_of=cutoff, config=config).lifetimes
        self.bgnbd_, self.gamma_gamma_ = params.bgnbd, params.gamma_gamma
        self.mean_repeat_value_ = params.mean_repeat_value
        return self

    def to_dict(self) -> dict:
        """The fitted model as JSON values (the learned ones without their ``_``)."""
        return {
            "bgnbd": self.bgnbd_,
            "gamma_gamma": self.gamma_gamma_,
            "mean_repeat_value": self.mean_repeat_value_,
            **self.get_params(),
        }

    @classmethod
    def from_dict(cls, values: dict) -> ClvModel:
        """The model :meth:`to_dict` wrote."""
        model = cls(
            **{k: values[k] for k in ("clv_months", "monthly_discount_rate") if k in values}
        )
        model.bgnbd_, model.gamma_gamma_ = values["bgnbd"], values["gamma_gamma"]
        model.mean_repeat_value_ = values["mean_repeat_value"]
        return model

    def predict(self, customers: pd.DataFrame, *, horizon_days: int) -> pd.DataFrame:
        """Per row of ``customers`` (with ``customer_id`` and the lifetimes summary columns):
        ``expected_purchases_{H}d``, ``expected_order_value``, ``expected_spend_{H}d``,
        ``clv_{M}m`` and ``p_alive``, in the same order."""
        missing = [c for c in ("customer_id", *SUMMARY) if c not in customers]
        if missing:
            raise ValueError(f"CLV needs the columns {missing}")
        bought = customers[customers["frequency"].notna()]
        summary = pl.from_pandas(bought[["customer_id", *SUMMARY]].reset_index(drop=True))
        params = LifetimesParams(
            self.bgnbd_, self.gamma_gamma_, None, None, self.mean_repeat_value_
        )
        h = horizon_days
        out = lifetimes_features(
            summary,
            params,
            horizon_days=h,
            clv_months=self.clv_months,
            monthly_discount_rate=self.monthly_discount_rate,
        ).to_pandas()
        out[f"expected_spend_{h}d"] = out[f"expected_purchases_{h}d"] * out["expected_order_value"]
        out = customers[["customer_id"]].merge(out, on="customer_id", how="left")
        return out.fillna({f"expected_purchases_{h}d": 0.0, f"expected_spend_{h}d": 0.0})


def spend_metrics(actual: ArrayLike, predicted: ArrayLike) -> dict[str, float]:
    """Errors of predicted spend against the actual spend of the same customers."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    top = np.argsort(-predicted, kind="stable")[: max(1, int(np.ceil(0.1 * actual.size)))]
    total = actual.sum()
    return {
        "mae": float(np.abs(predicted - actual).mean()),
        "rmse": float(np.sqrt(((predicted - actual) ** 2).mean())),
        "total_relative_error": float((predicted.sum() - total) / total) if total else np.nan,
        "spearman": float(spearmanr(predicted, actual).statistic),
        "top_decile_spend_share": float(actual[top].sum() / total) if total else np.nan,
    }


@dataclass
class ClvResult:
    model: ClvModel
    metrics: pd.DataFrame  # one row per scorer ("model", "historical_rate")
    actual: np.ndarray  # holdout spend of the validation customers
    scores: dict[str, np.ndarray]  # their predicted spend, per scorer


def clv_holdout(tables: Tables, valid: pd.DataFrame, *, horizon_days: int) -> pd.DataFrame:
    """The validation customers (who had bought by the cutoff) with their holdout spend."""
    cutoff = valid["cutoff"].iloc[0]
    spend = spend_labels(tables, as_of=cutoff, horizon_days=horizon_days)
    return valid.merge(spend, on="customer_id", how="inner")


def score_clv(model: ClvModel, holdout: pd.DataFrame, *, horizon_days: int) -> np.ndarray:
    """Predicted spend over the horizon, for each row of ``holdout``."""
    return model.predict(holdout, horizon_days=horizon_days)[
        f"expected_spend_{horizon_days}d"
    ].to_numpy()


def train_clv(tables: Tables, valid: pd.DataFrame, *, config: FeatureConfig) -> ClvResult:
    """Fit the CLV model at the validation cutoff and judge it on the next H days' spend.

    Parameters
    ----------
    tables : Tables
        The contract tables (or folder).
    valid : pandas.DataFrame
        The validation examples (:func:`training.dataset.churn_examples`); their cutoff is
        the fit's as-of.
    config : FeatureConfig
        Feature settings (H, the CLV months and discount rate).

    Returns
    -------
    ClvResult
        The fitted model, its metrics beside the baselines', actual and predicted spend.
    """
    h = config.horizon_days
    model = ClvModel(
        clv_months=config.clv_months, monthly_discount_rate=config.monthly_discount_rate
    ).fit(tables, cutoff=valid["cutoff"].iloc[0], config=config)
    holdout = clv_holdout(tables, valid, horizon_days=h)
    rate = holdout["monetary_total"] / holdout["tenure_days"].clip(lower=30)
    scores = {
        "model": score_clv(model, holdout, horizon_days=h),
        "historical_rate": (rate * h).to_numpy(),
    }
    rows = [
        {"scorer": name, **spend_metrics(holdout["holdout_spend"], predicted)}
        for name, predicted in scores.items()
    ]
    metrics = pd.DataFrame(rows).set_index("scorer")
    return ClvResult(model, metrics, holdout["holdout_spend"].to_numpy(), scores)
