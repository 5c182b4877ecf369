"""What every command shares: the app, consoles, progress, option types, time and model settings."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from cdp.errors import BadInputError, Interrupted
from cdp.time import Moment, as_utc

if TYPE_CHECKING:
    from features.config import FeatureConfig

# MLflow reads this when it is first imported (by a command's training imports): its INFO
# lines (database set-up) would drown our summaries; a level the user set wins.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
# and its artifact-download progress bars would sit between the stage lines
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

app = typer.Typer(
    name="nextbest",
    help="Proactive, explained next best actions for chatbots, from unified customer profiles.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain usage errors: "Error: ..." on one line
)


def _print_version(show: bool) -> None:
    if show:
        from cdp import package_version

        print(f"nextbest {package_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            help="Show MLflow's own INFO lines, download bars and pip-version warnings"
            " (hidden by default, so they do not sit between the stage lines).",
        ),
    ] = False,
) -> None:
    """Proactive, explained next best actions for chatbots, from unified customer profiles."""
    if verbose:  # before any command imports MLflow, which reads these once
        os.environ["MLFLOW_LOGGING_LEVEL"] = "INFO"
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "true"
        os.environ["NEXTBEST_VERBOSE"] = "1"


#: ``--json``: the command's result as one JSON document on stdout, instead of the table.
Json = Annotated[bool, typer.Option("--json", help="The result as JSON on stdout.")]

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


class TableFormat(StrEnum):
    """``--format``: how tables are written."""

    parquet = "parquet"
    csv = "csv"


class EngineName(StrEnum):
    """``--engine``: where features are built and scores computed."""

    polars = "polars"
    spark = "spark"


class LogFormat(StrEnum):
    """``--log-format``: how a job reports its progress."""

    text = "text"
    json = "json"


Format = Annotated[TableFormat, typer.Option("--format", help="Table file format.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")]
Customers = Annotated[int, typer.Option(help="Number of customers to simulate.")]
Engine = Annotated[
    EngineName,
    typer.Option(
        help="polars: on this machine (with --partitions, one partition at a time); spark: on"
        " Spark, in --partitions customer partitions (default: spark.sql.shuffle.partitions)."
    ),
]
SparkMaster = Annotated[
    str | None,
    typer.Option(help="The Spark master, e.g. local[2] (default: what spark-submit sets)."),
]
Partitions = Annotated[
    int,
    typer.Option(
        min=1,
        help="Work in this many hash partitions of customer_id, one at a time: memory bounded"
        " by one partition, the same result as one pass.",
    ),
]
Seed = Annotated[int, typer.Option(help="Random seed; the same seed gives the same world.")]
AsOf = Annotated[str, typer.Option(help="The moment that splits history from truth (UTC).")]


@contextlib.contextmanager
def spark_session(master: str | None):
    """A Spark session for one command (``--engine spark``), stopped at the end."""
    try:
        import pyspark  # noqa: F401 - the optional dependency, said plainly when missing
    except ImportError as error:
        raise BadInputError(
            f"--engine spark needs pyspark (pip install 'nextbest[spark]') and Java 17 ({error})"
        ) from None
    from features.spark import session

    spark = session(master)
    try:
        yield spark
    finally:
        spark.stop()


def parse_as_of(value: str, option: str = "--as-of") -> Moment:
    """An ``--as-of`` (or ``option``'s) value, settled to UTC (naive: UTC); a bad one is a
    one-line error naming the option."""
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise BadInputError(
            f"{option}: {value!r} is not an ISO-8601 date (e.g. 2025-06-30)"
        ) from None


def parse_utc(value: str | None) -> Moment | None:
    """An ``--since`` / ``--until`` moment in UTC (a naive time is taken as UTC)."""
    return None if value is None else parse_as_of(value)


Horizon = Annotated[
    int, typer.Option("--churn-horizon-days", help="Churn horizon H: no purchase in H days.")
]
Window = Annotated[
    int, typer.Option("--replenish-window-days", help="Repurchase window W, in days.")
]
#: score's settings: the champions' own unless given (and then they must agree)
TrainedHorizon = Annotated[
    int | None,
    typer.Option(
        "--churn-horizon-days", help="Churn horizon H (default: the champions' own).", min=1
    ),
]
TrainedWindow = Annotated[
    int | None,
    typer.Option(
        "--replenish-window-days", help="Repurchase window W (default: the champions' own).", min=1
    ),
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


def check_confidence(value: float) -> float:
    """``--confidence``, checked to lie in [0, 1)."""
    if not 0 <= value < 1:
        raise BadInputError(f"--confidence: must be in [0, 1), got {value}")
    return value


def quiet_mlflow() -> None:
    """Import MLflow (its level comes from MLFLOW_LOGGING_LEVEL, set when this module is
    imported) and silence its pip-version warnings."""
    import logging

    import mlflow  # noqa: F401 - configures its loggers on import, from the variable

    if not os.environ.get("NEXTBEST_VERBOSE"):  # `nextbest --verbose` keeps them
        logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)  # "pip version"


def champions_settings(mlruns: Path) -> FeatureConfig:
    """The feature settings the champions in the store at ``mlruns`` (or
    ``MLFLOW_TRACKING_URI``) were trained with; the defaults when there is no store yet, or
    no champion that says. Champions that disagree are refused in one line."""
    from features.config import FeatureConfig

    if not os.environ.get("MLFLOW_TRACKING_URI") and not (mlruns / "mlflow.db").exists():
        return FeatureConfig()  # no store: nothing trained yet, and none created here
    from training import registry, scoring

    quiet_mlflow()
    registry.configure(mlruns)
    return scoring.settings_for(registry.champion_versions(), None)


def feature_config(horizon: int, window: int) -> FeatureConfig:
    """The feature settings of ``--horizon`` and ``--window``, checked."""
    from features.config import FeatureConfig

    try:
        return FeatureConfig(horizon_days=horizon, window_days=window)
    except ValueError as error:
        raise BadInputError(str(error)) from None


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`cdp.errors.Interrupted` (once: a
    second signal while cleaning up gets the default handling)."""
    signums = (signal.SIGTERM, signal.SIGINT)
    before = {s: signal.getsignal(s) for s in signums}

    def stop(signum, frame) -> None:
        for s in signums:
            signal.signal(s, signal.SIG_DFL if s == signal.SIGTERM else signal.default_int_handler)
        raise Interrupted(signum)

    for s in signums:
        signal.signal(s, stop)
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
