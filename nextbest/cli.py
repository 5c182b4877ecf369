"""The ``nextbest`` command line. Errors are one line on stderr and a non-zero exit code.

Exit codes: 0 success, 1 failure, 2 bad input (a broken contract, a wrong argument);
`retrain` adds 3 (challenger not promoted) and 4 (another retrain holds the lock).
Set ``NEXTBEST_DEBUG=1`` to see the traceback of an unexpected failure.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from nextbest.errors import BadInputError, Interrupted, NextbestError, interruptible

app = typer.Typer(
    name="nextbest",
    help="Proactive, explained next best actions for chatbots, from unified customer profiles.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain usage errors: "Error: ..." on one line
)
import_app = typer.Typer(
    help="Turn an outside dataset into a contract folder.", no_args_is_help=True
)
app.add_typer(import_app, name="import")

#: Width of tables printed to a pipe or a log file: wide enough that nothing is cut ("rfm_lo…").
PIPE_WIDTH = 1_000


def _console(stderr: bool = False) -> Console:
    """A console on stdout or stderr: the terminal's width on a terminal; to a pipe or file
    (which has no width, whatever ``COLUMNS`` says), no colour and no width limit, so tables
    and lines arrive whole."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=PIPE_WIDTH)
    return console


out_console = _console()
err_console = _console(stderr=True)


class Stages:
    """Progress of a long command on stderr: on a terminal, a rich progress bar over its
    ``total`` stages (spinner, stage, count, elapsed time); otherwise one plain line per stage
    with the time the previous stage took, so logs show where the time went."""

    def __init__(self, command: str, total: int, console: Console | None = None) -> None:
        self.command, self.total = command, total
        self.console = console or err_console
        self.bar = None
        self.done = -1

    def __enter__(self) -> Stages:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.started = self.mark = time.monotonic()
        if self.console.is_terminal:
            self.bar = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.command, total=self.total)
        return self

    def __call__(self, message: str) -> None:
        """The next stage begins."""
        now = time.monotonic()
        self.done += 1
        if self.bar is not None:
            self.bar.update(
                self.task, completed=self.done, description=f"{self.command}: {message}"
            )
        else:
            took = f" (previous stage {now - self.mark:.1f} s)" if self.done else ""
            self.console.print(f"{self.command}: {message}…{took}", highlight=False, soft_wrap=True)
        self.mark = now

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
        elif exc[0] is None:
            self.console.print(
                f"{self.command}: done in {time.monotonic() - self.started:.1f} s",
                highlight=False,
            )


Format = Annotated[str, typer.Option("--format", help="Table file format: parquet or csv.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")]
Customers = Annotated[int, typer.Option(help="Number of customers to simulate.")]
Seed = Annotated[int, typer.Option(help="Random seed; the same seed gives the same world.")]
AsOf = Annotated[str, typer.Option(help="The moment that splits history from truth (UTC).")]


