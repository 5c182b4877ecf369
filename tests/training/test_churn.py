"""Churn training: honest time split, and a model that beats the rules a business could write."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from conftest import AS_OF
from training.churn import ChurnModel, train_churn
from training.classifier import CANDIDATES, select_params
from training.dataset import selection_split, training_cutoffs
from training.metrics import binary_metrics, top_decile_capture

pytestmark = pytest.mark.heavy  # trains models or starts Spark: not in `make test-fast`

H = 90


def test_every_training_window_ends_before_validation_starts():
    cutoffs = training_cutoffs(AS_OF, horizon_days=H, n_train=4, step_days=30)
    assert cutoffs.valid + timedelta(days=H) == AS_OF
    assert list(cutoffs.train) == sorted(cutoffs.train)
    assert all(c + timedelta(days=H) <= cutoffs.valid for c in cutoffs.train)


def test_settings_are_chosen_on_label_windows_that_do_not_overlap(dataset):
    fit, judge = selection_split(dataset["train"], H)
    assert judge["cutoff"].nunique() == 1 and not fit.empty
    assert (fit["cutoff"] + timedelta(days=H) <= judge["cutoff"].iloc[0]).all()
    assert (judge["cutoff"] < dataset["valid"]["cutoff"].min()).all()


def test_selection_scores_every_candidate_and_picks_the_best(dataset):
    params, table = select_params(dataset["train"], label="churned", horizon_days=H)
    assert len(table) == len(CANDIDATES) and table["chosen"].sum() == 1
    best = table.loc[table["chosen"]].iloc[0]
    assert best["roc_auc"] == table["roc_auc"].max()
    assert params["num_leaves"] == best["num_leaves"]


def test_without_an_honest_split_the_default_is_taken_unjudged(dataset):
    newest = dataset["train"][dataset["train"]["cutoff"] == dataset["train"]["cutoff"].max()]
    params, table = select_params(newest, label="churned", horizon_days=H)
    assert params["num_leaves"] == CANDIDATES[-1]["num_leaves"]
    assert table["roc_auc"].isna().all()


def test_examples_use_only_their_past(dataset):
    for _, examples in dataset["train"].groupby("cutoff"):
        cutoff = examples["cutoff"].iloc[0]
        assert (examples["last_purchase_at"] <= cutoff).all()
    assert (dataset["valid"]["cutoff"] > dataset["train"]["cutoff"].max()).all()


def test_model_beats_baselines_on_a_later_period(dataset):
    result = train_churn(dataset, horizon_days=H)
    m = result.metrics
    for baseline in ("recency", "bgnbd", "rfm_logistic"):
        assert m.loc["model", "roc_auc"] > m.loc[baseline, "roc_auc"], m
        assert m.loc["model", "pr_auc"] > m.loc[baseline, "pr_auc"], m
    assert m.loc["model", "brier"] < m.loc["recency", "brier"]
    curve = result.calibration["model"]
    assert np.abs(curve["predicted"] - curve["observed"]).max() < 0.15  # calibrated


def test_predictions_are_deterministic(dataset):
    a = train_churn(dataset, horizon_days=H).model.predict_proba(dataset["valid"])
    b = train_churn(dataset, horizon_days=H).model.predict_proba(dataset["valid"])
    np.testing.assert_array_equal(a, b)


def test_model_follows_the_estimator_contract(dataset):
    model = ChurnModel(n_estimators=20, num_leaves=7)
    assert (model.n_estimators, model.num_leaves) == (20, 7)  # stored unchanged
    train = dataset["train"]
    one_class = train[train["churned"]]
    with pytest.raises(ValueError, match="churned: train examples need both outcomes"):
        model.fit(one_class, one_class)
    assert not hasattr(model, "booster_")


def test_unless_told_training_takes_openmps_threads(dataset):
    """LightGBM's own default is every physical core, whatever ``OMP_NUM_THREADS`` says:
    two test workers each spinning two OpenMP threads on two cores made training 25x
    slower (3 s alone, 78 s beside another training file). OpenMP's default (0) honours it."""
    train = dataset["train"].sample(3_000, random_state=0)
    model = ChurnModel(n_estimators=5, num_leaves=7).fit(train, train)
    assert model.booster_.params["num_threads"] == 0
    told = ChurnModel(n_estimators=5, num_leaves=7, n_jobs=1).fit(train, train)
    assert told.booster_.params["num_threads"] == 1


