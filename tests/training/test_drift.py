"""Population stability on hand-built distributions with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from training.drift import (
    EPS,
    DriftThresholds,
    drift_report,
    feature_profile,
    psi,
    reference_profile,
)

pytestmark = pytest.mark.heavy  # trains models or starts Spark: not in `make test-fast`


def test_identical_distributions_have_psi_zero():
    values = pd.Series(np.arange(1000, dtype=float))
    profile = feature_profile(values)
    assert len(profile["edges"]) == 9 and profile["shares"][:10] == pytest.approx([0.1] * 10)
    assert psi(profile["shares"], profile["shares"]) == 0.0
    shuffled = values.sample(frac=1, random_state=1)
    report = drift_report(
        {"features": {"x": profile}, "score": profile},
        pd.DataFrame({"x": shuffled}),
        shuffled,
        DriftThresholds(),
    )
    assert report["psi"].tolist() == [0.0, 0.0] and set(report["level"]) == {"stable"}


def test_a_known_shift_gives_the_known_psi():
    # two bins, half and half, against a quarter and three quarters
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    assert expected == pytest.approx(0.2747, abs=1e-4)

    # deciles of 0..999; now everybody sits in the lower half: five bins of 0.2, five empty
    reference = feature_profile(pd.Series(np.arange(1000, dtype=float)))
    now = pd.Series(np.arange(500, dtype=float))
    hand = 5 * (0.2 - 0.1) * math.log(0.2 / 0.1) + 5 * (EPS - 0.1) * math.log(EPS / 0.1)
    report = drift_report(
        {"features": {"x": reference}, "score": reference},
        pd.DataFrame({"x": now}),
        now,
        DriftThresholds(moderate=0.1, major=0.25),
    )
    assert report.set_index("feature")["psi"].to_dict() == pytest.approx({"x": hand, "score": hand})
    assert set(report["level"]) == {"major"}


def test_missing_values_and_categories_have_their_own_bins():
    reference = feature_profile(pd.Series([1.0, 2.0, np.nan, np.nan]))
    assert reference["shares"][-1] == 0.5  # the missing bin
    segment = pd.Series(["Lost", "Champions", "Lost", "Lost"], dtype="string")
    profile = feature_profile(segment)
    assert profile["categories"] == ["Champions", "Lost"]
    assert profile["shares"] == [0.25, 0.75, 0.0]
    # a category never seen at the snapshot falls in the last bin
    now = pd.DataFrame({"segment": pd.Series(["New", "New", "Lost", "Champions"], dtype="string")})
    report = drift_report(
        {"features": {"segment": profile}, "score": feature_profile(pd.Series([0.1, 0.2]))},
        now,
        [0.1, 0.2],
        DriftThresholds(),
    )
    hand = psi([0.25, 0.75, 0.0], [0.25, 0.25, 0.5])
    assert report.set_index("feature").loc["segment", "psi"] == pytest.approx(hand)


def test_a_reference_profile_holds_no_values_of_anybody():
    frame = pd.DataFrame({"spend": np.arange(100.0) * 7.25, "segment": ["A", "B"] * 50})
    profile = reference_profile(frame, ["spend", "segment"], np.linspace(0, 1, 100), "2025-06-30")
    text = repr(profile)
    assert "7.25" not in text and "14.5" not in text  # single values are not stored
    assert profile["rows"] == 100 and set(profile["features"]) == {"spend", "segment"}


@pytest.mark.parametrize(
    ("value", "level"), [(0.0, "stable"), (0.1, "moderate"), (0.3, "major"), (np.nan, "unknown")]
)
def test_thresholds_name_the_level(value, level):
    assert DriftThresholds(0.1, 0.25).level(value) == level


def test_thresholds_must_be_ordered():
    with pytest.raises(ValueError, match="moderate <= major"):
        DriftThresholds(moderate=0.3, major=0.2)
