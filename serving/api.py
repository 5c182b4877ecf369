"""The HTTP API chatbots call: request and response schemas and the endpoint functions.

A FastAPI app mounted inside the BentoML service (:mod:`serving.service`), so every
endpoint, every error response and the field-level 422s are in the OpenAPI at
``/docs.json``. The endpoints read the service's current :class:`~serving.state.ServingState`
through :data:`RUNTIME`, which the service sets on start and swaps on reload.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Literal

import pydantic
from fastapi import FastAPI, HTTPException, Query
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from serving import problems
from serving.audit import erase_held, held
from serving.feedback import Recorded, StoreUnavailable
from serving.locales import answer_locale, standard_tag
from serving.policy import Context, rank
from serving.security import CALLER

#: What every model score may be used for (purpose limitation): churn, CLV and repurchase
#: scores drive marketing actions, so a route returns them only when :meth:`ServingState.allows`
#: says this purpose's consent is in force.
MODEL_PURPOSE = "marketing"
SKIPPED = (
    "skipped: no marketing consent in force (churn, CLV and repurchase scores serve marketing only)"
)

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


class Identity(Strict):
    id_type: str = Field(min_length=1, max_length=64, examples=["messenger"])
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
        pattern=r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$",
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
    stores: dict[str, list[dict]] = Field(
        description="rows of the suggestion, feedback and ingested stores, by table"
    )
    audit: list[dict] = Field(description="audit entries about the customer")


class BatchRequest(Strict):
    requests: list[SuggestRequest] = Field(min_length=1, max_length=500)


class BatchResponse(BaseModel):
    responses: list[SuggestResponse]


class OrderIn(Strict):
    order_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    ordered_at: Moment
    product_id: str = Field(min_length=1)
    quantity: Count = Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY)
    amount: Number = Field(ge=-MAX_AMOUNT, le=MAX_AMOUNT)

    @model_validator(mode="after")
    def _nonzero(self):
        if self.quantity == 0:
            raise ValueError("quantity must not be 0 (negative = return)")
        return self


class EventIn(Strict):
    event_id: str = Field(min_length=1)
    customer_id: str | None = None
    anonymous_id: str | None = None
    occurred_at: Moment
    source: str = Field(min_length=1)
    event_type: str = Field(min_length=1)
    product_id: str | None = None
    sentiment: Number | None = Field(default=None, ge=-1, le=1)

    @model_validator(mode="after")
    def _someone(self):
        if self.customer_id is None and self.anonymous_id is None:
            raise ValueError("at least one of customer_id or anonymous_id")
        return self


class ConsentIn(Strict):
    customer_id: str = Field(min_length=1)
    purpose: str = Field(min_length=1)
    granted: pydantic.StrictBool
    recorded_at: Moment
    source: str | None = None


class IdentityIn(Strict):
    customer_id: str = Field(min_length=1)
    id_type: str = Field(min_length=1)
    id_value: str = Field(min_length=1)


class EventBatch(Strict):
    """New contract rows from the CDP (same columns as the data contract)."""

    orders: list[OrderIn] = Field(default_factory=list, max_length=10_000)
    events: list[EventIn] = Field(default_factory=list, max_length=10_000)
    consents: list[ConsentIn] = Field(default_factory=list, max_length=10_000)
    identities: list[IdentityIn] = Field(default_factory=list, max_length=10_000)


class Applied(BaseModel):
    orders: int
    events: int
    consents: int
    identities: int
    ignored: int


class FeedbackIn(Strict):
    request_id: str = Field(min_length=1, max_length=64)
    action: str = Field(min_length=1, max_length=64)
    product_id: str | None = Field(default=None, max_length=128)
    outcome: Outcome


class FeedbackOut(BaseModel):
    stored: bool


class ChurnRequest(Strict):
    customer_id: str = Field(min_length=1, max_length=128)


class SubjectIn(Strict):
    customer_id: str = Field(min_length=1, max_length=128)


class ErasedOut(BaseModel):
    known: bool
    identities: int
    stores: dict[str, int]
    audit_entries: int


class ReloadOut(BaseModel):
    reloaded: bool
    model_versions: dict[str, str]
    detail: str


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


class Runtime:
    """The service's live parts, set by :mod:`serving.service`."""

    state = None  # ServingState, swapped whole on reload
    feedback = None  # FeedbackStore
    catalog = None
    clock = None  # () -> datetime
    reload = None  # () -> ReloadOut-like dict
    audit = None  # AuditLog
    pseudonym = None  # customer id -> pseudonym (cdp.privacy), bound to the key
    seal = None  # contract row -> (sealed row, anonymous token), bound to the key