def _as_of(value: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(datetime.fromisoformat(value))
    except ValueError:
        raise BadInputError(
            f"--as-of: {value!r} is not an ISO-8601 date (e.g. 2025-06-30)"
        ) from None


def _utc(value: str | None) -> pd.Timestamp | None:
    """An ``--since`` / ``--until`` moment in UTC (a naive time is taken as UTC)."""
    if value is None:
        return None
    moment = _as_of(value)
    return moment.tz_localize("UTC") if moment.tz is None else moment.tz_convert("UTC")


def _check_format(fmt: str) -> str:
    if fmt not in ("parquet", "csv"):
        raise BadInputError(f"--format: expected parquet or csv, got {fmt!r}")
    return fmt


def _write_world(world, out: Path, fmt: str, overwrite: bool) -> None:
    from nextbest.io import atomic_folder, write_tables

    with atomic_folder(out, overwrite=overwrite) as tmp:
        write_tables(world.tables, tmp, fmt)  # type: ignore[arg-type]
        write_tables(world.truth, tmp / "truth", "parquet")
        config = world.config
        meta = {
            "generator": "nextbest.world",
            "customers": config.customers,
            "seed": config.seed,
            "as_of": config.as_of.isoformat(),
            "history_days": config.history_days,
            "future_days": config.future_days,
            "horizon_days": config.horizon_days,
            "window_days": config.window_days,
        }
        (tmp / "truth" / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def _generate(
    customers: int,
    seed: int,
    as_of: str,
    out: Path,
    fmt: str,
    overwrite: bool,
    horizon_days: int = 90,
    window_days: int = 14,
):
    from nextbest.world.generate import WorldConfig, generate_world

    config = WorldConfig(
        customers=customers,
        seed=seed,
        as_of=_as_of(as_of),
        horizon_days=horizon_days,
        window_days=window_days,
    )
    fmt = _check_format(fmt)
    with err_console.status(f"simulating {customers:,} customers…"):
        world = generate_world(config)
    with err_console.status(f"writing {out}…"):
        _write_world(world, out, fmt, overwrite)
    return world


@app.command()
def generate(
    customers: Customers = 10_000,
    seed: Seed = 0,
    as_of: AsOf = "2025-06-30",
    out: Annotated[
        Path, typer.Option(help="Folder to write the contract tables and truth/ to.")
    ] = Path("data/world"),
    horizon_days: Annotated[int, typer.Option(help="Churn horizon H for the truth, days.")] = 90,
    window_days: Annotated[int, typer.Option(help="Repurchase window W for the truth, days.")] = 14,
    fmt: Format = "parquet",
    overwrite: Overwrite = False,
) -> None:
    """Simulate a CDP world: contract tables before and after --as-of, and truth/ after it."""
    world = _generate(customers, seed, as_of, out, fmt, overwrite, horizon_days, window_days)
    rows = ", ".join(f"{len(f):,} {n}" for n, f in world.tables.items())
    out_console.print(f"wrote {out}: {rows}; truth in {out / 'truth'}", soft_wrap=True)


@import_app.command("cdnow")
def import_cdnow(
    out: Annotated[Path, typer.Option(help="Folder to write the contract tables to.")] = Path(
        "data/cdnow"
    ),
    source: Annotated[
        Path | None, typer.Option(help="CDNOW_master.txt (default: the copy inside lifetimes).")
    ] = None,
    fmt: Format = "parquet",
    overwrite: Overwrite = False,
) -> None:
    """Import the CDNOW master dataset (1997-1998, 23,570 customers) as a contract folder."""
    from nextbest.cdnow import cdnow_tables
    from nextbest.io import atomic_folder, write_tables

    fmt = _check_format(fmt)
    tables = cdnow_tables(source)
    with atomic_folder(out, overwrite=overwrite) as tmp:
        write_tables(tables, tmp, fmt)  # type: ignore[arg-type]
    rows = ", ".join(f"{len(f):,} {n}" for n, f in tables.items())
    out_console.print(f"wrote {out}: {rows}", soft_wrap=True)


@app.command()
def validate(
    folder: Annotated[Path, typer.Argument(help="A contract folder (one file per table).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check a contract folder; list every violation and exit 2, or print a summary and exit 0."""
    from nextbest.validation import validate_folder

    with err_console.status(f"validating {folder}…"):
        _, report = validate_folder(folder)
    if as_json:
        out_console.print_json(
            json.dumps(
                {
                    "folder": report.folder,
                    "valid": report.ok,
                    "rows": report.rows,
                    "violations": [v.__dict__ for v in report.violations],
                }
            )
        )
    elif report.ok:
        print(report.summary_line())
    else:
        for violation in report.violations:
            err_console.print(f"- {violation}", highlight=False, markup=False, soft_wrap=True)
    if not report.ok:
        n = len(report.violations)
        print(f"{folder}: {n} contract violation{'s' if n != 1 else ''}", file=sys.stderr)
        raise typer.Exit(2)


@app.command()
def features(
    data: Annotated[Path, typer.Option(help="The contract folder to read.")],
    as_of: Annotated[str, typer.Option(help="Compute features as of this moment (UTC).")],
    out: Annotated[
        Path, typer.Option(help="Folder for customers.parquet, pairs.parquet and manifest.json.")
    ],
    overwrite: Overwrite = False,
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty", help="Build even when --as-of lies outside the orders' time span."
        ),
    ] = False,
) -> None:
    """Build point-in-time customer and customer x consumable features from a contract folder."""
    from features.build import build_features
    from features.config import FeatureConfig
    from features.inputs import order_span
    from features.io import write_snapshot
    from nextbest.validation import load_contract

    config = FeatureConfig()
    moment = _as_of(as_of)
    with Stages("features", 3) as stage:
        stage(f"validating {data}")
        tables = load_contract(data)
        if not allow_empty:
            _check_in_span(moment, *order_span(tables), data)
        stage(f"building features as of {moment}")
        built = build_features(tables, as_of=moment, config=config)
        stage(f"writing {out}")
        meta = write_snapshot(built, config, data, out, overwrite=overwrite)
    rows = meta["rows"]
    out_console.print(
        f"wrote {out}: {rows['customers']:,} customers, {rows['pairs']:,} customer x consumable"
        f" pairs as of {meta['as_of']}",
        soft_wrap=True,
    )


def _check_in_span(moment: pd.Timestamp, first, last, data: Path) -> None:
    """Refuse an as-of before the first order or after the last one: the features would be
    empty, or describe customers long after the data ends (a mistyped year)."""
    at = moment.tz_localize("UTC") if moment.tz is None else moment.tz_convert("UTC")
    if first is None:
        raise BadInputError(f"--as-of: {data} has no orders; pass --allow-empty to build anyway")
    span = f"the orders in {data} run from {first:%Y-%m-%d} to {last:%Y-%m-%d}"
    if at < first or at > last:
        where = "before the first order" if at < first else "after the last order"
        raise BadInputError(
            f"--as-of {at:%Y-%m-%d} is {where}: {span}; pick an --as-of in that span, or pass"
            " --allow-empty to build anyway"
        )


Horizon = Annotated[
    int, typer.Option("--churn-horizon-days", help="Churn horizon H: no purchase in H days.")
]
Window = Annotated[
    int, typer.Option("--replenish-window-days", help="Repurchase window W, in days.")
]
Tracking = Annotated[
    Path,
    typer.Option(
        "--mlruns", help="Folder of the MLflow SQLite store (MLFLOW_TRACKING_URI overrides)."
    ),
]


Margin = Annotated[
    float,
    typer.Option(
        help="How much better (on the gate metric) a challenger must be to become champion."
    ),
]
Confidence = Annotated[
    float,
    typer.Option(
        help="Promote only when the challenger beats the champion by more than --margin with"
        " this confidence (paired bootstrap on the validation examples; 0: point estimate)."
    ),
]


def _confidence(value: float) -> float:
    if not 0 <= value < 1:
        raise BadInputError(f"--confidence: must be in [0, 1), got {value}")
    return value


def _quiet_mlflow() -> None:
    """MLflow's INFO lines (database set-up) would drown our summary; MLFLOW_LOGGING_LEVEL
    set by the user wins."""
    import logging

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    import mlflow  # noqa: F401 - configures its loggers on import, from the variable

    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)  # "pip version"


def _feature_config(horizon: int, window: int):
    from features.config import FeatureConfig

    try:
        return FeatureConfig(horizon_days=horizon, window_days=window)
    except ValueError as error:
        raise BadInputError(str(error)) from None


def _train_table(report) -> Table:
    table = Table(title=f"trained as of {report.as_of}")
    table.add_column("model", no_wrap=True)
    for column in ("version", "gate", "metric", "challenger", "champion", "baselines"):
        table.add_column(column)
    for d in report.decisions:
        metrics = report.metrics[d.kind]
        baselines = "\n".join(
            f"{name} {row[d.metric]:.3f}" for name, row in metrics.iterrows() if name != "model"
        )
        table.add_row(
            d.kind,
            d.version,
            "promoted" if d.promoted else f"kept champion v{d.champion_version}",
            d.metric,
            f"{d.challenger_score:.3f}",
            "-" if d.champion_score is None else f"{d.champion_score:.3f}",
            baselines,
        )
    return table


def _print_reasons(decisions) -> None:
    """Why the gate decided as it did, one line per model."""
    for d in decisions:
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
) -> None:
    """Train churn, replenishment and CLV models; log, register and gate them in MLflow."""
    from nextbest.validation import load_contract
    from training import pipeline, recovery, tracking
    from training.retrain import job_lock

    config = _feature_config(horizon, window)
    moment = _as_of(as_of)
    confidence = _confidence(confidence)
    with (
        interruptible(),
        job_lock(mlruns),
        Stages("train", 1 + len(pipeline.TRAIN_STAGES)) as stage,
    ):
        stage(f"validating {data}")
        tables = load_contract(data)
        _quiet_mlflow()
        tracking.configure(mlruns)
        for line in recovery.recover():
            err_console.print(f"recovered: {line}", highlight=False, soft_wrap=True)
        report = pipeline.train(
            tables,
            as_of=moment,
            config=config,
            root=mlruns,
            margin=margin,
            confidence=confidence,
            tags={"nextbest.data_digest": pipeline.data_digest(data, config)},
            progress=stage,
        )
    out_console.print(_train_table(report))
    _print_reasons(report.decisions)
    for kind, why in report.skipped.items():
        out_console.print(f"{kind}: not trained: {why}", soft_wrap=True)


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
    horizon: Horizon = 90,
    window: Window = 14,
    mlruns: Tracking = Path("mlruns"),
    overwrite: Overwrite = False,
) -> None:
    """Batch-score every customer with the champion models (customers without marketing
    consent in force get no score: the models serve marketing)."""
    from nextbest.io import read_tables
    from training import pipeline, tracking

    if (features is None) == (as_of is None):
        raise BadInputError("score: give either --as-of or --features DIR (with --data)")
    config = _feature_config(horizon, window)
    tables = moment = consents = None
    if features is None:
        from nextbest.validation import load_contract

        moment = _as_of(as_of)
        with err_console.status(f"validating {data}…"):
            tables = load_contract(data)
    else:
        frames, violations, _ = read_tables(data, only=("consents",))
        if violations:
            raise BadInputError(f"--data: {violations[0]}")
        consents = frames["consents"]
    _quiet_mlflow()
    tracking.configure(mlruns)
    with err_console.status("scoring…"):
        meta = pipeline.score(
            tables,
            as_of=moment,
            config=config,
            out=out,
            snapshot=features,
            consents=consents,
            overwrite=overwrite,
        )
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
        str, typer.Option(help="Progress on stderr as text or json (JSON lines).")
    ] = "text",
) -> None:
    """The scheduled job: validate, build features, report drift, train, gate, promote, reload.

    Exit codes: 0 promoted or up to date, 1 failure, 2 bad input, 3 challenger not
    promoted, 4 another retrain holds the lock. Champions are untouched unless a challenger
    wins; every job is recorded in MLflow (experiment nextbest-retrain) and in
    MLRUNS/retrain-journal.jsonl.
    """
    from training.drift import DriftThresholds
    from training.retrain import JobLog, RetrainConfig, run

    if log_format not in ("text", "json"):
        raise BadInputError(f"--log-format: expected text or json, got {log_format!r}")
    try:
        thresholds = DriftThresholds(moderate=drift_moderate, major=drift_major)
    except ValueError as error:
        raise BadInputError(str(error)) from None
    config = RetrainConfig(
        data=data,
        mlruns=mlruns,
        as_of=None if as_of is None else _as_of(as_of),
        features_out=features_out,
        features=_feature_config(horizon, window),
        margin=margin,
        confidence=_confidence(confidence),
        thresholds=thresholds,
        service_url=service_url,
        admin_key=os.environ.get("NEXTBEST_ADMIN_KEY"),
        force=force,
        wait_seconds=wait,
    )
    _quiet_mlflow()
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


