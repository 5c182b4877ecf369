"""The served state's one consent check: the latest record at or before the moment decides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from serving.state import consent_in_force

T = datetime(2025, 6, 30, 12, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([], False),
        ([(T - DAY, True)], True),
        ([(T - DAY, True), (T - DAY / 2, False)], False),
        ([(T + DAY, True)], False),
        ([(T - DAY, True), (T + DAY, False)], True),
        ([(T - DAY, False), (T, True)], True),
    ],
    ids=["none", "granted", "withdrawn", "granted later", "withdrawal later", "granted now"],
)
def test_consent_in_force_is_the_latest_record_at_or_before_now(history, expected):
    assert consent_in_force(history, T) is expected
