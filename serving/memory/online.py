"""The online log: everything accepted online, in order, which each worker applies to its state.

A request never changes a worker's :class:`~serving.memory.state.ServingState` by itself: what the
service accepts (contract rows from ``POST /events`` and the Segment routes, feedback that
counts as an exposure, an erasure) is appended to the log, and every request first catches
its worker's state up with the log (:func:`serving.answers.catch_up`: the entries after the
state's ``position``, applied in log order). A new state (start-up, reload) is the snapshot
plus the whole log replayed on top (:func:`serving.memory.runtime.replay`), so workers that read the
same log answer alike, and nothing accepted is lost across reloads, restarts and retrains.

Two logs, one interface:

- :class:`EmbeddedLog` (the default): the state folder's SQLite store
  (:class:`~serving.memory.feedback.FeedbackStore`: its ``ingested`` rows, positions are their
  ``seq``). One worker process; reading when nothing is new costs no query.
- :class:`RedisLog` (``NEXTBEST_ONLINE_STORE=redis://host:port/db``): one Redis stream shared
  by every worker and replica (one ``XREAD`` per request), plus what a worker must find
  that another one wrote: the answers feedback refers to, and Segment ``messageId`` claims.
  Rows go to the local SQLite store too (the data-subject routes read it). Run Redis with
  ``appendonly yes``: an acknowledged row is then on Redis' disk within a second
  (``appendfsync everysec``) or at once (``always``).

Rows are kept encrypted in both (:func:`cdp.privacy.lock_row`), with the subject's pseudonym
and anonymous-id token beside them so an erasure finds them; never a raw id in clear.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cdp.errors import BadInputError
from serving.memory.batching import BATCH_SECONDS, BatchWriter
from serving.memory.feedback import Claimed, StoreUnavailable

if TYPE_CHECKING:
    from serving.memory.feedback import FeedbackStore

ENV = "NEXTBEST_ONLINE_STORE"
KEEP_SECONDS = 30 * 86_400  # answers feedback may refer to, and messageId claims, in Redis
READ = 5_000  # entries per XREAD
#: Why more than one worker needs the shared store (``what``: the setting that asked).
ONE_WORKER = (
    "{what}: each worker would hold its own online state (an event sent to one would not"
    f" reach the others); set {ENV}=redis://host:port to share it, or serve with one worker"
)


@dataclass(frozen=True)
class Entry:
    """One entry of the log: a contract row (``kind`` is its table), ``feedback`` (an
    exposure), ``forget`` (an erasure) or ``reload`` (a worker loaded new champions),
    encrypted; rows of one accepted batch share ``batch`` and are contiguous."""

    kind: str
    secret: str
    batch: str | None = None
    who: str | None = None  # the subject's pseudonym
    anonymous: str | None = None  # the anonymous id's token
    position: object = None  # set when read


def configured() -> str | None:
    """The shared store's URL (``NEXTBEST_ONLINE_STORE``), or ``None`` for the embedded log."""
    return os.environ.get(ENV) or None


def open_log(store: FeedbackStore) -> EmbeddedLog | RedisLog:
    """The log this deployment uses: Redis when ``NEXTBEST_ONLINE_STORE`` is set, else the
    embedded one over ``store``. Raises :class:`BadInputError` when Redis cannot be reached."""
    url = configured()
    return RedisLog(url) if url else EmbeddedLog(store)


