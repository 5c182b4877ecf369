"""MLflow tracking and the champion gate, on a real SQLite store in a temporary folder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, clone

from conftest import AS_OF
from features.config import FeatureConfig
from training.churn import ChurnModel, train_churn
from training.clv import ClvModel, ClvResult, clv_holdout, train_clv
from training.dataset import churn_dataset, training_cutoffs
from training.registry import CHURN_MODEL, load_churn, load_clv, load_replenishment
from training.replenishment import train_replenishment
from training.tracking import log_classifier, log_clv

H = 90


def assert_estimator(loaded, trained) -> None:
    """The scikit-learn contract holds for a model loaded from the registry: the same
    hyper-parameters, and ``clone`` gives an unfitted copy with them."""
    assert isinstance(loaded, BaseEstimator)
    assert loaded.get_params() == trained.get_params()
    fresh = clone(loaded)
    assert fresh.get_params() == trained.get_params()
    assert not [k for k in vars(fresh) if k.endswith("_") and not k.startswith("_")]


def test_first_version_becomes_champion_and_loads_back_the_same(store, dataset):
    result = train_churn(dataset, horizon_days=H)
    decision = log_classifier("churn", result, dataset, params={"horizon_days": H}, root=store)
    assert decision.promoted and decision.champion_score is None
    model, version = load_churn("champion")
    assert version == decision.version
    np.testing.assert_allclose(
        model.predict_proba(dataset["valid"]),
        result.model.predict_proba(dataset["valid"]),
        rtol=1e-12,
    )
    assert (store / "mlflow.db").is_file()
    assert_estimator(model, result.model)


def test_gate_promotes_a_better_model_and_keeps_the_champion_against_a_worse(store, dataset):
    weak = train_churn(dataset, horizon_days=H, model=ChurnModel(n_estimators=2, num_leaves=2))
    strong = train_churn(dataset, horizon_days=H)
    first = log_classifier("churn", weak, dataset, params={"kind": "weak"}, root=store)
    better = log_classifier("churn", strong, dataset, params={"kind": "strong"}, root=store)
    assert first.promoted
    assert better.promoted and better.champion_version == first.version
    assert better.challenger_score > better.champion_score

    worse = log_classifier("churn", weak, dataset, params={"kind": "weak again"}, root=store)
    assert not worse.promoted
    assert load_churn("champion")[1] == better.version
    assert load_churn("challenger")[1] == worse.version

    # a margin larger than the gain keeps the champion too
    again = log_classifier(
        "churn", strong, dataset, params={"kind": "strong"}, root=store, margin=0.5
    )
    assert not again.promoted and load_churn("champion")[1] == better.version


def test_run_artifacts_hold_no_customer_ids(store, dataset):
    result = train_churn(dataset, horizon_days=H)
    log_classifier("churn", result, dataset, params={"horizon_days": H}, root=store)
    ids = set(dataset["valid"]["customer_id"]) | set(dataset["train"]["customer_id"])
    sample = sorted(ids)[:: max(1, len(ids) // 200)]
    texts = [p.read_bytes() for p in (store / "artifacts").rglob("*") if p.is_file()]
    assert texts
    for customer in sample:
        needle = customer.encode()
        assert not any(needle in blob for blob in texts), customer


def test_replenishment_registers_and_loads_back_the_same(store, replenishment_data):
    result = train_replenishment(replenishment_data)
    decision = log_classifier(
        "replenishment", result, replenishment_data, params={"w": 14}, root=store
    )
    assert decision.promoted and decision.kind == "replenishment"
    model, version = load_replenishment("champion")
    assert version == decision.version
    valid = replenishment_data["valid"]
    pd.testing.assert_frame_equal(model.predict(valid), result.model.predict(valid))
    assert_estimator(model.classifier, result.model.classifier)
    assert_estimator(model.runout, result.model.runout)
    plots = {p.name for p in (store / "artifacts").rglob("*.png")}
    assert {"roc.png", "lift.png", "runout_errors.png", "feature_importance.png"} <= plots


def test_clv_gate_prefers_the_lower_error(store, small_world_dir):
    config = FeatureConfig()
    dataset = churn_dataset(
        small_world_dir, config, training_cutoffs(AS_OF, horizon_days=H, n_train=2)
    )
    result = train_clv(small_world_dir, dataset["valid"], config=config)
    holdout = clv_holdout(small_world_dir, dataset["valid"], horizon_days=H)
    first = log_clv(result, holdout, params={}, horizon_days=H, root=store)
    assert first.promoted and first.metric == "mae"
    model, version = load_clv("champion")
    assert model.to_dict() == result.model.to_dict() and version == first.version
    assert_estimator(model, result.model)

    # a model that expects every customer to spend twice as often is worse: not promoted
    halved = ClvModel.from_dict(result.model.to_dict())
    halved.bgnbd_ = dict(halved.bgnbd_, alpha=halved.bgnbd_["alpha"] / 2)
    worse = ClvResult(halved, result.metrics, result.actual, {})
    decision = log_clv(worse, holdout, params={}, horizon_days=H, root=store)
    assert not decision.promoted
    assert decision.challenger_score > decision.champion_score
    assert load_clv("champion")[1] == first.version
    assert load_clv("challenger")[1] == decision.version


def test_a_failed_training_leaves_the_champion_untouched(store, dataset):
    first = log_classifier(
        "churn", train_churn(dataset, horizon_days=H), dataset, params={}, root=store
    )
    broken = {**dataset, "valid": dataset["valid"].drop(columns=["recency_days"])}
    with pytest.raises(KeyError):
        log_classifier("churn", train_churn(broken, horizon_days=H), broken, params={}, root=store)
    assert load_churn("champion")[1] == first.version
    from mlflow import MlflowClient

    versions = MlflowClient().search_model_versions(f"name='{CHURN_MODEL}'")
    assert [str(v.version) for v in versions] == [first.version]  # nothing half-registered


def test_a_retrained_equal_model_is_not_promoted_on_noise(store, dataset):
    """The same model again scores the same; a near-equal one differs by noise: neither
    clears the paired bootstrap, while the point estimate alone (confidence 0) would promote
    the equal one."""
    result = train_churn(dataset, horizon_days=H)
    first = log_classifier("churn", result, dataset, params={}, root=store)
    again = log_classifier("churn", result, dataset, params={}, root=store)
    assert first.promoted and not again.promoted
    assert "does not clear the margin" in again.reason and "bootstrap" in again.reason
    nudged = train_churn(dataset, horizon_days=H, model=ChurnModel(random_state=1))
    noise = log_classifier("churn", nudged, dataset, params={}, root=store)
    assert abs(noise.challenger_score - noise.champion_score) < 0.01
    assert not noise.promoted, noise.reason
    point = log_classifier("churn", result, dataset, params={}, root=store, confidence=0.0)
    assert point.promoted and "point estimate" in point.reason


def test_runs_and_versions_are_named_tagged_and_described(store, dataset):
    from mlflow import MlflowClient

    as_of = AS_OF.isoformat()
    tags = {"nextbest.data_digest": "d" * 64}
    decision = log_classifier(
        "churn",
        train_churn(dataset, horizon_days=H),
        dataset,
        params={"as_of": as_of, "horizon_days": H},
        root=store,
        tags=tags,
    )
    client = MlflowClient()
    assert client.get_run(decision.run_id).info.run_name == "churn 2025-06-30"
    version = client.get_model_version(CHURN_MODEL, decision.version)
    assert version.tags["nextbest.as_of"] == as_of
    assert version.tags["nextbest.data_digest"] == "d" * 64
    assert version.tags["gate.decision"] == "promoted"
    assert "90 days" in version.description and "as of 2025-06-30" in version.description
