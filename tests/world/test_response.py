"""Simulated responses (cdp.world.response): a reminder moves the next refill to the moment
it is shown, a win-back brings back only a customer who would not have come, each with its
probability; no effect changes nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cdp.errors import BadInputError
from cdp.world.response import Effect, draws, respond

T = pd.Timestamp("2025-07-01 09:00", tz="UTC")
UNTIL = T + pd.Timedelta(days=30)
DAY = pd.Timedelta(days=1)


def _orders(rows):
    frame = pd.DataFrame(
        rows, columns=["order_id", "customer_id", "ordered_at", "product_id", "quantity", "amount"]
    )
    return frame.astype({"quantity": "int64", "amount": "float64"})


HISTORY = _orders(
    [
        ("O1", "a", T - 40 * DAY, "INK", 2, 50.0),
        ("O2", "b", T - 90 * DAY, "MUG", 1, 12.0),
        ("O3", "b", T - 80 * DAY, "MUG", 1, 12.0),
        ("O4", "b", T - 70 * DAY, "LAMP", 1, 40.0),
        ("O5", "c", T - 60 * DAY, "INK", 1, 26.0),
    ]
)
FUTURE = _orders(
    [
        ("O6", "a", T + 5 * DAY, "INK", 2, 52.0),  # a's next refill
        ("O7", "a", T + 40 * DAY, "INK", 2, 52.0),
        ("O8", "c", T + 3 * DAY, "INK", 1, 26.0),  # c comes back anyway
    ]
)


def _shown(rows):
    return pd.DataFrame(rows, columns=["customer_id", "action", "product_id", "at"])


SHOWN = _shown(
    [
        ("a", "replenishment_reminder", "INK", T),
        ("b", "winback_offer", None, T),
        ("c", "winback_offer", None, T),
        ("d", "cross_sell", "MUG", T),
    ]
)


def test_a_sure_effect_moves_the_refill_and_brings_back_only_the_lapsed():
    added, future, truth = respond(Effect(1.0, 1.0), SHOWN, FUTURE, HISTORY, UNTIL, 7)
    got = added.set_index("customer_id")
    assert set(got.index) == {"a", "b"}  # c was coming anyway; a cross-sell does nothing
    assert got.loc["a", ["ordered_at", "product_id", "quantity", "amount"]].tolist() == [
        T, "INK", 2, 52.0,
    ]  # fmt: skip
    assert got.loc["b", ["product_id", "quantity", "amount"]].tolist() == ["MUG", 1, 12.0]
    assert sorted(added["order_id"]) == ["R000000007", "R000000008"]
    assert list(future["order_id"]) == ["O7", "O8"]  # O6 moved earlier
    assert truth.set_index("customer_id").loc["a", "moved_from"] == T + 5 * DAY
    assert truth.set_index("customer_id")["moved_from"].isna().loc["b"]


def test_no_effect_changes_nothing():
    added, future, truth = respond(Effect(), SHOWN, FUTURE, HISTORY, UNTIL, 1)
    assert added.empty and truth.empty
    pd.testing.assert_frame_equal(future, FUTURE)


def test_a_reminder_with_no_refill_ahead_is_a_new_purchase_at_the_last_price():
    shown = _shown([("c", "replenishment_reminder", "INK", T + 10 * DAY)])
    added, future, _ = respond(Effect(reminder=1.0), shown, FUTURE, HISTORY, UNTIL, 1)
    assert added[["customer_id", "quantity", "amount"]].values.tolist() == [["c", 1, 26.0]]
    assert len(future) == len(FUTURE)


def test_each_display_draws_once_with_its_probability():
    n = 20_000
    shown = _shown(
        [(f"c{i}", "replenishment_reminder", "INK", T + (i % 7) * DAY) for i in range(n)]
    )
    u = draws(Effect(seed=3), shown)
    assert np.array_equal(u, draws(Effect(seed=3), shown))
    assert not np.array_equal(u, draws(Effect(seed=4), shown))
    assert abs((u < 0.3).mean() - 0.3) < 0.015 and u.min() >= 0 and u.max() < 1


def test_a_probability_outside_zero_one_is_refused_naming_it():
    with pytest.raises(BadInputError, match="effect winback"):
        Effect(winback=1.5)
