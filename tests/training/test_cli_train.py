"""`nextbest train` and `nextbest score` as a user runs them, on a real MLflow store."""

from __future__ import annotations

import json

import pandas as pd

from conftest import AS_OF
from test_cli import nextbest


def test_train_then_score(small_world_dir, tmp_path):
    mlruns, out = tmp_path / "mlruns", tmp_path / "scores"
    as_of = AS_OF.date().isoformat()
    args = ("--data", str(small_world_dir), "--as-of", as_of, "--mlruns", str(mlruns))

    missing = nextbest("score", *args, "--out", str(out))
    assert missing.returncode == 2
    assert "no champion for nextbest-churn: run `nextbest train` first" in missing.stderr
    assert not out.exists()

    trained = nextbest("train", *args)
    assert trained.returncode == 0, trained.stderr
    for kind in ("churn", "clv", "replenishment"):
        assert kind in trained.stdout
    assert trained.stdout.count("promoted") == 3, trained.stdout
    assert "INFO" not in trained.stderr  # MLflow's chatter stays quiet

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

    # features built once and scored from the snapshot give the same scores
    snapshot = tmp_path / "features"
    built = nextbest(
        "features", "--data", str(small_world_dir), "--as-of", as_of, "--out", str(snapshot)
    )
    assert built.returncode == 0, built.stderr
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


def test_train_refuses_an_as_of_with_too_little_history(small_world_dir, tmp_path):
    mlruns = tmp_path / "mlruns"
    args = ("--data", str(small_world_dir), "--mlruns", str(mlruns))
    result = nextbest("train", *args, "--as-of", "2023-09-01")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unexpected" not in result.stderr
    assert (
        "too little history before AS_OF 2023-09-01 for 6 training cutoffs of 90 days" in lines[0]
    )
    assert "need data from 2022-12-05" in lines[0] and "first order is on 2023-" in lines[0]


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
