"""The service's clock: the wall clock in UTC, or for simulated data a fixed moment that an
admin may move forward (``POST /admin/clock``), so that a simulation can play days through
a running service (``make eval-uplift``).

A simulated clock keeps its moment in the state folder's ``clock`` file, so every worker
and an MCP server on the same folder read the same time; it is the later of the file's
moment and the fixed one it started with (time on a state never goes back). Reading it
costs one ``stat`` per call, and a read of the file only when it changed.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from cdp.errors import BadInputError


def wall_clock() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


class SimulatedClock:
    """A fixed moment ``start``, moved forward by :meth:`advance` (kept in ``path``)."""

    def __init__(self, start: datetime, path: Path) -> None:
        self.start, self.path = start, Path(path)
        self._seen: tuple[int, datetime] | None = None  # (mtime_ns, moment) last read

    def __call__(self) -> datetime:
        try:
            changed = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return self.start
        if self._seen is None or self._seen[0] != changed:
            try:
                moment = datetime.fromisoformat(self.path.read_text().strip())
            except (OSError, ValueError):  # being replaced, or foreign: the last one read
                return self._seen[1] if self._seen else self.start
            self._seen = (changed, max(moment, self.start))
        return self._seen[1]

    def advance(self, to: datetime) -> datetime:
        """Move the clock to ``to`` (UTC-aware, not before now); returns the new moment.
        Raises :class:`BadInputError` for a move backwards."""
        now = self()
        if to < now:
            raise BadInputError(
                f"now: {to.isoformat()} is before the clock's {now.isoformat()} (it only moves"
                " forward)"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".clock.tmp-{os.getpid()}")
        tmp.write_text(to.astimezone(UTC).isoformat() + "\n")
        tmp.replace(self.path)
        return self()
