"""The audit log: one JSON line per scoring call, append-only, rotated by size.

Each record says who asked (the API key's id: the first 8 hex digits of its SHA-256, never
the key), about whom (the customer's pseudonym, :func:`nextbest.privacy.pseudonym`, never
the raw id), for which purpose, what was returned (actions, model versions) and when.
Files live in ``<state>/audit/``: ``audit.jsonl`` is written, and when it passes
``max_bytes`` it is renamed ``audit-<UTC time>.jsonl`` and a new one begins. Lines are
appended with ``O_APPEND`` (one ``write`` each), so concurrent writers never interleave.

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

CURRENT = "audit.jsonl"
MAX_BYTES = 10_000_000


class AuditLog:
    def __init__(self, folder: Path, max_bytes: int = MAX_BYTES) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.folder / CURRENT

    def append(self, record: dict) -> None:
        line = (json.dumps(record, default=str, ensure_ascii=False) + "\n").encode()
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            try:
                if self.path.stat().st_size + len(line) > self.max_bytes:
                    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
                    self.path.rename(self.folder / f"audit-{stamp}.jsonl")
            except FileNotFoundError:
                pass
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

    def files(self) -> list[Path]:
        """Rotated files oldest first, then the current one."""
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
        with self._lock:
            for path in self.files():
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
