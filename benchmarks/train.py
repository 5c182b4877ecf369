"""Training and batch scoring at shop scale (default: the 1M-customer benchmark world).

Each stage runs in its own process (time and peak memory its own). Example tables and the
feature snapshot are cached in data/bench/train-N/ after the first run, since building
them (features at 7 + 5 cutoffs) takes minutes and is measured by benchmarks/features.py.

- churn training: tree-size selection, fit, calibration, baselines and metrics
  (:func:`training.churn.train_churn`); reference: one plain ``LGBMClassifier`` (31 leaves,
  300 trees, 2 threads) on the same fitting examples, nothing else;
- replenishment and CLV training, and logging all three to a fresh MLflow store;
- scoring: every customer and pair of a feature snapshot at as_of with the champions
  loaded from that store, written to Parquet (:func:`training.scoring.score`);
  reference: the bare churn booster's ``predict`` on the same customers.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks.features import AS_OF, _child, _measure, _world

H, W = 90, 14


def _cache(folder: Path) -> Path:
    return folder.parent / f"train-{folder.name.removeprefix('world-')}"


def _config():
    from features.config import FeatureConfig

    return FeatureConfig(horizon_days=H, window_days=W)


def _read(cache: Path, kind: str) -> dict:
    import pandas as pd

    return {s: pd.read_parquet(cache / f"{kind}-{s}.parquet") for s in ("train", "valid")}


def _stage_churn_examples(folder: Path) -> str:
    from training.dataset import churn_dataset, training_cutoffs

    cache = _cache(folder)
    if (cache / "churn-valid.parquet").is_file():
        return "cached"
    cache.mkdir(parents=True, exist_ok=True)
    dataset = churn_dataset(folder, _config(), training_cutoffs(AS_OF, horizon_days=H))
    for split, frame in dataset.items():
        frame.to_parquet(cache / f"churn-{split}.parquet")
    return f"{len(dataset['train']):,} training, {len(dataset['valid']):,} validation examples"


def _stage_pair_examples(folder: Path) -> str:
    from training.dataset import training_cutoffs
    from training.pipeline import REPLENISHMENT_CUTOFFS
    from training.replenishment import replenishment_dataset

    cache = _cache(folder)
    if (cache / "pairs-valid.parquet").is_file():
        return "cached"
    cutoffs = training_cutoffs(AS_OF, horizon_days=W, n_train=REPLENISHMENT_CUTOFFS, step_days=W)
    dataset = replenishment_dataset(folder, _config(), cutoffs)
    for split, frame in dataset.items():
        frame.to_parquet(cache / f"pairs-{split}.parquet")
    return f"{len(dataset['train']):,} training, {len(dataset['valid']):,} validation pairs"


def _stage_snapshot(folder: Path) -> str:
    from features.build import build_features
    from features.io import write_snapshot

    snapshot = _cache(folder) / "features"
    if (snapshot / "manifest.json").is_file():
        return "cached"
    built = build_features(folder, as_of=AS_OF, config=_config())
    write_snapshot(built, _config(), folder, snapshot)
    return f"{len(built.customers):,} customers, {len(built.pairs):,} pairs"


def _stage_plain_lightgbm(folder: Path) -> str:
    import lightgbm as lgb

    from training.classifier import feature_columns, model_frame
    from training.dataset import calibration_split

    train, _ = calibration_split(_read(_cache(folder), "churn")["train"])
    features = feature_columns(train)
    x, y = model_frame(train, features), train["churned"].to_numpy()
    start = time.perf_counter()
    lgb.LGBMClassifier(n_estimators=300, num_leaves=31, n_jobs=2, verbose=-1).fit(x, y)
    _stage_plain_lightgbm.seconds = time.perf_counter() - start
    return f"{len(train):,} rows x {len(features)} features"


def _stage_churn_training(folder: Path) -> str:
    from training import registry, tracking
    from training.churn import train_churn

    dataset = _read(_cache(folder), "churn")
    start = time.perf_counter()
    result = train_churn(dataset, horizon_days=H)
    _stage_churn_training.seconds = time.perf_counter() - start
    registry.configure(_store(folder))
    logged = time.perf_counter()
    tracking.log_classifier(
        "churn", result, dataset, params={"benchmark": True}, root=_store(folder)
    )
    auc = result.metrics["roc_auc"]
    return (
        f"AUC {auc['model']:.3f} vs recency {auc['recency']:.3f}; "
        f"{result.model.num_leaves} leaves; MLflow log {time.perf_counter() - logged:.1f} s"
    )


def _stage_replenishment_training(folder: Path) -> str:
    from training import registry, tracking
    from training.replenishment import train_replenishment

    dataset = _read(_cache(folder), "pairs")
    start = time.perf_counter()
    result = train_replenishment(dataset, window_days=W)
    _stage_replenishment_training.seconds = time.perf_counter() - start
    registry.configure(_store(folder))
    tracking.log_classifier(
        "replenishment", result, dataset, params={"benchmark": True}, root=_store(folder)
    )
    auc = result.metrics["roc_auc"]
    return f"AUC {auc['model']:.3f} vs overdue ratio {auc['overdue_ratio']:.3f}"


def _stage_clv_training(folder: Path) -> str:
    from training import registry, tracking
    from training.clv import clv_holdout, train_clv

    valid = _read(_cache(folder), "churn")["valid"]
    start = time.perf_counter()
    result = train_clv(folder, valid, config=_config())
    _stage_clv_training.seconds = time.perf_counter() - start
    holdout = clv_holdout(folder, valid, horizon_days=H)
    registry.configure(_store(folder))
    tracking.log_clv(result, holdout, params={}, horizon_days=H, root=_store(folder))
    mae = result.metrics["mae"]
    return f"MAE {mae['model']:.1f} vs historical rate {mae['historical_rate']:.1f}"


def _stage_score(folder: Path) -> str:
    import pandas as pd

    from training import registry, scoring

    registry.configure(_store(folder))
    out = _cache(folder) / "scores"
    start = time.perf_counter()
    consents = pd.read_parquet(folder / "consents.parquet")
    meta = scoring.score(
        config=_config(),
        out=out,
        snapshot=_cache(folder) / "features",
        consents=consents,
        overwrite=True,
    )
    _stage_score.seconds = time.perf_counter() - start
    return ", ".join(f"{name} {n:,}" for name, n in meta["rows"].items())


def _stage_score_reference(folder: Path) -> str:
    import pandas as pd

    from training import registry
    from training.classifier import model_frame

    registry.configure(_store(folder))
    model, _ = registry.load_churn("champion")
    start = time.perf_counter()
    customers = pd.read_parquet(_cache(folder) / "features" / "customers.parquet")
    buyers = customers[customers["purchase_days"] > 0]
    model.booster_.predict(model_frame(buyers, model.features_), raw_score=True)
    _stage_score_reference.seconds = time.perf_counter() - start
    return f"{len(buyers):,} customers, churn booster only"


def _store(folder: Path) -> Path:
    return _cache(folder) / "mlruns"


STAGES = {
    "churn examples": _stage_churn_examples,
    "pair examples": _stage_pair_examples,
    "feature snapshot": _stage_snapshot,
    "plain LightGBM": _stage_plain_lightgbm,
    "churn training": _stage_churn_training,
    "replenishment training": _stage_replenishment_training,
    "CLV training": _stage_clv_training,
    "score": _stage_score,
    "score reference": _stage_score_reference,
}


def run(customers: int) -> None:
    folder = _world(customers)
    shutil.rmtree(_store(folder), ignore_errors=True)  # a fresh registry every run
    print(f"\ntraining and scoring at {customers:,} customers ({folder}), as of {AS_OF}")
    print(f"{'stage':>22} {'seconds':>8} {'peak MB':>8}  note")
    results = {}
    for stage in STAGES:
        results[stage] = r = _measure(stage, folder, "benchmarks.train")
        print(f"{stage:>22} {r['seconds']:>8.2f} {r['peak_mb']:>8.0f}  {r['note']}", flush=True)
    churn, plain = results["churn training"]["seconds"], results["plain LightGBM"]["seconds"]
    score, bare = results["score"]["seconds"], results["score reference"]["seconds"]
    print(
        f"churn training {churn:.1f} s (goal <= 30 s), {churn / plain:.1f}x one plain LightGBM"
        f" fit; scoring {score:.1f} s (goal <= 10 s), {score / bare:.1f}x the bare churn booster"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3:
        _child(sys.argv[1], sys.argv[2], STAGES)
    else:
        run(int(os.environ.get("BENCH_TRAIN_CUSTOMERS", "1000000")))
