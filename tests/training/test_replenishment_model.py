"""Replenishment: repurchase probability beats the overdue-ratio rule; run-out intervals cover."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.replenishment import MAX_CYCLE_DAYS
from training.replenishment import RunoutModel, precision_at_k, train_replenishment

pytestmark = pytest.mark.heavy  # trains models or starts Spark: not in `make test-fast`


def test_model_beats_the_overdue_ratio_rule_on_a_later_period(replenishment_data):
    result = train_replenishment(replenishment_data)
    m = result.metrics
    assert m.loc["model", "roc_auc"] > m.loc["overdue_ratio", "roc_auc"] + 0.1, m
    assert m.loc["model", "average_precision"] > m.loc["overdue_ratio", "average_precision"], m
    assert 0.65 <= m.loc["model", "interval_coverage_p10_p90"] <= 0.92, m
    assert m.loc["model", "runout_mae_days"] < m.loc["overdue_ratio", "runout_mae_days"], m


def test_training_never_sees_the_validation_window(replenishment_data):
    train, valid = replenishment_data["train"], replenishment_data["valid"]
    window = pd.Timedelta(days=14)
    assert (train["cutoff"] + window <= valid["cutoff"].min()).all()
    assert (train["last_purchase_at"] <= train["cutoff"]).all()


def _pair(last: float, cutoff: float, cycle: float = 30.0) -> dict:
    base = pd.Timestamp("2025-01-01", tz="UTC")
    return {
        "product_id": "P-INK",
        "purchase_days": 5,
        "cycle_mean_days": cycle,
        "cycle_std_days": 3.0,
        "expected_cycle_days": cycle,
        "last_purchase_at": base + pd.Timedelta(days=last),
        "cutoff": base + pd.Timedelta(days=cutoff),
    }


def test_runout_dates_by_hand():
    model = RunoutModel.from_parts(
        {"coverage": 0.8, "product_sigma_": {"P-INK": 0.1}, "default_sigma_": 0.1, "scale_": 1.0}
    )
    fresh, overdue = pd.DataFrame([_pair(0, 0)]), pd.DataFrame([_pair(0, 60)])
    dates = model.predict(fresh)
    base = pd.Timestamp("2025-01-01", tz="UTC")
    # just bought: the median run-out is one median cycle later
    assert abs(dates["runout_p50"].iloc[0] - (base + pd.Timedelta(days=30))) < pd.Timedelta(
        seconds=1
    )
    assert dates["runout_p10"].iloc[0] < dates["runout_p50"].iloc[0] < dates["runout_p90"].iloc[0]
    # twice overdue at the cutoff: every quantile lies after the cutoff
    late = model.predict(overdue)
    assert (late.iloc[0] > overdue["cutoff"].iloc[0]).all()


def test_precision_at_k_by_hand():
    assert precision_at_k([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1], k=2) == 0.5


@settings(max_examples=200, deadline=None)
@given(
    cycle=st.floats(0.0, 400.0),
    spread=st.floats(0.0, 10.0),  # the cycles' standard deviation over their mean, up to 10x
    units=st.sampled_from([1, 2, 12, 10_000]),  # quantity x pack size last bought
    purchase_days=st.sampled_from([1, 2, 5, 3_000]),
    overdue=st.floats(0.0, 20_000.0),  # days since the last purchase at the cutoff
    sigma=st.floats(0.02, 5.0),
    scale=st.floats(1.0, 6.0),
)
def test_runout_dates_stay_bounded_and_ordered_on_extreme_pairs(
    cycle, spread, units, purchase_days, overdue, sigma, scale
):
    """Wide spreads, 10,000 units, one purchase or thousands, far overdue: every run-out
    date is a date (no overflow), p10 <= p50 <= p90, never before the cutoff, and at most
    MAX_CYCLE_DAYS after the last purchase unless the cutoff itself is later."""
    model = RunoutModel.from_parts(
        {"coverage": 0.8, "product_sigma_": {}, "default_sigma_": sigma, "scale_": scale}
    )
    pair = _pair(0, overdue, cycle) | {
        "purchase_days": purchase_days,
        "cycle_std_days": cycle * spread,
        "expected_cycle_days": cycle * units,
    }
    dates = model.predict(pd.DataFrame([pair])).iloc[0]
    last, cutoff = pair["last_purchase_at"], pair["cutoff"]
    latest = max(last + pd.Timedelta(days=MAX_CYCLE_DAYS), cutoff) + pd.Timedelta(seconds=1)
    assert dates.notna().all(), dates
    assert dates["runout_p10"] <= dates["runout_p50"] <= dates["runout_p90"]
    assert cutoff - pd.Timedelta(seconds=1) <= dates["runout_p10"]
    assert dates["runout_p90"] <= latest
