"""Next product: will this customer buy this candidate product within W days?

A :class:`~training.classifier.CalibratedClassifier` on the candidates of
:mod:`features.candidates` (what the customer owns and bought, related products, the best
sellers, recent views), trained on cutoffs one window apart whose label windows end by the
validation cutoff, calibrated on a later slice, and judged on the validation cutoff against
three baselines on the same candidates:

- ``popularity``: the product's share of the last 90 days' buyers;
- ``co_purchase_lift``: the co-purchase rule of the customer's products with the highest lift
  (the policy's cross-sell before this model);
- ``bought_lately``: the family the customer bought most recently first (last bought again);
- ``p_topfreq``: the customer's own most frequently bought families first (purchase days),
  the most recent of equals first: the strongest simple baseline of next-basket work (Li et
  al., "A Next Basket Recommendation Reality Check", ACM TOIS 2023);
- ``repeat_last_basket``: the families of the customer's last purchase day first, the most
  often bought of them first.

Metrics: ROC-AUC and average precision over candidates, and ``hit_at_1``: the share of
customers whose highest-scored candidate was bought in the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from features.build import build_features
from features.candidates import next_product_candidates
from features.config import FeatureConfig
from features.inputs import Tables
from features.labels import next_product_labels
from training.classifier import CalibratedClassifier, select_params
from training.dataset import Cutoffs, calibration_split, examples_by_cutoff

LABEL = "bought"
#: Not an input: the product's id (see :class:`~training.classifier.CalibratedClassifier`).
#: Without it, hit@1 on the validation cutoff: 0.587 against 0.577 on a 3,000-household x
#: 20,000-product grocery world, 0.2325 against 0.2334 on the 12,000-customer default world.
IGNORE = ("product_id",)


def candidate_frame(
    tables: Tables, customers: pd.DataFrame, pairs: pd.DataFrame, cutoff: datetime
) -> pd.DataFrame:
    """The model's input at ``cutoff``: the candidates with their features and ``cutoff``."""
    frame = next_product_candidates(tables, customers, as_of=cutoff, pairs=pairs)
    return frame.assign(cutoff=pd.Timestamp(cutoff))


def next_product_examples(tables: Tables, cutoff: datetime, config: FeatureConfig) -> pd.DataFrame:
    """Candidates at ``cutoff`` with ``bought`` (their family bought in the window)."""
    built = build_features(tables, as_of=cutoff, config=config)
    frame = candidate_frame(tables, built.customers, built.pairs, cutoff)
    labels = next_product_labels(tables, frame, as_of=cutoff, window_days=config.next_product_days)
    return frame.merge(labels, on=["customer_id", "product_id"], how="inner")


def next_product_dataset(
    tables: Tables, config: FeatureConfig, cutoffs: Cutoffs
) -> dict[str, pd.DataFrame]:
    """Candidate examples for the cutoffs (their horizon is the next-product window)."""
    return examples_by_cutoff(next_product_examples, tables, config, cutoffs)


def hit_at_1(frame: pd.DataFrame, score: np.ndarray) -> float:
    """The share of customers whose highest-scored candidate has ``bought`` true."""
    ranked = frame[["customer_id", LABEL]].assign(score=score)
    ranked = ranked.sort_values(["customer_id", "score"], ascending=[True, False], kind="stable")
    return float(ranked.drop_duplicates("customer_id")[LABEL].mean())


def baselines(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The baselines' scores of each candidate (higher: more likely)."""
    since = frame["days_since_family"].fillna(1e6).to_numpy(dtype=float)
    times = frame["family_purchase_days"].fillna(0).to_numpy(dtype=float)
    latest = pd.Series(since).groupby(frame["customer_id"].to_numpy()).transform("min")
    # in the last basket: bought on the customer's most recent purchase day
    last = ((since == latest.to_numpy()) & (times > 0)).astype(float)
    return {
        "popularity": frame["popularity_90d"].to_numpy(dtype=float),
        "co_purchase_lift": frame["co_purchase_lift"].fillna(0).to_numpy(dtype=float),
        "bought_lately": -since,
        # purchase days first; recency breaks ties (within a day: 1e-6 per day, under one)
        "p_topfreq": times + 1e-6 * (1e5 - np.minimum(since, 1e5)) / 1e5,
        "repeat_last_basket": last + 1e-3 * times / (1 + times.max(initial=0)),
    }


@dataclass
class NextProductResult:
    classifier: CalibratedClassifier
    metrics: pd.DataFrame
    selection: pd.DataFrame | None = None
    scores: dict[str, np.ndarray] | None = None  # validation, per scorer

    @property
    def model(self) -> CalibratedClassifier:
        """The calibrated classifier (what is registered)."""
        return self.classifier


def train_next_product(
    dataset: dict[str, pd.DataFrame], *, window_days: int = 30
) -> NextProductResult:
    """Train the next-product classifier; judge it and the baselines on ``valid``.

    Parameters
    ----------
    dataset : dict of str to pandas.DataFrame
        ``train`` and ``valid`` candidate examples (:func:`next_product_dataset`).
    window_days : int, default 30
        The window W of the labels.

    Returns
    -------
    NextProductResult
        The fitted classifier, the metrics of it and the baselines, the selection table and
        the validation scores.
    """
    train_all, valid = dataset["train"], dataset["valid"]
    params, selection = select_params(
        train_all, label=LABEL, horizon_days=window_days, ignore=IGNORE
    )
    classifier = CalibratedClassifier(label=LABEL, **params)
    classifier = classifier.fit(*calibration_split(train_all, classifier.max_train_rows))
    y = valid[LABEL].to_numpy()
    scores = {"model": classifier.predict_proba(valid), **baselines(valid)}
    rows = [
        {
            "scorer": name,
            "roc_auc": float(roc_auc_score(y, score)),
            "average_precision": float(average_precision_score(y, score)),
            "hit_at_1": hit_at_1(valid, score),
        }
        for name, score in scores.items()
    ]
    return NextProductResult(classifier, pd.DataFrame(rows).set_index("scorer"), selection, scores)
