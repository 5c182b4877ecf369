"""`nextbest train` and `nextbest score` as a user runs them, on a real MLflow store."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import AS_OF
from test_cli import nextbest

pytestmark = pytest.mark.heavy  # trains models or starts Spark: not in `make test-fast`


def test_train_then_score(small_world_dir, world, tmp_path):
    """`nextbest train` as the shared ``world`` fixture ran it on a fresh store (its output
    kept), then `nextbest score` on that store."""
    out = tmp_path / "scores"
    as_of = AS_OF.date().isoformat()
    empty = ("--data", str(small_world_dir), "--as-of", as_of, "--mlruns", str(tmp_path / "none"))
    missing = nextbest("score", *empty, "--out", str(out))
    assert missing.returncode == 2
    assert "no champion for nextbest-churn: run `nextbest train` first" in missing.stderr
    assert not out.exists()

    mlruns = world / "mlruns"
    args = ("--data", str(small_world_dir), "--as-of", as_of, "--mlruns", str(mlruns))
    stdout, stderr = (world / "train.out").read_text(), (world / "train.err").read_text()
    for kind in ("churn", "clv", "replenishment", "next_product"):
        assert kind in stdout
    assert stdout.count("promoted: no champion yet") == 4, stdout
    assert "…" not in stdout  # a table printed to a pipe is not cut to 80 columns
    for stage in ("validating", "churn examples", "churn model", "CLV model", "done in"):
        assert f"train: {stage}" in stderr, stderr  # plain stage lines
    assert "INFO" not in stderr  # MLflow's chatter stays quiet

    scored = nextbest("score", *args, "--out", str(out))
    assert scored.returncode == 0, scored.stderr
    churn = pd.read_parquet(out / "churn.parquet")
    assert churn["churn_probability"].between(0, 1).all() and churn["customer_id"].is_unique
    # purpose limitation: only customers with marketing consent in force are scored
    consents = pd.read_parquet(small_world_dir / "consents.parquet")
    consents = consents[(consents["purpose"] == "marketing") & (consents["recorded_at"] <= AS_OF)]
    latest = consents.sort_values("recorded_at").drop_duplicates("customer_id", keep="last")
    allowed = set(latest.loc[latest["granted"], "customer_id"])
    assert set(churn["customer_id"]) <= allowed
    meta = json.loads((out / "scores.json").read_text())
    assert meta["withheld"]["rows"]["churn"] > 0 and "consent" in meta["withheld"]["reason"]
    pairs = pd.read_parquet(out / "replenishment.parquet")
    assert (pairs["next_purchase_p10_at"] <= pairs["expected_next_purchase_at"]).all()
    assert (pairs["expected_next_purchase_at"] <= pairs["next_purchase_p90_at"]).all()
    assert pairs["repurchase_probability"].between(0, 1).all()
    clv = pd.read_parquet(out / "clv.parquet")
    assert set(clv["customer_id"]) == set(churn["customer_id"]) and (clv["clv_12m"] >= 0).all()

    # features built once (the fixture's snapshot) and scored from it give the same scores
    snapshot = world / "features"
    again = tmp_path / "again"
    result = nextbest(
        "score",
        "--features",
        str(snapshot),
        "--data",
        str(small_world_dir),
        "--mlruns",
        str(mlruns),
        "--out",
        str(again),
    )
    assert result.returncode == 0, result.stderr
    for name in ("churn", "clv", "replenishment"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(out / f"{name}.parquet"), pd.read_parquet(again / f"{name}.parquet")
        )
    both = nextbest("score", "--features", str(snapshot), *args, "--out", str(tmp_path / "x"))
    assert both.returncode == 2 and "either --as-of or --features DIR" in both.stderr

    # a data scientist loads every champion with MLflow's pyfunc and predicts on the snapshot
    _pyfunc_predictions(mlruns, snapshot, tmp_path / "pyfunc", as_of)
    for name, keys in (("churn", ["customer_id"]), ("clv", ["customer_id"])):
        scored = pd.read_parquet(out / f"{name}.parquet")
        mine = pd.read_parquet(tmp_path / "pyfunc" / f"{name}.parquet")
        joined = scored.merge(mine, on=keys, suffixes=("", "_pyfunc"))
        assert len(joined) == len(scored)
        column = "churn_probability" if name == "churn" else "clv_12m"
        np.testing.assert_allclose(joined[column], joined[f"{column}_pyfunc"], rtol=1e-9)
    pairs_scored = pd.read_parquet(out / "replenishment.parquet")
    pairs_mine = pd.read_parquet(tmp_path / "pyfunc" / "replenishment.parquet")
    joined = pairs_scored.merge(pairs_mine, on=["customer_id", "product_id"])
    assert len(joined) == len(pairs_scored)
    np.testing.assert_allclose(
        joined["repurchase_probability_x"], joined["repurchase_probability_y"], rtol=1e-9
    )
    assert (joined["expected_next_purchase_at"] == joined["runout_p50"]).all()

    # a folder without a consents table: nobody may be scored, and the user is told so
    bare = tmp_path / "no-consents"
    bare.mkdir()
    for path in small_world_dir.glob("*.parquet"):
        if path.name != "consents.parquet":
            (bare / path.name).symlink_to(path)
    empty = nextbest(
        "score", "--features", str(snapshot), "--data", str(bare), "--mlruns", str(mlruns),
        "--out", str(tmp_path / "empty"),
    )  # fmt: skip
    assert empty.returncode == 0, empty.stderr
    assert "warning: no customer has marketing consent in force" in empty.stderr
    assert "0 scores written" in empty.stderr


PYFUNC = """
import sys
import mlflow
import pandas as pd
from training.replenishment import pair_frame_from

