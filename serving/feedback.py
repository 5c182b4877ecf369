"""Durable, append-only records of the service: suggestions served, feedback, events ingested.

One SQLite file (WAL) in the service's state folder. Customers are recorded by pseudonym
(:func:`cdp.privacy.pseudonym`), never by raw id: the caller passes pseudonyms in.
Ingested contract rows are kept one per line, sealed (:func:`cdp.privacy.sealed_row`:
the customer id as its pseudonym, anonymous ids and identity values as keyed tokens), with
their subject's pseudonym and the anonymous id's token beside them, so an erasure
(:meth:`FeedbackStore.erase`) removes exactly that person's rows, anonymous events later
linked to them included; deleted pages are overwritten (``secure_delete``) and the WAL
truncated, so no copy stays on disk.

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
:mod:`serving.batching`): a write and its occasional WAL checkpoint (an fsync) then never
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
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from policy.profile import Exposure
from serving.batching import BatchWriter

if TYPE_CHECKING:
    from serving.schemas import FeedbackIn

RECENT = 100_000  # request ids kept in memory for feedback
BUSY_SECONDS = 2.0  # how long a write waits for a lock held by another process

logger = logging.getLogger("nextbest.serving")


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


INGESTED = """
create table if not exists ingested (
    seq integer primary key autoincrement, at text not null, kind text not null,
    customer text, row text not null, anonymous text, secret text, batch text
)"""
SCHEMA = f"""
create table if not exists suggestions (
    request_id text primary key, customer text, at text not null, actions text not null
);
create table if not exists feedback (
    request_id text not null, customer text, action text not null, product_id text,
    outcome text not null, at text not null
);
{INGESTED};
create table if not exists messages (message_id text primary key, at text not null);
create index if not exists suggestions_customer on suggestions (customer);
create index if not exists ingested_customer on ingested (customer);
create index if not exists ingested_anonymous on ingested (anonymous);
"""
TABLES = ("suggestions", "feedback", "ingested")


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring a store written before pseudonyms (raw ``customer_id`` columns, one JSON
    payload per ingested batch) to the current schema: ids become pseudonyms, batches
    become one row per contract row, and the old tables are dropped and their pages
    overwritten. Idempotent; needs ``NEXTBEST_PSEUDONYM_KEY``."""
    columns = {row[1] for row in db.execute("pragma table_info(suggestions)")}
    if "customer_id" not in columns:
        return
    from cdp.privacy import keys, pseudonym

    key = keys()[0]

    def name(customer_id):
        return pseudonym(customer_id, key) if customer_id else None

    db.execute("begin")
    for table in ("suggestions", "feedback"):
        db.execute(f"alter table {table} rename to old_{table}")
    for statement in filter(str.strip, SCHEMA.split(";")):  # executescript would commit
        db.execute(statement)
    db.executemany(
        "insert into suggestions values (?, ?, ?, ?)",
        [(r, name(c), at, a) for r, c, at, a in db.execute("select * from old_suggestions")],
    )
    db.executemany(
        "insert into feedback values (?, ?, ?, ?, ?, ?)",
        [(r, name(c), *rest) for r, c, *rest in db.execute("select * from old_feedback")],
    )
    rows = []
    for at, payload in db.execute("select at, payload from events"):
        for kind, items in json.loads(payload).items():
            rows += [(at, kind, name(item.get("customer_id")), json.dumps(item)) for item in items]
    db.executemany("insert into ingested (at, kind, customer, row) values (?, ?, ?, ?)", rows)
    for table in ("old_suggestions", "old_feedback", "events"):
        db.execute(f"drop table {table}")
    db.execute("commit")
    db.execute("vacuum")


def _seal(db: sqlite3.Connection) -> None:
    """Bring a store whose ingested rows hold raw ids (before sealing) to the current
    schema: each row sealed (:func:`cdp.privacy.sealed_row`) with its anonymous id's
    token beside it, and the old pages overwritten. Idempotent; needs the pseudonym key."""
    columns = {row[1] for row in db.execute("pragma table_info(ingested)")}
    if not columns or "anonymous" in columns:
        return
    from cdp.privacy import keys, sealed_row

    key = keys()[0]
    db.execute("begin")
    db.execute("alter table ingested add column anonymous text")
    for rowid, text in db.execute("select rowid, row from ingested").fetchall():
        sealed, anonymous = sealed_row(json.loads(text), key)
        db.execute(
            "update ingested set row = ?, anonymous = ? where rowid = ?",
            (json.dumps(sealed), anonymous, rowid),
        )
    db.execute("commit")
    db.execute("vacuum")