def _audit(route: str, who: str | None, now, purposes, actions, request_id=None) -> None:
    """One audit line per scoring call: caller key id, pseudonym, purposes, actions,
    model versions, time. Never a raw id or a key."""
    state = RUNTIME.state
    RUNTIME.audit.append(
        {
            "at": now.isoformat(),
            "route": route,
            "key_id": CALLER.get(),
            "customer": who,
            "purposes": sorted(set(purposes)),
            "actions": list(actions),
            "model_versions": state.versions if state is not None else {},
            "request_id": request_id,
        }
    )


RUNTIME = Runtime()

# The chatbot endpoints are ``async``: their work (dictionary lookups, the policy, one SQLite
# insert) takes well under a millisecond, less than a hop to the thread pool. Ingestion and
# reload may take longer and stay plain functions, run in the thread pool.

logger = logging.getLogger("nextbest.serving")

app = FastAPI(
    title="nextbest",
    description="Proactive, explained, consent-aware next best actions for chatbots.",
    version="1",
    docs_url=None,
    redoc_url=None,
    openapi_url=None,  # BentoML serves the merged OpenAPI at /docs.json
)


problems.install(app, StoreUnavailable)


def _state():
    if RUNTIME.state is None:
        raise HTTPException(
            503, "not ready: models and features are still loading", {"Retry-After": "5"}
        )
    return RUNTIME.state


def _scoring_state():
    """The state, for a route that scores: every scoring call is audited, so while the
    audit log cannot be written (a full disk) the answer is 503 with Retry-After."""
    state = _state()
    if not RUNTIME.audit.healthy:
        raise HTTPException(
            503,
            "the audit log cannot be written (disk full or unavailable); retry shortly",
            headers={"Retry-After": "5"},
        )
    return state


def suggest_one(request: SuggestRequest) -> SuggestResponse:
    state = _scoring_state()
    now = RUNTIME.clock()
    identity = request.identity
    customer_id = state.resolve(
        request.customer_id, identity and identity.id_type, identity and identity.id_value
    )
    profile = state.profile(customer_id, now) if customer_id else None
    context = Context(**request.context.model_dump())
    who = RUNTIME.pseudonym(customer_id) if customer_id else None
    exposures = RUNTIME.feedback.exposures(who, now) if who else {}
    ranking = rank(
        profile,
        context,
        RUNTIME.catalog,
        now=now,
        exposures=exposures,
        window_days=state.window_days,
        max_actions=request.max_actions,
    )
    request_id = uuid.uuid4().hex
    actions = [
        Action(score=s.expected_value, **{k: v for k, v in asdict(s).items() if k != "value"})
        for s in ranking.suggestions
    ]
    names = [a.action for a in actions]
    answered = [(a.action, a.product_id) for a in actions]
    RUNTIME.feedback.record_suggestion(request_id, who, answered, now)
    _audit("/suggest", who, now, [a.purpose for a in actions], names, request_id)
    return SuggestResponse(
        request_id=request_id,
        known=customer_id is not None,
        customer_id=customer_id,
        locale=ranking.locale,
        locale_requested=context.locale,
        features_as_of=state.as_of,
        now=now,
        frustrated=ranking.frustrated,
        actions=actions,
        do_not_suggest=[DoNotSuggest(**asdict(s)) for s in ranking.suppressed],
        model_versions=state.versions,
    )


@app.post("/suggest", response_model=SuggestResponse, responses=ERRORS, tags=["chatbot"])
async def suggest(request: SuggestRequest) -> SuggestResponse:
    """Ranked, explained next best actions for one customer in a conversation."""
    return suggest_one(request)


@app.post("/suggest/batch", response_model=BatchResponse, responses=ERRORS, tags=["chatbot"])
async def suggest_batch(request: BatchRequest) -> BatchResponse:
    """The same for many customers (campaigns, CRM)."""
    return BatchResponse(responses=[suggest_one(r) for r in request.requests])


