"""The service's live parts (:class:`Runtime`) and the state they keep current.

A worker's :class:`~serving.memory.state.ServingState` is the feature snapshot and champions
(:func:`load_state`) plus the online log (:mod:`serving.memory.online`) applied on top: the whole
log when the state is built (:func:`replay`), then the entries after its position before
every request (:func:`catch_up`). Every route reaches the state through :func:`state_of`, so
an event accepted by any worker is in force for the next request to any worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import itertools
import json
import logging
import os
import socket
import threading
import typing
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from fastapi import HTTPException

from serving.config import ServeConfig
from serving.memory import compaction, updates
from serving.memory.audit import AuditLog
from serving.memory.feedback import FeedbackStore
from serving.memory.online import KEEP_SECONDS, EmbeddedLog, Entry, RedisLog, open_log
from serving.metrics import COMPACTED, count_applied
from serving.schemas import EventBatch

logger = logging.getLogger("nextbest.serving")

#: The time of each kind of online row; customers and identities have none (always replayed).
ROW_TIMES = {"orders": "ordered_at", "events": "occurred_at", "consents": "recorded_at"}
#: Each contract table's row model: list[OrderIn] -> OrderIn.
ROWS = {kind: typing.get_args(f.annotation)[0] for kind, f in EventBatch.model_fields.items()}
APPLIED_KEPT = 1_000  # counts of recently applied batches, for the requests that sent them
LEARN_SECONDS = 60.0  # how stale the feedback factors may be


@dataclass
class Runtime:
    """The service's live parts. ``state`` is swapped whole on reload; the rest is fixed."""

    feedback: FeedbackStore
    online: EmbeddedLog | RedisLog
    audit: AuditLog
    catalog: Any
    clock: Callable[[], datetime]
    reload: Callable[[], dict]  # reload now, in the caller's thread; its answer
    pseudonym: Callable[[str], str]  # customer id -> pseudonym (cdp.privacy), bound to the key
    seal: Callable[[dict], tuple]  # contract row -> (sealed row, anonymous token)
    lock: Callable[[dict], str]  # contract row -> encrypted for the log (cdp.privacy.lock_row)
    unlock: Callable[[str], dict]  # and back
    #: pseudonym -> "control" or "treated" (:mod:`policy.holdout`); None for nobody
    group: Callable[[str | None], str | None]
    holdout: Any  # the control group's settings (policy.holdout.Holdout)
    state: Any = None  # ServingState, None until loaded
    #: the share of answers whose first action is explored (:func:`policy.learning.explore`)
    exploration: float = 0.0
    rng: Any = None  # numpy Generator of the exploration draws
    #: what feedback has taught (:func:`learned`), and when (monotonic seconds)
    factors: Any = None
    factors_at: float = 0.0
    #: batch id -> what applying it did (for the request that sent it)
    applied: OrderedDict = field(default_factory=OrderedDict)
    syncing: threading.Lock = field(default_factory=threading.Lock)
    #: the HTTP service's background reloads (:class:`serving.memory.reloads.Reloads`)
    reloads: Any = None


def open_runtime(config: ServeConfig, reload: Callable[[], dict]) -> Runtime:
    """The live parts for ``config``, without a state yet (the caller loads it).

    Raises :class:`cdp.errors.BadInputError` without ``NEXTBEST_PSEUDONYM_KEY``, or when
    the online store (``NEXTBEST_ONLINE_STORE``) cannot be reached.
    """
    from cdp import privacy
    from policy.catalog import DEFAULT, load_catalog
    from training import registry

    registry.configure(config.mlruns)
    key = privacy.keys()[0]
    feedback = FeedbackStore(config.state / "serving.db")
    return Runtime(
        feedback=feedback,
        online=open_log(feedback),
        audit=AuditLog(config.state / "audit"),
        catalog=load_catalog(config.actions or DEFAULT),
        clock=config.clock(),
        reload=reload,
        pseudonym=functools.partial(privacy.pseudonym, key=key),
        seal=functools.partial(privacy.sealed_row, key=key),
        lock=functools.partial(privacy.lock_row, key=key),
        unlock=functools.partial(privacy.open_row, keys_=privacy.keys()),
        group=functools.partial(_group, config.holdout, key),
        holdout=config.holdout,
        exploration=config.exploration,
        rng=np.random.default_rng(),
    )


