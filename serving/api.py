"""The HTTP API chatbots call: request and response schemas and the endpoint functions.

A FastAPI app mounted inside the BentoML service (:mod:`serving.service`), so every
endpoint, every error response and the field-level 422s are in the OpenAPI at
``/docs.json``. The endpoints read the service's current :class:`~serving.state.ServingState`
through :data:`RUNTIME`, which the service sets on start and swaps on reload.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serving.audit import erase_held, held
from serving.feedback import Recorded
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

Locale = Literal["en", "zh-TW", "zh-CN"]
Outcome = Literal["shown", "accepted", "dismissed", "converted"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Identity(Strict):
    id_type: str = Field(min_length=1, max_length=64, examples=["messenger"])
    id_value: str = Field(min_length=1, max_length=256, examples=["psid-1234"])


class CustomerRef(Strict):
    """A customer id, or an identity (messenger PSID, LINE id, cookie, device, …)."""

    customer_id: str | None = Field(default=None, min_length=1, max_length=128)
    identity: Identity | None = None

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
        description="A BCP 47 tag (en-US, zh_TW, zh-Hant, zh-HK, zh-Hans, ...): the answer"
        " uses the closest of en, zh-TW, zh-CN, else the customer's locale, else en",
        examples=["zh-Hant"],
    )
    intent: str | None = Field(default=None, max_length=64, examples=["order_status"])
    message: str | None = Field(default=None, max_length=4000)
    sentiment: float | None = Field(default=None, ge=-1, le=1)

    @field_validator("locale")
    @classmethod
    def _tag(cls, value: str | None) -> str | None:
        return None if value is None else standard_tag(value)


class SuggestRequest(CustomerRef):
    context: ContextIn = ContextIn()
    max_actions: int = Field(default=3, ge=1, le=10)


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


class BatchRequest(Strict):
    requests: list[SuggestRequest] = Field(min_length=1, max_length=500)


class BatchResponse(BaseModel):
    responses: list[SuggestResponse]


class OrderIn(Strict):
    order_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    ordered_at: datetime
    product_id: str = Field(min_length=1)
    quantity: int
    amount: float

    @model_validator(mode="after")
    def _nonzero(self):
        if self.quantity == 0:
            raise ValueError("quantity must not be 0 (negative = return)")
        return self


class EventIn(Strict):
    event_id: str = Field(min_length=1)
    customer_id: str | None = None
    anonymous_id: str | None = None
    occurred_at: datetime
    source: str = Field(min_length=1)
    event_type: str = Field(min_length=1)
    product_id: str | None = None
    sentiment: float | None = Field(default=None, ge=-1, le=1)

    @model_validator(mode="after")
    def _someone(self):
        if self.customer_id is None and self.anonymous_id is None:
            raise ValueError("at least one of customer_id or anonymous_id")
        return self


class ConsentIn(Strict):
    customer_id: str = Field(min_length=1)
    purpose: str = Field(min_length=1)
    granted: bool
    recorded_at: datetime
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


class Problem(BaseModel):
    detail: str


ERRORS = {
    401: {"model": Problem, "description": "missing or unknown API key"},
    403: {"model": Problem, "description": "the key lacks the scope"},
    413: {"model": Problem, "description": "request body over the limit"},
}


class Runtime:
    """The service's live parts, set by :mod:`serving.service`."""

    state = None  # ServingState, swapped whole on reload
    feedback = None  # FeedbackStore
    catalog = None
    clock = None  # () -> datetime
    reload = None  # () -> ReloadOut-like dict
    audit = None  # AuditLog
    pseudonym = None  # customer id -> pseudonym (nextbest.privacy), bound to the key


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

app = FastAPI(
    title="nextbest",
    description="Proactive, explained, consent-aware next best actions for chatbots.",
    version="1",
    docs_url=None,
    redoc_url=None,
    openapi_url=None,  # BentoML serves the merged OpenAPI at /docs.json
)


def _state():
    if RUNTIME.state is None:
        raise HTTPException(503, "not ready: models and features are still loading")
    return RUNTIME.state