@app.get(
    "/profile",
    response_model=ProfileOut,
    responses={**ERRORS, 404: {"model": problems.Problem}},
    tags=["chatbot"],
)
async def profile(
    customer_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    id_type: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    id_value: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
) -> ProfileOut:
    """The 360° summary a chatbot needs so it never asks again."""
    if (customer_id is None) == (id_type is None or id_value is None):
        raise HTTPException(
            422,
            [
                {
                    "loc": ["query", "customer_id"],
                    "msg": "give customer_id, or both id_type and id_value (not both ways)",
                    "type": "missing",
                }
            ],
        )
    state = _scoring_state()
    resolved = state.resolve(customer_id, id_type, id_value)
    if resolved is None:
        raise HTTPException(404, "unknown customer")
    c = state.customers[resolved]
    now = RUNTIME.clock()
    # purpose limitation: the churn, CLV and repurchase scores serve marketing only
    marketing = state.allows(resolved, MODEL_PURPOSE, now)
    churn, clv = (c.churn_probability, c.clv_12m) if marketing else (None, None)
    _audit("/profile", RUNTIME.pseudonym(resolved), now, ["service"], [])
    return ProfileOut(
        **{
            "customer_id": resolved,
            "locale": c.locale,
            "segment": c.segment,
            "churn_risk": _band(churn, (0.3, 0.6)),
            "churn_probability": churn,
            "clv_band": _band(clv, (50.0, 200.0)),
            "clv_12m": clv,
            "consents": state.consents_at(resolved, now),
            "marketing_allowed": marketing,
            "marketing_scoring": "used" if marketing else SKIPPED,
            "do_not_suggest": [] if marketing else ["marketing: no marketing consent in force"],
            "preferred_channel": c.preferred_channel,
            "open_support_tickets": c.open_tickets,
            "recent_orders": c.recent_orders,
            "consumables": [
                {
                    "product_id": item.product_id,
                    "name": item.names.get(answer_locale(None, c.locale)) or item.names["en"],
                    "last_purchase_at": item.last_purchase_at,
                    "expected_run_out_at": item.expected_next_purchase_at,
                    "run_out_interval": [item.next_purchase_p10_at, item.next_purchase_p90_at],
                    "repurchase_probability": item.repurchase_probability if marketing else None,
                }
                for item in c.consumables.values()
            ],
            "features_as_of": state.as_of,
            "now": now,
            "model_versions": state.versions,
        }
    )


def _band(value: float | None, edges: tuple[float, float]) -> str | None:
    if value is None:
        return None
    return "low" if value < edges[0] else "medium" if value < edges[1] else "high"


@app.post(
    "/score/churn",
    response_model=ChurnScore,
    responses={**ERRORS, 404: {"model": problems.Problem}},
    tags=["chatbot"],
)
def score_churn(request: ChurnRequest) -> ChurnScore:
    """The churn probability of one customer who has bought: one row through the LightGBM
    booster on one thread (the bare model endpoint). The score serves marketing: without
    marketing consent in force it is withheld (``churn_probability`` null and the reason).
    An unknown, erased or never-buying customer is a 404 (not an error, and not logged)."""
    state, now = _scoring_state(), RUNTIME.clock()
    customer_id = request.customer_id
    row = state.churn_row.get(customer_id)
    if row is None:
        raise HTTPException(404, "unknown customer, or one who has not bought yet")
    who = RUNTIME.pseudonym(customer_id)
    answer = {"customer_id": customer_id, "model_version": state.versions["churn"]}
    if not state.allows(customer_id, MODEL_PURPOSE, now):
        _audit("/score/churn", who, now, [], [])
        return ChurnScore(**answer, churn_probability=None, marketing_scoring=SKIPPED)
    probability = state.churn_probability(row)
    _audit("/score/churn", who, now, [MODEL_PURPOSE], ["churn_score"])
    return ChurnScore(**answer, churn_probability=probability, marketing_scoring="used")


@app.post("/events", response_model=Applied, responses=ERRORS, tags=["admin"])
def events(batch: EventBatch) -> Applied:
    """Ingest new orders, events, consents and identities. A row dated after the service's
    clock (beyond a small skew) is refused with 422 naming it, and nothing is applied; else
    the rows are stored, then applied at once."""
    state, now = _state(), RUNTIME.clock()
    future = _from_the_future(batch, now)
    if future:
        raise HTTPException(422, future)
    rows = []
    for kind in ("orders", "events", "consents", "identities"):
        for item in getattr(batch, kind):
            owner = state.owner(item.customer_id, getattr(item, "anonymous_id", None))
            who = RUNTIME.pseudonym(owner) if owner else None
            rows.append((kind, who, *RUNTIME.seal(item.model_dump(mode="json"))))
    RUNTIME.feedback.record_events(rows, now)
    return Applied(**state.apply(batch))


