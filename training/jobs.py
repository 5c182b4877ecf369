"""What every retraining job shares: its lock, its log, its outcome and its journal.

- :func:`job_lock`: one ``flock`` on ``MLRUNS/retrain.lock`` (released by the kernel when
  the process dies, so never stale); ``nextbest train`` takes it too.
- :class:`JobLog`: progress through the standard ``logging`` module (logger
  ``nextbest.retrain``) on stderr: ``retrain: message`` lines for people, or JSON lines
  (python-json-logger) with the event name and its fields for schedulers and collectors.
- :class:`Outcome`: what a job did, its exit code and the record kept of it.
- :func:`journal`: one JSON line per job in ``MLRUNS/retrain-journal.jsonl``, written even
  when MLflow is down. Records hold counts, versions and metrics, never a customer row or id
  (:func:`safe_message`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from cdp.errors import ContractError, NextbestError

EXIT = {
    "promoted": 0,
    "up to date": 0,
    "failed": 1,
    "bad input": 2,
    "not promoted": 3,
    "busy": 4,
    "interrupted": 143,
}
LOCK = "retrain.lock"
JOURNAL = "retrain-journal.jsonl"


class Busy(NextbestError):
    """Another retraining job holds the lock."""

    exit_code = EXIT["busy"]


@dataclass
class Outcome:
    """What a job did; ``record()`` is what the MLflow run and the journal keep."""

    outcome: str = "failed"
    stage: str = "start"
    message: str = ""
    as_of: str | None = None
    as_of_source: str | None = None
    digest: str | None = None
    champions_before: dict[str, str] = field(default_factory=dict)
    champions_after: dict[str, str] = field(default_factory=dict)
    decisions: list = field(default_factory=list)
    drift: pd.DataFrame | None = None
    realised: dict | None = None
    reload: dict | None = None
    run_id: str | None = None
    signal: int | None = None
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def exit_code(self) -> int:
        """The exit code of ``nextbest retrain`` for this outcome (128 + the signal if stopped)."""
        if self.outcome == "interrupted" and self.signal:
            return 128 + self.signal
        return EXIT[self.outcome]

    def record(self) -> dict:
        """What the MLflow run and the journal keep of the job (no customer row or id)."""
        return {
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "stage": self.stage,
            "message": self.message,
            "as_of": self.as_of,
            "as_of_source": self.as_of_source,
            "data_digest": self.digest,
            "champions_before": self.champions_before,
            "champions_after": self.champions_after,
            "decisions": [
                {k: v for k, v in d.__dict__.items() if k != "run_id"} for d in self.decisions
            ],
            "drift_major": []
            if self.drift is None
            else self.drift.loc[self.drift["level"] == "major", "feature"].tolist(),
            "realised": self.realised,
            "reload": self.reload,
            "mlflow_run_id": self.run_id,
            "started_at": self.started_at,
            "ended_at": datetime.now(UTC).isoformat(),
            "pid": os.getpid(),
        }


class JobLog:
    """Progress on stderr through the ``nextbest.retrain`` logger: ``retrain: message``
    lines for people, JSON lines (``ts``, ``level``, ``event``, ``message`` and the event's
    fields) for schedulers (``json_lines=True``)."""

    def __init__(self, json_lines: bool = False, stream=None) -> None:
        from pythonjsonlogger.json import JsonFormatter

        self.json_lines = json_lines
        handler = logging.StreamHandler(stream or sys.stderr)
        if json_lines:
            handler.setFormatter(
                JsonFormatter(
                    "{asctime}{levelname}{message}",
                    style="{",
                    rename_fields={"asctime": "ts", "levelname": "level"},
                    json_default=str,
                )
            )
            handler.formatter.formatTime = _iso_time
        else:
            handler.setFormatter(logging.Formatter("retrain: %(message)s"))
        self.logger = logging.getLogger("nextbest.retrain")
        self.logger.handlers[:] = [handler]
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False

    def __call__(self, event: str, message: str, level: str = "info", **fields) -> None:
        """Log ``message`` as ``event`` at ``level`` (info, warning, error) with ``fields``."""
        level_number = logging.getLevelNamesMapping()[level.upper()]
        self.logger.log(level_number, message, extra={"event": event, **fields})


def _iso_time(record: logging.LogRecord, datefmt: str | None = None) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


@contextlib.contextmanager
def job_lock(folder: Path, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold ``folder/retrain.lock`` (an advisory ``flock``: released by the kernel when the
    process dies, so a killed job never leaves a stale lock). Waits up to ``wait_seconds``,
    then raises :class:`Busy` naming the holder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    with open(path, "a+") as handle:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise Busy(
                        f"another retrain is running ({holder}) and holds {path}; nothing done"
                    ) from None
                time.sleep(0.5)
        handle.seek(0)
        handle.truncate()
        handle.write(
            f"pid {os.getpid()}, started {datetime.now(UTC).isoformat(timespec='seconds')}"
        )
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


#: MLflow's own log line (``2026/12/06 07:32:10 WARNING mlflow.models.model: ...``).
LIBRARY_LINE = re.compile(
    r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+): (.*)$"
)


class _LinesTo(io.TextIOBase):
    """A text stream that hands every complete line to ``log`` (libraries' prints) at the
    line's own level: MLflow's log lines keep theirs (and name their logger), a Python
    warning is a warning, the rest (prints) info."""

    def __init__(self, log: JobLog) -> None:
        self.log, self.pending = log, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in filter(None, (x.strip() for x in lines)):
            found = LIBRARY_LINE.match(line)
            if found:
                level, logger, message = found.groups()
                level = "error" if level == "CRITICAL" else level.lower()
                self.log("library", message, level=level, logger=logger)
            elif re.search(r"\b\w*Warning: ", line):
                self.log("library", line, level="warning")
            else:
                self.log("library", line)
        return len(text)


@contextlib.contextmanager
def stderr_as(log: JobLog) -> Iterator[None]:
    """With JSON logs, what libraries print on stderr (MLflow's "Created version ...")
    becomes JSON lines too, so a log collector sees one format."""
    if not log.json_lines:
        yield
        return
    with contextlib.redirect_stderr(_LinesTo(log)):
        yield


def safe_message(error: BaseException) -> str:
    """The error for records and logs: a contract violation without its example values
    (they can be customer ids)."""
    if isinstance(error, ContractError):
        first = error.violations[0]
        where = f"{first.table}.{first.column}" if first.column else first.table
        more = len(error.violations) - 1
        return (
            f"{error.source} breaks the data contract: {where}: {first.problem}"
            f" ({first.rows:,} rows){f' (+{more} more)' if more else ''};"
            " `nextbest validate` lists them"
        )
    if isinstance(error, NextbestError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def journal(folder: Path, job: Outcome, record: dict | None = None) -> None:
    """Append one JSON line to the local journal (``O_APPEND``: lines of concurrent writers
    never interleave)."""
    folder.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record or job.record(), default=str, sort_keys=True) + "\n"
    fd = os.open(folder / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
