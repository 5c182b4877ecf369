"""The answers every front door gives: one code path for REST (:mod:`serving.http.api`) and MCP
(:mod:`serving.mcp`).

Each function takes the service's live parts (:class:`Runtime`), ranks or looks up,
records what needs recording (suggestions for feedback, one pseudonymous audit line per
scoring call) and returns the response model. A refusal is an ``HTTPException`` with the
status and detail both doors report: REST as an RFC 9457 problem, MCP as a tool error.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict
from datetime import datetime

from fastapi import HTTPException

from policy.learning import explore
from policy.locales import answer_locale
from policy.profile import Context
from serving.memory.feedback import Claimed, Recorded, StoreUnavailable
from serving.memory.online import Entry
from serving.memory.runtime import ROW_TIMES, Runtime, catch_up, learned, state_of
from serving.metrics import ACTIONS, FEEDBACK, ONLINE_REFUSED, WITHHELD
from serving.schemas import (
    CLOCK_SKEW,
    Action,
    Applied,
    DoNotSuggest,
    EventBatch,
    FeedbackIn,
    FeedbackOut,
    ProfileOut,
    SegmentOut,
    SuggestRequest,
    SuggestResponse,
    folded,
)
from serving.security import CALLER

#: What every model score may be used for (purpose limitation): churn, CLV and repurchase
#: scores drive marketing actions, so an answer carries them only when
#: :meth:`ServingState.allows` says this purpose's consent is in force.
MODEL_PURPOSE = "marketing"
#: How often a Segment batch is looked at again when other requests claim its messages.
CLAIM_TRIES = 3
#: The counts of a batch nothing of which was applied: every count field of ``Applied``.
NO_ROWS = tuple(name for name in Applied.model_fields if name != "created")
SKIPPED = (
    "skipped: no marketing consent in force (churn, CLV and repurchase scores serve marketing only)"
)


def audit(
    rt: Runtime,
    route: str,
    who,
    now,
    purposes,
    actions,
    request_id=None,
    eligible=None,
    *,
    started: float | None = None,
    ranking=None,
) -> None:
    """One audit line per scoring call: caller key id, pseudonym, purposes, actions,
    model versions, time, the milliseconds the answer took (from ``started``, a
    ``time.perf_counter()``), and for an answer every eligible action with its probability,
    value, feedback factor and propensity of being first (:mod:`policy.learning`), the
    marketing withheld for want of consent or for the control group, and for a control
    customer what they would have been shown (:mod:`policy.uplift` compares it). Never a
    raw id or a key."""
    state = rt.state
    record = {
        "at": now.isoformat(),
        "route": route,
        "key_id": CALLER.get(),
        "customer": who,
        "purposes": sorted(set(purposes)),
        "actions": list(actions),
        "model_versions": state.versions if state is not None else {},
        "request_id": request_id,
    }
    if who is not None:  # analysed as assigned: every answer says which group
        record["group"] = rt.group(who)
    if started is not None:
        record["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
    if eligible is not None:
        record["eligible"] = eligible
    if ranking is not None:
        withheld = ranking.withheld()
        record["withheld"] = withheld
        for reason, n in withheld.items():
            if n:
                WITHHELD.labels(reason=reason).inc(n)
        for s in ranking.suggestions:
            ACTIONS.labels(action=s.action, purpose=s.purpose).inc()
        if ranking.held_out:
            record["held_out"] = [[s.action, s.product_id] for s in ranking.held_out]
    rt.audit.append(record)


def scoring_state(rt: Runtime):
    """The state, for an answer that scores: every scoring call is audited, so while the
    audit log cannot be written (a full disk) the answer is 503 with Retry-After."""
    state = state_of(rt)
    if not rt.audit.healthy:
        raise HTTPException(
            503,
            "the audit log cannot be written (disk full or unavailable); retry shortly",
            headers={"Retry-After": "5"},
        )
    return state


def suggest_one(rt: Runtime, request: SuggestRequest, route: str = "/suggest") -> SuggestResponse:
    """Rank, record and audit the answer to one suggestion request."""
    started = time.perf_counter()
    state = scoring_state(rt)
    now = rt.clock()
    identity = request.identity
    customer_id = state.resolve(
        request.customer_id, identity and identity.id_type, identity and identity.id_value
    )
    context = Context(**request.context.model_dump())
    who = rt.pseudonym(customer_id) if customer_id else None
    exposures = rt.feedback.exposures(who, now) if who else {}
    factors = learned(rt, state)
    ranking = state.ranking(
        customer_id,
        context,
        rt.catalog,
        now=now,
        exposures=exposures,
        max_actions=request.max_actions,
        factors=factors,
    )
    ranking, chances = explore(ranking, rt.exploration, rt.rng)
    segment = state.customers[customer_id].segment if customer_id else None
    weights = factors.of(segment)
    eligible = [
        {
            "action": s.action,
            "product_id": s.product_id,
            "probability": s.probability,
            "value": s.value,
            "factor": round(weights.get(s.action, 1.0), 4),
            "propensity": round(p, 6),
        }
        for s, (_, _, p) in zip(ranking.eligible or ranking.suggestions, chances, strict=True)
    ]
    request_id = uuid.uuid4().hex
    actions = [
        Action(score=s.expected_value, **{k: v for k, v in asdict(s).items() if k != "value"})
        for s in ranking.suggestions
    ]
    names = [a.action for a in actions]
    answered = [(a.action, a.product_id) for a in actions]
    rt.feedback.record_suggestion(request_id, who, answered, now)
    rt.online.remember_answer(request_id, who, answered)
    purposes = [a.purpose for a in actions]
    audit(
        rt, route, who, now, purposes, names, request_id, eligible, started=started,
        ranking=ranking,
    )  # fmt: skip
    return SuggestResponse(
        request_id=request_id,
        known=customer_id is not None,
        customer_id=customer_id,
        locale=ranking.locale,
        locale_requested=context.locale,
        features_as_of=state.as_of,
        features_age_days=age_days(state.as_of, now),
        now=now,
        frustrated=ranking.frustrated,
        actions=actions,
        do_not_suggest=[DoNotSuggest(**asdict(s)) for s in ranking.suppressed],
        model_versions=state.versions,
    )


def resolve(
    rt: Runtime, customer_id: str | None, id_type: str | None, id_value: str | None
) -> str | None:
    """The known customer a reference names (an id, or an identity), or ``None``."""
    id_type = folded(id_type) if id_type is not None else None
    return scoring_state(rt).resolve(customer_id, id_type, id_value)


def profile_of(rt: Runtime, customer_id: str, route: str = "/profile") -> ProfileOut:
    """The 360° summary of a known (resolved) customer, audited; model scores only with
    marketing consent in force."""
    state = scoring_state(rt)
    c = state.customers[customer_id]
    now = rt.clock()
    # purpose limitation: the churn, CLV and repurchase scores serve marketing only
    marketing = state.allows(customer_id, MODEL_PURPOSE, now)
    churn, clv = (c.churn_probability, c.clv_12m) if marketing else (None, None)
    audit(rt, route, rt.pseudonym(customer_id), now, ["service"], [])
    return ProfileOut(
        **{
            "customer_id": customer_id,
            "locale": c.locale,
            "segment": c.segment,
            "churn_risk": band(churn, (0.3, 0.6)),
            "churn_probability": churn,
            "clv_band": band(clv, (50.0, 200.0)),
            "clv_12m": clv,
            "consents": state.consents_at(customer_id, now),
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
            "features_age_days": age_days(state.as_of, now),
            "now": now,
            "model_versions": state.versions,
        }
    )


def age_days(as_of: datetime, now: datetime) -> float:
    """How old the features are at ``now``, in days (two decimals)."""
    return round((now - as_of).total_seconds() / 86_400, 2)


def band(value: float | None, edges: tuple[float, float]) -> str | None:
    """``low`` / ``medium`` / ``high`` of ``value`` against two edges; ``None`` stays."""
    if value is None:
        return None
    return "low" if value < edges[0] else "medium" if value < edges[1] else "high"


def consent_of(rt: Runtime, customer_id: str, purpose: str, route: str) -> bool:
    """Whether ``customer_id``'s consent for ``purpose`` is in force now (audited)."""
    state, now = scoring_state(rt), rt.clock()
    allowed = state.allows(customer_id, folded(purpose), now)
    audit(rt, route, rt.pseudonym(customer_id), now, ["service"], [])
    return allowed


