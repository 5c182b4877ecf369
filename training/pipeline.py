"""Train, register and gate all models for one ``as_of``; score with the champions.

``train`` is what ``nextbest train`` runs:

1. churn examples at the cutoffs of :func:`training.dataset.training_cutoffs` (H), the churn
   model and its baselines;
2. replenishment examples at cutoffs one window W apart (skipped, and said so, when the
   data has no customer x consumable pairs, as in CDNOW);
3. CLV fitted at the churn validation cutoff, judged on the following H days' spend;
4. each logged to its MLflow experiment, registered, and gated against its champion.

``score`` is what ``nextbest score`` runs: features at ``as_of`` scored by the champions,
written atomically as ``churn.parquet``, ``replenishment.parquet``, ``clv.parquet`` and
``scores.json`` (as_of, model versions, rows, rows withheld for lack of marketing consent).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from features.build import FeatureTables, build_features
from features.config import FeatureConfig
from features.inputs import as_inputs, order_span
from features.io import read_snapshot
from features.manifest import FEATURES_VERSION, describe, file_digest
from features.time import as_utc
from nextbest.errors import BadInputError
from nextbest.io import atomic_folder, locate_tables, write_table
from training.churn import train_churn
from training.clv import clv_holdout, train_clv
from training.dataset import check_history, churn_dataset, training_cutoffs
from training.drift import reference_profile
from training.replenishment import pair_frame_from, replenishment_dataset, train_replenishment

#: The stages :func:`train` reports through ``progress``, in order (replenishment's two are
#: skipped when the data has no consumables).
TRAIN_STAGES = (
    "churn examples",
    "churn model",
    "CLV model",
    "replenishment examples",
    "replenishment model",
)
#: Replenishment training cutoffs: this many, one repurchase window apart.
REPLENISHMENT_CUTOFFS = 4


def data_digest(folder: str | os.PathLike, config: FeatureConfig) -> str:
    """SHA-256 over the contract files' digests and the feature settings: two trainings
    with the same digest and as_of see the same examples."""
    files, _ = locate_tables(Path(folder))
    parts = {name: file_digest(path) for name, path in sorted(files.items())}
    text = json.dumps({"files": parts, "config": asdict(config)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class TrainReport:
    """What ``train`` did: the gate decisions and each model's validation metrics."""

    as_of: str
    decisions: list = field(default_factory=list)
    metrics: dict[str, pd.DataFrame] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # kind -> why


def train(
    tables,
    *,
    as_of,
    config: FeatureConfig,
    root: str | os.PathLike = "mlruns",
    margin: float = 0.0,
    confidence: float = 0.95,
    tags: dict | None = None,
    progress=lambda message: None,
    promote: bool = True,
    current: FeatureTables | None = None,
) -> TrainReport:
    """Train, log, register and gate churn, replenishment and CLV models for ``as_of``.

    Champions move only after every model is trained, logged and gated (with ``promote``;
    else the caller moves them with :func:`training.tracking.promote_champions`). If any
    step fails, the versions this call registered are deleted (their runs stay, marked
    failed) and the champions are untouched. ``current``: the features at ``as_of``, if
    already built (the churn run logs their reference profile for drift reports).
    """
    from training import recovery, tracking

    as_of = as_utc(as_of)
    report = TrainReport(as_of=as_of.isoformat())
    tags = {**(tags or {}), **recovery.process_tags(), recovery.BATCH: uuid.uuid4().hex}
    try:
        gate = {"margin": margin, "confidence": confidence}
        _train(tables, as_of, config, root, gate, tags, progress, current, report)
        recovery.complete([d.run_id for d in report.decisions], [d.kind for d in report.decisions])
    except BaseException:
        with contextlib.suppress(Exception):  # if the store failed, that is the error
            tracking.discard(report.decisions)
        raise
    if promote:
        tracking.promote_champions(report.decisions)
    return report