@app.command()
def serve(
    data: Annotated[Path, typer.Option(help="The contract folder (identities, consents, orders).")],
    features: Annotated[Path, typer.Option(help="A feature snapshot from `nextbest features`.")],
    mlruns: Tracking = Path("mlruns"),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    state: Annotated[
        Path, typer.Option(help="Folder for the suggestion, feedback and event store.")
    ] = Path("data/serving"),
    now: Annotated[
        str | None, typer.Option(help="A fixed clock (ISO time) for simulated data.")
    ] = None,
    poll_seconds: Annotated[
        float, typer.Option(help="Check the registry for a new champion this often (0: off).")
    ] = 0.0,
) -> None:
    """Serve next best actions over HTTP (BentoML); stops with Ctrl-C or SIGTERM."""
    from serving.security import load_keys
    from training import pipeline, tracking

    if now is not None:
        _as_of(now)
    if not (features / "manifest.json").is_file():
        raise BadInputError(f"--features: {features} is not a feature snapshot (no manifest.json)")
    if not data.is_dir():
        raise BadInputError(f"--data: {data} is not a contract folder")
    if not load_keys():
        raise BadInputError(
            "no API keys: set NEXTBEST_API_KEYS (key:scope,...) or NEXTBEST_API_KEYS_FILE"
        )
    from nextbest.privacy import keys as pseudonym_keys

    pseudonym_keys()  # one line and exit 2 without NEXTBEST_PSEUDONYM_KEY
    _check_port(host, port)  # before the champions load: a port in use is one quick line
    _quiet_mlflow()
    tracking.configure(mlruns)
    _, versions = pipeline.load_champions()  # refuses with one line when there is none
    env = {
        **os.environ,
        "NEXTBEST_DATA": str(data.resolve()),
        "NEXTBEST_FEATURES": str(features.resolve()),
        "NEXTBEST_MLRUNS": str(mlruns.resolve()),
        "NEXTBEST_STATE": str(state.resolve()),
        "NEXTBEST_POLL_SECONDS": str(poll_seconds),
        **({"NEXTBEST_NOW": now} if now else {}),
        # BentoML keeps its Prometheus files in BENTOML_HOME/prometheus_multiproc_dir and
        # wipes that folder whenever a server starts: a second service on the machine would
        # delete this one's counters (its /metrics would stop counting). One home per state.
        "BENTOML_HOME": str((state / "bentoml").resolve()),
    }
    models = ", ".join(f"{k} v{v}" for k, v in versions.items())
    err_console.print(f"serving {models} on http://{host}:{port}", highlight=False)
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.service:NextBest",
        "--host",
        host,
        "--port",
        str(port),
        "--api-workers",
        str(workers),
    ]
    raise typer.Exit(_run_server(command, env))


