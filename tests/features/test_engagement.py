"""Engagement windows, sentiment, and identity stitching of anonymous events."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cdp.contract import ContractTables
from cdp.time import as_utc
from cdp.world.config import WorldConfig
from cdp.world.generate import generate_world
from conftest import at, contract
from features import engagement
from features.build import build_features
from features.engagement import exact_engagement
from features.inputs import as_inputs

AS_OF = at(100)


def _events(rows) -> pd.DataFrame:
    return pd.DataFrame(
        rows,
        columns=[
            "event_id",
            "customer_id",
            "anonymous_id",
            "occurred_at",
            "source",
            "event_type",
            "product_id",
            "sentiment",
        ],
    )


@pytest.fixture(scope="module")
def built():
    events = _events(
        [
            ("E1", "00001", None, at(99), "web", "page_view", None, None),  # 1 day ago
            ("E2", None, "ck-1", at(95), "web", "product_view", "P-INK", None),  # stitched
            ("E3", None, "ck-unknown", at(95), "web", "page_view", None, None),  # nobody's
            ("E4", "00001", None, at(80), "app", "page_view", None, None),  # 20 days ago
            ("E5", "00001", None, at(50), "email", "email_open", None, None),  # 50 days
            ("E6", "00001", None, at(98), "email", "email_click", None, None),
            ("E7", "00001", None, at(97), "support", "ticket_opened", None, -0.6),
            ("E8", "00001", None, at(90), "chatbot", "chat_message", None, 0.4),
            ("E9", "00001", None, at(40), "chatbot", "chat_message", None, -0.9),
            ("E10", "00001", None, at(101), "chatbot", "chat_message", None, -1.0),  # future
            ("E11", None, "ck-1", at(5), "web", "page_view", None, None),  # before sign-up
        ]
    )
    tables = contract(events=events)
    return build_features(tables, as_of=AS_OF).customers.set_index("customer_id")


def test_counts_per_window(built):
    a = built.loc["00001"]
    assert (a["views_7d"], a["views_30d"], a["views_90d"]) == (2, 3, 3)
    assert (a["product_views_7d"], a["product_views_90d"]) == (1, 1)
    assert (a["email_opens_30d"], a["email_opens_90d"]) == (0, 1)
    assert a["email_clicks_7d"] == 1
    assert a["support_tickets_7d"] == 1
    assert (a["chat_messages_7d"], a["chat_messages_30d"], a["chat_messages_90d"]) == (0, 1, 2)


def test_sentiment(built):
    a = built.loc["00001"]
    assert a["sentiment_mean_7d"] == pytest.approx(-0.6)
    assert a["sentiment_mean_30d"] == pytest.approx((-0.6 + 0.4) / 2)
    assert a["sentiment_min_90d"] == pytest.approx(-0.9)
    assert a["days_since_negative_sentiment"] == pytest.approx(3.0)  # E7; E10 is the future
    assert a["days_since_last_event"] == pytest.approx(1.0)


def test_anonymous_events_count_for_their_cookie_owner(built):
    a = built.loc["00001"]
    assert a["stitched_events_90d"] == 1  # E2 (E11 is older than 90 days)
    assert built.loc["00002", "views_90d"] == 0  # the unknown cookie is nobody's
    assert built.loc["00003", "views_90d"] == 0


def test_no_events_means_zero_counts_and_null_sentiment(built):
    c = built.loc["00003"]
    assert c["chat_messages_90d"] == 0
    assert pd.isna(c["sentiment_mean_90d"]) and pd.isna(c["days_since_last_event"])


@pytest.fixture(scope="module")
def world_inputs():
    world = generate_world(WorldConfig(customers=3_000, seed=5, as_of=pd.Timestamp("2025-06-30")))
    return as_inputs(ContractTables(**world.tables)), as_utc("2025-06-30")


def _direct(inputs, as_of, windows=(7, 30, 90)) -> pl.DataFrame:
    plan = exact_engagement(
        inputs.events, inputs.identities, as_of=as_of, windows=windows, negative_sentiment=-0.3
    )
    return plan.join(inputs.customers.select("customer_id"), on="customer_id").collect()


def test_hashed_keys_give_the_direct_answer(world_inputs):
    inputs, as_of = world_inputs
    args = dict(as_of=as_of, windows=(7, 30, 90), negative_sentiment=-0.3)
    fast = engagement._hashed_engagement(inputs.events, inputs.identities, inputs.customers, **args)
    assert fast is not None, "the hashed way refused a world without collisions"
    assert fast["stitched_events_90d"].sum() > 0
    assert_frame_equal(fast.sort("customer_id"), _direct(inputs, as_of).sort("customer_id"))


def test_colliding_keys_fall_back_to_the_direct_way(world_inputs, monkeypatch):
    inputs, as_of = world_inputs
    monkeypatch.setattr(engagement, "SLOT_BITS", 62)  # two hash bits: identifiers collide
    args = dict(as_of=as_of, windows=(7, 30, 90), negative_sentiment=-0.3)
    assert (
        engagement._hashed_engagement(inputs.events, inputs.identities, inputs.customers, **args)
        is None
    )
    got = engagement.engagement_features(inputs.events, inputs.identities, inputs.customers, **args)
    assert_frame_equal(got.sort("customer_id"), _direct(inputs, as_of).sort("customer_id"))
