"""Background reloads: one at a time, joined while running, their status readable throughout."""

from __future__ import annotations

import threading
import time

from serving.memory.reloads import Reloads


def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_started_reload_runs_in_the_background_and_a_second_request_joins_it():
    release, calls, done = threading.Event(), [], []

    def swap() -> dict:
        calls.append(1)
        release.wait(5)
        return {"reloaded": True, "model_versions": {"churn": "2"}, "detail": "switched"}

    reloads = Reloads(swap)
    assert reloads.status() == {"status": "idle"}
    started, status = reloads.start(then=done.append)
    assert started and status["status"] == "running"  # answered before the load ends
    joined, again = reloads.start(then=done.append)
    assert not joined and again["started_at"] == status["started_at"]
    assert reloads.status()["status"] == "running"
    release.set()
    _until(lambda: reloads.status()["status"] != "running")
    final = reloads.status()
    assert final["status"] == "reloaded" and final["model_versions"] == {"churn": "2"}
    assert final["finished_at"] >= final["started_at"] and final["seconds"] >= 0
    _until(lambda: done)
    assert len(calls) == 1 and done == [
        {k: final[k] for k in ("reloaded", "model_versions", "detail")}
    ]


def test_a_failed_swap_is_a_failed_status_and_the_next_reload_runs_again():
    outcomes = iter([RuntimeError("store down"), None])

    def swap() -> dict:
        error = next(outcomes)
        if error is not None:
            raise error
        return {"reloaded": True, "model_versions": {}, "detail": "switched"}

    reloads = Reloads(swap)
    failed = reloads.run()
    assert failed["reloaded"] is False and "store down" in failed["detail"]
    assert reloads.status()["status"] == "failed"
    assert reloads.run()["reloaded"] and reloads.status()["status"] == "reloaded"


def test_reloads_never_overlap():
    inside, most = [0], [0]
    guard = threading.Lock()

    def swap() -> dict:
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.02)
        with guard:
            inside[0] -= 1
        return {"reloaded": True, "model_versions": {}, "detail": "switched"}

    reloads = Reloads(swap)
    threads = [threading.Thread(target=reloads.run) for _ in range(4)]
    for thread in threads:
        thread.start()
    reloads.start()
    for thread in threads:
        thread.join()
    _until(lambda: reloads.status()["status"] != "running")
    assert most[0] == 1
