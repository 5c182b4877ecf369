"""The Segment spec as contract rows: what a CDP (Segment, RudderStack, mParticle) pushes.

A Segment webhook destination sends ``track``, ``identify``, ``page``, ``screen`` and ``alias``
messages, one per request or many in a ``batch``. :func:`to_batch` maps them to the rows
``POST /events`` takes (one code path: :func:`serving.answers.ingest`):

=============================================  ================================================
message                                        rows
=============================================  ================================================
``track`` ``Order Completed``                  one order line per ``properties.products[]``
with ``products[]`` and a ``userId``           (``product_id`` or ``sku``, ``quantity``
                                               (default 1), amount = ``price`` x quantity;
                                               ``order_id``, else the ``messageId``)
``identify`` with a ``userId``                 identities: ``traits.email`` (as
                                               ``email_sha256`` of the trimmed, lower-cased
                                               address), ``traits.phone`` (``phone_sha256``),
                                               the ``anonymousId`` (``cookie``); locale from
                                               ``traits.locale`` or ``context.locale``; a
                                               consent per ``traits.consent_<purpose>`` (true
                                               or false, e.g. ``consent_marketing``; the text
                                               true/false, yes/no, 1/0 too; anything else is
                                               a 422 naming the trait)
``alias``                                      identity ``cookie`` = ``previousId`` of
                                               ``userId``
``page``, ``screen``                           an event ``page_view`` (source web / app)
any other ``track``                            an event; ``Product Viewed`` is
                                               ``product_view``, ``Product Added``
                                               ``add_to_cart``, any other name in snake case
                                               (``Coupon Applied``: ``coupon_applied``)
=============================================  ================================================

Events keep ``properties.product_id`` when the catalog has it. Purposes, id types and event
types are folded to lowercase (:func:`serving.schemas.folded`); text that is not UTF-8
anywhere in a message is a 422. A message's time is its
``timestamp`` (else ``receivedAt``, else now). Messages are deduplicated on ``messageId``
by the caller (:func:`serving.answers.ingest_segment`), claimed only with their rows.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Kind = Literal["track", "identify", "page", "screen", "alias"]
EVENT_TYPES = {"Product Viewed": "product_view", "Product Added": "add_to_cart"}
CONSENT_TRAIT = "consent_"


#: What a consent trait may say besides a JSON boolean (CDPs send strings), folded.
TRUTHS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


class Refused(ValueError):
    """Messages the service refuses (a 422): ``problems`` names each field."""

    def __init__(self, problems: list[dict]) -> None:
        super().__init__(f"{len(problems)} refused")
        self.problems = problems


def _text_everywhere(value, where: tuple = ()) -> list[tuple]:
    """Where ``value`` (any JSON) holds text that is not UTF-8 (a lone surrogate)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return [where]
        return []
    if isinstance(value, dict):
        return [
            p
            for k, v in value.items()
            for p in _text_everywhere(k, where) + _text_everywhere(v, (*where, str(k)))
        ]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _text_everywhere(v, (*where, i))]
    return []


#: A Segment ``identify`` message, as the documentation's example.
EXAMPLE = {
    "type": "identify",
    "messageId": "msg-0001",
    "userId": "C0000042",
    "timestamp": "2025-06-30T11:00:00Z",
    "traits": {"consent_marketing": False},
}


class Message(BaseModel):
    """One Segment-spec message; fields beyond these are accepted and ignored. Text that is
    not UTF-8 anywhere in it (a lone surrogate, in a trait or a property too) is a 422."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [EXAMPLE]})

    @model_validator(mode="before")
    @classmethod
    def _utf8(cls, data):
        bad = _text_everywhere(data)
        if bad:
            field = ".".join(str(part) for part in bad[0]) or "message"
            raise ValueError(f"{field}: not valid UTF-8 text (a lone surrogate)")
        return data

    type: Kind | None = None  # a single-message route fills it from its path
    messageId: str = Field(min_length=1, max_length=256)
    userId: str | None = Field(default=None, max_length=128)
    anonymousId: str | None = Field(default=None, max_length=256)
    previousId: str | None = Field(default=None, max_length=256)
    timestamp: datetime | None = None
    receivedAt: datetime | None = None
    event: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)


class Batch(BaseModel):
    """``POST /v1/batch``: up to 1,000 messages."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{"batch": [EXAMPLE]}]})

    batch: list[Message] = Field(min_length=1, max_length=1000)


