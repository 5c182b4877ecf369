"""The next-best-action policy: candidate actions for one customer, ranked by expected value.

Pure and in-process (no I/O): the service, the notebooks and the property tests call the
same :func:`rank`. Expected value = probability x feedback factor x value - cost (the factor
is what feedback says of the action's acceptance, :mod:`policy.learning`; 1 without), where

- ``replenishment_reminder`` (one per consumable): the model's probability of a purchase in
  the repurchase window; value = price x margin; eligible when the run-out date falls
  before the end of the window and the next-product model agrees (its probability of a
  purchase of the consumable, or a pack of it, at least the catalog's ``due`` floor);
- ``cross_sell`` (never a durable they own, nor a consumable a reminder already proposes):
  the candidate worth most (:mod:`features.candidates`: the next-product model's
  probability of a purchase within its window x price) and, when it is another, the
  candidate likeliest bought; value = price x margin; each only when worth its cost; its
  reasons are the customer's own drivers of that probability;
- ``winback_offer``: churn probability x retention uplift; value = the 12-month CLV;
  due only when the churn risk is high and the customer has been quiet for longer than
  their own usual gap between orders (the catalog's ``due`` rule);
- ``order_status_help``: 1 when the customer asks about an order, else 0.3 within 14 days
  of an order;
- ``escalate_to_human``: 1 for a frustrated customer (negative sentiment in the context,
  frustrated words in the message, or an open ticket with recent negative sentiment);
- ``nothing_now``: when nothing else has a positive expected value.

Rules that always hold (checked by property tests): marketing actions need marketing
consent in force, and never go to the global control group (:mod:`policy.holdout`); a
frustrated customer gets ``escalate_to_human`` first and no marketing; an action within its
cooldown or at its cap is not proposed; an unknown visitor gets only non-personal service
actions. Every suppressed candidate is reported with its reason.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from policy.catalog import Catalog
from policy.drivers import phrase
from policy.holdout import CONTROL
from policy.language import Reading, read_message
from policy.locales import answer_locale
from policy.profile import Context, Exposure, Profile

#: The reason a marketing action is withheld from a customer without marketing consent.
NO_CONSENT = "no marketing consent in force"

NEGATIVE = -0.3  # a sentiment at or below this is negative
RECENT_ORDER_DAYS = 14


@dataclass(frozen=True)
class Suggestion:
    action: str
    purpose: str
    product_id: str | None
    probability: float
    value: float
    expected_value: float
    confidence: str
    reason_codes: tuple[str, ...]
    reason: str
    message: str


@dataclass(frozen=True)
class Suppressed:
    action: str
    product_id: str | None
    reason: str


@dataclass(frozen=True)
class Ranking:
    suggestions: list[Suggestion]
    suppressed: list[Suppressed]
    frustrated: bool
    locale: str = "en"  # the locale of every message and reason
    #: every action that could have been proposed, best first (``suggestions`` is its head)
    eligible: tuple[Suggestion, ...] = ()
    #: for a control customer, the marketing suggestions they would have got if treated
    #: (withheld: what the uplift per action compares with, :mod:`policy.uplift`)
    held_out: tuple[Suggestion, ...] = ()

    def withheld(self) -> dict[str, int]:
        """Marketing actions held back for want of consent (``consent``) and for the global
        control group (``holdout``)."""
        reasons = [s.reason for s in self.suppressed]
        return {"consent": reasons.count(NO_CONSENT), "holdout": reasons.count(CONTROL)}


def read_context(context: Context) -> Reading | None:
    """The message read once (:func:`policy.language.read_message`, with the chatbot's own
    sentiment); None without a message."""
    return read_message(context.message, context.sentiment) if context.message else None


def is_frustrated(profile: Profile | None, context: Context, reading: Reading | None) -> bool:
    """A negative sentiment or a complaint now (``reading``, the message read with the
    chatbot's own sentiment), or open tickets with a recent negative sentiment."""
    if context.sentiment is not None and context.sentiment <= NEGATIVE:
        return True
    if reading is not None and reading.frustrated:
        return True
    return bool(
        profile is not None
        and profile.open_tickets > 0
        and profile.min_sentiment_30d is not None
        and profile.min_sentiment_30d <= NEGATIVE
    )


def intent_of(context: Context, reading: Reading | None) -> str | None:
    """What the customer asks for: the chatbot's ``intent``, else the message's."""
    if context.intent or reading is None:
        return context.intent
    return reading.intent


def _confidence(probability: float) -> str:
    return "high" if probability >= 0.6 else "medium" if probability >= 0.3 else "low"


def _text(templates: dict[str, str], locale: str, **values) -> str:
    return templates.get(locale, templates["en"]).format(**values)


class Candidate(NamedTuple):
    """An action worth judging: its probability, value, reason codes and template values."""

    action: str
    product_id: str | None
    probability: float
    value: float
    codes: tuple[str, ...]
    values: dict


def rank(
    profile: Profile | None,
    context: Context,
    catalog: Catalog,
    *,
    now: datetime,
    exposures: dict[tuple[str, str | None], Exposure] | None = None,
    window_days: int = 14,
    max_actions: int = 3,
    factors: dict[str, float] | None = None,
) -> Ranking:
    """Rank, explain and filter the next best actions for one customer in a conversation.

    Parameters
    ----------
    profile : Profile or None
        What the service knows of the customer; None for an unknown visitor.
    context : Context
        The conversation: channel, locale, intent, message, sentiment.
    catalog : Catalog
        The actions, their purposes, costs, cooldowns, caps and texts.
    now : datetime
        The service's clock (a settled UTC moment).
    exposures : dict, optional
        When each (action, product) was last shown and how often in 30 days.
    window_days : int, default 14
        How far ahead a run-out makes a replenishment reminder due.
    max_actions : int, default 3
        The most suggestions returned.
    factors : dict, optional
        action -> what feedback says of its acceptance against the prior
        (:mod:`policy.learning`), multiplying the probability in the expected value; 1
        for an action without feedback.

    Returns
    -------
    Ranking
        Suggestions by expected value (escalation first for a frustrated customer), what was
        held back and why, whether the customer is frustrated, and the answer's locale; for
        a control customer, the marketing they would have got if treated (``held_out``).
    """
    args = dict(
        now=now, exposures=exposures or {}, window_days=window_days, max_actions=max_actions,
        factors=factors or {},
    )  # fmt: skip
    ranking = _rank(profile, context, catalog, **args)
    if profile is None or not profile.holdout:
        return ranking
    treated = _rank(dataclasses.replace(profile, holdout=False), context, catalog, **args)
    ghosts = tuple(s for s in treated.suggestions if s.purpose == "marketing")
    return dataclasses.replace(ranking, held_out=ghosts)


def _rank(
    profile: Profile | None,
    context: Context,
    catalog: Catalog,
    *,
    now: datetime,
    exposures: dict,
    window_days: int,
    max_actions: int,
    factors: dict[str, float],
) -> Ranking:
    """:func:`rank` for one profile as it is."""
    locale = answer_locale(context.locale, profile.locale if profile else None)
    reading = read_context(context)
    frustrated = is_frustrated(profile, context, reading)
    intent = intent_of(context, reading)
    candidates = _service_candidates(profile, intent, catalog, now, frustrated)
    if profile is not None:
        asked = intent == "reorder"
        candidates += _profile_candidates(profile, catalog, now, window_days, locale, asked)
    suggestions, suppressed, likely = [], [], {}
    for candidate in candidates:
        why = _suppressed_because(candidate, catalog, profile, frustrated, exposures, now)
        if why is not None:
            suppressed.append(Suppressed(candidate.action, candidate.product_id, why))
            continue
        action = catalog[candidate.action]
        factor = factors.get(candidate.action, 1.0)
        expected = candidate.probability * factor * candidate.value - action.cost
        if expected <= 0:
            suppressed.append(
                Suppressed(candidate.action, candidate.product_id, "expected value not positive")
            )
            continue
        suggestion = _suggestion(candidate, action, expected, profile, locale)
        if candidate.product_id is not None:  # the chance it is bought, 30 days if known
            likely[id(suggestion)] = candidate.values.get("next") or candidate.probability
        suggestions.append(suggestion)
    # escalation first for a frustrated customer; then by expected value
    suggestions.sort(
        key=lambda s: (s.action != "escalate_to_human" or not frustrated, -s.expected_value)
    )
    # value decides which actions are shown; among the products shown, likelihood which first
    shown = suggestions[:max_actions]
    _most_likely_product_first(shown, likely)
    return Ranking(
        shown or [_nothing_now(catalog, locale)],
        suppressed,
        frustrated,
        locale,
        (*shown, *suggestions[max_actions:]),
    )


def _most_likely_product_first(suggestions: list[Suggestion], likely: dict[int, float]) -> None:
    """Fill the places expected value gave to product suggestions (reminders, the cross-sell)
    with those products, the one most likely bought first (by the next-product model's
    30-day probability where it has one): value decides whether and where a product is
    proposed, likelihood which product a customer hears of first. (`make eval-nba`: by
    expected value alone the first product was often a dearer, less likely one, hit@1 0.259
    against 0.270 now, the margin per customer the same; choosing the cross-sell by
    likelihood too gave 0.274 but 18% less margin.)"""
    places = [i for i, s in enumerate(suggestions) if id(s) in likely]
    ordered = sorted((suggestions[i] for i in places), key=lambda s: -likely[id(s)])
    for i, suggestion in zip(places, ordered, strict=True):
        suggestions[i] = suggestion


def _service_candidates(
    profile: Profile | None, intent: str | None, catalog: Catalog, now: datetime, frustrated: bool
) -> list[Candidate]:
    """Escalation for a frustrated customer; order-status help when asked or just ordered."""
    candidates = []
    if frustrated:
        value = _value(catalog, "escalate_to_human")
        candidates.append(Candidate("escalate_to_human", None, 1.0, value, ("FRUSTRATED",), {}))
    asks_order = intent == "order_status"
    recent = bool(
        profile
        and profile.last_order_at
        and now - profile.last_order_at <= timedelta(days=RECENT_ORDER_DAYS)
    )
    if asks_order or recent:
        codes = ("ASKED_ORDER_STATUS",) if asks_order else ("RECENT_ORDER",)
        value = _value(catalog, "order_status_help")
        probability = 1.0 if asks_order else 0.3
        candidates.append(Candidate("order_status_help", None, probability, value, codes, {}))
    return candidates


def _profile_candidates(
    profile: Profile,
    catalog: Catalog,
    now: datetime,
    window_days: int,
    locale: str,
    asked_reorder: bool = False,
) -> list[Candidate]:
    """Replenishment reminders due in the window (every consumable, certain, when the
    customer asks to reorder), the best cross-sell, a win-back offer."""
    candidates = []
    horizon = now + timedelta(days=window_days)
    for item in profile.consumables:
        if item.expected_next_purchase_at > horizon and not asked_reorder:
            continue
        date = item.expected_next_purchase_at.date().isoformat()
        name = item.names.get(locale) or item.names["en"]
        overdue = item.expected_next_purchase_at < now  # phrased as past, not as a future date
        due = item.expected_next_purchase_at <= horizon
        codes = ("RUNOUT_OVERDUE",) if overdue else ("RUNOUT_DUE",) if due else ()
        candidates.append(
            Candidate(
                "replenishment_reminder",
                item.product_id,
                1.0 if asked_reorder else item.repurchase_probability,
                item.price * catalog.margin,
                ("ASKED_TO_REORDER", *codes) if asked_reorder else codes,
                {
                    "product": name,
                    "date": date,
                    "overdue": overdue,
                    "family": item.family or item.product_id,
                    "next": None
                    if asked_reorder
                    else profile.next_purchase.get(item.family or item.product_id),
                },
            )
        )
    reminded = {c.values["family"] for c in candidates}
    offers = [c for c in profile.cross_sell if (c.family or c.product_id) not in reminded]
    # a product a reminder already proposes is not proposed twice; the product worth most
    # and, when it is another, the one likeliest bought (each still has to be worth its cost)
    worth = max(offers, key=lambda c: (c.probability * c.price, c.product_id), default=None)
    likeliest = max(offers, key=lambda c: (c.probability, c.product_id), default=None)
    chosen = [worth] if likeliest is worth else [worth, likeliest]
    for best in (o for o in chosen if o is not None):
        name = best.names.get(locale) or best.names["en"]
        drivers = [code for code in best.codes if code.islower()]
        candidates.append(
            Candidate(
                "cross_sell",
                best.product_id,
                best.probability,
                best.price * catalog.margin,
                best.codes,
                {"product": name, "driver": phrase(drivers[0] if drivers else "", locale)},
            )
        )
    if not profile.marketing_consent:  # churn was not scored (purpose limitation)
        candidates.append(Candidate("winback_offer", None, 0.0, 0.0, ("CHURN_NOT_SCORED",), {}))
    elif (codes := _winback_due(profile, catalog["winback_offer"].due, now)) is not None:
        drivers = profile.churn_drivers
        candidates.append(
            Candidate(
                "winback_offer",
                None,
                profile.churn_probability * catalog.retention_uplift,
                float(profile.clv_12m or 0.0),
                (*codes, *drivers),
                {"driver": phrase(drivers[0] if drivers else "", locale)},
            )
        )
    return candidates


def _winback_due(profile: Profile, due: dict | None, now: datetime) -> tuple[str, ...] | None:
    """The reason codes of a due win-back, or ``None``: churn probability at least the
    catalog's ``due.churn_probability`` and no order within ``due.gap_multiple`` times the
    customer's usual gap (``due.default_gap_days`` when unknown), nor within
    ``due.min_quiet_days`` (0 when the rule does not say). Without a ``due`` rule, a
    churn probability of 0.5 is enough (the catalogs before the rule)."""
    churn = profile.churn_probability
    if churn is None:
        return None
    if due is None:
        return ("CHURN_RISK",) if churn >= 0.5 else None
    if churn < due["churn_probability"]:
        return None
    gap = profile.usual_gap_days or due["default_gap_days"]
    # a bursty buyer (7 orders in 10 days) has a usual gap of a day or two: quiet for a week
    # is not lapsed, so the quiet period is also at least ``due.min_quiet_days``
    days = max(gap * due["gap_multiple"], due.get("min_quiet_days", 0))
    quiet = profile.last_order_at is None or now - profile.last_order_at > timedelta(days=days)
    return ("CHURN_RISK", "QUIET_LONGER_THAN_USUAL") if quiet else None


def _suppressed_because(
    candidate: Candidate,
    catalog: Catalog,
    profile: Profile | None,
    frustrated: bool,
    exposures: dict,
    now: datetime,
) -> str | None:
    """Why ``candidate`` may not be proposed now (consent, the control group, frustration,
    cooldown, cap)."""
    action = catalog[candidate.action]
    check = (action.due or {}).get("next_product_probability")
    likely = candidate.values.get("next")
    if check is not None and likely is not None and likely < check:
        return f"the next-product model finds a purchase unlikely ({likely:.2f} < {check:g})"
    if action.purpose == "marketing":
        if profile is None:
            return "unknown visitor"
        if not profile.marketing_consent:
            return NO_CONSENT
        if profile.holdout:
            return CONTROL
        if frustrated:
            return "customer is frustrated"
    seen = exposures.get((candidate.action, candidate.product_id))
    if seen is not None:
        if now - seen.last_shown_at < timedelta(days=action.cooldown_days):
            return "in cooldown"
        if seen.shown_30d >= action.cap_per_30_days:
            return "frequency cap reached"
    return None


def _suggestion(
    candidate: Candidate, action, expected: float, profile: Profile | None, locale: str
) -> Suggestion:
    codes = candidate.codes
    if profile is not None and action.purpose != "service":
        codes = (*codes, "MARKETING_CONSENT")
    templates, reasons = action.texts(candidate.values.get("overdue", False))
    return Suggestion(
        action=candidate.action,
        purpose=action.purpose,
        product_id=candidate.product_id,
        probability=round(candidate.probability, 4),
        value=round(candidate.value, 2),
        expected_value=round(expected, 4),
        confidence=_confidence(candidate.probability),
        reason_codes=codes,
        reason=_text(reasons, locale, **candidate.values),
        message=_text(templates, locale, **candidate.values),
    )


def _nothing_now(catalog: Catalog, locale: str) -> Suggestion:
    action = catalog["nothing_now"]
    return Suggestion(
        "nothing_now",
        "service",
        None,
        1.0,
        0.0,
        0.0,
        "high",
        ("NOTHING_WORTH_IT",),
        _text(action.reasons, locale),
        _text(action.templates, locale),
    )


def _value(catalog: Catalog, name: str) -> float:
    value = catalog[name].value
    return float(value) if isinstance(value, int | float) else 0.0
