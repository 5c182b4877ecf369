"""A model that does not beat its best baseline on the validation cutoff gives way to it: the
baseline is fitted, logged, registered and gated like any model, loads from the registry and
serves the same way (training/baseline.py). On a real MLflow store."""

from __future__ import annotations

import json
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient

from conftest import relocate_store
from training.baseline import LogisticBaseline, better_of
from training.churn import ChurnModel, train_churn
from training.registry import CHURN_MODEL, FEATURES_TAG, load_churn
from training.tracking import log_classifier

H = 90
#: A churn model that cannot split (more examples per leaf than there are) and starts from
#: no rule: a constant.
FLAT = ChurnModel(n_estimators=1, num_leaves=2, min_child_samples=10**9, prior=())


def test_the_model_is_registered_only_when_it_beats_every_baseline():
    metrics = pd.DataFrame(
        {"roc_auc": [0.885, 0.902, 0.853]}, index=["model", "rfm_logistic", "recency"]
    )
    servable = {"rfm_logistic": object(), "recency": object()}
    choice = better_of(metrics, servable, "roc_auc")
    assert choice.scorer == "rfm_logistic"
    assert "0.8850" in choice.reason and "0.9020" in choice.reason
    metrics.loc["model", "roc_auc"] = 0.9021
    assert better_of(metrics, servable, "roc_auc").scorer == "model"
    metrics.loc["model", "roc_auc"] = 0.902  # a tie: the simpler rule
    assert better_of(metrics, servable, "roc_auc").scorer == "rfm_logistic"
    # only servable baselines compete; for an error metric, lower wins
    assert better_of(metrics, {}, "roc_auc").scorer == "model"
    errors = pd.DataFrame({"mae": [3.0, 2.5]}, index=["model", "rule"])
    assert better_of(errors, {"rule": object()}, "mae", greater_is_better=False).scorer == "rule"