class EmbeddedLog:
    """One worker: the SQLite store's ``ingested`` rows are the log. Feedback and erasures
    change only this process, where they are applied directly, so they are not appended."""

    shared = False
    start = 0

    def __init__(self, store: FeedbackStore) -> None:
        self.store = store

    def append(
        self, entries: list[Entry], claims: list[str] = (), at: datetime | None = None
    ) -> None:
        """Nothing to do: the rows (and the claims) are in the store already, written in
        the same transaction (``record_events``)."""

    def read(self, after) -> list[Entry]:
        """The entries after position ``after``, in order."""
        return [
            Entry(kind, secret, batch, position=seq)
            for seq, batch, kind, secret in self.store.ingested_after(after)
        ]

    def drop(self, positions: list) -> int:
        """Delete the entries at ``positions`` (compaction); returns how many went."""
        return self.store.drop_ingested(positions)

    def unclaimed(self, message_ids: list[str]) -> set[str]:
        """The message ids not applied before (claimed only with their rows)."""
        return self.store.new_messages(message_ids)

    def remember_answer(self, request_id: str, who: str | None, actions: list) -> None:
        """Nothing to share: the store remembers its own answers."""

    def answer(self, request_id: str) -> tuple[str | None, set] | None:
        """No other worker gave answers."""
        return None

    def erase(self, pseudonyms: set[str], anonymous: set[str]) -> int:
        """Nothing beyond the store, which the erasure route clears itself."""
        return 0