def learned(rt: Runtime, state, *, fresh: bool = False) -> Any:
    """The feedback factors (:func:`policy.learning.learn`), recomputed from the store at
    most every :data:`LEARN_SECONDS` (or now, ``fresh``): every worker reads the same
    feedback table. The recount is one SQL aggregate over the feedback table, run in the
    request that finds the factors stale."""
    import time

    import pandas as pd

    from policy.learning import Prior, learn

    now = time.monotonic()
    if not fresh and rt.factors is not None and now - rt.factors_at < LEARN_SECONDS:
        return rt.factors
    rows = pd.DataFrame(
        rt.feedback.outcomes(), columns=["customer", "action", "accepted", "converted"]
    )
    if not rows.empty and getattr(state, "segment_of", None) is None:
        # pseudonym -> segment, once per state (at load when there is feedback)
        state.segment_of = {rt.pseudonym(c): x.segment for c, x in state.customers.items()}
    rows["segment"] = rows["customer"].map(getattr(state, "segment_of", None) or {})
    rt.factors, rt.factors_at = learn(rows, Prior(*rt.catalog.feedback_prior)), now
    return rt.factors


def load_state(rt: Runtime, config: ServeConfig):
    """A new :class:`~serving.memory.state.ServingState` (the champions and the snapshot) with
    the online log applied on top (:func:`replay`)."""
    from policy import language
    from serving.memory.snapshot import load_snapshot

    language.warm()  # the message analysers load in seconds: not in a customer's request
    state = load_snapshot(data=config.data, features=config.features)
    hold_out(state, rt)
    counts, superseded = replay(rt, state)
    state.snapshot_events = None  # only compaction needed them
    count_applied(counts, "replay")
    logger.info("applied again on top of the snapshot: %s", counts)
    if superseded:  # the snapshot holds them now: they leave the log
        dropped = rt.online.drop([entry.position for entry in superseded])
        COMPACTED.inc(dropped)
        logger.info("compacted the online log: %d entries the snapshot holds", dropped)
        if rt.online.shared:  # and this machine's copy of those rows (data-subject routes)
            local = rt.feedback.drop_ingested_secrets([entry.secret for entry in superseded])
            logger.info("compacted the local copy of online rows: %d rows", local)
    learned(rt, state, fresh=True)  # what feedback taught, before the first request
    return state


def release_freed_memory() -> None:
    """Collect a dropped state and give the heap pages it left free back to the system
    (Arrow's pool, and glibc's ``malloc_trim``; nothing elsewhere). Without it a worker's
    resident memory stays at its highest after a reload: the pages are free for the
    allocator but still counted."""
    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()  # Arrow's own allocator (mimalloc) keeps pages too
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _group(holdout, key: bytes, pseudonym: str | None) -> str | None:
    return None if pseudonym is None else holdout.group(pseudonym, key)


def hold_out(state, rt: Runtime) -> None:
    """Let ``state`` tell its control customers (:mod:`policy.holdout`) by ``rt``'s key and
    settings: every door that ranks through the state withholds their marketing. Without a
    holdout the state keeps its default (nobody): no keyed hash on the request path."""
    if rt.holdout.share > 0:
        state.in_control = lambda customer_id: rt.group(rt.pseudonym(customer_id)) == "control"