@settings(max_examples=60, deadline=None)
@given(
    x=st.lists(
        st.one_of(st.none(), st.floats(-1e12, 1e12, allow_nan=False)), min_size=6, max_size=60
    ),
    flip=st.integers(0, 5),
)
def test_a_baseline_is_exact_and_finite_on_extreme_values(x, flip):
    """Contributions sum to the log-odds, the matrix path equals the frame path, a stored
    baseline predicts the same, on missing, negative and huge values."""
    values = pd.Series(x, dtype="Float64")
    frame = pd.DataFrame({"a": values, "b": values[::-1].to_numpy()})
    frame["y"] = np.arange(len(frame)) % 2 == (flip % 2)
    model = LogisticBaseline(label="y", columns=("a", "b"), name="rule").fit(frame)
    p = model.predict_proba(frame)
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    contributions = model.contributions(frame)
    odds = contributions.sum(axis=1).to_numpy()
    raw = model.raw_scores(frame[["a", "b"]].to_numpy(dtype=float, na_value=np.nan))
    np.testing.assert_allclose(odds, raw, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(model.calibrate(raw), p, rtol=1e-12)
    again = LogisticBaseline.from_parts(json.loads(json.dumps(model.to_parts())))
    np.testing.assert_allclose(again.predict_proba(frame), p, rtol=1e-12)


def test_a_first_model_worse_than_a_baseline_registers_the_baseline(store, dataset):
    from nextbest.cli.models import train_record, train_table
    from training.pipeline import TrainReport

    result = train_churn(dataset, horizon_days=H, model=FLAT)
    assert result.metrics.loc["model", "roc_auc"] == pytest.approx(0.5)
    best = result.metrics.drop("model")["roc_auc"].idxmax()
    decision = log_classifier("churn", result, dataset, params={"horizon_days": H}, root=store)
    assert decision.scorer == best and decision.promoted
    assert decision.challenger_score == pytest.approx(result.metrics.loc[best, "roc_auc"])

    model, version = load_churn("champion")
    assert isinstance(model, LogisticBaseline) and version == decision.version
    valid = dataset["valid"]
    np.testing.assert_allclose(
        model.predict_proba(valid), result.baselines[best].predict_proba(valid), rtol=1e-12
    )
    # the version and its run say what it is and why
    client = MlflowClient()
    tags = client.get_model_version(CHURN_MODEL, version).tags
    assert tags["nextbest.scorer"] == best
    run = client.get_run(decision.run_id)
    assert run.data.tags["nextbest.scorer"] == best
    assert "does not beat" in run.data.tags["nextbest.scorer_reason"]
    # and MLflow's own loader predicts with it, as for any model
    pyfunc = mlflow.pyfunc.load_model(f"models:/{CHURN_MODEL}@champion")
    out = pyfunc.predict(valid.head(50))
    np.testing.assert_allclose(
        out["churn_probability"].to_numpy(), model.predict_proba(valid.head(50)), rtol=1e-9
    )

    # `train`'s table and JSON say which was registered and why
    report = TrainReport(as_of="2025-06-30", decisions=[decision])
    report.metrics["churn"] = result.metrics
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(train_table(report))
    assert f"{best} baseline" in console.export_text()
    record = train_record(report)["models"][0]
    assert record["registered"] == best and "does not beat" in record["registered_reason"]


def test_a_model_that_beats_its_baselines_is_registered_itself(store, dataset):
    result = train_churn(dataset, horizon_days=H)
    assert result.metrics.loc["model", "roc_auc"] > result.metrics.drop("model")["roc_auc"].max()
    decision = log_classifier("churn", result, dataset, params={"horizon_days": H}, root=store)
    assert decision.scorer == "model"
    model, _ = load_churn("champion")
    assert isinstance(model, ChurnModel)


def test_a_baseline_champion_serves_scores_drivers_and_online_updates(
    world, small_world_dir, dataset, tmp_path, monkeypatch
):
    """The service loads a baseline champion as it loads a model: every buyer's churn
    probability is the baseline's, its drivers come from the baseline's contributions,
    and the one-row online path gives the same probability."""
    from features.io import read_snapshot
    from serving.memory.snapshot import load_snapshot
    from training import registry

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "copy"
    relocate_store(world, root)
    shutil.rmtree(root / "features" / "prepared", ignore_errors=True)
    registry.configure(root / "mlruns")
    champion = MlflowClient().get_model_version_by_alias(CHURN_MODEL, "champion")
    settings_tag = champion.tags[FEATURES_TAG]

    result = train_churn(dataset, horizon_days=H, model=FLAT)
    decision = log_classifier(
        "churn",
        result,
        dataset,
        params={"horizon_days": H},
        root=root / "mlruns",
        tags={FEATURES_TAG: settings_tag},
        promote=False,
    )
    assert decision.scorer != "model"
    MlflowClient().set_registered_model_alias(CHURN_MODEL, "champion", decision.version)
    baseline = result.baselines[decision.scorer]

    state = load_snapshot(data=small_world_dir, features=root / "features")
    assert isinstance(state.churn_model, LogisticBaseline)
    customers, _, _ = read_snapshot(root / "features")
    buyers = customers[customers["purchase_days"] > 0].reset_index(drop=True)
    expected = dict(zip(buyers["customer_id"], baseline.predict_proba(buyers), strict=True))
    served = {c: state.customers[c].churn_probability for c in expected}
    np.testing.assert_allclose(list(served.values()), list(expected.values()), rtol=1e-9)
    someone = buyers["customer_id"].iloc[0]
    online = state.churn_probability(state.churn_row[someone])
    assert online == pytest.approx(expected[someone], rel=1e-9)
    codes = {code for c in expected for code in (state.customers[c].churn_drivers or ())}
    assert codes and {code.rsplit("_", 1)[0] for code in codes} <= set(baseline.features_)