def to_batch(messages: list[Message], now: datetime, products: set[str]) -> dict[str, list]:
    """The contract rows of ``messages`` (the body of an ``EventBatch``)."""
    rows: dict[str, list] = {k: [] for k in ("customers", "orders", "events", "consents")}
    rows["identities"] = []
    for m in messages:
        at = (m.timestamp or m.receivedAt or now).isoformat()
        if m.type == "identify" and m.userId:
            _identify(m, at, rows)
        elif m.type == "alias" and m.userId and m.previousId:
            rows["identities"].append(_identity(m.userId, "cookie", m.previousId))
        elif m.type == "track" and m.event == "Order Completed" and m.userId and _lines(m):
            order_id = str(m.properties.get("order_id") or m.messageId)
            for line in _lines(m):
                quantity, price = line.get("quantity", 1), line.get("price", 0.0)
                amount = price  # not a number: the row's check names it (422)
                if _number(quantity) and _number(price):
                    amount = round(price * quantity, 2)
                rows["orders"].append(
                    {
                        "order_id": order_id,
                        "customer_id": m.userId,
                        "ordered_at": at,
                        "product_id": str(line.get("product_id") or line.get("sku") or ""),
                        "quantity": quantity,
                        "amount": amount,
                    }
                )
        elif m.type != "identify" and (m.userId or m.anonymousId):
            rows["events"].append(_event(m, at, products))
    return rows


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _lines(m: Message) -> list[dict]:
    products = m.properties.get("products")
    return [p for p in products if isinstance(p, dict)] if isinstance(products, list) else []


def _identify(m: Message, at: str, rows: dict[str, list]) -> None:
    nested = m.context.get("traits")
    traits = {**(nested if isinstance(nested, dict) else {}), **m.traits}
    if email := traits.get("email"):
        digest = hashlib.sha256(str(email).strip().lower().encode()).hexdigest()
        rows["identities"].append(_identity(m.userId, "email_sha256", digest))
    if phone := traits.get("phone"):
        digest = hashlib.sha256(re.sub(r"[^\d+]", "", str(phone)).encode()).hexdigest()
        rows["identities"].append(_identity(m.userId, "phone_sha256", digest))
    if m.anonymousId:
        rows["identities"].append(_identity(m.userId, "cookie", m.anonymousId))
    if locale := traits.get("locale") or m.context.get("locale"):
        rows["customers"].append({"customer_id": m.userId, "locale": str(locale)})
    for trait, value in traits.items():
        if trait.startswith(CONSENT_TRAIT):
            granted = value if isinstance(value, bool) else None
            if isinstance(value, str):
                granted = TRUTHS.get(value.strip().casefold())
            if granted is None:
                raise Refused(
                    [
                        {
                            "loc": ["body", "traits", trait],
                            "msg": "a consent trait is true or false (a boolean, or the text"
                            " true/false, yes/no, 1/0)",
                            "type": "bool_type",
                        }
                    ]
                )
            rows["consents"].append(
                {
                    "customer_id": m.userId,
                    "purpose": trait[len(CONSENT_TRAIT) :],
                    "granted": granted,
                    "recorded_at": at,
                    "source": "segment",
                }
            )


def _identity(customer_id: str, id_type: str, id_value: str) -> dict:
    return {"customer_id": customer_id, "id_type": id_type, "id_value": id_value}


def _event(m: Message, at: str, products: set[str]) -> dict:
    if m.type in ("page", "screen"):
        event_type = "page_view"
    else:
        name = m.event or "track"
        event_type = EVENT_TYPES.get(name) or re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    product_id = m.properties.get("product_id")
    product_id = product_id if isinstance(product_id, str) and product_id in products else None
    return {
        "event_id": m.messageId,
        "customer_id": m.userId,
        "anonymous_id": None if m.userId else m.anonymousId,
        "occurred_at": at,
        "source": "app" if m.type == "screen" or "app" in m.context else "web",
        "event_type": event_type or "track",
        "product_id": product_id,
    }