def test_top_decile_capture_by_hand():
    y = np.array([1, 0, 0, 1, 0, 0, 0, 0, 0, 1] * 2, dtype=bool)  # 6 positives in 20
    score = np.arange(20)[::-1].astype(float)  # the first two rows score highest
    assert top_decile_capture(y, score) == pytest.approx(1 / 6)  # rows 0, 1: one positive


def test_binary_metrics_of_a_perfect_score():
    y = np.array([0, 0, 1, 1])
    metrics = binary_metrics(y, np.array([0.0, 0.1, 0.9, 1.0]))
    assert metrics["roc_auc"] == 1.0 and metrics["pr_auc"] == 1.0
    assert metrics["brier"] == pytest.approx((0 + 0.01 + 0.01 + 0) / 4, abs=1e-5)
    assert isinstance(pd.Series(metrics).sum(), float)


def test_contributions_add_up_to_the_score(dataset):
    from scipy.special import logit

    model = ChurnModel(n_estimators=20, num_leaves=7)
    result = train_churn(dataset, horizon_days=90, model=model)
    rows = dataset["valid"].head(50)
    parts = result.model.contributions(rows)
    assert list(parts.columns) == [*result.model.features_, "baseline"]
    np.testing.assert_allclose(
        parts.sum(axis=1), logit(result.model.predict_proba(rows)), rtol=1e-6, atol=1e-6
    )


def test_the_prior_carries_the_trend_beyond_what_training_saw(dataset):
    """Boosted from the R, F, M rule, a customer gone far longer than any training example
    scores higher than one at the edge of what training saw; trees alone stay flat there.
    The one-row path the service uses (a float matrix) gives the same log-odds."""
    from serving.memory.snapshot import _numeric
    from training.dataset import calibration_split

    young = dataset["train"][dataset["train"]["recency_days"] <= 60]
    rows = dataset["valid"].head(200)
    edge, far = rows.assign(recency_days=60.0), rows.assign(recency_days=300.0)
    boosted = ChurnModel(n_estimators=30, num_leaves=7).fit(*calibration_split(young))
    flat = ChurnModel(n_estimators=30, num_leaves=7, prior=()).fit(*calibration_split(young))
    assert (boosted.predict_proba(far) > boosted.predict_proba(edge)).all()
    np.testing.assert_allclose(flat.predict_proba(far), flat.predict_proba(edge))
    raw = boosted.raw_scores(_numeric(boosted, rows), num_threads=1)
    np.testing.assert_allclose(raw, boosted._log_odds(rows), rtol=1e-9, atol=1e-9)


def test_on_grocery_data_the_model_earns_its_place():
    """A grocery shop's year (3,000 households drifting away before they lapse): the model
    beats every baseline on ROC-AUC and PR-AUC at the validation cutoff, and uses the
    grocery signals (basket trend, staples still bought, trip regularity)."""
    from cdp.contract import ContractTables
    from cdp.world.config import WorldConfig
    from cdp.world.generate import generate_grocery_world
    from features.config import FeatureConfig
    from training.dataset import churn_dataset

    config = WorldConfig(customers=3_000, seed=3, as_of=AS_OF, history_days=365)
    tables = ContractTables(**generate_grocery_world(config, 5_000).tables)
    cutoffs = training_cutoffs(AS_OF, horizon_days=H)
    result = train_churn(churn_dataset(tables, FeatureConfig(), cutoffs), horizon_days=H)
    m = result.metrics
    for baseline in ("recency", "bgnbd", "rfm_logistic"):
        assert m.loc["model", "roc_auc"] > m.loc[baseline, "roc_auc"] + 0.005, m
        assert m.loc["model", "pr_auc"] > m.loc[baseline, "pr_auc"], m
    used = result.model.importance()
    assert (used[["basket_trend", "staples_kept_share", "gap_cv"]] > 0).all(), used
