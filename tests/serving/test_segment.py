"""The Segment spec: the mapping to contract rows, and who may push (signature or admin key)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime

import httpx
import pytest

from serving.security import SEGMENT_SECRET, SecurityMiddleware
from serving.segment import Message, to_batch

NOW = datetime(2025, 7, 1, tzinfo=UTC)
AT = "2025-06-30T10:00:00+00:00"


def rows(*messages: dict, products=("P-INK", "P-PRINTER")) -> dict[str, list]:
    return to_batch([Message.model_validate(m) for m in messages], NOW, set(products))


def test_identify_gives_identities_locale_and_consents():
    got = rows(
        {
            "type": "identify", "messageId": "m1", "userId": "C1", "anonymousId": "a1",
            "timestamp": AT, "context": {"locale": "zh-TW"},
            "traits": {"email": " A@B.com", "phone": "+886 912-345-678",
                       "consent_marketing": False, "consent_note": "yes"},
        }
    )  # fmt: skip
    ids = {(r["id_type"], r["id_value"]) for r in got["identities"]}
    assert ("email_sha256", hashlib.sha256(b"a@b.com").hexdigest()) in ids
    assert ("phone_sha256", hashlib.sha256(b"+886912345678").hexdigest()) in ids
    assert ("cookie", "a1") in ids and len(ids) == 3
    assert got["customers"] == [{"customer_id": "C1", "locale": "zh-TW"}]
    consent, note = got["consents"]  # a boolean, or the text of one
    assert consent["purpose"] == "marketing" and consent["granted"] is False
    assert consent["recorded_at"] == AT
    assert note["purpose"] == "note" and note["granted"] is True


def test_orders_aliases_pages_and_other_tracks():
    got = rows(
        {"type": "track", "messageId": "m2", "userId": "C1", "timestamp": AT,
         "event": "Order Completed", "properties": {"products": [
             {"product_id": "P-INK", "quantity": 3, "price": 2.5}, {"sku": "P-PRINTER"}]}},
        {"type": "alias", "messageId": "m3", "userId": "C1", "previousId": "a9"},
        {"type": "page", "messageId": "m4", "anonymousId": "a9", "timestamp": AT},
        {"type": "track", "messageId": "m5", "userId": "C1", "event": "Product Viewed",
         "properties": {"product_id": "P-UNKNOWN"}, "context": {"app": {"name": "shop"}}},
        {"type": "track", "messageId": "m6", "anonymousId": "a9", "event": "Wishlist Shared!"},
        {"type": "track", "messageId": "m7", "anonymousId": "a9", "event": "Order Completed",
         "properties": {"products": [{"sku": "P-INK"}]}},
    )  # fmt: skip
    assert [
        (o["order_id"], o["product_id"], o["quantity"], o["amount"]) for o in got["orders"]
    ] == [
        ("m2", "P-INK", 3, 7.5),
        ("m2", "P-PRINTER", 1, 0.0),
    ]
    assert got["identities"] == [{"customer_id": "C1", "id_type": "cookie", "id_value": "a9"}]
    events = {e["event_id"]: e for e in got["events"]}
    assert events["m4"]["event_type"] == "page_view" and events["m4"]["anonymous_id"] == "a9"
    assert events["m5"]["event_type"] == "product_view" and events["m5"]["product_id"] is None
    assert events["m5"]["source"] == "app"
    assert events["m6"]["event_type"] == "wishlist_shared"
    assert events["m7"]["event_type"] == "order_completed"  # no userId: an anonymous event
    assert events["m4"]["occurred_at"] == AT


async def _ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _post(app, headers: dict, body: bytes = b"{}") -> int:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return (await client.post("/v1/track", content=body, headers=headers)).status_code

    return asyncio.run(go())


@pytest.mark.parametrize("secret", [None, "shared-secret-0001"])
def test_who_may_push(monkeypatch, secret):
    admin, chatbot = "admin-key-0000000000001", "chatbot-key-00000000001"
    keys = {
        hashlib.sha256(k.encode()).hexdigest(): {s}
        for k, s in ((admin, "admin"), (chatbot, "chatbot"))
    }
    if secret:
        monkeypatch.setenv(SEGMENT_SECRET, secret)
    else:
        monkeypatch.delenv(SEGMENT_SECRET, raising=False)
    app = SecurityMiddleware(_ok, scopes={"/v1/track": "segment"}, keys=keys)
    if secret is None:  # no secret: an admin key, as /events
        assert _post(app, {}) == 401
        assert _post(app, {"x-api-key": chatbot}) == 403
        assert _post(app, {"x-api-key": admin}) == 200
    else:  # a secret: the body's signature, and a key does not replace it
        signature = hmac.new(secret.encode(), b'{"a": 1}', hashlib.sha1).hexdigest()
        assert _post(app, {"x-api-key": admin}, b'{"a": 1}') == 401
        assert _post(app, {"x-signature": signature}, b'{"a": 2}') == 401
        assert _post(app, {"x-signature": signature.upper()}, b'{"a": 1}') == 200


@pytest.mark.parametrize(
    ("value", "granted"),
    [("false", False), (" FALSE ", False), ("True", True), ("no", False), ("1", True)],
)
def test_a_consent_trait_sent_as_text_is_read_as_a_boolean(value, granted):
    got = rows(
        {"type": "identify", "messageId": "m1", "userId": "C1", "timestamp": AT,
         "traits": {"consent_marketing": value}}
    )  # fmt: skip
    assert [c["granted"] for c in got["consents"]] == [granted]


@pytest.mark.parametrize("value", ["maybe", 2, None, ["false"]])
def test_a_consent_trait_that_is_no_boolean_is_refused_naming_it(value):
    from serving.segment import Refused

    with pytest.raises(Refused) as refused:
        rows(
            {"type": "identify", "messageId": "m1", "userId": "C1", "timestamp": AT,
             "traits": {"consent_marketing": value}}
        )  # fmt: skip
    assert refused.value.problems[0]["loc"] == ["body", "traits", "consent_marketing"]


@pytest.mark.parametrize(
    "where",
    [{"traits": {"email": "a\ud800@b.c"}}, {"properties": {"products": [{"sku": "\udfff"}]}}],
    ids=["trait", "nested property"],
)
def test_a_lone_surrogate_anywhere_in_a_message_is_refused(where):
    """As JSON's \\ud800 escape arrives: a lone surrogate in a str, once parsed."""
    import pydantic

    body = {"type": "identify", "messageId": "m", "userId": "C1"} | where
    with pytest.raises(pydantic.ValidationError, match="lone surrogate"):
        Message.model_validate(body)


def test_purposes_id_types_and_event_types_are_folded_at_the_door():
    from serving.schemas import EventBatch

    batch = EventBatch.model_validate(
        {
            "consents": [{"customer_id": "C1", "purpose": " Marketing", "granted": False,
                          "recorded_at": AT}],
            "identities": [{"customer_id": "C1", "id_type": "Messenger", "id_value": "P-1"}],
            "events": [{"event_id": "e", "customer_id": "C1", "occurred_at": AT,
                        "source": "web", "event_type": "Ticket_Opened"}],
        }
    )  # fmt: skip
    assert batch.consents[0].purpose == "marketing"
    assert batch.identities[0].id_type == "messenger" and batch.identities[0].id_value == "P-1"
    assert batch.events[0].event_type == "ticket_opened"
