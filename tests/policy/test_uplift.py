"""The uplift estimator (policy.uplift): Welch's interval against scipy's, coverage of a
known effect, the power warning, outcomes per customer as assigned, per action."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cdp.errors import BadInputError
from policy.uplift import outcomes_per_customer, per_action, uplift, uplifts

T0 = pd.Timestamp("2025-07-01", tz="UTC")
T1 = pd.Timestamp("2025-08-01", tz="UTC")


def test_the_interval_is_welchs_as_scipy_computes_it():
    treated, control = np.array([1.0, 0, 1, 1, 3, 0]), np.array([0.0, 0, 1, 2])
    got = uplift("orders", treated, control)
    reference = stats.ttest_ind(treated, control, equal_var=False).confidence_interval(0.95)
    assert got.difference == pytest.approx(treated.mean() - control.mean())
    assert (got.low, got.high) == pytest.approx((reference.low, reference.high))
    assert got.treated_customers == 6 and got.control_customers == 4


def test_the_interval_covers_a_known_effect_about_95_times_in_100():
    rng = np.random.default_rng(7)
    covered, runs = 0, 400
    for _ in range(runs):
        control = rng.poisson(1.0, 150) * rng.gamma(2.0, 20.0, 150)  # revenue-like
        treated = rng.poisson(1.2, 2850) * rng.gamma(2.0, 20.0, 2850)
        got = uplift("revenue", treated, control)
        covered += got.low <= 0.2 * 40.0 <= got.high  # true effect: 0.2 orders x 40
    assert 0.92 <= covered / runs <= 0.98


def test_an_aa_comparison_covers_zero_and_says_the_control_is_too_small():
    rng = np.random.default_rng(3)
    got = uplift("orders", rng.poisson(1.0, 3000), rng.poisson(1.0, 40))
    assert got.low <= 0 <= got.high and not got.excludes_zero
    assert got.warning is not None and "control group needs about" in got.warning
    assert got.control_needed is not None and got.control_needed > 40


def test_a_clear_effect_excludes_zero_without_a_warning():
    rng = np.random.default_rng(5)
    got = uplift("converted", rng.binomial(1, 0.5, 4000), rng.binomial(1, 0.2, 1000))
    assert got.excludes_zero and got.low > 0 and got.warning is None
    assert got.relative == pytest.approx(got.treated_mean / got.control_mean - 1)
    assert got.relative_low < got.relative < got.relative_high


def test_a_group_of_one_is_refused_naming_it():
    with pytest.raises(BadInputError, match="control group has 1 customers"):
        uplift("orders", np.ones(10), np.ones(1))


def _orders(rows):
    return pd.DataFrame(rows, columns=["customer", "order_id", "ordered_at", "quantity", "amount"])


def test_outcomes_count_everyone_as_assigned_within_the_period():
    groups = pd.DataFrame({"customer": ["a", "b", "c"], "group": ["treated", "treated", "control"]})
    orders = _orders(
        [
            ("a", "o1", T0, 2, 20.0),
            ("a", "o1", T0, 1, 5.0),  # a second line of the same order
            ("a", "o2", T0 + pd.Timedelta(days=3), -1, -5.0),  # a return: no order
            ("a", "o0", T0 - pd.Timedelta(seconds=1), 1, 99.0),  # before the period
            ("c", "o3", T1, 1, 7.0),  # at the end: outside [since, until)
            ("z", "o4", T0, 1, 1.0),  # nobody assigned
        ]
    )
    got = outcomes_per_customer(groups, orders, T0, T1).set_index("customer")
    assert got.loc["a", ["converted", "orders", "revenue"]].tolist() == [1, 1, 20.0]
    assert got.loc["b", ["converted", "orders", "revenue"]].tolist() == [0, 0, 0.0]
    assert got.loc["c", ["converted", "orders", "revenue"]].tolist() == [0, 0, 0.0]
    assert list(got.index) == ["a", "b", "c"]
    shuffled = outcomes_per_customer(groups, orders.sample(frac=1, random_state=1), T0, T1)
    pd.testing.assert_frame_equal(shuffled.set_index("customer"), got)


def test_per_action_counts_from_the_first_answer_that_showed_or_would_have_shown_it():
    groups = pd.DataFrame({"customer": list("abcdef"), "group": ["treated"] * 3 + ["control"] * 3})
    day = pd.Timedelta(days=1)
    entries = pd.DataFrame(
        {
            "customer": list("abdecf"),
            "action": ["winback_offer"] * 4 + ["cross_sell"] * 2,
            "at": [T0 + 5 * day] * 6,
        }
    )
    orders = _orders(
        [
            ("a", "o1", T0 + 6 * day, 1, 10.0),
            ("b", "o2", T0 + 1 * day, 1, 10.0),  # before b's first win-back: not counted
            ("d", "o3", T0 + 9 * day, 1, 10.0),
        ]
    )
    got = per_action(groups, entries, orders, T1)
    assert list(got) == ["winback_offer"]  # cross-sell has one customer per group
    converted = got["winback_offer"][0]
    assert (converted.treated_mean, converted.control_mean) == (0.5, 0.5)
    assert [u.outcome for u in uplifts(outcomes_per_customer(groups, orders))] == [
        "converted",
        "orders",
        "revenue",
    ]


def test_cuped_narrows_the_interval_and_keeps_it_honest():
    rng = np.random.default_rng(11)
    covered, narrower, runs = 0, 0, 300
    for _ in range(runs):
        n = 3000
        keen = rng.gamma(1.0, 1.0, n)  # how much each customer buys
        group = np.where(rng.random(n) < 0.1, "control", "treated")
        past = rng.poisson(keen * 3)
        now = rng.poisson(keen + 0.15 * (group == "treated"))
        table = pd.DataFrame(
            {"customer": np.arange(n), "group": group, "converted": (now > 0).astype(int),
             "orders": now, "revenue": now * 10.0}
        )  # fmt: skip
        before = table.assign(converted=(past > 0).astype(int), orders=past, revenue=past * 10.0)
        adjusted = uplifts(table, before)[1]
        plain = uplifts(table)[1]
        covered += adjusted.low <= 0.15 <= adjusted.high
        narrower += (adjusted.high - adjusted.low) < (plain.high - plain.low)
        assert adjusted.theta is not None and plain.theta is None
    assert 0.92 <= covered / runs <= 0.98
    assert narrower == runs