def _sequence(db: sqlite3.Connection) -> None:
    """Give a store from before the online log its ``seq`` numbers (never reused, unlike a
    rowid after an erasure deleted the last rows) and ``batch`` column; the old table's
    pages are overwritten. Idempotent."""
    columns = [row[1] for row in db.execute("pragma table_info(ingested)")]
    if not columns or "seq" in columns:
        return
    kept = ", ".join(
        c for c in ("at", "kind", "customer", "row", "anonymous", "secret") if c in columns
    )
    db.execute("begin")
    db.execute("alter table ingested rename to old_ingested")
    db.execute(INGESTED)
    db.execute(f"insert into ingested ({kept}) select {kept} from old_ingested order by rowid")
    db.execute("drop table old_ingested")
    db.execute("commit")
    db.execute("vacuum")


class FeedbackStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = self._connect()
        _upgrade(self._db)
        _seal(self._db)
        _sequence(self._db)
        self._db.executescript(SCHEMA)
        #: the highest ``seq`` written: reading the log after it needs no query
        self._last = self._db.execute("select coalesce(max(seq), 0) from ingested").fetchone()[0]
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
        db.execute("pragma synchronous=normal")
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

    def record_feedback(self, item: FeedbackIn, at: datetime) -> Recorded:
        """Store ``item`` (a :class:`serving.api.FeedbackIn`) if its request id is known and
        its action and product are among what that answer returned."""
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
            self._db.execute(
                "insert into feedback values (?, ?, ?, ?, ?, ?)",
                (
                    item.request_id,
                    customer,
                    item.action,
                    item.product_id,
                    item.outcome,
                    at.isoformat(),
                ),
            )
            self.expose(customer, item.action, item.product_id, item.request_id, at)
        return Recorded.STORED

    def expose(
        self, customer: str | None, action: str, product_id: str | None, request_id: str, at
    ) -> None:
        """Count one answer's action as shown to ``customer`` (for cooldowns and caps); the
        same answer again changes nothing, so feedback shared by other workers
        (:mod:`serving.online`) may arrive twice."""
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
        self, rows: list[tuple[str, str | None, dict, str | None, str]], at: datetime, batch: str
    ) -> None:
        """Store one batch of ingested contract rows, sealed (:func:`cdp.privacy.sealed_row`)
        and encrypted for the online log (:func:`cdp.privacy.lock_row`): ``(table, subject
        pseudonym, sealed row, anonymous id token, encrypted row)`` each."""
        with self._writing():
            self._db.execute("begin")
            try:
                self._db.executemany(
                    "insert into ingested (at, kind, customer, row, anonymous, secret, batch)"
                    " values (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (at.isoformat(), kind, who, json.dumps(row), anonymous, secret, batch)
                        for kind, who, row, anonymous, secret in rows
                    ],
                )
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise
            self._last = self._db.execute("select coalesce(max(seq), 0) from ingested").fetchone()[
                0
            ]

    def ingested_after(self, seq: int) -> list[tuple[int, str | None, str, str]]:
        """``(seq, batch, table, encrypted row)`` of every stored online row after ``seq``,
        in the order accepted (rows stored before replay existed have no encrypted copy)."""
        if seq >= self._last:
            return []
        with self._lock:
            return self._db.execute(
                "select seq, batch, kind, secret from ingested"
                " where seq > ? and secret is not null order by seq",
                (seq,),
            ).fetchall()

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

    def remember_messages(self, message_ids: list[str], at: datetime) -> None:
        """Record message ids as applied, so a retry of the same message is not."""
        with self._writing():
            self._db.executemany(
                "insert or ignore into messages values (?, ?)",
                [(m, at.isoformat()) for m in message_ids],
            )

    def forget_messages(self, message_ids: list[str]) -> None:
        """Undo :meth:`remember_messages` (their batch was refused)."""
        with self._writing():
            self._db.executemany(
                "delete from messages where message_id = ?", [(m,) for m in message_ids]
            )

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
            for table in TABLES:
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
            for table in TABLES:
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

    def outcomes(self) -> list[tuple[str | None, str, bool, bool]]:
        """One row per exposure that got feedback (an answer's action and product):
        ``(customer, action, accepted, converted)``; accepted includes converted."""
        rows = self._db.execute(
            "select customer, action, max(outcome in ('accepted', 'converted')),"
            " max(outcome = 'converted') from feedback group by request_id, action, product_id"
        ).fetchall()
        return [(who, action, bool(a), bool(c)) for who, action, a, c in rows]

    def count(self, table: str) -> int:
        """Rows in ``table``."""
        if table not in TABLES:
            raise ValueError(f"no table {table!r}")
        return self._db.execute(f"select count(*) from {table}").fetchone()[0]
