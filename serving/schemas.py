"""The HTTP API's request and response schemas (pydantic), as ``/docs.json`` documents them.

Requests are strict where JSON is: unknown fields, NaN and Infinity, text that is not UTF-8,
``false`` for a number, a number for a time, and times without a zone are 422s naming the
field. Responses are typed, so every answer is documented field by field.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

import pydantic
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from policy.locales import standard_tag
from serving.http import problems

MAX_QUANTITY = 10_000  # units in one order line (negative: a return)
MAX_AMOUNT = 1e9  # currency units in one order line
#: How far in the future (by the service's clock) an ingested row's time may lie.
CLOCK_SKEW = timedelta(minutes=5)

Locale = Literal["en", "zh-TW", "zh-CN"]
#: Numbers and flags as JSON has them: ``false`` is not 0, ``"1"`` is not 1.
Number = Annotated[float, pydantic.Strict()]
Count = Annotated[int, pydantic.Strict()]


def _iso_text(value):
    if not isinstance(value, str):  # a number would be read as a Unix time
        raise ValueError("expected an ISO 8601 date-time string with a zone")
    return value


#: A moment as the contract writes it: ISO 8601 text with a zone, never a bare number.
Moment = Annotated[AwareDatetime, pydantic.BeforeValidator(_iso_text)]
Outcome = Literal["shown", "accepted", "dismissed", "converted"]
BCP47 = r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$"


class Strict(BaseModel):
    """A request body: unknown fields, NaN / Infinity and text that is not UTF-8 (a lone
    surrogate such as ``"\\ud800"``) are 422s naming the field, never stored or echoed."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _utf8(cls, value):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("not valid UTF-8 text (a lone surrogate)") from None
        return value


def folded(value: str) -> str:
    """A name compared without case: ``"Marketing "`` is ``marketing`` (purposes, id types,
    event types are lowercase words in the data contract)."""
    return value.strip().casefold()


#: A lowercase contract word (purpose, id type, event type), folded at the door.
Word = Annotated[str, pydantic.AfterValidator(folded), Field(min_length=1, max_length=64)]


class Identity(Strict):
    id_type: Word = Field(examples=["messenger"])
    id_value: str = Field(min_length=1, max_length=256, examples=["psid-1234"])


