"""Durable, append-only records of the service: suggestions served, feedback, events ingested.

One SQLite file (WAL) in the service's state folder. Customers are recorded by pseudonym
(:func:`cdp.privacy.pseudonym`), never by raw id: the caller passes pseudonyms in.
Ingested contract rows are kept one per line, sealed (:func:`cdp.privacy.sealed_row`:
the customer id as its pseudonym, anonymous ids and identity values as keyed tokens), with
their subject's pseudonym and the anonymous id's token beside them, so an erasure
(:meth:`FeedbackStore.erase`) removes exactly that person's rows, anonymous events later
linked to them included; deleted pages are overwritten (``secure_delete``) and the WAL
truncated, so no copy stays on disk. The request threads share one connection, and every
statement on it runs under the store's lock: a vacuum fails while another statement is in
progress on its connection.

Feedback (shown, accepted, dismissed, converted) and ingested events are written before the
request returns; feedback is kept in memory as exposures too, so cooldowns and frequency
caps cost a dictionary lookup per request, and on start the exposures are rebuilt from the
file. One answer is one exposure of each action it returned that got feedback, whatever
outcomes follow (``shown`` then ``dismissed`` is still one display). Feedback must name an
action (and product) that the answer returned: anything else is refused, not stored.

What the store promises when its disk fails: a write the service acknowledged (feedback,
ingested rows) is in the file, else the caller gets 503 with ``Retry-After``
(:class:`StoreUnavailable`): a store locked by another process past a 2 s wait, a full or
read-only disk. If ``serving.db`` is deleted under the running service, the next write
restores it from the open connection (``VACUUM INTO``; nothing acknowledged is lost) and
goes on; a file replaced by another one is left alone and writes answer 503.

Suggestions served are written by a background thread in batches (every 50 ms,
:mod:`serving.memory.batching`): a write and its occasional WAL checkpoint (an fsync) then never
sit in a chatbot's request. Recent request ids are also held in memory, so feedback on a
suggestion served a moment ago finds its customer before the batch lands. A crash loses at
most the last 50 ms of suggestion records, never feedback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from policy.profile import Exposure
from serving.memory import schema
from serving.memory.batching import BatchWriter

if TYPE_CHECKING:
    from serving.schemas import FeedbackIn

RECENT = 100_000  # request ids kept in memory for feedback
BUSY_SECONDS = 2.0  # how long a write waits for a lock held by another process

logger = logging.getLogger("nextbest.serving")


class Claimed(Exception):
    """Segment messages another request applied while this one was applying them: nothing
    of this request was written."""

    def __init__(self, message_ids: list[str]) -> None:
        super().__init__(f"{len(message_ids)} messages claimed meanwhile")
        self.message_ids = message_ids


class StoreUnavailable(Exception):
    """The store could not take a write now (locked, replaced, disk full): retry later."""


ANY = object()  # a product_id that matches any (suggestions stored before products were)


class Recorded(Enum):
    """What became of a feedback item."""

    STORED = "stored"
    UNKNOWN_REQUEST = "unknown request"
    NOT_OFFERED = "not offered"


def _offered(actions_json: str) -> set:
    """The ``(action, product_id)`` pairs of a stored answer; rows written before products
    were stored hold action names only, which match any product."""
    return {
        (item, ANY) if isinstance(item, str) else tuple(item) for item in json.loads(actions_json)
    }


class FeedbackStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = self._connect()
        schema.upgrade(self._db)
        schema.seal(self._db)
        schema.sequence(self._db)
        self._db.executescript(schema.SCHEMA)
        #: the highest ``seq`` written: reading the log after it needs no query
        self._last = self._db.execute("select coalesce(max(seq), 0) from ingested").fetchone()[0]
        #: SQLite's count of other connections' commits when ``_last`` was read
        self._version = self._db.execute("pragma data_version").fetchone()[0]
        self._lock = threading.Lock()
        # customer -> (action, product) -> request id -> when first given feedback
        self._shown: dict[str, dict[tuple[str, str | None], dict[str, datetime]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        for request_id, customer, action, product_id, at in self._db.execute(
            "select request_id, customer, action, product_id, at from feedback"
            " where customer is not null order by at"
        ):
            seen = self._shown[customer][(action, product_id)]
            seen.setdefault(request_id, datetime.fromisoformat(at))
        # request id -> (customer, the (action, product_id) pairs answered)
        self._recent: OrderedDict[str, tuple[str | None, set]] = OrderedDict()
        self._batches = BatchWriter(self._insert_suggestions, name="suggestions", keep_failed=True)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_SECONDS
        )
        db.execute("pragma journal_mode=wal")
        # FULL: a commit the service acknowledged survives a power loss (NORMAL in WAL mode
        # may lose the last commits); suggestions are written in 50 ms batches, so the
        # fsync per commit is paid by /events and /feedback only
        db.execute("pragma synchronous=full")
        db.execute("pragma secure_delete=on")
        self._inode = os.stat(self.path).st_ino
        return db

    @contextlib.contextmanager
    def _writing(self):
        """The connection, under the lock, for a write: the file checked first (restored
        if it was deleted), and SQLite's failures raised as :class:`StoreUnavailable`."""
        with self._lock:
            try:
                self._still_there()
                yield self._db
            except (sqlite3.OperationalError, sqlite3.DatabaseError, OSError) as error:
                raise StoreUnavailable(f"{self.path.name}: {error}") from None

    def _still_there(self) -> None:
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if inode == self._inode:
            return
        if inode is not None:
            raise StoreUnavailable(f"{self.path} was replaced under the running service")
        logger.warning("%s was deleted under the running service: restoring it", self.path)
        restored = self.path.with_name(f".{self.path.name}.restore-{os.getpid()}")
        self._db.execute("vacuum into ?", (str(restored),))
        os.replace(restored, self.path)
        self._db.close()
        self._db = self._connect()

    def record_suggestion(
        self,
        request_id: str,
        customer: str | None,
        actions: list[tuple[str, str | None]],
        at: datetime,
    ) -> None:
        """Remember an answer: its customer (pseudonym) and its ``(action, product_id)``
        pairs, which feedback must then name."""
        self.adopt(request_id, customer, actions)
        pairs = json.dumps([list(pair) for pair in actions])
        self._batches.add((request_id, customer, at.isoformat(), pairs))

    def _insert_suggestions(self, rows: list[tuple]) -> None:
        with self._writing() as db:
            db.executemany("insert into suggestions values (?, ?, ?, ?)", rows)

    def flush(self) -> None:
        """Write every suggestion record so far."""
        self._batches.flush()

    def record_feedback(
        self, item: FeedbackIn, at: datetime, publish: Callable[[str | None], None] | None = None
    ) -> Recorded:
        """Store ``item`` (a :class:`serving.schemas.FeedbackIn`) if its request id is known
        and its action and product are among what that answer returned. ``publish(customer)``
        (sharing the exposure with other workers) runs inside the write's transaction: when
        it fails, nothing is stored and its error is raised."""
        with self._writing():
            if item.request_id in self._recent:
                customer, offered = self._recent[item.request_id]
            else:
                row = self._db.execute(
                    "select customer, actions from suggestions where request_id = ?",
                    (item.request_id,),
                ).fetchone()
                if row is None:
                    return Recorded.UNKNOWN_REQUEST
                customer, offered = row[0], _offered(row[1])
                self.adopt(item.request_id, customer, offered)
            if not {(item.action, item.product_id), (item.action, ANY)} & offered:
                return Recorded.NOT_OFFERED
            row = (item.request_id, customer, item.action, item.product_id, item.outcome)
            with self._transaction():
                self._db.execute(
                    "insert into feedback values (?, ?, ?, ?, ?, ?)", (*row, at.isoformat())
                )
                if publish is not None:
                    publish(customer)
            self.expose(customer, item.action, item.product_id, item.request_id, at)
        return Recorded.STORED

    @contextlib.contextmanager
    def _transaction(self):
        """One transaction (under :meth:`_writing`): committed when the block ends, rolled
        back when it raises."""
        self._db.execute("begin")
        try:
            yield
        except BaseException:
            self._db.execute("rollback")
            raise
        self._db.execute("commit")

    def expose(
        self, customer: str | None, action: str, product_id: str | None, request_id: str, at
    ) -> None:
        """Count one answer's action as shown to ``customer`` (for cooldowns and caps); the
        same answer again changes nothing, so feedback shared by other workers
        (:mod:`serving.memory.online`) may arrive twice."""
        if customer is not None:
            self._shown[customer][(action, product_id)].setdefault(request_id, at)

    def answered(self, request_id: str) -> tuple[str | None, set] | None:
        """The customer and ``(action, product_id)`` pairs of an answer this process gave
        recently, or ``None``."""
        return self._recent.get(request_id)

    def adopt(self, request_id: str, customer: str | None, actions: set) -> None:
        """Know an answer another worker gave, so feedback on it is checked and stored."""
        self._recent[request_id] = (customer, set(actions))
        if len(self._recent) > RECENT:
            self._recent.popitem(last=False)

    def record_events(
        self,
        rows: list[tuple[str, str | None, dict, str | None, str]],
        at: datetime,
        batch: str,
        *,
        claims: list[str] = (),
        publish: Callable[[], None] | None = None,
    ) -> None:
        """Store one batch of ingested contract rows, sealed (:func:`cdp.privacy.sealed_row`)
        and encrypted for the online log (:func:`cdp.privacy.lock_row`): ``(table, subject
        pseudonym, sealed row, anonymous id token, encrypted row)`` each, with the ids of the
        Segment messages they came from (``claims``: :class:`Claimed` when one was applied
        meanwhile), in one transaction; ``publish()`` (appending to a shared log) runs inside
        it, so the rows, the claims and the log entries are written together or not at all."""
        with self._writing():
            try:
                with self._transaction():
                    self._db.executemany(
                        "insert into ingested (at, kind, customer, row, anonymous, secret, batch)"
                        " values (?, ?, ?, ?, ?, ?, ?)",
                        [
                            (at.isoformat(), kind, who, json.dumps(row), anonymous, secret, batch)
                            for kind, who, row, anonymous, secret in rows
                        ],
                    )
                    self._db.executemany(
                        "insert into messages values (?, ?)", [(m, at.isoformat()) for m in claims]
                    )
                    if publish is not None:
                        publish()
            except sqlite3.IntegrityError:
                raise Claimed(list(claims)) from None
            self._last = self._db.execute("select coalesce(max(seq), 0) from ingested").fetchone()[
                0
            ]

    def ingested_after(self, seq: int) -> list[tuple[int, str | None, str, str]]:
        """``(seq, batch, table, encrypted row)`` of every stored online row after ``seq``,
        in the order accepted (rows stored before replay existed have no encrypted copy).
        Rows another process wrote to the same file count too (``nextbest mcp`` beside
        ``nextbest serve`` on one ``--state``): SQLite's ``data_version`` tells, for the
        price of a pragma, when to look for them."""
        with self._lock:
            version = self._db.execute("pragma data_version").fetchone()[0]
            if version != self._version:  # another connection committed
                self._version = version
                self._last = self._db.execute(
                    "select coalesce(max(seq), 0) from ingested"
                ).fetchone()[0]
        if seq >= self._last:
            return []
        with self._lock:
            return self._db.execute(
                "select seq, batch, kind, secret from ingested"
                " where seq > ? and secret is not null order by seq",
                (seq,),
            ).fetchall()

    def drop_ingested(self, seqs: list[int]) -> int:
        """Delete the online rows ``seqs`` (compaction: a snapshot holds them now), in one
        transaction; returns how many went. Sequence numbers are never reused
        (``autoincrement``), so no later row can take a dropped one's place."""
        with self._writing(), self._transaction():
            gone = 0
            for start in range(0, len(seqs), 500):
                chunk = seqs[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"delete from ingested where seq in ({marks})"
                gone += self._db.execute(query, chunk).rowcount
        return gone

    def drop_ingested_secrets(self, secrets: list[str]) -> int:
        """Delete the online rows whose encrypted copy is among ``secrets`` (with Redis the
        stream's entries carry the same ciphertext as this machine's copy): one pass over
        the table against a temporary index of the secrets; returns how many went."""
        if not secrets:
            return 0
        with self._writing(), self._transaction():
            self._db.execute("create temp table if not exists gone (secret text primary key)")
            self._db.execute("delete from gone")
            self._db.executemany("insert or ignore into gone values (?)", [(s,) for s in secrets])
            gone = self._db.execute(
                "delete from ingested where secret in (select secret from gone)"
            ).rowcount
            self._db.execute("delete from gone")
        return gone

    def new_messages(self, message_ids: list[str]) -> set[str]:
        """The ids among ``message_ids`` not applied before (Segment ``messageId``)."""
        with self._lock:
            seen = set()
            for start in range(0, len(message_ids), 500):
                chunk = message_ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"select message_id from messages where message_id in ({marks})"
                seen.update(row[0] for row in self._db.execute(query, chunk))
        return set(message_ids) - seen

    @staticmethod
    def _about(table: str, pseudonyms: set[str], anonymous: set[str]) -> tuple[str, tuple]:
        """The ``where`` clause for a subject's rows: by pseudonym, and for ingested rows
        also by the tokens of their identities (anonymous events ingested before the
        cookie was linked to them)."""
        who = f"customer in ({','.join('?' * len(pseudonyms))})"
        if table != "ingested" or not anonymous:
            return who, tuple(pseudonyms)
        marks = ",".join("?" * len(anonymous))
        return f"({who} or anonymous in ({marks}))", (*pseudonyms, *anonymous)

    def subject(self, pseudonyms: set[str], anonymous: set[str] = frozenset()) -> dict:
        """Everything stored about the customers with these pseudonyms (and identity
        tokens), by table."""
        self.flush()
        out = {}
        with self._lock:
            for table in schema.TABLES:
                where, values = self._about(table, pseudonyms, anonymous)
                cursor = self._db.execute(f"select * from {table} where {where}", values)
                names = [d[0] for d in cursor.description]
                out[table] = [dict(zip(names, row, strict=True)) for row in cursor]
        for row in out["ingested"]:
            row["row"] = json.loads(row["row"])
            row["replayable"] = row.pop("secret") is not None  # the same row, encrypted
        for row in out["suggestions"]:
            row["actions"] = json.loads(row["actions"])
        return out

    def erase(self, pseudonyms: set[str], anonymous: set[str] = frozenset()) -> dict[str, int]:
        """Delete every row about these pseudonyms (and identity tokens), overwrite the freed
        pages and truncate the WAL; forget their exposures. Returns rows deleted per table."""
        self.flush()
        counts = {}
        with self._lock:
            for table in schema.TABLES:
                where, values = self._about(table, pseudonyms, anonymous)
                cursor = self._db.execute(f"delete from {table} where {where}", values)
                counts[table] = cursor.rowcount
            self._db.execute("vacuum")
            self._db.execute("pragma wal_checkpoint(truncate)")
            for who in pseudonyms:
                self._shown.pop(who, None)
            for request_id in [r for r, (who, _) in self._recent.items() if who in pseudonyms]:
                del self._recent[request_id]
        return counts

    def exposures(self, customer: str, now: datetime) -> dict[tuple[str, str | None], Exposure]:
        """When each (action, product) was last shown to ``customer`` and how often in 30 days."""
        shown = self._shown.get(customer)
        if not shown:
            return {}
        month = now - timedelta(days=30)
        return {
            key: Exposure(max(times.values()), sum(1 for t in times.values() if t >= month))
            for key, times in shown.items()
        }

    def outcomes(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[tuple[str | None, str, bool, bool]]:
        """One row per exposure that got feedback (an answer's action and product):
        ``(customer, action, accepted, converted)``; accepted includes converted. With
        ``since`` and ``until``, only exposures whose first feedback came in ``[since,
        until)``."""
        period, bounds = "", ()
        if since is not None and until is not None:
            period, bounds = " having min(at) >= ? and min(at) < ?", (since, until)
        with self._lock:  # one connection for every thread: no statement beside another
            rows = self._db.execute(
                "select customer, action, max(outcome in ('accepted', 'converted')),"
                " max(outcome = 'converted') from feedback group by request_id, action, product_id"
                + period,
                tuple(t.isoformat() for t in bounds),
            ).fetchall()
        return [(who, action, bool(a), bool(c)) for who, action, a, c in rows]

    def count(self, table: str) -> int:
        """Rows in ``table``."""
        if table not in schema.TABLES:
            raise ValueError(f"no table {table!r}")
        with self._lock:
            return self._db.execute(f"select count(*) from {table}").fetchone()[0]