def ingest(
    rt: Runtime, batch: EventBatch, route: str = "/events", claims: list[str] = ()
) -> Applied:
    """Check, store, then apply a batch of contract rows: all refused rows in one 422 and
    nothing applied, or every row stored (sealed and encrypted for :func:`replay`) before
    it is applied. The rows, the ids of the Segment messages they came from (``claims``)
    and the shared log's entries are written together or not at all: a 503 stored nothing.
    A moved identity is audited for both customers."""
    state, now = state_of(rt), rt.clock()
    refused = refusals(batch, state, now)
    if refused:
        ONLINE_REFUSED.labels(route=route).inc(len(refused))
        raise HTTPException(422, refused)
    rows = []
    for kind in ("customers", "orders", "events", "consents", "identities"):
        for item in getattr(batch, kind):
            owner = state.owner(item.customer_id, getattr(item, "anonymous_id", None))
            who = rt.pseudonym(owner) if owner else None
            row = item.model_dump(mode="json")
            rows.append((kind, who, *rt.seal(row), rt.lock(row)))
    moves = [
        (state.identities[(i.id_type, i.id_value)], i.customer_id)
        for i in batch.identities
        if state.identities.get((i.id_type, i.id_value), i.customer_id) != i.customer_id
    ]
    batch_id = uuid.uuid4().hex
    entries = [
        Entry(kind, secret, batch_id, who, anonymous) for kind, who, _, anonymous, secret in rows
    ]
    rt.feedback.record_events(
        rows,
        now,
        batch_id,
        claims=claims,
        publish=lambda: rt.online.append(entries, claims, now),
    )
    catch_up(rt)  # applies this batch, after whatever the log held before it
    # no counts: an empty batch, or a reload in between replayed it with the rest of the log
    applied = rt.applied.pop(batch_id, None) or dict.fromkeys(NO_ROWS, 0)
    for before, after in moves:
        request_id = uuid.uuid4().hex  # ties the two lines of one move together
        audit(
            rt, route, rt.pseudonym(before), now, ["service"], ["identity_moved_away"], request_id
        )
        audit(rt, route, rt.pseudonym(after), now, ["service"], ["identity_moved_here"], request_id)
    return Applied(**applied)


