"""Compaction of the online log: what a new snapshot holds leaves the log.

The online log (:mod:`serving.memory.online`) keeps every row the service accepted until a
snapshot holds it: a new state is the snapshot plus the log replayed on top, so a log that
only grows makes every start and reload slower and larger. At each load, while the log is
replayed (:func:`serving.memory.runtime.replay`), each entry is judged against the state
as it was just before that entry applied:

- an order line, an event or a consent record the snapshot holds already, by identity
  (:mod:`serving.memory.known`: the CDP's export now includes what was sent online), is
  superseded: the snapshot says the same;
- an erasure (``forget``) of a customer the state no longer holds has done its work (the
  erased customer's own entries were deleted with it);
- an exposure (``feedback``, shared log only) older than the longest memory of the answers
  (:data:`~serving.memory.online.KEEP_SECONDS`) can no longer hold a cooldown or a cap;
- a ``reload`` signal older than a day has been followed by every live worker.

What remains is what the snapshot does not hold yet: replay time, disk and memory grow with
the rows accepted since the export the snapshot was built from (a day's traffic for a
nightly export), not with every row ever received. Customers and identities (few, and an
attribute may have changed online) are kept.

Every worker and replica serves the same feature snapshot folder (or a newer one): an
entry is dropped only when the snapshot the compacting worker loaded holds it.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from serving.memory.known import row_keys

#: The tables whose rows leave the log once a snapshot holds them.
SUPERSEDED = ("orders", "events", "consents")
#: How long a ``reload`` signal stays in the shared log (seconds).
RELOAD_SIGNAL_SECONDS = 86_400


def held(state, kind: str, rows: list[dict], fresh: list[dict]) -> list[bool]:
    """Whether each of ``rows`` (of table ``kind``) is one the state holds already:
    ``fresh`` is what :meth:`~serving.memory.state.ServingState.new_rows` kept of them;
    events the snapshot holds but does not index (a page view applies the same once or
    twice) are looked up in the snapshot's event ids (``state.snapshot_events``)."""
    if kind not in SUPERSEDED or not rows:
        return [False] * len(rows)
    kept = {id(row) for row in fresh}
    found = np.array([id(row) not in kept for row in rows], dtype=bool)
    events = getattr(state, "snapshot_events", None)
    if kind == "events" and events is not None and events.size:
        keys = row_keys("events", pd.DataFrame(rows, columns=["event_id"]))
        found |= np.isin(keys, events)
    return found.tolist()


def forgotten(state, row: dict) -> bool:
    """Whether an erasure has nothing left to erase in ``state`` (judged before it applies)."""
    return row["customer_id"] not in state.customers


def stale_exposure(row: dict, now: datetime, keep_seconds: float) -> bool:
    """Whether an exposure is older than the answers' memory at ``now``."""
    return datetime.fromisoformat(row["at"]) < now - timedelta(seconds=keep_seconds)


def stale_signal(position: object) -> bool:
    """Whether a ``reload`` entry of the shared log (a Redis stream id, ``ms-seq``) is older
    than :data:`RELOAD_SIGNAL_SECONDS`; the embedded log has none."""
    if not isinstance(position, str) or "-" not in position:
        return False
    millis = int(position.split("-", 1)[0])
    return millis < (time.time() - RELOAD_SIGNAL_SECONDS) * 1000