class CustomerRef(Strict):
    """A customer id, or an identity (messenger PSID, LINE id, cookie, device, …): exactly
    one of the two (neither may be null)."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["customer_id"]}, {"required": ["identity"]}]}
    )

    # typed without None, so an explicit null is refused as the schema says; absent: None
    customer_id: str = Field(default=None, min_length=1, max_length=128)
    identity: Identity = None

    @model_validator(mode="after")
    def _one(self):
        if (self.customer_id is None) == (self.identity is None):
            raise ValueError("give exactly one of customer_id or identity")
        return self


class ContextIn(Strict):
    channel: str = Field(default="chat", max_length=32)
    locale: str | None = Field(
        default=None,
        max_length=35,
        pattern=BCP47,
        description="A BCP 47 tag (en-US, zh_TW, zh-Hant, zh-HK, zh-Hans, ...): the answer"
        " uses the closest of en, zh-TW, zh-CN, else the customer's locale, else en",
        examples=["zh-Hant"],
    )
    intent: str | None = Field(default=None, max_length=64, examples=["order_status"])
    message: str | None = Field(default=None, max_length=4000)
    sentiment: Number | None = Field(default=None, ge=-1, le=1)

    @field_validator("locale")
    @classmethod
    def _tag(cls, value: str | None) -> str | None:
        return None if value is None else standard_tag(value)


class SuggestRequest(CustomerRef):
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": CustomerRef.model_config["json_schema_extra"]["oneOf"],
            "examples": [
                {
                    "customer_id": "C0000042",
                    "context": {"channel": "chat", "message": "my ink is almost out"},
                }
            ],
        }
    )

    context: ContextIn = ContextIn()
    max_actions: Count = Field(default=3, ge=1, le=10)


class Action(BaseModel):
    action: str
    purpose: Literal["service", "marketing"]
    product_id: str | None
    score: float = Field(description="expected value: probability x value - cost")
    probability: float
    expected_value: float
    confidence: Literal["low", "medium", "high"]
    reason_codes: list[str]
    reason: str
    message: str


class DoNotSuggest(BaseModel):
    action: str
    product_id: str | None
    reason: str


class SuggestResponse(BaseModel):
    request_id: str
    known: bool
    customer_id: str | None
    locale: Locale = Field(description="the locale of every message and reason in the answer")
    locale_requested: str | None = Field(
        description="the context's locale as sent (standardised), if any; null: the customer's"
    )
    features_as_of: datetime
    features_age_days: float = Field(
        description="how old the features are: now - features_as_of, in days"
    )
    now: datetime
    frustrated: bool
    actions: list[Action]
    do_not_suggest: list[DoNotSuggest]
    model_versions: dict[str, str]


Band = Literal["low", "medium", "high"]


class RecentOrder(BaseModel):
    order_id: str
    ordered_at: datetime
    amount: float = Field(description="the order's amount, in the shop's currency")
    lines: int


class ConsumableOut(BaseModel):
    product_id: str
    name: str = Field(description="in the customer's locale")
    last_purchase_at: datetime
    expected_run_out_at: datetime
    run_out_interval: tuple[datetime, datetime] = Field(
        description="10th and 90th percentile of the run-out date"
    )
    repurchase_probability: float | None = Field(
        description="P(re-buys within the window); null without marketing consent in force"
    )


class ProfileOut(BaseModel):
    """The 360-degree summary of one customer."""

    customer_id: str
    locale: str = Field(description="the customer's locale (BCP 47) from the CDP")
    segment: str
    churn_risk: Band | None = Field(description="null without marketing consent in force")
    churn_probability: float | None = Field(
        description="P(no order in the churn horizon); null without marketing consent in force"
    )
    clv_band: Band | None
    clv_12m: float | None = Field(description="expected 12-month value; null without consent")
    consents: dict[str, bool] = Field(description="purpose -> granted, as in force now")
    marketing_allowed: bool
    marketing_scoring: str
    do_not_suggest: list[str]
    preferred_channel: str | None
    open_support_tickets: int
    recent_orders: list[RecentOrder]
    consumables: list[ConsumableOut]
    features_as_of: datetime
    features_age_days: float = Field(
        description="how old the features are: now - features_as_of, in days"
    )
    now: datetime
    model_versions: dict[str, str]


class ChurnScore(BaseModel):
    """One customer's churn probability (the bare model endpoint)."""

    customer_id: str
    churn_probability: float | None = Field(
        description="P(no order in the churn horizon); null without marketing consent in force"
    )
    marketing_scoring: str = Field(description='"used", or why the score was withheld')
    model_version: str


class SubjectExport(BaseModel):
    """Everything the running service holds about one customer."""

    customer_id: str
    known: bool
    exported_at: datetime
    served_profile: dict | None = Field(description="the customer's served state, if known")
    holdout_group: Literal["control", "treated"] = Field(
        description="the customer's group in the global control group's period"
        " (NEXTBEST_HOLDOUT): control customers get no marketing"
    )
    stores: dict[str, list[dict]] = Field(
        description="rows of the suggestion, feedback and ingested stores, by table"
    )
    audit: list[dict] = Field(description="audit entries about the customer")


class BatchRequest(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"requests": [{"customer_id": "C0000042"}, {"customer_id": "C0000043"}]}]
        }
    )

    requests: list[SuggestRequest] = Field(min_length=1, max_length=500)


class BatchResponse(BaseModel):
    responses: list[SuggestResponse]


class OrderIn(Strict):
    order_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    ordered_at: Moment
    product_id: str = Field(min_length=1)
    quantity: Count = Field(
        ge=-MAX_QUANTITY, le=MAX_QUANTITY, description="not 0; negative for a return"
    )
    amount: Number = Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)


class EventIn(Strict):
    event_id: str = Field(min_length=1)
    customer_id: str | None = None
    anonymous_id: str | None = None
    occurred_at: Moment
    source: str = Field(min_length=1)
    event_type: Word
    product_id: str | None = None
    sentiment: Number | None = Field(default=None, ge=-1, le=1)

    @model_validator(mode="after")
    def _someone(self):
        if self.customer_id is None and self.anonymous_id is None:
            raise ValueError("at least one of customer_id or anonymous_id")
        return self