TIMES = (("orders", "ordered_at"), ("events", "occurred_at"), ("consents", "recorded_at"))


def _from_the_future(batch: EventBatch, now: datetime) -> list[dict]:
    """A 422 item for every row whose time lies after ``now`` + :data:`CLOCK_SKEW`."""
    limit = now + CLOCK_SKEW
    return [
        {
            "loc": ["body", kind, i, name],
            "msg": f"{name} {getattr(item, name).isoformat()} is after the service's clock"
            f" {now.isoformat()} (+{CLOCK_SKEW}): a row from the future",
            "type": "value_error",
        }
        for kind, name in TIMES
        for i, item in enumerate(getattr(batch, kind))
        if getattr(item, name) > limit
    ]


@app.post(
    "/feedback",
    response_model=FeedbackOut,
    responses={**ERRORS, 404: {"model": problems.Problem}},
    tags=["chatbot"],
)
def feedback(item: FeedbackIn) -> FeedbackOut:
    """shown / accepted / dismissed / converted for a suggestion, by request id. The action
    and product must be among what that answer returned (else 422); one answer counts as one
    exposure for cooldowns and caps, whatever outcomes follow."""
    recorded = RUNTIME.feedback.record_feedback(item, RUNTIME.clock())
    if recorded is Recorded.UNKNOWN_REQUEST:
        raise HTTPException(404, f"unknown request_id {item.request_id!r}")
    if recorded is Recorded.NOT_OFFERED:
        raise HTTPException(
            422,
            [
                {
                    "loc": ["body", "action"],
                    "msg": f"request {item.request_id!r} did not return action"
                    f" {item.action!r} for product {item.product_id!r}",
                    "type": "value_error",
                }
            ],
        )
    return FeedbackOut(stored=True)


@app.post("/admin/reload", response_model=ReloadOut, responses=ERRORS, tags=["admin"])
def reload() -> ReloadOut:
    """Load the current champions and snapshot beside the old ones, then switch."""
    return ReloadOut(**RUNTIME.reload())


@app.post("/admin/subject/export", response_model=SubjectExport, responses=ERRORS, tags=["admin"])
def subject_export(subject: SubjectIn) -> SubjectExport:
    """Everything the running service holds about one customer (right of access): the
    served profile, suggestions, feedback, ingested rows and audit entries."""
    from cdp.privacy import identity_tokens, pseudonyms

    state, now = _state(), RUNTIME.clock()
    names = pseudonyms(subject.customer_id)
    identities = state.identities_of(subject.customer_id)
    tokens = identity_tokens(*(value for _, value in identities))
    c = state.customers.get(subject.customer_id)
    served = None
    if c is not None:
        served = asdict(c) | {"identities": [{"id_type": t, "id_value": v} for t, v in identities]}
    return SubjectExport(
        customer_id=subject.customer_id,
        known=c is not None,
        exported_at=now,
        served_profile=served,
        **held(RUNTIME.feedback, RUNTIME.audit, names, tokens),
    )


@app.post("/admin/subject/erase", response_model=ErasedOut, responses=ERRORS, tags=["admin"])
def subject_erase(subject: SubjectIn) -> ErasedOut:
    """Erase one customer from the running service: the served state and every identity
    pointing at them, the suggestion / feedback / ingested stores and the audit log; the
    erasure itself is audited with counts only."""
    from cdp.privacy import identity_tokens, pseudonyms

    state, now = _state(), RUNTIME.clock()
    names = pseudonyms(subject.customer_id)
    known = subject.customer_id in state.customers
    values = (value for _, value in state.identities_of(subject.customer_id))
    tokens = identity_tokens(*values)
    identities = state.forget(subject.customer_id)
    erased = erase_held(
        RUNTIME.feedback,
        RUNTIME.audit,
        names,
        now,
        "/admin/subject/erase",
        CALLER.get(),
        tokens,
    )
    return ErasedOut(
        known=known,
        identities=identities,
        stores={k: v for k, v in erased.items() if k != "audit"},
        audit_entries=erased["audit"],
    )