def _die_with_parent() -> None:
    """In a child before ``exec``: ask the kernel for SIGTERM when the parent dies (Linux)."""
    import ctypes
    import signal

    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _check_port(host: str, port: int) -> None:
    """Refuse, with one line, a port another process listens on."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise BadInputError(
                f"--port {port}: {host}:{port} is in use ({error.strerror}); stop what listens"
                " there or pick another --port"
            ) from None


def _run_server(command: list[str], env: dict) -> int:
    """Run BentoML's server as a child and pass SIGTERM / SIGINT on to it, so stopping
    ``nextbest serve`` stops the whole tree (server and workers) and frees the port. On
    Linux the child also gets SIGTERM when this process dies without forwarding anything
    (SIGKILL, a crash): ``PR_SET_PDEATHSIG``."""
    import signal
    import subprocess

    child = subprocess.Popen(
        command, env=env, cwd=Path(__file__).resolve().parents[1], preexec_fn=_die_with_parent
    )

    def forward(signum, _frame) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    code = child.wait()
    return code if code >= 0 else 128 - code


@app.command()
def demo(
    customers: Customers = 5_000,
    seed: Seed = 7,
    as_of: AsOf = "2025-06-30",
    out: Annotated[Path, typer.Option(help="Folder for the demo world.")] = Path("data/demo"),
    mlruns: Tracking = Path("mlruns"),
    serve: Annotated[
        bool, typer.Option(help="Train, serve and run the scripted chatbot conversation.")
    ] = True,
) -> None:
    """Run the main job on embedded defaults: generate a world, validate it, summarise it;
    build features, train, serve, and hold a short scripted chatbot conversation."""
    from nextbest.summary import world_summary
    from nextbest.validation import load_contract

    _generate(customers, seed, as_of, out, "parquet", overwrite=True)
    out_console.print(f"[bold]1.[/] generated a world of {customers:,} customers in {out}")
    tables = load_contract(out)
    out_console.print(f"[bold]2.[/] validated {out}: the contract holds")
    summary = world_summary(tables, _as_of(as_of), truth_folder=out / "truth")
    table = Table(title=f"3. the world as of {as_of}", show_header=False)
    for key, value in summary.items():
        table.add_row(key, value)
    out_console.print(table)
    if serve:
        _demo_serving(tables, out, _as_of(as_of), mlruns)


def _demo_serving(tables, out: Path, moment: pd.Timestamp, mlruns: Path) -> None:
    import secrets
    import socket
    import subprocess

    from features.build import build_features
    from features.config import FeatureConfig
    from features.io import write_snapshot
    from serving.demo import conversation, pick_customer, wait_ready
    from training import pipeline, tracking

    config = FeatureConfig()
    moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
    snapshot = out.with_name(f"{out.name}-features")
    write_snapshot(
        build_features(tables, as_of=moment, config=config), config, out, snapshot, overwrite=True
    )
    out_console.print(f"[bold]4.[/] built features as of {moment.date()} in {snapshot}")
    _quiet_mlflow()
    tracking.configure(mlruns)
    with err_console.status("training…"):
        report = pipeline.train(tables, as_of=moment, config=config, root=mlruns)
    out_console.print(_train_table(report))
    chatbot, admin = secrets.token_hex(16), secrets.token_hex(16)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    now = (moment + pd.Timedelta(hours=12)).isoformat()
    env = {
        "NEXTBEST_PSEUDONYM_KEY": secrets.token_urlsafe(24),  # unless one is set
        **os.environ,
        "NEXTBEST_API_KEYS": f"{chatbot}:chatbot,{admin}:admin",
    }
    command = [
        str(Path(sys.executable).with_name("nextbest")),
        "serve",
        "--data",
        str(out),
        "--features",
        str(snapshot),
        "--mlruns",
        str(mlruns),
        "--port",
        str(port),
        "--state",
        str(out.with_name(f"{out.name}-serving")),
        "--now",
        now,
    ]
    log_path = out.with_name(f"{out.name}-serve.log")
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        with err_console.status(f"starting the service on {url}…"):
            if not wait_ready(url, server):
                raise NextbestError(f"the demo service did not become ready; see {log_path}")
        out_console.print(f"[bold]5.[/] serving on {url} (clock fixed at {now})")
        customer = pick_customer(out, snapshot, moment + pd.Timedelta(hours=12))
        conversation(url, chatbot, admin, customer, _say)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
    out_console.print("[bold]6.[/] stopped the service")


def _say(title: str, answer: dict) -> None:
    who = answer["customer_id"] or "unknown visitor"
    table = Table(title=f"{title}: {who} ({answer['locale']})", title_justify="left")
    for column in ("action", "product", "score", "message / reason"):
        table.add_column(column)
    for action in answer["actions"]:
        table.add_row(
            action["action"],
            action["product_id"] or "",
            f"{action['score']:.2f}",
            action["message"] or action["reason"],
        )
    out_console.print(table)
    held = sorted({f"{s['action']}: {s['reason']}" for s in answer["do_not_suggest"]})
    if held:
        out_console.print("   held back: " + "; ".join(held), highlight=False, soft_wrap=True)


subject_app = typer.Typer(
    help="Data-subject rights: export or erase everything nextbest holds about a customer.",
    no_args_is_help=True,
)
app.add_typer(subject_app, name="subject")
audit_app = typer.Typer(help="The audit log of scoring calls.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

CustomerId = Annotated[str, typer.Option("--customer-id", help="The customer's id.")]
Outputs = Annotated[
    list[Path] | None,
    typer.Option(
        "--outputs", help="Feature snapshot or score folders (repeat the option for each)."
    ),
]
StateDir = Annotated[
    Path | None,
    typer.Option(help="The service's state folder (serving.db, audit/), if no service runs."),
]
ServiceUrl = Annotated[
    str | None,
    typer.Option(
        envvar="NEXTBEST_SERVICE_URL",
        help="A running service (admin key in NEXTBEST_ADMIN_KEY): its state is handled there.",
    ),
]


def _service_call(url: str, route: str, customer_id: str) -> dict:
    import httpx

    key = os.environ.get("NEXTBEST_ADMIN_KEY", "")
    try:
        response = httpx.post(
            f"{url.rstrip('/')}{route}",
            json={"customer_id": customer_id},
            headers={"authorization": f"Bearer {key}"},
            timeout=120,
        )
    except httpx.HTTPError as error:
        raise NextbestError(f"--service-url: {url} did not answer: {error}") from None
    if response.status_code != 200:
        raise NextbestError(f"--service-url: {route} answered HTTP {response.status_code}")
    return response.json()


def _local_state(state: Path):
    from serving.audit import AuditLog
    from serving.feedback import FeedbackStore

    return FeedbackStore(state / "serving.db"), AuditLog(state / "audit")


@subject_app.command("export")
def subject_export(
    customer_id: CustomerId,
    data: Annotated[Path, typer.Option(help="The contract folder.")],
    outputs: Outputs = None,
    state: StateDir = None,
    service_url: ServiceUrl = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the JSON document here (default: stdout).")
    ] = None,
) -> None:
    """One JSON document with everything nextbest holds about a customer (right of access)."""
    from nextbest import privacy, subject

    privacy.keys()
    values = subject.identity_values(data, customer_id)
    document = {
        "customer_id": customer_id,
        "exported_at": datetime.now().astimezone().isoformat(),
        "contract": subject.rows_about(data, customer_id, values),
        "outputs": {str(f): subject.rows_about(f, customer_id, values) for f in outputs or []},
    }
    if service_url:
        document["service"] = _service_call(service_url, "/admin/subject/export", customer_id)
    elif state is not None:
        from serving.audit import held

        tokens = privacy.identity_tokens(*values)
        document["service"] = held(*_local_state(state), privacy.pseudonyms(customer_id), tokens)
    text = json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    err_console.print(f"wrote {out}", highlight=False)


@subject_app.command("erase")
def subject_erase(
    customer_id: CustomerId,
    data: Annotated[Path, typer.Option(help="The contract folder nextbest manages.")],
    outputs: Outputs = None,
    state: StateDir = None,
    service_url: ServiceUrl = None,
    mlruns: Tracking = Path("mlruns"),
) -> None:
    """Erase a customer everywhere nextbest keeps data, suppress them for later imports, and
    check that no trace of their id or pseudonym is left (exit 1 naming the files if so)."""
    from nextbest import privacy, subject

    privacy.keys()
    values = subject.identity_values(data, customer_id)
    summary: dict = {}
    if service_url:
        summary["service"] = _service_call(service_url, "/admin/subject/erase", customer_id)
    elif state is not None:
        from serving.audit import erase_held

        summary["service"] = erase_held(
            *_local_state(state),
            privacy.pseudonyms(customer_id),
            datetime.now().astimezone(),
            "nextbest subject erase",
            None,
            privacy.identity_tokens(*values),
        )
    else:
        err_console.print(
            "warning: neither --service-url nor --state: the service's stores and audit log"
            " were not searched or erased",
            highlight=False,
        )
    summary["contract"] = subject.erase_rows(data, customer_id, values)
    for folder in outputs or []:
        summary[str(folder)] = subject.erase_rows(folder, customer_id, values)
    privacy.suppress([customer_id, *values])
    needles = {customer_id, *privacy.pseudonyms(customer_id)}
    left = subject.traces([data, *(outputs or []), *([state] if state else []), mlruns], needles)
    out_console.print_json(json.dumps(summary, default=str))
    if left:
        raise NextbestError("erasure incomplete: still found in " + ", ".join(left))
    searched = ", ".join(
        ["the data", *(["the outputs"] if outputs else []), *(["--state"] if state else [])]
    )
    service = (
        "the service erased what it holds"
        if service_url
        else "the service's state was not searched (give --state DIR or --service-url)"
        if state is None
        else "the state folder's stores and audit log were erased"
    )
    out_console.print(
        f"erased {customer_id} and {len(values)} identities; suppressed for later imports;"
        f" no trace left in {searched} and the MLflow store; {service}",
        highlight=False,
        soft_wrap=True,
    )


@audit_app.command("query")
def audit_query(
    state: Annotated[Path, typer.Option(help="The service's state folder.")] = Path("data/serving"),
    customer_id: Annotated[
        str | None, typer.Option("--customer-id", help="Entries about this customer.")
    ] = None,
    key_id: Annotated[str | None, typer.Option(help="Entries by this API key id.")] = None,
    purpose: Annotated[str | None, typer.Option(help="service or marketing.")] = None,
    action: Annotated[str | None, typer.Option(help="Entries that returned this action.")] = None,
    route: Annotated[str | None, typer.Option(help="e.g. /suggest or /profile.")] = None,
    since: Annotated[str | None, typer.Option(help="From this moment (ISO, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this moment (ISO, UTC).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """Filter the audit log (customer ids are matched through their pseudonyms)."""
    from nextbest import privacy
    from serving.audit import AuditLog, query

    log = AuditLog(state / "audit")
    if not log.files():
        raise BadInputError(f"--state: no audit log in {state / 'audit'}")
    entries = query(
        log,
        customers=privacy.pseudonyms(customer_id) if customer_id else None,
        key_id=key_id,
        purpose=purpose,
        action=action,
        route=route,
        since=_utc(since),
        until=_utc(until),
    )
    n = 0
    table = Table(title=f"audit entries in {state / 'audit'}")
    for column in ("at", "route", "key", "customer", "purposes", "actions"):
        table.add_column(column)
    for entry in entries:
        n += 1
        if as_json:
            print(json.dumps(entry, ensure_ascii=False))
        else:
            table.add_row(
                entry["at"][:19],
                entry.get("route") or "",
                entry.get("key_id") or "",
                entry.get("customer") or "",
                ",".join(entry.get("purposes", [])),
                ",".join(entry.get("actions", [])),
            )
    if not as_json:
        out_console.print(table)
        out_console.print(f"{n} entries", highlight=False)
    for name, count in log.torn.items():
        err_console.print(
            f"warning: skipped {count} torn line{'s' if count != 1 else ''} in {name}",
            highlight=False,
        )


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning errors into one line and an exit code.

    Usage errors are handled by typer (its message, exit 2); our own errors and anything
    unexpected become one line on stderr.
    """
    try:
        app(args=argv, prog_name="nextbest")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except NextbestError as error:
        print(f"nextbest: error: {error}", file=sys.stderr)
        return error.exit_code
    except Interrupted as stop:
        print(f"nextbest: {stop}", file=sys.stderr)
        return 128 + stop.signum
    except Exception as error:  # the CLI never shows a traceback by default
        if os.environ.get("NEXTBEST_DEBUG"):
            raise
        print(
            f"nextbest: unexpected {type(error).__name__}: {error} "
            "(set NEXTBEST_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