def _train(tables, as_of, config, root, gate, tags, progress, current, report) -> None:
    from training import tracking

    inputs = as_inputs(tables)
    h, w = config.horizon_days, config.window_days
    common = {"as_of": report.as_of, "features_version": FEATURES_VERSION}
    manifest = {"config": asdict(config), "columns": describe(config), **common}
    # every run: same gate, store and tags; champions move later, all at once
    logging = {**gate, "root": root, "tags": tags, "promote": False}

    cutoffs = training_cutoffs(as_of, horizon_days=h)
    replenishment_cutoffs = training_cutoffs(
        as_of, horizon_days=w, n_train=REPLENISHMENT_CUTOFFS, step_days=w
    )
    first_order, _ = order_span(inputs)
    check_history(first_order, as_of, cutoffs, h)  # before any work: one line, exit 2
    check_history(first_order, as_of, replenishment_cutoffs, w)
    progress(f"churn examples at {len(cutoffs.train) + 1} cutoffs")
    dataset = churn_dataset(inputs, config, cutoffs)
    progress("churn model")
    churn = train_churn(dataset, horizon_days=h)
    if current is None:
        current = build_features(inputs, as_of=as_of, config=config)
    buyers = current.customers[current.customers["purchase_days"] > 0]
    profile = reference_profile(
        buyers, churn.model.features_, churn.model.predict_proba(buyers), as_of
    )
    params = {**common, "horizon_days": h, **_cutoff_params(cutoffs)}
    report.decisions.append(
        tracking.log_churn(
            churn, dataset, params=params, manifest=manifest, profile=profile, **logging
        )
    )
    report.metrics["churn"] = churn.metrics

    progress("CLV model")
    clv = train_clv(inputs, dataset["valid"], config=config)
    holdout = clv_holdout(inputs, dataset["valid"], horizon_days=h)
    params = {**common, "horizon_days": h, "fit_cutoff": cutoffs.valid.isoformat()}
    report.decisions.append(
        tracking.log_clv(clv, holdout, params=params, horizon_days=h, **logging)
    )
    report.metrics["clv"] = clv.metrics

    cutoffs = replenishment_cutoffs
    progress(f"replenishment examples at {len(cutoffs.train) + 1} cutoffs")
    pairs = replenishment_dataset(inputs, config, cutoffs)
    why = _cannot_train(pairs, "repurchased")
    if why:
        report.skipped["replenishment"] = why
        return
    progress("replenishment model")
    replenishment = train_replenishment(pairs, window_days=w)
    params = {**common, "window_days": w, **_cutoff_params(cutoffs)}
    report.decisions.append(
        tracking.log_replenishment(
            replenishment, pairs, params=params, manifest=manifest, **logging
        )
    )
    report.metrics["replenishment"] = replenishment.metrics


def _cutoff_params(cutoffs) -> dict:
    return {
        "train_cutoffs": ",".join(c.date().isoformat() for c in cutoffs.train),
        "valid_cutoff": cutoffs.valid.isoformat(),
    }


def _cannot_train(dataset: dict[str, pd.DataFrame], label: str) -> str | None:
    for split, frame in dataset.items():
        if frame.empty:
            return f"no customer x consumable pairs in the {split} examples"
        if frame[label].nunique() < 2:
            return f"{label} has a single outcome in the {split} examples"
    return None


def load_champions() -> tuple[dict, dict[str, str]]:
    """The champion models by kind, and their versions. A missing churn or CLV champion is
    an error; a missing replenishment champion is not (data without consumables has none)."""
    from mlflow.exceptions import MlflowException

    from training import tracking

    champions, versions = {}, {}
    for kind in tracking.REGISTERED:
        try:
            champions[kind], versions[kind] = tracking.load(kind, "champion")
        except MlflowException as error:
            if kind == "replenishment":
                continue
            raise BadInputError(
                f"no champion for {tracking.REGISTERED[kind]}: run `nextbest train` first"
                f" ({type(error).__name__})"
            ) from error
    return champions, versions


