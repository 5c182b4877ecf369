"""The audit log: one JSON line per scoring call, append-only, rotated by size.

Each record says who asked (the API key's id: the first 8 hex digits of its SHA-256, never
the key), about whom (the customer's pseudonym, :func:`cdp.privacy.pseudonym`, never
the raw id), for which purpose, what was returned (actions, model versions) and when.
Files live in ``<state>/audit/``: ``audit.jsonl`` is written, and when it passes
``max_bytes`` it is renamed ``audit-<UTC time>.jsonl`` and a new one begins.

Lines are written by a background thread every 50 ms (:mod:`serving.memory.batching`; one
``O_APPEND`` write per batch, so concurrent writers never interleave): a write to a page
the kernel is flushing can block for milliseconds, and that wait must not sit in a
chatbot's request. A crash loses at most the last 50 ms of lines; :meth:`AuditLog.flush`
writes them.

The only rewrite is erasure (:meth:`AuditLog.erase`): the law that asks for records also
asks that an erased person's data go, so their lines are removed from every file (through
a temporary file and a rename, keeping the file's permissions) and one line records that an
erasure happened, with counts and no personal data.

What a failing disk does (full, read-only, gone): lines are whole or absent. A write that
fails part-way is cut back to the last whole line, the batch stays queued and is written
again on the next tick, and :attr:`AuditLog.healthy` is false until a write succeeds, so
the service answers its scoring routes 503 rather than serve what it cannot record.
Readers skip a torn line (left by an older version or another writer) and count it in
:attr:`AuditLog.torn` instead of failing.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from serving.memory.batching import BatchWriter

if TYPE_CHECKING:
    from serving.memory.feedback import FeedbackStore

CURRENT = "audit.jsonl"
MAX_BYTES = 10_000_000


class AuditLog:
    def __init__(self, folder: Path, max_bytes: int = MAX_BYTES) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # the files: batches and erasure
        self._batches = BatchWriter(self._append_locked, name="audit", keep_failed=True)
        self.torn: dict[str, int] = {}  # file name -> torn lines skipped by the last read

    @property
    def healthy(self) -> bool:
        """False while the last attempt to write lines failed (they are kept and retried)."""
        return self._batches.healthy

    @property
    def path(self) -> Path:
        """The file being appended to."""
        return self.folder / CURRENT

    def append(self, record: dict) -> None:
        """Add one line (written within 50 ms by the background thread)."""
        self._batches.add(json.dumps(record, default=str, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        """Write every line appended so far."""
        self._batches.flush()

    def _append_locked(self, lines: list[str]) -> None:
        with self._lock:
            self._append(lines)

    def _append(self, lines: list[str]) -> None:
        """Append ``lines``, rotating whenever the next line would pass ``max_bytes``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        chunk: list[bytes] = []
        for line in lines:
            data = line.encode()
            if size and size + len(data) > self.max_bytes:
                self._write_out(chunk)
                if self.path.exists():
                    self.path.rename(self._rotated())
                chunk, size = [], 0
            chunk.append(data)
            size += len(data)
        self._write_out(chunk)

    def _rotated(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target, n = self.folder / f"audit-{stamp}.jsonl", 0
        while target.exists():  # two rotations in one microsecond
            n += 1
            target = self.folder / f"audit-{stamp}-{n}.jsonl"
        return target

    def _write_out(self, chunk: list[bytes]) -> None:
        """Append whole lines, or none: a write that fails part-way (a full disk) is cut
        back to where it began, and the error raised."""
        if not chunk:
            return
        data = b"".join(chunk)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            start = os.fstat(fd).st_size
            try:
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
            except OSError:
                os.ftruncate(fd, start)  # no torn line for the next batch to follow
                raise
        finally:
            os.close(fd)

    def files(self) -> list[Path]:
        """Rotated files oldest first, then the current one (after a flush, when the disk
        takes it: while it does not, the queued lines stay queued and readers read what is
        on disk)."""
        with contextlib.suppress(OSError):
            self.flush()
        rotated = sorted(self.folder.glob("audit-*.jsonl"))
        return rotated + ([self.path] if self.path.exists() else [])

    def entries(self) -> Iterator[dict]:
        """Every entry, oldest first. A torn line (part of a line, with the next one glued
        on by an older writer) is counted in :attr:`torn`; the whole entry at its end, if
        any, is kept."""
        self.torn = {}
        for path in self.files():
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    if not line.strip():
                        continue
                    entry = _entry(line)
                    if entry is None:
                        self.torn[path.name] = self.torn.get(path.name, 0) + 1
                        tail = _tail(line)
                        entry = tail and tail[1]
                    if entry is not None:
                        yield entry

    def erase(self, pseudonyms: set[str]) -> int:
        """Remove every line about one of ``pseudonyms``; return how many."""
        removed = 0
        files = self.files()
        with self._lock:
            for path in files:
                text = path.read_text(encoding="utf-8", errors="replace")
                lines = text.splitlines(keepends=True)
                keep = [kept for x in lines if (kept := _without(x, pseudonyms)) is not None]
                if keep == lines:
                    continue
                removed += sum(1 for x in lines if _without(x, pseudonyms) != x)
                tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
                tmp.write_text("".join(keep), encoding="utf-8")
                os.chmod(tmp, path.stat().st_mode & 0o777)  # the file keeps its permissions
                tmp.replace(path)
        return removed


def _entry(line: str) -> dict | None:
    """The entry of one line, or ``None`` for a blank or torn one."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _tail(line: str) -> tuple[int, dict] | None:
    """Where the whole entry that ends a torn line starts (a line another batch was
    appended to), and the entry."""
    start = line.rfind('{"at"')
    while start > 0:
        entry = _entry(line[start:])
        if entry is not None:
            return start, entry
        start = line.rfind('{"at"', 0, start)
    return None


def _without(line: str, pseudonyms: set[str]) -> str | None:
    """The line with nothing about ``pseudonyms``: itself, ``None`` (it is theirs), or for a
    torn line that names one of them, the whole entry at its end (if not theirs)."""
    entry = _entry(line)
    if entry is not None:
        return None if entry.get("customer") in pseudonyms else line
    if not any(p in line for p in pseudonyms):
        return line
    tail = _tail(line)
    if tail is None or tail[1].get("customer") in pseudonyms:
        return None
    return line[tail[0] :]


def query(
    log: AuditLog,
    *,
    customers: set[str] | None = None,
    key_id: str | None = None,
    purpose: str | None = None,
    action: str | None = None,
    route: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[dict]:
    """The entries of ``log`` that match every filter given."""
    for entry in log.entries():
        at = datetime.fromisoformat(entry["at"])
        if customers is not None and entry.get("customer") not in customers:
            continue
        if key_id is not None and entry.get("key_id") != key_id:
            continue
        if purpose is not None and purpose not in entry.get("purposes", []):
            continue
        if action is not None and action not in entry.get("actions", []):
            continue
        if route is not None and entry.get("route") != route:
            continue
        if since is not None and at < since:
            continue
        if until is not None and at > until:
            continue
        yield entry


def held(
    store: FeedbackStore,
    log: AuditLog,
    pseudonyms: set[str],
    anonymous: set[str] = frozenset(),
) -> dict:
    """What the service's stores (:class:`serving.memory.feedback.FeedbackStore`) and the audit
    ``log`` hold about these pseudonyms (and identity tokens), for an export."""
    return {
        "stores": store.subject(pseudonyms, anonymous),
        "audit": [e for e in log.entries() if e.get("customer") in pseudonyms],
    }


def erase_held(
    store: FeedbackStore,
    log: AuditLog,
    pseudonyms: set[str],
    at: datetime,
    route: str,
    key_id: str | None,
    anonymous: set[str] = frozenset(),
) -> dict:
    """Erase these pseudonyms (and identity tokens) from the stores and the audit log, then
    audit the erasure with counts only; returns the counts (rows per store table,
    ``audit`` lines)."""
    erased = {**store.erase(pseudonyms, anonymous), "audit": log.erase(pseudonyms)}
    log.append(
        {
            "at": at.isoformat(),
            "route": route,
            "key_id": key_id,
            "customer": None,
            "purposes": ["legal obligation"],
            "actions": ["erasure"],
            "erased": erased,
        }
    )
    return erased