class RedisLog:
    """Every worker and replica: one Redis stream (``nextbest:online``), answer records
    (``nextbest:answer:<request id>``) and Segment message claims
    (``nextbest:message:<id>``), the last two kept :data:`KEEP_SECONDS`."""

    shared = True
    start = "0-0"

    def __init__(self, url: str, prefix: str = "nextbest") -> None:
        import redis

        self._errors = redis.RedisError
        where = urlsplit(url)
        if where.scheme not in ("redis", "rediss", "unix"):
            raise BadInputError(f"{ENV}: expected a redis:// URL, got scheme {where.scheme!r}")
        self.client = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
        )
        self.stream = f"{prefix}:online"
        self.prefix = prefix
        self._answers = BatchWriter(self._write_answers, name="answers", keep_failed=True)
        self._reader = self.client.connection_pool.make_connection()
        self._reading = threading.Lock()
        try:
            self.client.ping()
        except redis.RedisError as error:  # the URL may hold a password: name host and port only
            raise BadInputError(
                f"{ENV}: cannot reach Redis at {where.hostname}:{where.port or 6379}: {error}"
            ) from None

    @contextlib.contextmanager
    def _talking(self):
        """Redis' failures as :class:`StoreUnavailable` (503 with Retry-After)."""
        try:
            yield
        except self._errors as error:
            raise StoreUnavailable(f"the online store (Redis): {error}") from None

    def append(
        self, entries: list[Entry], claims: list[str] = (), at: datetime | None = None
    ) -> None:
        """Add entries in one transaction (a batch stays contiguous), with the claims of the
        Segment messages they came from (``SET``, kept :data:`KEEP_SECONDS`): both or
        neither. Claims are watched from before the transaction: :class:`Claimed` when
        another worker claimed one of them meanwhile (nothing written)."""
        import redis

        keys = [f"{self.prefix}:message:{m}" for m in claims]
        with self._talking(), self.client.pipeline(transaction=True) as pipe:
            try:
                if keys:
                    pipe.watch(*keys)
                    taken = [m for m, v in zip(claims, pipe.mget(keys), strict=True) if v]
                    if taken:
                        raise Claimed(taken)
                pipe.multi()
                for key in keys:
                    pipe.set(key, at.isoformat(), ex=KEEP_SECONDS)
                for e in entries:
                    fields = {
                        "k": e.kind,
                        "s": e.secret,
                        "b": e.batch,
                        "w": e.who,
                        "a": e.anonymous,
                    }
                    pipe.xadd(self.stream, {k: v for k, v in fields.items() if v is not None})
                pipe.execute()
            except redis.WatchError:
                raise Claimed(list(claims)) from None

    def read(self, after) -> list[Entry]:
        """The entries after stream id ``after``, in order: one ``XREAD`` when nothing is
        new, on a connection of its own (every request makes this call: the pool's
        bookkeeping was half its cost)."""
        found: list[Entry] = []
        with self._talking(), self._reading:
            while True:
                self._reader.send_command("XREAD", "COUNT", READ, "STREAMS", self.stream, after)
                got = self._reader.read_response()
                if isinstance(got, dict):  # RESP3: {stream: entries}
                    items = got.get(self.stream) or []
                else:  # RESP2: [[stream, entries]]
                    items = got[0][1] if got else []
                for position, flat in items:
                    f = dict(zip(flat[::2], flat[1::2], strict=True))
                    found.append(
                        Entry(f["k"], f["s"], f.get("b"), f.get("w"), f.get("a"), position=position)
                    )
                if len(items) < READ:
                    return found
                after = items[-1][0]

    def drop(self, positions: list) -> int:
        """Delete the stream entries at ``positions`` (compaction), :data:`READ` at a time;
        returns how many went."""
        gone = 0
        with self._talking():
            for start in range(0, len(positions), READ):
                gone += self.client.xdel(self.stream, *positions[start : start + READ])
        return gone

    def unclaimed(self, message_ids: list[str]) -> set[str]:
        """The message ids no worker claimed before (claimed only with their rows, in
        :meth:`append`)."""
        if not message_ids:
            return set()
        with self._talking():
            found = self.client.mget([f"{self.prefix}:message:{m}" for m in message_ids])
        return {m for m, value in zip(message_ids, found, strict=True) if value is None}

    def remember_answer(self, request_id: str, who: str | None, actions: list) -> None:
        """Keep an answer's customer (pseudonym) and ``(action, product_id)`` pairs, so
        feedback on it is accepted by whichever worker receives it. Written every
        :data:`~serving.memory.batching.BATCH_SECONDS` by a background thread (one pipelined
        round trip for many answers, none in the request)."""
        self._answers.add((request_id, json.dumps([who, [list(a) for a in actions]])))

    def _write_answers(self, answers: list[tuple[str, str]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for request_id, text in answers:
            pipe.set(f"{self.prefix}:answer:{request_id}", text, ex=KEEP_SECONDS)
        pipe.execute()

    def answer(self, request_id: str) -> tuple[str | None, set] | None:
        """An answer any worker gave; looked up once more after a batch's time, in case
        the worker that gave it a moment ago has not written it yet."""
        for wait in (0.0, 2 * BATCH_SECONDS):
            time.sleep(wait)
            with self._talking():
                text = self.client.get(f"{self.prefix}:answer:{request_id}")
            if text is not None:
                who, actions = json.loads(text)
                return who, {tuple(a) for a in actions}
        return None

    def erase(self, pseudonyms: set[str], anonymous: set[str]) -> int:
        """Delete a subject's entries from the stream and their answer records (a scan: an
        admin route, not the request path); returns how many went."""
        self._answers.flush()
        gone = 0
        with self._talking():
            after = "-"
            while page := self.client.xrange(self.stream, min=after, count=READ):
                mine = [i for i, f in page if f.get("w") in pseudonyms or f.get("a") in anonymous]
                if mine:
                    gone += self.client.xdel(self.stream, *mine)
                if len(page) < READ:
                    break
                after = f"({page[-1][0]}"
            keys = list(self.client.scan_iter(f"{self.prefix}:answer:*", count=1_000))
            for start in range(0, len(keys), 1_000):
                chunk = keys[start : start + 1_000]
                texts = self.client.mget(chunk)
                theirs = [
                    k
                    for k, t in zip(chunk, texts, strict=True)
                    if t and json.loads(t)[0] in pseudonyms
                ]
                if theirs:
                    gone += self.client.delete(*theirs)
        return gone


def _fields(e: Entry) -> dict[str, str]:
    """An entry as a stream entry's fields (absent ones left out)."""
    fields = {"k": e.kind, "s": e.secret, "b": e.batch, "w": e.who, "a": e.anonymous}
    return {k: v for k, v in fields.items() if v is not None}
