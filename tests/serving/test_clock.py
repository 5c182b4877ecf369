"""The simulated clock (serving.clock): shared through the state folder, forward only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cdp.errors import BadInputError
from serving.clock import SimulatedClock, wall_clock
from serving.config import ServeConfig

START = datetime(2025, 7, 1, 9, tzinfo=UTC)


def test_a_move_is_seen_by_every_clock_on_the_folder_and_never_goes_back(tmp_path):
    one, other = (
        SimulatedClock(START, tmp_path / "clock"),
        SimulatedClock(START, tmp_path / "clock"),
    )
    assert one() == other() == START
    later = START + timedelta(days=2)
    assert one.advance(later) == later
    assert other() == later
    with pytest.raises(BadInputError, match="only moves forward"):
        other.advance(START + timedelta(days=1))
    assert one() == later
    # a clock started later than the file's moment keeps its own start
    assert SimulatedClock(START + timedelta(days=9), tmp_path / "clock")() == START + timedelta(
        days=9
    )


def test_the_service_clock_is_simulated_only_with_a_fixed_moment(tmp_path):
    assert isinstance(ServeConfig(state=tmp_path, now=START).clock(), SimulatedClock)
    assert ServeConfig(state=tmp_path).clock() is wall_clock
    assert abs(wall_clock() - datetime.now(UTC)) < timedelta(seconds=5)
