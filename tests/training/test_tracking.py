"""MLflow tracking and the champion gate, on a real SQLite store in a temporary folder."""

from __future__ import annotations

import numpy as np
import pytest

from training.churn import ChurnModel, train_churn
from training.tracking import configure, load_churn, log_churn

H = 90


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    configure(tmp_path / "mlruns")
    return tmp_path / "mlruns"


def test_first_version_becomes_champion_and_loads_back_the_same(store, dataset):
    result = train_churn(dataset, horizon_days=H)
    decision = log_churn(result, dataset, params={"horizon_days": H}, root=store)
    assert decision.promoted and decision.champion_score is None
    model, version = load_churn("champion")
    assert version == decision.version
    np.testing.assert_allclose(
        model.predict_proba(dataset["valid"]),
        result.model.predict_proba(dataset["valid"]),
        rtol=1e-12,
    )
    assert (store / "mlflow.db").is_file()


def test_gate_promotes_a_better_model_and_keeps_the_champion_against_a_worse(store, dataset):
    weak = train_churn(dataset, horizon_days=H, model=ChurnModel(n_estimators=2, num_leaves=2))
    strong = train_churn(dataset, horizon_days=H)
    first = log_churn(weak, dataset, params={"kind": "weak"}, root=store)
    better = log_churn(strong, dataset, params={"kind": "strong"}, root=store)
    assert first.promoted
    assert better.promoted and better.champion_version == first.version
    assert better.challenger_score > better.champion_score

    worse = log_churn(weak, dataset, params={"kind": "weak again"}, root=store)
    assert not worse.promoted
    assert load_churn("champion")[1] == better.version
    assert load_churn("challenger")[1] == worse.version

    # a margin larger than the gain keeps the champion too
    again = log_churn(strong, dataset, params={"kind": "strong"}, root=store, margin=0.5)
    assert not again.promoted and load_churn("champion")[1] == better.version


def test_run_artifacts_hold_no_customer_ids(store, dataset):
    result = train_churn(dataset, horizon_days=H)
    log_churn(result, dataset, params={"horizon_days": H}, root=store)
    ids = set(dataset["valid"]["customer_id"]) | set(dataset["train"]["customer_id"])
    sample = sorted(ids)[:: max(1, len(ids) // 200)]
    texts = [p.read_bytes() for p in (store / "artifacts").rglob("*") if p.is_file()]
    assert texts
    for customer in sample:
        needle = customer.encode()
        assert not any(needle in blob for blob in texts), customer
