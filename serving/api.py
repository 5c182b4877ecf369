"""The HTTP API chatbots call: the routes, each with the API-key scope it needs.

A FastAPI app mounted inside the BentoML service (:mod:`serving.service`), so every
endpoint, every error response and the field-level 422s are in the OpenAPI at
``/docs.json``; the schemas are in :mod:`serving.schemas`. The routes reach the service's
live parts (:class:`Runtime`: the current :class:`~serving.state.ServingState`, the stores,
the clock) through the app's state, set by the service on start: there is no module global.

Each route declares its scope where it is defined (``**CHATBOT`` or ``**ADMIN``: the
``x-nextbest-scope`` of its operation); :func:`scopes` reads them back for
:class:`serving.security.SecurityMiddleware`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request

from serving import problems
from serving.audit import AuditLog, erase_held, held
from serving.feedback import FeedbackStore, Recorded, StoreUnavailable
from serving.locales import answer_locale
from serving.policy import Context, rank
from serving.schemas import (
    CLOCK_SKEW,
    ERRORS,
    Action,
    Applied,
    BatchRequest,
    BatchResponse,
    ChurnRequest,
    ChurnScore,
    DoNotSuggest,
    ErasedOut,
    EventBatch,
    FeedbackIn,
    FeedbackOut,
    ProfileOut,
    ReloadOut,
    SubjectExport,
    SubjectIn,
    SuggestRequest,
    SuggestResponse,
)
from serving.security import CALLER

#: What every model score may be used for (purpose limitation): churn, CLV and repurchase
#: scores drive marketing actions, so a route returns them only when :meth:`ServingState.allows`
#: says this purpose's consent is in force.
MODEL_PURPOSE = "marketing"
SKIPPED = (
    "skipped: no marketing consent in force (churn, CLV and repurchase scores serve marketing only)"
)
SCOPE = "x-nextbest-scope"
#: Route options of the two scopes: a chatbot key, or an admin key (which may call everything).
CHATBOT = {"tags": ["chatbot"], "openapi_extra": {SCOPE: "chatbot"}}
ADMIN = {"tags": ["admin"], "openapi_extra": {SCOPE: "admin"}}


@dataclass
class Runtime:
    """The service's live parts. ``state`` is swapped whole on reload; the rest is fixed."""

    feedback: FeedbackStore
    audit: AuditLog
    catalog: Any
    clock: Callable[[], datetime]
    reload: Callable[[], dict]
    pseudonym: Callable[[str], str]  # customer id -> pseudonym (cdp.privacy), bound to the key
    seal: Callable[[dict], tuple]  # contract row -> (sealed row, anonymous token)
    state: Any = None  # ServingState, None until loaded


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


def scopes() -> dict[str, str]:
    """The scope each route needs, by path, as the routes declare it."""
    found = {}
    for route in app.routes:
        extra = getattr(route, "openapi_extra", None) or {}
        if SCOPE in extra:
            found[route.path] = extra[SCOPE]
    return found


def _runtime(request: Request) -> Runtime:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise HTTPException(503, "not ready: the service is starting", {"Retry-After": "5"})
    return runtime


Live = Annotated[Runtime, Depends(_runtime)]


