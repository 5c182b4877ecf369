"""Reloads in the background: one at a time, its progress and outcome readable at any moment.

A reload (new champions, a new snapshot, the online log replayed on top) takes from seconds
to minutes; a client waiting for it would time out long before (BentoML's request timeout,
a load balancer's). So ``POST /admin/reload`` starts one and answers 202 at once, the new
state swaps in when ready, and ``GET /admin/reload`` (and ``/metrics``) says how it went.
A request while one is running joins it: reloads never pile up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from serving.metrics import RELOAD_RUNNING, RELOAD_SECONDS


class Reloads:
    """Runs ``swap`` (load beside the current state, then switch; returns ``{"reloaded",
    "model_versions", "detail"}``) one at a time, in the caller's thread (:meth:`run`) or in
    a background thread (:meth:`start`), and keeps the last one's status (:meth:`status`).

    Memory: the last status only.
    """

    def __init__(self, swap: Callable[[], dict]) -> None:
        self._swap = swap
        self._lock = threading.Lock()  # held for the whole of a reload
        self._guard = threading.Lock()  # guards the status and the thread
        self._thread: threading.Thread | None = None
        self._status: dict = {"status": "idle"}
        RELOAD_RUNNING.set(0)  # exported from the start, for the rules that read it

    def run(self, asked_at: str | None = None) -> dict:
        """Reload now, in this thread (after any reload already running); its answer.
        ``asked_at``: when it was asked for (:meth:`start`), else now."""
        with self._lock:
            started, clock = asked_at or datetime.now(UTC).isoformat(), time.monotonic()
            with self._guard:
                self._status = {"status": "running", "started_at": started}
            RELOAD_RUNNING.set(1)
            try:
                answer = self._swap()
            except Exception as error:  # swap keeps the old state; say why it failed
                answer = {"reloaded": False, "model_versions": {}, "detail": repr(error)}
            finally:
                RELOAD_RUNNING.set(0)
            seconds = time.monotonic() - clock
            RELOAD_SECONDS.observe(seconds)
            with self._guard:
                self._status = {
                    "status": "reloaded" if answer["reloaded"] else "failed",
                    "started_at": started,
                    "finished_at": datetime.now(UTC).isoformat(),
                    "seconds": round(seconds, 3),
                    **answer,
                }
            return answer

    def start(self, then: Callable[[dict], None] | None = None) -> tuple[bool, dict]:
        """Start a reload in the background, unless one is running (then join it); whether
        this call started one, and the status now. ``then`` gets the answer of a reload
        this call started, when it is done."""
        with self._guard:
            if self._thread is not None and self._thread.is_alive():
                return False, dict(self._status)

            started = datetime.now(UTC).isoformat()

            def work() -> None:
                answer = self.run(started)
                if then is not None:
                    then(answer)

            self._status = {"status": "running", "started_at": started}
            self._thread = threading.Thread(target=work, daemon=True, name="nextbest-reload")
            self._thread.start()
            return True, dict(self._status)

    def status(self) -> dict:
        """The running reload's status, or the last one's (``idle`` before any)."""
        with self._guard:
            return dict(self._status)
