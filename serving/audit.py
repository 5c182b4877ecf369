"""The audit log: one JSON line per scoring call, append-only, rotated by size.

Each record says who asked (the API key's id: the first 8 hex digits of its SHA-256, never
the key), about whom (the customer's pseudonym, :func:`nextbest.privacy.pseudonym`, never
the raw id), for which purpose, what was returned (actions, model versions) and when.
Files live in ``<state>/audit/``: ``audit.jsonl`` is written, and when it passes
``max_bytes`` it is renamed ``audit-<UTC time>.jsonl`` and a new one begins.

Lines are written by a background thread every 50 ms (:mod:`serving.batching`; one
``O_APPEND`` write per batch, so concurrent writers never interleave): a write to a page
the kernel is flushing can block for milliseconds, and that wait must not sit in a
chatbot's request. A crash loses at most the last 50 ms of lines; :meth:`AuditLog.flush`
writes them.

The only rewrite is erasure (:meth:`AuditLog.erase`): the law that asks for records also
asks that an erased person's data go, so their lines are removed from every file (through
a temporary file and a rename) and one line records that an erasure happened, with counts
and no personal data.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from serving.batching import BatchWriter

CURRENT = "audit.jsonl"
MAX_BYTES = 10_000_000


class AuditLog:
    def __init__(self, folder: Path, max_bytes: int = MAX_BYTES) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # the files: batches and erasure
        self._batches = BatchWriter(self._append_locked, name="audit")

    @property
    def path(self) -> Path:
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
        if not chunk:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, b"".join(chunk))
        finally:
            os.close(fd)

    def files(self) -> list[Path]:
        """Rotated files oldest first, then the current one (after a flush)."""
        self.flush()
        rotated = sorted(self.folder.glob("audit-*.jsonl"))
        return rotated + ([self.path] if self.path.exists() else [])

    def entries(self) -> Iterator[dict]:
        for path in self.files():
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        yield json.loads(line)

    def erase(self, pseudonyms: set[str]) -> int:
        """Remove every line about one of ``pseudonyms``; return how many."""
        removed = 0
        files = self.files()
        with self._lock:
            for path in files:
                lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
                keep = [x for x in lines if json.loads(x).get("customer") not in pseudonyms]
                if len(keep) == len(lines):
                    continue
                removed += len(lines) - len(keep)
                tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
                tmp.write_text("".join(keep), encoding="utf-8")
                tmp.replace(path)
        return removed


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


def held(store, log: AuditLog, pseudonyms: set[str]) -> dict:
    """What the service's stores (:class:`serving.feedback.FeedbackStore`) and the audit
    ``log`` hold about these pseudonyms (for an export)."""
    return {
        "stores": store.subject(pseudonyms),
        "audit": [e for e in log.entries() if e.get("customer") in pseudonyms],
    }


def erase_held(store, log: AuditLog, pseudonyms: set[str], at, route: str, key_id) -> dict:
    """Erase these pseudonyms from the stores and the audit log, then audit the erasure
    with counts only; returns the counts (rows per store table, ``audit`` lines)."""
    erased = {**store.erase(pseudonyms), "audit": log.erase(pseudonyms)}
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