def ingest_segment(rt: Runtime, messages: list, route: str) -> SegmentOut:
    """Segment-spec messages (:mod:`serving.segment`) through :func:`ingest`, each
    ``messageId`` applied once: a message seen before (or twice in one batch) is skipped."""
    import pydantic

    from serving import segment

    state, now = state_of(rt), rt.clock()
    first = {}
    for m in messages:
        first.setdefault(m.messageId, m)
    for _ in range(CLAIM_TRIES):
        fresh = rt.online.unclaimed(list(first))
        todo = [m for message_id, m in first.items() if message_id in fresh]
        try:
            rows = segment.to_batch(todo, now, set(state.products))
        except segment.Refused as error:
            raise HTTPException(422, error.problems) from None
        try:
            batch = EventBatch.model_validate_json(json.dumps(rows))
        except pydantic.ValidationError as error:
            problems = [
                {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in error.errors(include_input=False, include_url=False)
            ]
            raise HTTPException(422, problems) from None
        try:  # claimed with the rows: a refused or failed batch claims nothing
            applied = ingest(rt, batch, route, [m.messageId for m in todo])
        except Claimed:  # another request applied some of them meanwhile: look again
            continue
        return SegmentOut(applied=applied, duplicates=len(messages) - len(todo))
    raise StoreUnavailable("the same Segment messages are being applied by other requests")


def refusals(batch: EventBatch, state, now: datetime) -> list[dict]:
    """A 422 item (``loc``, ``msg``, ``type``) for every row the service refuses: dated after
    ``now`` + :data:`~serving.schemas.CLOCK_SKEW`, an order or event for a product not in
    the catalog, an order line of quantity 0, an identity of another customer without
    ``move``. Messages name the field, never echo the value."""
    limit = now + CLOCK_SKEW
    found = [
        _refused(kind, i, name, f"{name} is after the service's clock {now.isoformat()}"
                 f" (+{CLOCK_SKEW}): a row from the future")
        for kind, name in ROW_TIMES.items()
        for i, item in enumerate(getattr(batch, kind))
        if getattr(item, name) > limit
    ]  # fmt: skip
    for kind in ("orders", "events"):
        for i, item in enumerate(getattr(batch, kind)):
            if item.product_id is not None and item.product_id not in state.products:
                found.append(_refused(kind, i, "product_id", "not in the catalog (products)"))
    for i, order in enumerate(batch.orders):
        if order.quantity == 0:
            found.append(_refused("orders", i, "quantity", "must not be 0 (negative = return)"))
    for i, identity in enumerate(batch.identities):
        owner = state.identities.get((identity.id_type, identity.id_value))
        if owner is not None and owner != identity.customer_id and not identity.move:
            found.append(
                _refused(
                    "identities",
                    i,
                    "id_value",
                    "this identity belongs to another customer: send move: true to move it"
                    " (the move is audited)",
                )
            )
    return found


def _refused(kind: str, index: int, name: str, msg: str) -> dict:
    return {"loc": ["body", kind, index, name], "msg": msg, "type": "value_error"}


def record_feedback(rt: Runtime, item: FeedbackIn) -> FeedbackOut:
    """Store one outcome of an answer: 404 for an unknown request id, 422 when that answer
    did not return the action and product. An answer another worker gave is found in the
    online store, and the exposure is shared with every worker through the online log."""
    now = rt.clock()
    if rt.feedback.answered(item.request_id) is None:
        given = rt.online.answer(item.request_id)
        if given is not None:
            rt.feedback.adopt(item.request_id, *given)
    exposure = {"action": item.action, "product_id": item.product_id}
    exposure |= {"request_id": item.request_id, "at": now.isoformat()}

    def publish(who: str | None) -> None:  # in the store's transaction: both or neither
        rt.online.append([Entry("feedback", rt.lock(exposure), who=who)])

    recorded = rt.feedback.record_feedback(item, now, publish if rt.online.shared else None)
    FEEDBACK.labels(outcome=item.outcome, result=recorded.name.lower()).inc()
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
