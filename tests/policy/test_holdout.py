"""The global control group: a stable, keyed draw of a share of customers per period, and
never a marketing action for them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.catalog import load_catalog
from policy.holdout import CONTROL, Holdout
from policy.profile import Consumable, Context, CrossSell, Profile
from policy.ranking import rank

KEY = b"pseudonym-key-for-holdout-tests"
NOW = datetime(2025, 6, 30, 12, tzinfo=UTC)
CATALOG = load_catalog()
PEOPLE = [f"ps_{i:05d}" for i in range(20_000)]


@pytest.mark.parametrize("share", [0.01, 0.05, 0.2, 0.5])
def test_the_share_is_held_out_and_the_draw_is_stable(share):
    holdout = Holdout(share, "2027H1")
    control = {p for p in PEOPLE if holdout.in_control(p, KEY)}
    assert abs(len(control) / len(PEOPLE) - share) < 4 * (share * (1 - share) / 20_000) ** 0.5
    assert control == {p for p in PEOPLE if Holdout(share, "2027H1").in_control(p, KEY)}
    other = {p for p in PEOPLE if Holdout(share, "2027H2").in_control(p, KEY)}
    assert len(control & other) < 2 * share * len(control) + 50  # a new period draws afresh
    elsewhere = {p for p in PEOPLE if holdout.in_control(p, b"another key")}
    assert control != elsewhere


def test_no_share_holds_nobody_out_and_bad_settings_are_refused():
    assert not any(Holdout().in_control(p, KEY) for p in PEOPLE[:1000])
    assert Holdout().group("ps_1", KEY) == "treated"
    for share in (-0.1, 0.51, 1.0):
        with pytest.raises(ValueError, match=r"a share in \[0, 0.5\]"):
            Holdout(share, "2027H1")
    with pytest.raises(ValueError, match="a named period"):
        Holdout(0.05, " ")


def test_the_settings_come_from_the_environment_refused_in_one_line():
    from cdp.errors import BadInputError
    from serving.config import holdout_from_env

    assert holdout_from_env({}) == Holdout()
    got = holdout_from_env({"NEXTBEST_HOLDOUT": "0.05", "NEXTBEST_HOLDOUT_PERIOD": "2027H1"})
    assert got == Holdout(0.05, "2027H1")
    for env, named in (
        ({"NEXTBEST_HOLDOUT": "0.7", "NEXTBEST_HOLDOUT_PERIOD": "p"}, "NEXTBEST_HOLDOUT:"),
        ({"NEXTBEST_HOLDOUT": "five", "NEXTBEST_HOLDOUT_PERIOD": "p"}, "NEXTBEST_HOLDOUT:"),
        ({"NEXTBEST_HOLDOUT": "0.05"}, "NEXTBEST_HOLDOUT_PERIOD:"),
    ):
        with pytest.raises(BadInputError, match=named):
            holdout_from_env(env)


@settings(max_examples=150, deadline=None)
@given(
    churn=st.floats(0, 1),
    due_days=st.floats(-20, 20),
    quiet_days=st.floats(0, 400),
    frustrated=st.booleans(),
    message=st.sampled_from([None, "where is my order?", "I want to reorder ink"]),
)
def test_a_control_customer_gets_the_service_actions_and_never_marketing(
    churn, due_days, quiet_days, frustrated, message
):
    last = NOW - timedelta(days=30)
    ink = Consumable(
        "P-INK", {"en": "Ink"}, 25.0, 0.8, NOW + timedelta(days=due_days),
        NOW + timedelta(days=due_days - 5), NOW + timedelta(days=due_days + 5), last,
    )  # fmt: skip
    mug = CrossSell("P-MUG", {"en": "Mug"}, 12.0, 0.4, ("LIKELY_NEXT_PURCHASE",))
    base = dict(
        marketing_consent=True,
        churn_probability=churn,
        clv_12m=900.0,
        last_order_at=NOW - timedelta(days=quiet_days),
        usual_gap_days=20.0,
        open_tickets=1 if frustrated else 0,
        min_sentiment_30d=-0.9 if frustrated else None,
        consumables=[ink],
        cross_sell=[mug],
    )
    context = Context(message=message)
    held = rank(Profile("C1", holdout=True, **base), context, CATALOG, now=NOW, max_actions=10)
    treated = rank(Profile("C1", **base), context, CATALOG, now=NOW, max_actions=10)
    assert all(s.purpose == "service" for s in held.suggestions)
    service = [
        s for s in treated.suggestions if s.purpose == "service" and s.action != "nothing_now"
    ]
    assert [s.action for s in held.suggestions if s.action != "nothing_now"] == [
        s.action for s in service
    ]
    marketing = {s.action for s in treated.suggestions if s.purpose == "marketing"}
    assert marketing <= {s.action for s in held.suppressed if s.reason == CONTROL}
    # what the control customer would have been shown: the uplift per action compares it
    assert held.held_out == tuple(s for s in treated.suggestions if s.purpose == "marketing")
    assert treated.held_out == ()