def score_frames(
    customers: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    as_of,
    champions: dict,
    versions: dict[str, str],
    config: FeatureConfig,
) -> dict[str, pd.DataFrame]:
    """Score feature tables (customers and pairs at ``as_of``) with ``champions``: churn and
    CLV for every customer who has bought, replenishment for every pair."""
    as_of = as_utc(as_of)
    frames = {}
    buyers = customers[customers["purchase_days"] > 0]
    churn = champions["churn"]
    _expect(churn.features_, buyers, "churn", versions["churn"], config)
    frames["churn"] = pd.DataFrame(
        {"customer_id": buyers["customer_id"], "churn_probability": churn.predict_proba(buyers)}
    )
    h, clv = config.horizon_days, champions["clv"]
    frames["clv"] = clv.predict(buyers, horizon_days=h)[
        [
            "customer_id",
            "p_alive",
            f"expected_purchases_{h}d",
            "expected_order_value",
            f"expected_spend_{h}d",
            f"clv_{clv.clv_months}m",
        ]
    ]
    if "replenishment" in champions:
        model = champions["replenishment"]
        frame = pair_frame_from(customers, pairs, as_of)
        _expect(
            model.classifier.features_, frame, "replenishment", versions["replenishment"], config
        )
        predicted = model.predict(frame)
        frames["replenishment"] = pd.DataFrame(
            {
                "customer_id": frame["customer_id"],
                "product_id": frame["product_id"],
                "repurchase_probability": predicted["repurchase_probability"],
                "expected_next_purchase_at": predicted["runout_p50"],
                "next_purchase_p10_at": predicted["runout_p10"],
                "next_purchase_p90_at": predicted["runout_p90"],
            }
        )
    return {name: frame.reset_index(drop=True) for name, frame in frames.items()}


def score(
    tables=None,
    *,
    as_of=None,
    config: FeatureConfig,
    out: str | os.PathLike,
    snapshot: str | os.PathLike | None = None,
    consents: pd.DataFrame | None = None,
    overwrite: bool = False,
) -> dict:
    """Score every customer (and pair) with the champion models and write ``out``: features
    built from ``tables`` at ``as_of``, or read from a ``snapshot`` (``nextbest features``).

    Purpose limitation: the three models serve marketing (:data:`tracking.PURPOSES`), so
    customers without marketing consent in force at ``as_of`` (``consents``, default
    ``tables.consents``) get no score; ``scores.json`` counts them under ``withheld``.
    """
    from nextbest.privacy import consent_in_force
    from training.tracking import PURPOSES, REGISTERED

    champions, versions = load_champions()
    if snapshot is not None:
        customers, pairs, manifest = read_snapshot(snapshot)
        as_of = as_utc(manifest["as_of"])
        built_with = manifest["config"]
        config = FeatureConfig(
            **{**built_with, "engagement_windows": tuple(built_with["engagement_windows"])}
        )
    else:
        as_of = as_utc(as_of)
        built = build_features(tables, as_of=as_of, config=config)
        customers, pairs = built.customers, built.pairs
    consents = tables.consents if consents is None and tables is not None else consents
    if consents is None:
        raise BadInputError("score: the consents table is needed (marketing scores need consent)")
    allowed = consent_in_force(consents, "marketing", pd.Timestamp(as_of))
    frames = score_frames(
        customers, pairs, as_of=as_of, champions=champions, versions=versions, config=config
    )
    withheld = {}
    for name, frame in frames.items():
        if PURPOSES[name] == "marketing":
            keep = frame["customer_id"].isin(allowed).to_numpy()
            withheld[name] = int((~keep).sum())
            frames[name] = frame[keep].reset_index(drop=True)
    meta = {
        "as_of": as_of.isoformat(),
        "models": {REGISTERED[k]: v for k, v in versions.items()},
        "rows": {name: len(frame) for name, frame in frames.items()},
        "withheld": {
            "reason": "no marketing consent in force at as_of (the models serve marketing)",
            "rows": withheld,
        },
        "config": asdict(config),
    }
    with atomic_folder(out, overwrite=overwrite) as tmp:
        for name, frame in frames.items():
            write_table(frame, tmp / f"{name}.parquet")
        (tmp / "scores.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def _expect(features: list[str], frame: pd.DataFrame, kind: str, version: str, config) -> None:
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise BadInputError(
            f"{kind} model version {version} expects features {missing[:3]} that a build with"
            f" horizon {config.horizon_days} days and window {config.window_days} days does not"
            " make: score with the settings it was trained with"
        )
