"""The feedback store on a real SQLite file: exposures per answer, feedback only for what an
answer returned, and both kept across a restart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from serving.memory.feedback import FeedbackStore, Recorded

T0 = datetime(2025, 6, 30, 12, tzinfo=UTC)
REMINDER = ("replenishment_reminder", "P-INK")


@dataclass(frozen=True)
class Item:
    request_id: str
    action: str
    product_id: str | None
    outcome: str


@pytest.fixture
def store(tmp_path):
    return FeedbackStore(tmp_path / "serving.db")


def test_one_answer_is_one_exposure_whatever_outcomes_follow(store, tmp_path):
    store.record_suggestion("r1", "ps_a", [REMINDER, ("order_status_help", None)], T0)
    for outcome in ("shown", "dismissed", "accepted", "converted"):
        item = Item("r1", *REMINDER, outcome)
        assert store.record_feedback(item, T0 + timedelta(minutes=1)) is Recorded.STORED
    exposure = store.exposures("ps_a", T0 + timedelta(hours=1))[REMINDER]
    assert exposure.shown_30d == 1
    assert exposure.last_shown_at == T0 + timedelta(minutes=1)
    store.record_suggestion("r2", "ps_a", [REMINDER], T0 + timedelta(days=1))
    store.record_feedback(Item("r2", *REMINDER, "shown"), T0 + timedelta(days=1))
    assert store.exposures("ps_a", T0 + timedelta(days=2))[REMINDER].shown_30d == 2

    store.flush()
    reopened = FeedbackStore(tmp_path / "serving.db")  # a restart rebuilds the same exposures
    assert reopened.exposures("ps_a", T0 + timedelta(days=2)) == store.exposures(
        "ps_a", T0 + timedelta(days=2)
    )


@pytest.mark.parametrize(
    ("action", "product_id"),
    [("free_pony", None), ("replenishment_reminder", "P-OTHER"), ("cross_sell", "P-INK")],
    ids=["action never answered", "other product", "action of another kind"],
)
def test_feedback_for_what_the_answer_did_not_return_is_refused(
    store, tmp_path, action, product_id
):
    store.record_suggestion("r1", "ps_a", [REMINDER], T0)
    item = Item("r1", action, product_id, "shown")
    assert store.record_feedback(item, T0) is Recorded.NOT_OFFERED
    store.flush()  # and after a restart, read back from the file
    reopened = FeedbackStore(tmp_path / "serving.db")
    assert reopened.record_feedback(item, T0) is Recorded.NOT_OFFERED
    assert reopened.record_feedback(Item("r1", *REMINDER, "shown"), T0) is Recorded.STORED
    assert reopened.count("feedback") == 1
    assert reopened.exposures("ps_a", T0).keys() == {REMINDER}


def test_unknown_request_is_not_stored(store):
    assert store.record_feedback(Item("nope", *REMINDER, "shown"), T0) is Recorded.UNKNOWN_REQUEST
    assert store.count("feedback") == 0


def test_the_online_log_positions_are_never_reused_after_an_erasure(store):
    """A worker at position n reads what comes after n: were the erased last rows' numbers
    handed out again, the rows that got them would be skipped."""
    store.record_events(
        [("orders", "ps_a", {}, None, "s1"), ("orders", "ps_b", {}, None, "s2")], T0, "b1"
    )
    assert [seq for seq, *_ in store.ingested_after(0)] == [1, 2]
    store.erase({"ps_b"})
    store.record_events([("orders", "ps_c", {}, None, "s3")], T0, "b2")
    assert store.ingested_after(2) == [(3, "b2", "orders", "s3")]
    assert store.ingested_after(3) == []


def test_a_store_from_before_the_online_log_gets_positions_in_the_order_rows_came(tmp_path):
    import sqlite3

    path = tmp_path / "serving.db"
    old = sqlite3.connect(path)
    old.execute(
        "create table ingested (at text not null, kind text not null, customer text,"
        " row text not null, anonymous text, secret text)"
    )
    old.executemany(
        "insert into ingested values (?, 'orders', 'ps_a', '{}', null, ?)",
        [(T0.isoformat(), "first"), (T0.isoformat(), None), (T0.isoformat(), "third")],
    )
    old.commit()
    old.close()
    store = FeedbackStore(path)
    assert store.ingested_after(0) == [(1, None, "orders", "first"), (3, None, "orders", "third")]
    assert FeedbackStore(path).ingested_after(1) == [(3, None, "orders", "third")]  # idempotent


def test_rows_another_process_stores_are_read_at_the_next_look(tmp_path):
    """`nextbest mcp` beside `nextbest serve` on one --state: the rows one writes are in the
    other's log at its next read (a second connection to the file stands for the process)."""
    import subprocess
    import sys

    path = tmp_path / "serving.db"
    reader = FeedbackStore(path)
    assert reader.ingested_after(0) == []
    writer = (
        "import sys; from datetime import datetime, UTC;"
        " from pathlib import Path; from serving.memory.feedback import FeedbackStore;"
        " FeedbackStore(Path(sys.argv[1])).record_events("
        "[('consents', 'ps_a', {}, None, 'sealed-1')], datetime.now(UTC), 'b1')"
    )
    done = subprocess.run([sys.executable, "-c", writer, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert reader.ingested_after(0) == [(1, "b1", "consents", "sealed-1")]
    assert reader.ingested_after(1) == []


def test_an_erasure_while_other_requests_read_the_store_never_fails(store):
    """Requests run on threads sharing the store's one connection: an erasure (its vacuum
    needs no statement in progress on it) while another request reads the feedback
    counts (the learned factors) or the table sizes must neither fail nor make them fail.
    (Seen as a 500 on /admin/subject/erase in a clean-clone run.)"""
    import threading

    for i in range(3_000):
        store.record_suggestion(f"r{i}", f"ps_{i % 50}", [REMINDER], T0)
    store.flush()
    for i in range(3_000):
        store.record_feedback(Item(f"r{i}", *REMINDER, "accepted"), T0)
    errors, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            try:
                assert len(store.outcomes()) > 0
                store.count("feedback")
            except Exception as error:  # every failure is the finding
                errors.append(error)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        for i in range(25):
            store.erase({f"ps_gone_{i}"})
    except Exception as error:
        errors.append(error)
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert not errors, errors[:3]
