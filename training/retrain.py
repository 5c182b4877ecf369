"""The scheduled retraining job: one command, safe to run again, never makes things worse.

``nextbest retrain`` runs, under one lock:

1. check that the tracking store answers (else nothing is done: exit 1);
2. validate the contract folder (exit 2 on a broken contract);
3. choose ``as_of`` (default: the end of the latest complete day in the data);
4. stop with "up to date" if models were already registered from the same data digest and
   ``as_of`` (exit 0: no duplicate version);
5. build the features at ``as_of``; report drift against the champion's training snapshot
   (PSI per feature and of its scores) and the champion's realised metrics on the newest
   complete window;
6. train, log, register and gate every model (:func:`training.pipeline.train`), moving no
   champion yet;
7. if a challenger won: write the serving feature snapshot (atomically), move the champion
   aliases, and ask the running service to reload (exit 0); else exit 3.

A failure at any step leaves the champion aliases untouched and deletes the versions this
job registered (their runs stay, marked failed). Every job ends in a record: a run in the
``nextbest-retrain`` experiment (tags, ``job.json``, the drift report) and a line in the
local journal ``<mlruns>/retrain-journal.jsonl`` -- the journal is written even when
MLflow is down. Records hold counts, versions and metrics, never a customer row or id.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from cdp.contract import ContractTables
from cdp.errors import BadInputError, Interrupted, NextbestError
from cdp.time import Moment, as_utc
from features.config import FeatureConfig
from features.inputs import Tables
from training.classifier import CalibratedClassifier
from training.drift import DriftThresholds
from training.jobs import Busy, JobLog, Outcome, job_lock, journal, safe_message, stderr_as


#: Exit codes of ``nextbest retrain`` (documented in docs/how-to/retraining.md).
@dataclass(frozen=True)
class RetrainConfig:
    """Settings of one job. ``admin_key`` is never printed, logged or recorded."""

    data: Path
    mlruns: Path = Path("mlruns")
    as_of: Moment | None = None  # settled by the caller (the CLI)
    features_out: Path | None = None
    features: FeatureConfig = field(default_factory=FeatureConfig)
    margin: float = 0.0
    confidence: float = 0.95
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    service_url: str | None = None
    admin_key: str | None = field(default=None, repr=False)
    force: bool = False
    wait_seconds: float = 0.0


def latest_complete_day(tables: ContractTables) -> pd.Timestamp:
    """The end (midnight UTC) of the latest complete day: the day of the newest order or
    event may still be filling, so it is left out."""
    newest = []
    for name, column in (("orders", "ordered_at"), ("events", "occurred_at")):
        frame = getattr(tables, name)
        if len(frame):
            newest.append(frame[column].max())
    if not newest:
        raise BadInputError("orders: no rows, so there is no complete day to train as of")
    return as_utc(pd.Timestamp(max(newest)).floor("D"))


def run(config: RetrainConfig, log: JobLog) -> Outcome:
    """Run one job under the lock; never raises for an expected failure (see ``Outcome``)."""
    job = Outcome()
    try:
        with job_lock(config.mlruns, config.wait_seconds), stderr_as(log):
            _guarded(config, log, job)
    except Busy as error:
        job.outcome, job.stage, job.message = "busy", "lock", str(error)
        log("busy", job.message, level="warning")
        journal(config.mlruns, job)
    return job


def _guarded(config: RetrainConfig, log: JobLog, job: Outcome) -> None:
    from training import recovery, registry, tracking

    try:
        job.stage = "tracking"
        registry.configure(config.mlruns)
        registry.check_reachable()
        job.champions_before = registry.champion_versions()
        job.champions_after = dict(job.champions_before)
        for line in recovery.recover():
            log("recovered", line, level="warning")
        job.run_id = tracking.start_job(
            config.mlruns, {"nextbest.job": "retrain", **recovery.process_tags()}
        )
        _steps(config, log, job)
    except Interrupted as error:  # SIGTERM or SIGINT: undo, record, then stop
        job.outcome, job.signal = "interrupted", error.signum
        if job.stage != "reload":
            with contextlib.suppress(Exception):
                registry.discard(job.decisions)
        job.message = f"stopped by {error.name} during {job.stage}" + (
            "; champions unchanged" if job.stage != "reload" else ""
        )
        log("interrupted", job.message, level="error", stage=job.stage)
        raise
    except BadInputError as error:
        job.outcome, job.message = "bad input", safe_message(error)
        log("failed", f"{job.stage}: {job.message}", level="error", stage=job.stage)
    except Exception as error:  # any crash: record it, keep the champions, exit 1
        job.outcome, job.message = "failed", safe_message(error)
        if job.stage == "promote" and job.decisions:  # trained but not promoted: undo
            with contextlib.suppress(Exception):
                registry.discard(job.decisions)
        log("failed", f"{job.stage}: {job.message}", level="error", stage=job.stage)
        if os.environ.get("NEXTBEST_DEBUG"):
            raise
    finally:
        _finish(config, log, job)


def _steps(config: RetrainConfig, log: JobLog, job: Outcome) -> None:
    """The stages in order; ``job.stage`` names the one running (a failure names it)."""
    from features.build import build_features

    tables, as_of = _validate(config, log, job)
    if _up_to_date(config, log, job):
        return
    job.stage = "features"
    log("stage", "building features", stage=job.stage)
    current = build_features(tables, as_of=as_of, config=config.features)
    job.stage = "drift"
    _drift(config, log, job, tables, current, as_of)
    winners = _train(config, log, job, tables, current, as_of)
    if not winners:
        job.outcome = "not promoted"
        job.message = "no challenger beat its champion; champions unchanged"
        return
    _promote(config, log, job, current, winners)
    _reload_service(config, log, job)


def _validate(config: RetrainConfig, log: JobLog, job: Outcome):
    """Read and check the contract; choose the as-of and the data digest."""
    from cdp.validation import load_contract
    from training import pipeline

    job.stage = "validate"
    tables = load_contract(config.data)
    if config.as_of is not None:
        as_of, job.as_of_source = config.as_of, "--as-of"
    else:
        as_of, job.as_of_source = latest_complete_day(tables), "latest complete day in the data"
    job.as_of = as_of.isoformat()
    job.digest = pipeline.data_digest(config.data, config.features)
    log("as_of", f"as of {job.as_of} ({job.as_of_source})", as_of=job.as_of)
    return tables, as_of


def _up_to_date(config: RetrainConfig, log: JobLog, job: Outcome) -> bool:
    """Whether a complete earlier job trained this data as of this moment (unless --force)."""
    from training import recovery

    job.stage = "up-to-date check"
    done = recovery.completed_on(job.digest, job.as_of)
    if not done or config.force:
        return False
    job.outcome = "up to date"
    listed = ", ".join(f"{k} v{v}" for k, v in sorted(done.items()))
    job.message = f"{listed} already trained on this data as of {job.as_of}"
    log("up_to_date", f"up to date: {job.message}", versions=done)
    return True


def _train(config: RetrainConfig, log: JobLog, job: Outcome, tables, current, as_of) -> list:
    """Train, log, register and gate every model, moving no champion; the winners."""
    from training import pipeline

    job.stage = "train"
    log("stage", "training, logging and gating", stage=job.stage)
    report = pipeline.train(
        tables,
        as_of=as_of,
        config=config.features,
        root=config.mlruns,
        margin=config.margin,
        confidence=config.confidence,
        tags={"nextbest.data_digest": job.digest, "nextbest.retrain_run": job.run_id or ""},
        progress=lambda message: log("progress", message, stage="train"),
        promote=False,
        current=current,
    )
    job.decisions = report.decisions
    for d in report.decisions:
        champion = "-" if d.champion_score is None else f"{d.champion_score:.4f}"
        log(
            "gate",
            f"{d.kind} v{d.version}: {d.metric} {d.challenger_score:.4f} vs champion"
            f" {champion} -> {'promote' if d.promoted else 'keep champion'}",
            kind=d.kind,
            version=d.version,
            promote=d.promoted,
        )
    for kind, why in report.skipped.items():
        log("skipped", f"{kind}: not trained: {why}", kind=kind)
    return [d for d in report.decisions if d.promoted]


def _promote(config: RetrainConfig, log: JobLog, job: Outcome, current, winners: list) -> None:
    """Replace the serving snapshot (atomically), then move the champion aliases."""
    from features.io import write_snapshot
    from training import registry

    job.stage = "promote"
    if config.features_out is not None:
        write_snapshot(current, config.features, config.data, config.features_out, overwrite=True)
        log("snapshot", f"wrote the serving snapshot {config.features_out}")
    registry.promote_champions(winners)
    job.champions_after = registry.champion_versions()
    job.outcome = "promoted"
    job.message = ", ".join(f"{d.kind} v{d.version}" for d in winners) + " now champion"
    log("promoted", f"promoted: {job.message}", versions={d.kind: d.version for d in winners})


def _reload_service(config: RetrainConfig, log: JobLog, job: Outcome) -> None:
    """Ask the running service (if any) to load the new champions."""
    job.stage = "reload"
    if not config.service_url:
        return
    job.reload = _reload(config)
    if not job.reload.get("reloaded"):
        raise NextbestError(
            f"the service at {config.service_url} did not reload: {job.reload.get('detail')}"
            " (the new champions are registered; it will load them on its next reload)"
        )
    log("reloaded", f"the service at {config.service_url} serves {job.reload['model_versions']}")


def _drift(config, log, job, tables, current, as_of) -> None:
    from training import plots, registry, tracking
    from training.drift import drift_report

    if "churn" not in job.champions_before:
        log("drift", "no champion yet: no drift report")
        return
    profile, version = registry.load_profile("champion")
    if profile is None:
        log("drift", f"churn champion v{version} has no reference profile: no drift report")
        return
    champion, _ = registry.load_churn("champion")
    buyers = current.customers[current.customers["purchase_days"] > 0]
    table = drift_report(profile, buyers, champion.predict_proba(buyers), config.thresholds)
    job.drift = table
    job.realised = realised_metrics(champion, tables, config.features, as_of)
    job.realised["champion_as_of"] = profile["as_of"]
    figure = plots.drift(
        table,
        config.thresholds.moderate,
        config.thresholds.major,
        f"drift: v{version}'s snapshot {profile['as_of'][:10]} -> {job.as_of[:10]}",
    )
    if job.run_id:
        tracking.log_drift(job.run_id, table, job.realised, figure)
    levels = table["level"].value_counts().to_dict()
    top = table.dropna(subset=["psi"]).head(3)
    log(
        "drift",
        f"drift against churn v{version} as of {profile['as_of']}: "
        + ", ".join(f"{n} {levels.get(n, 0)}" for n in ("major", "moderate", "stable"))
        + "; largest "
        + ", ".join(f"{r.feature} {r.psi:.3f}" for r in top.itertuples()),
        psi={r.feature: round(float(r.psi), 4) for r in table.dropna(subset=["psi"]).itertuples()},
        levels=levels,
    )
    r = job.realised
    if "roc_auc" in r:
        log(
            "realised",
            f"churn v{version} on the newest complete window {r['window']}: ROC-AUC"
            f" {r['roc_auc']:.3f}, Brier {r['brier']:.3f}, predicted churn"
            f" {r['predicted_rate']:.3f} vs observed {r['observed_rate']:.3f}",
            realised=r,
        )


def realised_metrics(
    champion: CalibratedClassifier, tables: Tables, config: FeatureConfig, as_of: datetime
) -> dict:
    """How good the churn champion really was on the newest complete window: its scores at
    ``as_of - H`` against what happened in ``(as_of - H, as_of]``."""
    from training.dataset import churn_examples
    from training.metrics import binary_metrics

    cutoff = as_of - pd.Timedelta(days=config.horizon_days)
    examples = churn_examples(tables, cutoff, config)
    window = f"({cutoff.date()}, {as_of.date()}]"
    y = examples["churned"].to_numpy(dtype=bool)
    if examples.empty or y.all() or not y.any():
        return {"window": window, "customers": len(examples), "note": "one outcome only"}
    p = champion.predict_proba(examples)
    return {
        "window": window,
        "customers": len(examples),
        **binary_metrics(y, p),
        "predicted_rate": float(p.mean()),
        "observed_rate": float(y.mean()),
    }


def _reload(config: RetrainConfig, timeout: float = 600.0, every: float = 1.0) -> dict:
    """Ask the service to reload (``POST /admin/reload`` answers 202 at once), then follow
    ``GET /admin/reload`` until a reload that started after the request ends, for at most
    ``timeout`` seconds. A reload the service was already running (``started: false``)
    may predate the new champions: once it ends, another is asked for."""
    import time

    import httpx

    url = f"{config.service_url.rstrip('/')}/admin/reload"
    headers = {"authorization": f"Bearer {config.admin_key}"} if config.admin_key else {}
    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(headers=headers, timeout=30) as client:
            for _ in range(2):
                response = client.post(url)
                if response.status_code != 202:
                    return {"reloaded": False, "detail": f"HTTP {response.status_code}"}
                status = response.json()
                since = datetime.fromisoformat(status["started_at"])
                while status["status"] not in ("reloaded", "failed") or (
                    datetime.fromisoformat(status["finished_at"]) < since
                ):
                    if time.monotonic() > deadline:
                        return {"reloaded": False, "detail": f"not done after {timeout:.0f} s"}
                    time.sleep(every)
                    status = client.get(url).raise_for_status().json()
                if response.json().get("started", True):
                    break
    except httpx.HTTPError as error:
        return {"reloaded": False, "detail": f"{type(error).__name__}: {error}"}
    return status


def _finish(config: RetrainConfig, log: JobLog, job: Outcome) -> None:
    """Record the job: close its MLflow run (if the store answers) and append the journal."""
    from training import tracking

    record = job.record()
    if job.run_id:
        try:
            tags = {
                "nextbest.outcome": job.outcome,
                "nextbest.exit_code": str(job.exit_code),
                "nextbest.stage": job.stage,
                "nextbest.as_of": job.as_of or "",
                "nextbest.data_digest": job.digest or "",
            }
            tracking.end_job(
                job.run_id, failed=job.exit_code not in (0, 3), tags=tags, record=record
            )
        except Exception as error:  # the store went away mid-job: the journal keeps it
            log("record", f"could not record the job in MLflow: {error}", level="warning")
            job.run_id = None
            record = job.record()
    journal(config.mlruns, job, record)