def replay(rt: Runtime, state) -> tuple[dict[str, int], list]:
    """Apply the whole online log to a new state, except the rows the snapshot holds
    already, found by identity whatever their dates (:mod:`serving.memory.known`: a row the
    CDP delivered late, dated before the as-of, is not in the export). Customers, identities,
    exposures and erasures always apply. Returns the rows applied per table, and the entries
    the snapshot made redundant (:mod:`serving.memory.compaction`)."""
    entries = rt.online.read(rt.online.start)
    state.position = entries[-1].position if entries else rt.online.start
    totals: dict[str, int] = {}
    superseded: list = []
    for counts in _apply(rt, state, entries, snapshot=True, superseded=superseded).values():
        for table, n in counts.items():
            if table != "created":
                totals[table] = totals.get(table, 0) + n
    return totals, superseded


def catch_up(rt: Runtime) -> None:
    """Apply the log's entries after the current state's position (one ``XREAD`` with
    Redis; nothing at all with the embedded log when nothing is new)."""
    with rt.syncing:
        state = rt.state
        entries = rt.online.read(state.position)
        if not entries:
            return
        for batch, counts in _apply(rt, state, entries, snapshot=False).items():
            count_applied(counts, "events")
            rt.applied[batch] = counts
        while len(rt.applied) > APPLIED_KEPT:
            rt.applied.popitem(last=False)
        state.position = entries[-1].position


def _apply(
    rt: Runtime, state, entries: list[Entry], *, snapshot: bool, superseded: list | None = None
) -> dict[str, dict]:
    """Apply entries in order, each batch's rows the state does not hold already
    (:meth:`~serving.memory.state.ServingState.new_rows`) as one
    :func:`~serving.memory.updates.apply`; returns its counts by batch id. ``snapshot``:
    replaying onto a new state (another worker's reloads are not followed then).
    ``superseded``: collects the entries a new snapshot makes redundant
    (:mod:`serving.memory.compaction`), each judged before it applies."""
    results = {}
    now = rt.clock() if superseded is not None else None  # replay only: not per request
    for batch, group in itertools.groupby(entries, key=lambda e: e.batch):
        found: dict[str, list[dict]] = {kind: [] for kind in ROWS}
        placed: dict[str, list[Entry]] = {kind: [] for kind in ROWS}
        for entry in group:
            row = rt.unlock(entry.secret)
            if entry.kind == "feedback":
                at = datetime.fromisoformat(row["at"])
                if superseded is not None and compaction.stale_exposure(row, now, KEEP_SECONDS):
                    superseded.append(entry)
                rt.feedback.expose(
                    entry.who, row["action"], row["product_id"], row["request_id"], at
                )
            elif entry.kind == "forget":
                if superseded is not None and compaction.forgotten(state, row):
                    superseded.append(entry)
                state.forget(row["customer_id"])
            elif entry.kind == "reload":  # another worker reloaded: follow it, in the background
                if superseded is not None and compaction.stale_signal(entry.position):
                    superseded.append(entry)
                if not snapshot and row["origin"] != origin():
                    threading.Thread(target=rt.reload, daemon=True, name="nextbest-follow").start()
            else:
                found[entry.kind].append(row)
                placed[entry.kind].append(entry)
        fresh = {kind: state.new_rows(kind, rows) for kind, rows in found.items()}
        if superseded is not None:
            for kind, rows in found.items():
                flags = compaction.held(state, kind, rows, fresh[kind])
                pairs = zip(placed[kind], flags, strict=True)
                superseded += [entry for entry, old in pairs if old]
        rows = {
            kind: [ROWS[kind].model_validate_json(json.dumps(row)) for row in kept]
            for kind, kept in fresh.items()
        }
        if any(rows.values()):
            results[batch] = updates.apply(state, EventBatch.model_construct(**rows))
    return results


def origin() -> str:
    """This worker process, as named in the log's ``reload`` entries."""
    return f"{socket.gethostname()}:{os.getpid()}"


def state_of(rt: Runtime):
    """The loaded state caught up with the online log, or 503 while the models and
    features are still loading."""
    if rt.state is None:
        raise HTTPException(
            503, "not ready: models and features are still loading", {"Retry-After": "5"}
        )
    catch_up(rt)
    return rt.state
