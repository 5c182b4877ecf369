"""The logged decisions off-policy evaluation reads (:mod:`policy.offpolicy`): from a service
state folder (its audit log and feedback store) or from a file, and the report written back."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cdp.errors import BadInputError
from policy.offpolicy import COLUMNS, Report, check_decisions


def logged_decisions(state: Path, outcome: str = "converted") -> pd.DataFrame:
    """The logged-decisions table of a service state folder: every ``/suggest`` answer of
    the audit log with its eligible actions, and the reward of each from the feedback store
    (1 when its feedback includes ``outcome``, or ``accepted`` counting ``converted``)."""
    import sqlite3

    from serving.memory.audit import AuditLog

    rows = []
    for entry in AuditLog(state / "audit").entries():  # one pass over the files
        served = (entry.get("actions") or [None])[0]
        for i, item in enumerate(entry.get("eligible") or ()):
            rows.append({"request_id": entry["request_id"], **item, "rank": i, "served": served})
    if not rows:
        raise BadInputError(
            f"{state}: no logged answers with propensities (audit/ of a service that served"
            " /suggest)"
        )
    frame = pd.DataFrame(rows)
    # the action served first (exploration may have moved it): the first of its name
    first = frame[frame["action"] == frame["served"]].groupby("request_id")["rank"].min()
    frame["first"] = frame["rank"].to_numpy() == frame["request_id"].map(first).to_numpy()
    wanted = ("'accepted', 'converted'") if outcome == "accepted" else "'converted'"
    with sqlite3.connect(f"file:{state / 'serving.db'}?mode=ro", uri=True) as db:
        rewarded = pd.DataFrame(
            db.execute(
                "select distinct request_id, action, coalesce(product_id, '') from feedback"
                f" where outcome in ({wanted})"
            ).fetchall(),
            columns=["request_id", "action", "key"],
        )
    frame["key"] = frame["product_id"].fillna("")
    frame = frame.merge(rewarded.assign(reward=1.0), on=["request_id", "action", "key"], how="left")
    frame["reward"] = frame["reward"].fillna(0.0)
    return frame[list(COLUMNS)]


def read_decisions(path: Path) -> pd.DataFrame:
    """A logged-decisions table from a Parquet or JSON-lines file, checked."""
    try:
        frame = (
            pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True)
        )
    except (OSError, ValueError) as error:
        raise BadInputError(f"{path}: cannot read logged decisions: {error}") from None
    return check_decisions(frame, path)


def write_report(report: Report, path: Path) -> None:
    """The report as JSON, written to a temporary file and renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    tmp.replace(path)