uri, snapshot, out, as_of = sys.argv[1:]
mlflow.set_tracking_uri(uri)
customers = pd.read_parquet(f"{snapshot}/customers.parquet")
pairs = pair_frame_from(customers, pd.read_parquet(f"{snapshot}/pairs.parquet"), as_of)
for name, frame in (("churn", customers), ("clv", customers), ("replenishment", pairs)):
    model = mlflow.pyfunc.load_model(f"models:/nextbest-{name}@champion")
    model.predict(frame).to_parquet(f"{out}/{name}.parquet")
"""


def _pyfunc_predictions(mlruns, snapshot, out, as_of) -> None:
    """What ``mlflow.pyfunc.load_model(...).predict`` gives for each champion, in a fresh
    Python process (as a data scientist's notebook would)."""
    out.mkdir()
    uri = f"sqlite:///{mlruns / 'mlflow.db'}"
    args = [sys.executable, "-c", PYFUNC, uri, str(snapshot), str(out), f"{as_of}T00:00:00Z"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_train_refuses_an_as_of_with_too_little_history(small_world_dir, tmp_path):
    mlruns = tmp_path / "mlruns"
    args = ("--data", str(small_world_dir), "--mlruns", str(mlruns))
    result = nextbest("train", *args, "--as-of", "2023-09-01")
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip().splitlines()[-1]  # after the stage lines, one error line
    assert error.startswith("nextbest: error: ") and "unexpected" not in result.stderr
    assert "too little history before AS_OF 2023-09-01 for 6 training cutoffs of 90 days" in error
    assert "need data from 2022-12-05" in error and "first order is on 2023-" in error


def test_train_rejects_a_bad_horizon(small_world_dir, tmp_path):
    result = nextbest(
        "train",
        "--data",
        str(small_world_dir),
        "--as-of",
        "2025-06-30",
        "--churn-horizon-days",
        "0",
        "--mlruns",
        str(tmp_path / "m"),
    )
    assert result.returncode == 2
    assert "horizon_days must be >= 1" in result.stderr


def test_a_model_trained_with_a_30_day_horizon_is_used_end_to_end(small_world_dir, world, tmp_path):
    """The settings travel with the champions: `features`, `score` and `suggest` build with
    them; a snapshot built otherwise, and champions that disagree, are refused in one line."""
    from mlflow import MlflowClient

    from training import registry

    as_of = AS_OF.date().isoformat()
    mlruns = tmp_path / "mlruns"
    data = ("--data", str(small_world_dir), "--as-of", as_of, "--mlruns", str(mlruns))
    trained = nextbest(
        "train", *data, "--churn-horizon-days", "30", "--sample-customers", "1200", "--json"
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    record = json.loads(trained.stdout)  # --json: train's table as one document
    churn = next(m for m in record["models"] if m["model"] == "churn")
    assert (
        churn["promoted"] and churn["metric"] == "roc_auc" and "rfm_logistic" in churn["baselines"]
    )
    # the next product is judged on hit@1 too, against P-TopFreq and the last basket
    following = next(m for m in record["models"] if m["model"] == "next_product")
    assert {"model", "p_topfreq", "repeat_last_basket"} <= set(following["hit_at_1"])
    assert all(0 <= v <= 1 for v in following["hit_at_1"].values())
    assert "hit_at_1" not in churn

    snapshot = tmp_path / "features"
    built = nextbest("features", *data, "--out", str(snapshot))
    assert built.returncode == 0, built.stderr[-3000:]
    assert json.loads((snapshot / "manifest.json").read_text())["config"]["horizon_days"] == 30
    customers = pd.read_parquet(snapshot / "customers.parquet")
    assert "expected_purchases_30d" in customers.columns

    store = ("--data", str(small_world_dir), "--mlruns", str(mlruns))
    for how in (("--features", str(snapshot)), ("--as-of", as_of)):
        out = tmp_path / f"scores-{how[0]}"
        scored = nextbest("score", *store, *how, "--out", str(out), "--json")
        assert scored.returncode == 0, scored.stderr[-3000:]
        assert json.loads(scored.stdout) == {
            "out": str(out),
            **json.loads((out / "scores.json").read_text()),
        }
    for how in (("--features", str(snapshot)), ()):
        out = tmp_path / f"suggest{len(how)}"
        suggested = nextbest("suggest", *data, *how, "--out", str(out))
        assert suggested.returncode == 0, suggested.stderr[-3000:]
        assert len(pd.read_parquet(out / "suggestions.parquet")) > 0

    # a snapshot built with the defaults (the shared world's) cannot be scored by them
    other = nextbest("suggest", *data, "--features", str(world / "features"), "--out", "x")
    assert other.returncode == 2 and other.stderr.count("error:") == 1, other.stderr
    assert "horizon_days=90" in other.stderr and "horizon_days=30" in other.stderr
    asked = nextbest("score", *data, "--churn-horizon-days", "90", "--out", str(tmp_path / "s"))
    assert asked.returncode == 2 and "the champions were trained with" in asked.stderr

    # champions that disagree (one retagged as if trained with the default horizon)
    registry.configure(mlruns)
    version = registry.champion_versions()["clv"]
    settings = json.loads(
        MlflowClient()
        .get_model_version(registry.REGISTERED["clv"], version)
        .tags[registry.FEATURES_TAG]
    )
    MlflowClient().set_model_version_tag(
        registry.REGISTERED["clv"],
        version,
        registry.FEATURES_TAG,
        json.dumps(settings | {"horizon_days": 90}),
    )
    mixed = nextbest("score", *data, "--out", str(tmp_path / "mixed"))
    assert mixed.returncode == 2
    assert mixed.returncode == 2 and mixed.stderr.count("error:") == 1, mixed.stderr
    assert "the champions were trained with different feature settings" in mixed.stderr
    assert not (tmp_path / "mixed").exists()
