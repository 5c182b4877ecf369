"""The HTTP API chatbots call: the routes, each with the API-key scope it needs.

A FastAPI app mounted inside the BentoML service (:mod:`serving.http.service`), so every
endpoint, every error response and the field-level 422s are in the OpenAPI at
``/docs.json``; the schemas are in :mod:`serving.schemas`, and what the routes answer is
computed in :mod:`serving.answers` (shared with the MCP tools). The routes reach the service's
live parts (:class:`Runtime`: the current :class:`~serving.memory.state.ServingState`, the stores,
the clock) through the app's state, set by the service on start: there is no module global.

Each route declares its scope where it is defined (``**CHATBOT`` or ``**ADMIN``: the
``x-nextbest-scope`` of its operation); :func:`scopes` reads them back for
:class:`serving.security.SecurityMiddleware`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from cdp.errors import BadInputError
from serving import answers, segment
from serving.clock import SimulatedClock
from serving.http import problems
from serving.memory.audit import erase_held, held
from serving.memory.feedback import StoreUnavailable
from serving.memory.online import Entry, RedisLog
from serving.memory.runtime import Runtime, origin, state_of
from serving.schemas import (
    ERRORS,
    Applied,
    BatchRequest,
    BatchResponse,
    ChurnRequest,
    ChurnScore,
    ClockIn,
    ClockOut,
    ErasedOut,
    EventBatch,
    FeedbackIn,
    FeedbackOut,
    ProfileOut,
    ReloadStatus,
    SegmentOut,
    SubjectExport,
    SubjectIn,
    SuggestRequest,
    SuggestResponse,
)
from serving.security import CALLER

SCOPE = "x-nextbest-scope"
#: Route options of the two scopes: a chatbot key, or an admin key (which may call everything).
CHATBOT = {"tags": ["chatbot"], "openapi_extra": {SCOPE: "chatbot"}}
ADMIN = {"tags": ["admin"], "openapi_extra": {SCOPE: "admin"}}
#: The Segment-spec routes: a valid X-Signature with NEXTBEST_SEGMENT_SECRET, else an admin key.
SEGMENT = {"tags": ["cdp"], "openapi_extra": {SCOPE: "segment"}}


logger = logging.getLogger("nextbest.serving")

app = FastAPI(
    title="nextbest",
    description="Proactive, explained, consent-aware next best actions for chatbots.",
    version="1",
    docs_url=None,
    redoc_url=None,
    openapi_url=None,  # BentoML serves the merged OpenAPI at /docs.json
    generate_unique_id_function=lambda route: route.name,  # operationId: the handler's name
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


async def _runtime(request: Request) -> Runtime:
    # async: FastAPI runs a plain-function dependency in the thread pool, a thread hop per
    # request that cost /suggest a third of its throughput
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise HTTPException(503, "not ready: the service is starting", {"Retry-After": "5"})
    return runtime


Live = Annotated[Runtime, Depends(_runtime)]


async def _off_the_loop(rt: Runtime, answer, *args):
    """``answer(rt, *args)`` in the event loop with the embedded log (no call that can hang),
    in the thread pool with Redis: each request first reads the shared log, and a Redis that
    hangs must hold that request for its timeout, not the loop (nor ``/livez``)."""
    if isinstance(rt.online, RedisLog):
        return await run_in_threadpool(answer, rt, *args)
    return answer(rt, *args)


@app.post("/suggest", response_model=SuggestResponse, responses=ERRORS, **CHATBOT)
async def suggest(request: SuggestRequest, rt: Live) -> SuggestResponse:
    """Ranked, explained next best actions for one customer in a conversation."""
    return await _off_the_loop(rt, answers.suggest_one, request)


@app.post("/suggest/batch", response_model=BatchResponse, responses=ERRORS, **CHATBOT)
async def suggest_batch(request: BatchRequest, rt: Live) -> BatchResponse:
    """The same for many customers (campaigns, CRM)."""
    return await _off_the_loop(rt, _batch, request)


def _batch(rt: Runtime, request: BatchRequest) -> BatchResponse:
    return BatchResponse(responses=[answers.suggest_one(rt, r) for r in request.requests])


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
    return await _off_the_loop(rt, _profile, customer_id, id_type, id_value)


def _profile(rt: Runtime, customer_id, id_type, id_value) -> ProfileOut:
    resolved = answers.resolve(rt, customer_id, id_type, id_value)
    if resolved is None:
        raise HTTPException(404, "unknown customer")
    return answers.profile_of(rt, resolved)


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
    state, now = answers.scoring_state(rt), rt.clock()
    customer_id = request.customer_id
    row = state.churn_row.get(customer_id)
    if row is None:
        raise HTTPException(404, "unknown customer, or one who has not bought yet")
    who = rt.pseudonym(customer_id)
    answer = {"customer_id": customer_id, "model_version": state.versions["churn"]}
    if not state.allows(customer_id, answers.MODEL_PURPOSE, now):
        answers.audit(rt, "/score/churn", who, now, [], [])
        return ChurnScore(**answer, churn_probability=None, marketing_scoring=answers.SKIPPED)
    probability = state.churn_probability(row)
    answers.audit(rt, "/score/churn", who, now, [answers.MODEL_PURPOSE], ["churn_score"])
    return ChurnScore(**answer, churn_probability=probability, marketing_scoring="used")


@app.post("/events", response_model=Applied, responses=ERRORS, **ADMIN)
def events(batch: EventBatch, rt: Live) -> Applied:
    """Ingest new orders, events, consents and identities. Every refused row is listed in
    one 422 naming it (a row dated after the service's clock beyond a small skew, a product
    not in the catalog, a quantity of 0, an identity that belongs to another customer
    without ``move``), and nothing is applied; else the rows are stored, then applied at
    once, and a customer the service does not know yet is created."""
    return answers.ingest(rt, batch)


@app.post("/v1/batch", response_model=SegmentOut, responses=ERRORS, **SEGMENT)
def segment_batch(body: segment.Batch, rt: Live) -> SegmentOut:
    """Segment-spec messages as a CDP's webhook sends them (Segment, RudderStack): applied
    as `POST /events` rows (the mapping is in the documentation, how-to/serving), each messageId
    once."""
    return answers.ingest_segment(rt, body.batch, "/v1/batch")


def _one(kind: str):
    def route(message: segment.Message, rt: Live) -> SegmentOut:
        message.type = message.type or kind
        return answers.ingest_segment(rt, [message], f"/v1/{kind}")

    route.__name__ = f"segment_{kind}"
    route.__doc__ = f"One Segment `{kind}` message (the same mapping as /v1/batch)."
    return route


for _kind in ("track", "identify", "page", "alias"):
    app.post(f"/v1/{_kind}", response_model=SegmentOut, responses=ERRORS, **SEGMENT)(_one(_kind))


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
    return answers.record_feedback(rt, item)


@app.post(
    "/admin/reload",
    status_code=202,
    response_model=ReloadStatus,
    response_model_exclude_none=True,
    responses=ERRORS,
    **ADMIN,
)
def reload(rt: Live, response: Response) -> ReloadStatus:
    """Start loading the current champions and snapshot beside the serving ones (202 at
    once; a reload already running is joined, not repeated); the new state swaps in when
    ready, and ``GET /admin/reload`` says how it went. Every other worker sharing the online
    store follows once it is done."""

    def follow(answer: dict) -> None:  # in the reload's thread, once it is done
        if answer["reloaded"]:
            rt.online.append([Entry("reload", rt.lock({"origin": origin()}))])

    started, status = rt.reloads.start(then=follow)
    response.headers["Location"] = "/admin/reload"
    return ReloadStatus(**status, started=started)


@app.get(
    "/admin/reload",
    response_model=ReloadStatus,
    response_model_exclude_none=True,
    responses=ERRORS,
    **ADMIN,
)
def reload_status(rt: Live) -> ReloadStatus:
    """The running reload's progress, or how the last one ended (``idle`` before any), on
    the worker that answers."""
    return ReloadStatus(**rt.reloads.status())


@app.post(
    "/admin/clock",
    response_model=ClockOut,
    responses={
        **ERRORS,
        409: {"model": problems.Problem, "description": "the wall clock, or a move backwards"},
    },
    **ADMIN,
)
def clock(move: ClockIn, rt: Live) -> ClockOut:
    """Move a simulated clock (a service started with ``--now``) forward, for simulations
    that play days through the service; 409 on the wall clock or for a move backwards."""
    if not isinstance(rt.clock, SimulatedClock):
        raise HTTPException(409, "the service runs on the wall clock (no --now): not movable")
    try:
        return ClockOut(now=rt.clock.advance(move.now))
    except BadInputError as error:
        raise HTTPException(409, str(error)) from None


@app.post("/admin/subject/export", response_model=SubjectExport, responses=ERRORS, **ADMIN)
def subject_export(subject: SubjectIn, rt: Live) -> SubjectExport:
    """Everything the running service holds about one customer (right of access): the
    served profile, suggestions, feedback, ingested rows and audit entries."""
    from cdp.privacy import identity_tokens, pseudonyms

    state, now = state_of(rt), rt.clock()
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
        holdout_group=rt.group(rt.pseudonym(subject.customer_id)),
        **held(rt.feedback, rt.audit, names, tokens),
    )


@app.post("/admin/subject/erase", response_model=ErasedOut, responses=ERRORS, **ADMIN)
def subject_erase(subject: SubjectIn, rt: Live) -> ErasedOut:
    """Erase one customer from the running service: the served state and every identity
    pointing at them, the suggestion / feedback / ingested stores and the audit log; the
    erasure itself is audited with counts only."""
    from cdp.privacy import identity_tokens, pseudonyms

    state, now = state_of(rt), rt.clock()
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
    online = rt.online.erase(names, tokens)
    # every other worker forgets them at its next request (a shared log only)
    rt.online.append([Entry("forget", rt.lock({"customer_id": subject.customer_id}))])
    return ErasedOut(
        known=known,
        identities=identities,
        stores={k: v for k, v in erased.items() if k != "audit"}
        | ({"online_log": online} if rt.online.shared else {}),
        audit_entries=erased["audit"],
    )
