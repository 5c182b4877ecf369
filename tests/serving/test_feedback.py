"""The feedback store on a real SQLite file: exposures per answer, feedback only for what an
answer returned, and both kept across a restart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from serving.feedback import FeedbackStore, Recorded

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