class ConsentIn(Strict):
    customer_id: str = Field(min_length=1)
    purpose: Word
    granted: pydantic.StrictBool
    recorded_at: Moment
    source: str | None = None


class IdentityIn(Strict):
    customer_id: str = Field(min_length=1)
    id_type: Word
    id_value: str = Field(min_length=1)
    move: pydantic.StrictBool = Field(
        default=False,
        description="true to move an identity that belongs to another customer (audited);"
        " without it such a row is refused",
    )


class CustomerIn(Strict):
    customer_id: str = Field(min_length=1)
    locale: str = Field(max_length=35, pattern=BCP47, description="A BCP 47 tag")


class EventBatch(Strict):
    """New contract rows from the CDP (same columns as the data contract)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "consents": [
                        {"customer_id": "C0000042", "purpose": "marketing", "granted": False,
                         "recorded_at": "2025-06-30T11:00:00Z"}
                    ]
                }
            ]
        }
    )  # fmt: skip

    customers: list[CustomerIn] = Field(default_factory=list, max_length=10_000)
    orders: list[OrderIn] = Field(default_factory=list, max_length=10_000)
    events: list[EventIn] = Field(default_factory=list, max_length=10_000)
    consents: list[ConsentIn] = Field(default_factory=list, max_length=10_000)
    identities: list[IdentityIn] = Field(default_factory=list, max_length=10_000)


class Applied(BaseModel):
    customers: int = Field(default=0, description="customer rows (locale) applied")
    orders: int
    events: int
    consents: int
    identities: int
    ignored: int = Field(description="anonymous events nobody can be attributed to")
    created: list[str] = Field(
        default_factory=list, description="customers new to the service, created by this batch"
    )


class SegmentOut(BaseModel):
    applied: Applied
    duplicates: int = Field(description="messages applied before (same messageId), skipped")


class FeedbackIn(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": "5f0c7a2e9b8d4c1fa3e6b7d8c9e0f1a2",
                    "action": "replenishment_reminder",
                    "product_id": "P-INK",
                    "outcome": "accepted",
                }
            ]
        }
    )

    request_id: str = Field(min_length=1, max_length=64)
    action: str = Field(min_length=1, max_length=64)
    product_id: str | None = Field(default=None, max_length=128)
    outcome: Outcome


class FeedbackOut(BaseModel):
    stored: bool


class ChurnRequest(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"customer_id": "C0000042"}]})

    customer_id: str = Field(min_length=1, max_length=128)


class SubjectIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"customer_id": "C0000042"}]})

    customer_id: str = Field(min_length=1, max_length=128)


class ErasedOut(BaseModel):
    known: bool
    identities: int
    stores: dict[str, int]
    audit_entries: int


class ClockIn(BaseModel):
    """Where to move a simulated clock (``--now``): forward only."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"now": "2025-07-01T09:00:00Z"}]}
    )
    now: Moment


class ClockOut(BaseModel):
    now: datetime


class ReloadStatus(BaseModel):
    """A reload's progress and outcome on the worker that answers (``X-Served-By``)."""

    status: Literal["idle", "running", "reloaded", "failed"] = Field(
        description="idle (none yet), running, or how the last one ended"
    )
    started: bool | None = Field(
        None,
        description="POST only: true if this request started the reload, false if it joined"
        " the one already running",
    )
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float | None = Field(None, description="how long it took, start to switch")
    reloaded: bool | None = Field(None, description="finished: whether the new state serves")
    model_versions: dict[str, str] | None = Field(
        None, description="finished: the champion versions serving now"
    )
    detail: str | None = Field(None, description="finished: switched, or why it failed")


ERRORS = {
    400: {"model": problems.Problem, "description": "the body is not JSON, or not UTF-8"},
    422: {"model": problems.Problem, "description": "invalid input: each field and what is wrong"},
    401: {"model": problems.Problem, "description": "missing or unknown API key"},
    403: {"model": problems.Problem, "description": "the key lacks the scope"},
    413: {"model": problems.Problem, "description": "request body over the limit"},
    503: {
        "model": problems.Problem,
        "description": "not ready yet, or the store or audit log cannot take writes now;"
        " retry after the Retry-After seconds",
    },
}
