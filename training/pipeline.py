"""Train, register and gate all models for one ``as_of``; score with the champions.

``train`` is what ``nextbest train`` runs:

1. churn examples at the cutoffs of :func:`training.dataset.training_cutoffs` (H), the churn
   model and its baselines;
2. replenishment examples at cutoffs one window W apart (skipped, and said so, when the
   data has no customer x consumable pairs, as in CDNOW);
3. CLV fitted at the churn validation cutoff, judged on the following H days' spend;
4. next product: candidate examples at cutoffs one next-product window apart (skipped, and
   said so, when the candidates' outcomes are all one);
5. each logged to its MLflow experiment, registered, and gated against its champion.

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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from cdp.io import locate_tables
from cdp.time import AsOf, as_utc
from features.build import FeatureTables, build_features
from features.config import FeatureConfig
from features.inputs import Tables, as_inputs, order_span
from features.manifest import FEATURES_VERSION, describe, file_digest
from training.churn import train_churn
from training.clv import clv_holdout, train_clv
from training.dataset import check_history, churn_dataset, training_cutoffs
from training.drift import reference_profile
from training.next_product import next_product_dataset, train_next_product
from training.replenishment import replenishment_dataset, train_replenishment

#: The stages :func:`train` reports through ``progress``, in order (replenishment's and next
#: product's model stages are skipped when their examples cannot train a model).
TRAIN_STAGES = (
    "churn examples",
    "churn model",
    "CLV model",
    "replenishment examples",
    "replenishment model",
    "next-product examples",
    "next-product model",
)
#: Replenishment training cutoffs: this many, one repurchase window apart.
REPLENISHMENT_CUTOFFS = 4
#: Next-product training cutoffs: this many, one next-product window apart.
NEXT_PRODUCT_CUTOFFS = 4


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
    tables: Tables,
    *,
    as_of: AsOf,
    config: FeatureConfig,
    root: str | os.PathLike = "mlruns",
    margin: float = 0.0,
    confidence: float = 0.95,
    tags: dict | None = None,
    progress: Callable[[str], None] = lambda message: None,
    promote: bool = True,
    current: FeatureTables | None = None,
) -> TrainReport:
    """Train, log, register and gate the churn, replenishment, CLV and next-product models
    for ``as_of``.

    Champions move only after every model is trained, logged and gated. If any step fails
    (or the process is stopped), the versions this call registered are deleted (their runs
    stay, marked failed) and the champions are untouched.

    Parameters
    ----------
    tables : Tables
        The contract tables (or folder) to train on.
    as_of : AsOf
        Train to score at this moment; settled to UTC here.
    config : FeatureConfig
        Feature settings (horizon H, window W, ...).
    root : str or os.PathLike, default "mlruns"
        The MLflow folder (see :func:`training.registry.configure`).
    margin, confidence : float
        The champion gate's settings (:class:`training.gate.Gate`).
    tags : dict, optional
        Tags for every run (the data digest, the retraining job).
    progress : callable, optional
        Called with the name of each stage as it begins.
    promote : bool, default True
        Move the champion aliases at the end; with False the caller moves them
        (:func:`training.registry.promote_champions`).
    current : FeatureTables, optional
        The features at ``as_of``, if already built (the churn run logs their reference
        profile for drift reports).

    Returns
    -------
    TrainReport
        The gate's decision per model, their metrics, and the models skipped and why.
    """
    from training import recovery, registry

    as_of = as_utc(as_of)
    report = TrainReport(as_of=as_of.isoformat())
    tags = {
        **(tags or {}),
        **recovery.process_tags(),
        recovery.BATCH: uuid.uuid4().hex,
        # the settings travel with every model: scoring builds features the same way
        registry.FEATURES_TAG: json.dumps(config.to_dict(), sort_keys=True),
    }
    try:
        gate = {"margin": margin, "confidence": confidence}
        _train(tables, as_of, config, root, gate, tags, progress, current, report)
        recovery.complete([d.run_id for d in report.decisions], [d.kind for d in report.decisions])
    except BaseException:
        with contextlib.suppress(Exception):  # if the store failed, that is the error
            registry.discard(report.decisions)
        raise
    if promote:
        registry.promote_champions(report.decisions)
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
    n = config.next_product_days
    next_product_cutoffs = training_cutoffs(
        as_of, horizon_days=n, n_train=NEXT_PRODUCT_CUTOFFS, step_days=n
    )
    first_order, _ = order_span(inputs)
    check_history(first_order, as_of, cutoffs, h)  # before any work: one line, exit 2
    check_history(first_order, as_of, replenishment_cutoffs, w)
    check_history(first_order, as_of, next_product_cutoffs, n)
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
        tracking.log_classifier(
            "churn", churn, dataset, params=params, manifest=manifest, profile=profile, **logging
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
    stage = _Stage("replenishment", "repurchased", "customer x consumable pairs", w, cutoffs)
    run = {"common": common, "manifest": manifest, "logging": logging}
    _train_window_model(stage, train_replenishment, pairs, report, progress, run)

    cutoffs = next_product_cutoffs
    progress(f"next-product examples at {len(cutoffs.train) + 1} cutoffs")
    candidates = next_product_dataset(inputs, config, cutoffs)
    stage = _Stage("next_product", "bought", "next-product candidates", n, cutoffs)
    _train_window_model(stage, train_next_product, candidates, report, progress, run)


class _Stage(NamedTuple):
    """A model over a window (replenishment, next product): its kind, label, what its
    examples are, the window W and the cutoffs."""

    kind: str
    label: str
    examples: str
    window_days: int
    cutoffs: object


def _train_window_model(stage, fit, dataset, report, progress, run: dict) -> None:
    """Train, log and gate one window model, or record why it was skipped (its examples
    cannot train a model: none, or a single outcome). ``run``: the parameters every run
    logs (``common``), the features ``manifest`` and the ``logging`` settings."""
    from training import tracking

    why = _cannot_train(dataset, stage.label, stage.examples)
    if why:
        report.skipped[stage.kind] = why
        return
    progress(f"{stage.kind.replace('_', '-')} model")
    result = fit(dataset, window_days=stage.window_days)
    window = {"window_days": stage.window_days, **_cutoff_params(stage.cutoffs)}
    report.decisions.append(
        tracking.log_classifier(
            stage.kind,
            result,
            dataset,
            params={**run["common"], **window},
            manifest=run["manifest"],
            **run["logging"],
        )
    )
    report.metrics[stage.kind] = result.metrics


def _cutoff_params(cutoffs) -> dict:
    return {
        "train_cutoffs": ",".join(c.date().isoformat() for c in cutoffs.train),
        "valid_cutoff": cutoffs.valid.isoformat(),
    }


def _cannot_train(dataset: dict[str, pd.DataFrame], label: str, what: str) -> str | None:
    for split, frame in dataset.items():
        if frame.empty:
            return f"no {what} in the {split} examples"
        if frame[label].nunique() < 2:
            return f"{label} has a single outcome in the {split} examples"
    return None
