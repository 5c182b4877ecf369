"""Records written in batches by a background thread, without locks on the request path.

The audit log and the suggestion records are written every 50 ms by a thread, so a disk
stall (a page under writeback, a WAL checkpoint's fsync) never sits in a chatbot's request.
A request only appends to a ``collections.deque`` (atomic under the GIL: no lock, no
condition to notify); the writer wakes on a timer and pops what is there.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

BATCH_SECONDS = 0.05

logger = logging.getLogger("nextbest.serving")


class BatchWriter:
    """Collect items with :meth:`add`; ``write(items)`` gets them in batches, in order,
    from one background thread every ``seconds`` (started on the first item).

    :meth:`flush` writes everything added so far before it returns, in the caller's thread.
    A crash loses at most the last ``seconds`` of items. A batch whose write fails in the
    thread is logged; with ``keep_failed`` it goes back to the front of the queue and is
    written again on the next tick (:attr:`healthy` is false until a write succeeds),
    otherwise it is dropped and the thread goes on with the next.
    """

    def __init__(
        self,
        write: Callable[[list[Any]], None],
        *,
        name: str,
        seconds=BATCH_SECONDS,
        keep_failed: bool = False,
    ):
        self._write = write
        self._keep_failed = keep_failed
        self.healthy = True
        self._seconds = seconds
        self._name = name
        self._items: deque = deque()
        self._writing = threading.Lock()  # one batch at a time, in order
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def add(self, item: Any) -> None:
        """Queue ``item`` for the next batch (starts the writer thread on first use)."""
        self._items.append(item)
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._starting:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name=self._name)
                self._thread.start()
                atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            time.sleep(self._seconds)
            if self._items:
                was_healthy = self.healthy
                try:
                    self.flush()
                except Exception:  # said once per outage, not every tick
                    if was_healthy:
                        logger.exception("%s: writing a batch failed", self._name)
                else:
                    if not was_healthy:
                        logger.warning("%s: writing works again", self._name)

    def flush(self) -> None:
        """Write every item added so far."""
        with self._writing:
            batch = []
            try:
                while True:
                    batch.append(self._items.popleft())
            except IndexError:
                pass
            if not batch:
                return
            try:
                self._write(batch)
            except BaseException:
                self.healthy = False
                if self._keep_failed:
                    self._items.extendleft(reversed(batch))
                raise
            self.healthy = True
