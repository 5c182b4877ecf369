"""Commands on models: train, score, retrain."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer
from rich.table import Table

from cdp.errors import BadInputError
from nextbest.cli.base import (
    Confidence,
    Engine,
    EngineName,
    Horizon,
    Json,
    LogFormat,
    Margin,
    Overwrite,
    SparkMaster,
    Stages,
    Tracking,
    TrainedHorizon,
    TrainedWindow,
    Window,
    app,
    check_confidence,
    err_console,
    feature_config,
    interruptible,
    out_console,
    parse_as_of,
    quiet_mlflow,
    spark_session,
)

if TYPE_CHECKING:
    from training.pipeline import TrainReport


def train_table(report: TrainReport) -> Table:
    """One row per trained model: version, what was registered (the model, or the baseline
    it did not beat), gate decision, metric, scores, baselines."""
    table = Table(title=f"trained as of {report.as_of}")
    table.add_column("model", no_wrap=True)
    columns = ("version", "registered", "gate", "metric", "challenger", "champion", "baselines")
    for column in columns:
        table.add_column(column)
    for d in report.decisions:
        metrics = report.metrics[d.kind]
        baselines = "\n".join(
            f"{name} {row[d.metric]:.3f}{_hit(row)}"
            for name, row in metrics.iterrows()
            if name != "model"
        )
        own = _hit(metrics.loc[d.scorer]) if d.scorer in metrics.index else ""
        table.add_row(
            d.kind,
            d.version,
            "model" if d.scorer == "model" else f"{d.scorer} baseline",
            "promoted" if d.promoted else f"kept champion v{d.champion_version}",
            d.metric,
            f"{d.challenger_score:.3f}{own}",
            "-" if d.champion_score is None else f"{d.champion_score:.3f}",
            baselines,
        )
    return table


def _hit(row) -> str:
    """The next product's hit@1 (the share of customers whose first candidate was bought,
    P-TopFreq's measure) beside its gate metric; nothing for the other models."""
    return f" (hit@1 {row['hit_at_1']:.3f})" if "hit_at_1" in row.index else ""


def _print_reasons(decisions) -> None:
    """Why a baseline was registered instead of a model, and why the gate decided as it
    did: a line each."""
    for d in decisions:
        if d.scorer != "model" and d.choice:
            what = f"{d.kind} v{d.version} is the {d.scorer} baseline: {d.choice}"
            out_console.print(what, highlight=False, soft_wrap=True)
        verdict = "promoted" if d.promoted else f"kept champion v{d.champion_version}"
        out_console.print(
            f"{d.kind} v{d.version} {verdict}: {d.reason}", highlight=False, soft_wrap=True
        )


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="The contract folder to read.")],
    as_of: Annotated[str, typer.Option(help="Train to score at this moment (UTC).")],
    horizon: Horizon = 90,
    window: Window = 14,
    margin: Margin = 0.0,
    confidence: Confidence = 0.95,
    mlruns: Tracking = Path("mlruns"),
    sample_customers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Train on this many customers (picked by the hash of their id), read from the"
            " folder with memory bounded by the sample: for data larger than this machine."
            " BG/NBD and LightGBM need a sample, not everyone; score with --engine spark.",
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Train the churn, replenishment, CLV and next-product models on time-based cutoffs;
    judge each against its baselines on a later validation cutoff; log, register and gate
    them in MLflow (a challenger is promoted only when it beats the champion)."""
    from cdp.validation import check_in_partitions, load_contract
    from features.partitions import sample_customers as sample_of
    from training import pipeline, recovery, registry
    from training.jobs import job_lock

    config = feature_config(horizon, window)
    moment = parse_as_of(as_of)
    confidence = check_confidence(confidence)
    with (
        interruptible(),
        job_lock(mlruns),
        Stages("train", 1 + len(pipeline.TRAIN_STAGES)) as stage,
    ):
        stage(f"validating {data}")
        tags = {"nextbest.data_digest": pipeline.data_digest(data, config)}
        if sample_customers is None:
            tables = load_contract(data)
        else:  # the whole folder checked in partitions, the sample read
            check_in_partitions(data, 8)
            tables = sample_of(data, sample_customers)
            tags["nextbest.sample_customers"] = str(sample_customers)
        quiet_mlflow()
        registry.configure(mlruns)
        for line in recovery.recover():
            err_console.print(f"recovered: {line}", highlight=False, soft_wrap=True)
        report = pipeline.train(
            tables,
            as_of=moment,
            config=config,
            root=mlruns,
            margin=margin,
            confidence=confidence,
            tags=tags,
            progress=stage,
        )
    if as_json:
        print(json.dumps(train_record(report), indent=2, default=str))
        return
    out_console.print(train_table(report))
    _print_reasons(report.decisions)
    for kind, why in report.skipped.items():
        out_console.print(f"{kind}: not trained: {why}", soft_wrap=True)


def train_record(report: TrainReport) -> dict:
    """What `train`'s table says, as JSON values: per model its version, the gate's
    decision and reason, the metric, the challenger's and champion's scores, and every
    baseline's score on the same validation examples."""
    models = []
    for d in report.decisions:
        metrics = report.metrics[d.kind]
        models.append(
            {
                "model": d.kind,
                "version": d.version,
                "promoted": d.promoted,
                "champion_version": d.champion_version,
                "reason": d.reason,
                "registered": d.scorer,
                "registered_reason": d.choice,
                "metric": d.metric,
                "challenger": d.challenger_score,
                "champion": d.champion_score,
                "baselines": {
                    name: float(row[d.metric])
                    for name, row in metrics.iterrows()
                    if name != "model"
                },
                **(
                    {"hit_at_1": {n: float(v) for n, v in metrics["hit_at_1"].items()}}
                    if "hit_at_1" in metrics
                    else {}
                ),
            }
        )
    return {"as_of": report.as_of, "models": models, "skipped": dict(report.skipped)}