def _audit(rt: Runtime, route: str, who, now, purposes, actions, request_id=None) -> None:
    """One audit line per scoring call: caller key id, pseudonym, purposes, actions,
    model versions, time. Never a raw id or a key."""
    state = rt.state
    rt.audit.append(
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


# The chatbot endpoints are ``async``: their work (dictionary lookups, the policy, one SQLite
# insert) takes well under a millisecond, less than a hop to the thread pool. Ingestion and
# reload may take longer and stay plain functions, run in the thread pool.


def _state(rt: Runtime):
    if rt.state is None:
        raise HTTPException(
            503, "not ready: models and features are still loading", {"Retry-After": "5"}
        )
    return rt.state


def _scoring_state(rt: Runtime):
    """The state, for a route that scores: every scoring call is audited, so while the
    audit log cannot be written (a full disk) the answer is 503 with Retry-After."""
    state = _state(rt)
    if not rt.audit.healthy:
        raise HTTPException(
            503,
            "the audit log cannot be written (disk full or unavailable); retry shortly",
            headers={"Retry-After": "5"},
        )
    return state


def suggest_one(rt: Runtime, request: SuggestRequest) -> SuggestResponse:
    """Rank, record and audit the answer to one suggestion request."""
    state = _scoring_state(rt)
    now = rt.clock()
    identity = request.identity
    customer_id = state.resolve(
        request.customer_id, identity and identity.id_type, identity and identity.id_value
    )
    profile = state.profile(customer_id, now) if customer_id else None
    context = Context(**request.context.model_dump())
    who = rt.pseudonym(customer_id) if customer_id else None
    exposures = rt.feedback.exposures(who, now) if who else {}
    ranking = rank(
        profile,
        context,
        rt.catalog,
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
    rt.feedback.record_suggestion(request_id, who, answered, now)
    _audit(rt, "/suggest", who, now, [a.purpose for a in actions], names, request_id)
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


@app.post("/suggest", response_model=SuggestResponse, responses=ERRORS, **CHATBOT)
async def suggest(request: SuggestRequest, rt: Live) -> SuggestResponse:
    """Ranked, explained next best actions for one customer in a conversation."""
    return suggest_one(rt, request)


@app.post("/suggest/batch", response_model=BatchResponse, responses=ERRORS, **CHATBOT)
async def suggest_batch(request: BatchRequest, rt: Live) -> BatchResponse:
    """The same for many customers (campaigns, CRM)."""
    return BatchResponse(responses=[suggest_one(rt, r) for r in request.requests])


@app.get(
    "/profile",
    response_model=ProfileOut,
    responses={**ERRORS, 404: {"model": problems.Problem}},
    **CHATBOT,
)
async def profile(
    rt: Live,
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
    state = _scoring_state(rt)
    resolved = state.resolve(customer_id, id_type, id_value)
    if resolved is None:
        raise HTTPException(404, "unknown customer")
    c = state.customers[resolved]
    now = rt.clock()
    # purpose limitation: the churn, CLV and repurchase scores serve marketing only
    marketing = state.allows(resolved, MODEL_PURPOSE, now)
    churn, clv = (c.churn_probability, c.clv_12m) if marketing else (None, None)
    _audit(rt, "/profile", rt.pseudonym(resolved), now, ["service"], [])
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
    **CHATBOT,
)
def score_churn(request: ChurnRequest, rt: Live) -> ChurnScore:
    """The churn probability of one customer who has bought: one row through the LightGBM
    booster on one thread (the bare model endpoint). The score serves marketing: without
    marketing consent in force it is withheld (``churn_probability`` null and the reason).
    An unknown, erased or never-buying customer is a 404 (not an error, and not logged)."""
    state, now = _scoring_state(rt), rt.clock()
    customer_id = request.customer_id
    row = state.churn_row.get(customer_id)
    if row is None:
        raise HTTPException(404, "unknown customer, or one who has not bought yet")
    who = rt.pseudonym(customer_id)
    answer = {"customer_id": customer_id, "model_version": state.versions["churn"]}
    if not state.allows(customer_id, MODEL_PURPOSE, now):
        _audit(rt, "/score/churn", who, now, [], [])
        return ChurnScore(**answer, churn_probability=None, marketing_scoring=SKIPPED)
    probability = state.churn_probability(row)
    _audit(rt, "/score/churn", who, now, [MODEL_PURPOSE], ["churn_score"])
    return ChurnScore(**answer, churn_probability=probability, marketing_scoring="used")


@app.post("/events", response_model=Applied, responses=ERRORS, **ADMIN)
def events(batch: EventBatch, rt: Live) -> Applied:
    """Ingest new orders, events, consents and identities. A row dated after the service's
    clock (beyond a small skew) is refused with 422 naming it, and nothing is applied; else
    the rows are stored, then applied at once."""
    state, now = _state(rt), rt.clock()
    future = _from_the_future(batch, now)
    if future:
        raise HTTPException(422, future)
    rows = []
    for kind in ("orders", "events", "consents", "identities"):
        for item in getattr(batch, kind):
            owner = state.owner(item.customer_id, getattr(item, "anonymous_id", None))
            who = rt.pseudonym(owner) if owner else None
            rows.append((kind, who, *rt.seal(item.model_dump(mode="json"))))
    rt.feedback.record_events(rows, now)
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
    **CHATBOT,
)
def feedback(item: FeedbackIn, rt: Live) -> FeedbackOut:
    """shown / accepted / dismissed / converted for a suggestion, by request id. The action
    and product must be among what that answer returned (else 422); one answer counts as one
    exposure for cooldowns and caps, whatever outcomes follow."""
    recorded = rt.feedback.record_feedback(item, rt.clock())
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


@app.post("/admin/reload", response_model=ReloadOut, responses=ERRORS, **ADMIN)
def reload(rt: Live) -> ReloadOut:
    """Load the current champions and snapshot beside the old ones, then switch."""
    return ReloadOut(**rt.reload())


@app.post("/admin/subject/export", response_model=SubjectExport, responses=ERRORS, **ADMIN)
def subject_export(subject: SubjectIn, rt: Live) -> SubjectExport:
    """Everything the running service holds about one customer (right of access): the
    served profile, suggestions, feedback, ingested rows and audit entries."""
    from cdp.privacy import identity_tokens, pseudonyms

    state, now = _state(rt), rt.clock()
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
        **held(rt.feedback, rt.audit, names, tokens),
    )


@app.post("/admin/subject/erase", response_model=ErasedOut, responses=ERRORS, **ADMIN)
def subject_erase(subject: SubjectIn, rt: Live) -> ErasedOut:
    """Erase one customer from the running service: the served state and every identity
    pointing at them, the suggestion / feedback / ingested stores and the audit log; the
    erasure itself is audited with counts only."""
    from cdp.privacy import identity_tokens, pseudonyms

    state, now = _state(rt), rt.clock()
    names = pseudonyms(subject.customer_id)
    known = subject.customer_id in state.customers
    values = (value for _, value in state.identities_of(subject.customer_id))
    tokens = identity_tokens(*values)
    identities = state.forget(subject.customer_id)
    erased = erase_held(
        rt.feedback,
        rt.audit,
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