def suggest_one(request: SuggestRequest) -> SuggestResponse:
    state = _state()
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
    locale = answer_locale(context.locale, profile.locale if profile else None)
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
        locale=locale,
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


@app.get("/profile", responses={**ERRORS, 404: {"model": Problem}}, tags=["chatbot"])
async def profile(
    customer_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    id_type: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    id_value: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
) -> dict:
    """The 360° summary a chatbot needs so it never asks again."""
    if (customer_id is None) == (id_type is None or id_value is None):
        raise HTTPException(422, "give customer_id, or both id_type and id_value")
    state = _state()
    resolved = state.resolve(customer_id, id_type, id_value)
    if resolved is None:
        raise HTTPException(404, "unknown customer")
    c = state.customers[resolved]
    now = RUNTIME.clock()
    # purpose limitation: the churn, CLV and repurchase scores serve marketing only
    marketing = state.allows(resolved, MODEL_PURPOSE, now)
    churn, clv = (c.churn_probability, c.clv_12m) if marketing else (None, None)
    _audit("/profile", RUNTIME.pseudonym(resolved), now, ["service"], [])
    return {
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


def _band(value: float | None, edges: tuple[float, float]) -> str | None:
    if value is None:
        return None
    return "low" if value < edges[0] else "medium" if value < edges[1] else "high"


@app.post("/events", response_model=Applied, responses=ERRORS, tags=["admin"])
def events(batch: EventBatch) -> Applied:
    """Ingest new orders, events, consents and identities; they apply at once."""
    state = _state()
    counts = state.apply(batch)
    rows = []
    for kind in ("orders", "events", "consents", "identities"):
        for item in getattr(batch, kind):
            owner = state.owner(item.customer_id, getattr(item, "anonymous_id", None))
            who = RUNTIME.pseudonym(owner) if owner else None
            rows.append((kind, who, item.model_dump(mode="json")))
    RUNTIME.feedback.record_events(rows, RUNTIME.clock())
    return Applied(**counts)


@app.post(
    "/feedback",
    response_model=FeedbackOut,
    responses={**ERRORS, 404: {"model": Problem}},
    tags=["chatbot"],
)
async def feedback(item: FeedbackIn) -> FeedbackOut:
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


@app.post("/admin/subject/export", responses=ERRORS, tags=["admin"])
def subject_export(subject: SubjectIn) -> dict:
    """Everything the running service holds about one customer (right of access): the
    served profile, suggestions, feedback, ingested rows and audit entries."""
    from nextbest.privacy import pseudonyms

    state, now = _state(), RUNTIME.clock()
    names = pseudonyms(subject.customer_id)
    c = state.customers.get(subject.customer_id)
    served = None
    if c is not None:
        served = asdict(c) | {
            "identities": [
                {"id_type": t, "id_value": v}
                for (t, v), who in state.identities.items()
                if who == subject.customer_id
            ]
        }
    return {
        "customer_id": subject.customer_id,
        "known": c is not None,
        "exported_at": now,
        "served_profile": served,
        **held(RUNTIME.feedback, RUNTIME.audit, names),
    }


@app.post("/admin/subject/erase", response_model=ErasedOut, responses=ERRORS, tags=["admin"])
def subject_erase(subject: SubjectIn) -> ErasedOut:
    """Erase one customer from the running service: the served state and every identity
    pointing at them, the suggestion / feedback / ingested stores and the audit log; the
    erasure itself is audited with counts only."""
    from nextbest.privacy import pseudonyms

    state, now = _state(), RUNTIME.clock()
    names = pseudonyms(subject.customer_id)
    known = subject.customer_id in state.customers
    identities = state.forget(subject.customer_id)
    erased = erase_held(
        RUNTIME.feedback, RUNTIME.audit, names, now, "/admin/subject/erase", CALLER.get()
    )
    return ErasedOut(
        known=known,
        identities=identities,
        stores={k: v for k, v in erased.items() if k != "audit"},
        audit_entries=erased["audit"],
    )