@app.command()
def score(
    out: Annotated[Path, typer.Option(help="Folder for the score tables and scores.json.")],
    data: Annotated[
        Path,
        typer.Option(help="The contract folder (features with --as-of; consents always)."),
    ],
    as_of: Annotated[str | None, typer.Option(help="Score as of this moment (UTC).")] = None,
    features: Annotated[
        Path | None,
        typer.Option(help="A snapshot from `nextbest features` (instead of --as-of)."),
    ] = None,
    horizon: TrainedHorizon = None,
    window: TrainedWindow = None,
    mlruns: Tracking = Path("mlruns"),
    overwrite: Overwrite = False,
    engine: Engine = EngineName.polars,
    spark_master: SparkMaster = None,
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Customer partitions (--engine spark).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Batch-score every customer with the champion models (customers without marketing
    consent in force get no score: the models serve marketing)."""
    from cdp.io import read_tables
    from training import registry, scoring

    if (features is None) == (as_of is None):
        raise BadInputError("score: give either --as-of or --features DIR (with --data)")
    if engine == "spark":
        if features is None:
            raise BadInputError("score --engine spark: give --features (a snapshot to score)")
        quiet_mlflow()
        registry.configure(mlruns)
        meta = _score_on_spark(features, data, out, partitions, spark_master, overwrite)
        _report_scores(meta, data, out, as_json)
        return
    asked = horizon is not None or window is not None
    if asked and features is not None:
        raise BadInputError("score: --features brings its own settings; leave out the horizon")
    # the champions' own settings, unless asked for (then they must agree with them)
    config = feature_config(horizon or 90, window or 14) if asked else None
    tables = moment = consents = None
    if features is None:
        from cdp.validation import load_contract

        moment = parse_as_of(as_of)
        with err_console.status(f"validating {data}…"):
            tables = load_contract(data)
    else:
        frames, violations, _ = read_tables(data, only=("consents",))
        if violations:
            raise BadInputError(f"--data: {violations[0]}")
        consents = frames["consents"]
    quiet_mlflow()
    registry.configure(mlruns)
    with err_console.status("scoring…"):
        meta = scoring.score(
            tables,
            as_of=moment,
            config=config,
            out=out,
            snapshot=features,
            consents=consents,
            overwrite=overwrite,
        )
    _report_scores(meta, data, out, as_json)


def _score_on_spark(features, data, out, partitions, master, overwrite) -> dict:
    """``score --engine spark``: the score tables as Parquet parts, then ``scores.json``,
    atomically."""
    from cdp.io import atomic_folder
    from features.spark import parquet_tables
    from training.spark import score_on_spark

    parquet_tables(data)  # before the session starts
    with spark_session(master) as spark, atomic_folder(out, overwrite=overwrite) as tmp:
        meta = score_on_spark(spark, features, data, out=tmp, partitions=partitions)
        (tmp / "scores.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def _report_scores(meta: dict, data: Path, out: Path, as_json: bool = False) -> None:
    if as_json:  # what scores.json holds, with where it went
        print(json.dumps({"out": str(out), **meta}, indent=2, default=str))
        return
    rows = ", ".join(f"{name} {n:,} rows" for name, n in meta["rows"].items())
    models = ", ".join(f"{name} v{v}" for name, v in meta["models"].items())
    withheld = sum(meta["withheld"]["rows"].values())
    if not sum(meta["rows"].values()):
        err_console.print(
            f"warning: no customer has marketing consent in force at {meta['as_of']} (the"
            f" consents table of {data}): 0 scores written",
            highlight=False,
            soft_wrap=True,
        )
    out_console.print(
        f"wrote {out}: {rows} as of {meta['as_of']} (models {models}); {withheld:,} rows"
        " withheld: no marketing consent in force",
        soft_wrap=True,
    )


@app.command()
def retrain(
    data: Annotated[Path, typer.Option(help="The contract folder to read.")],
    as_of: Annotated[
        str | None,
        typer.Option(help="Train as of this moment (UTC). Default: the latest complete day."),
    ] = None,
    mlruns: Tracking = Path("mlruns"),
    features_out: Annotated[
        Path | None,
        typer.Option(
            envvar="NEXTBEST_FEATURES",
            help="Serving snapshot to replace when a challenger is promoted.",
        ),
    ] = None,
    service_url: Annotated[
        str | None,
        typer.Option(
            envvar="NEXTBEST_SERVICE_URL",
            help="Running service to reload after a promotion (key: NEXTBEST_ADMIN_KEY).",
        ),
    ] = None,
    horizon: Horizon = 90,
    window: Window = 14,
    margin: Margin = 0.0,
    confidence: Confidence = 0.95,
    drift_moderate: Annotated[
        float, typer.Option(help="PSI from which a feature's shift is reported moderate.")
    ] = 0.1,
    drift_major: Annotated[
        float, typer.Option(help="PSI from which a feature's shift is reported major.")
    ] = 0.25,
    force: Annotated[
        bool, typer.Option("--force", help="Train even if this data and as-of were trained.")
    ] = False,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for a running job's lock (default: none).")
    ] = 0.0,
    log_format: Annotated[
        LogFormat, typer.Option(help="Progress on stderr as text or json (JSON lines).")
    ] = LogFormat.text,
) -> None:
    """The scheduled job: validate, build features, report drift, train, gate, promote, reload.

    Exit codes: 0 promoted or up to date, 1 failure, 2 bad input, 3 challenger not
    promoted, 4 another retrain holds the lock. Champions are untouched unless a challenger
    wins; every job is recorded in MLflow (experiment nextbest-retrain) and in
    MLRUNS/retrain-journal.jsonl.
    """
    from training.drift import DriftThresholds
    from training.jobs import JobLog
    from training.retrain import RetrainConfig, run

    try:
        thresholds = DriftThresholds(moderate=drift_moderate, major=drift_major)
    except ValueError as error:
        raise BadInputError(str(error)) from None
    config = RetrainConfig(
        data=data,
        mlruns=mlruns,
        as_of=None if as_of is None else parse_as_of(as_of),
        features_out=features_out,
        features=feature_config(horizon, window),
        margin=margin,
        confidence=check_confidence(confidence),
        thresholds=thresholds,
        service_url=service_url,
        admin_key=os.environ.get("NEXTBEST_ADMIN_KEY"),
        force=force,
        wait_seconds=wait,
    )
    quiet_mlflow()
    with interruptible():
        job = run(config, JobLog(json_lines=log_format == "json"))
    if log_format == "json":
        print(json.dumps(job.record(), default=str, sort_keys=True))
    else:
        _print_job(job)
    raise typer.Exit(job.exit_code)


def _print_job(job) -> None:
    if job.drift is not None:
        table = Table(title="drift against the champion's training snapshot (largest first)")
        for column in ("feature", "PSI", "level"):
            table.add_column(column)
        score = job.drift["feature"] == "score"
        shown = pd.concat([job.drift[score], job.drift[~score & (job.drift["level"] != "stable")]])
        for row in shown.head(16).itertuples():
            table.add_row(row.feature, f"{row.psi:.3f}", row.level)
        stable = int((job.drift["level"] == "stable").sum())
        table.caption = f"{stable} features stable"
        out_console.print(table)
    if job.decisions:
        table = Table(title=f"gate as of {job.as_of}")
        for column in ("model", "version", "metric", "challenger", "champion", "decision"):
            table.add_column(column)
        for d in job.decisions:
            table.add_row(
                d.kind,
                d.version,
                d.metric,
                f"{d.challenger_score:.4f}",
                "-" if d.champion_score is None else f"{d.champion_score:.4f}",
                "promote" if d.promoted else f"keep v{d.champion_version}",
            )
        out_console.print(table)
        _print_reasons(job.decisions)
    out_console.print(
        f"{job.outcome}: {job.message} (exit {job.exit_code})", highlight=False, soft_wrap=True
    )
