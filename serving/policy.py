"""The next-best-action policy: candidate actions for one customer, ranked by expected value.

Pure and in-process (no I/O): the service, the notebooks and the property tests call the
same :func:`rank`. Expected value = probability x value - cost, where

- ``replenishment_reminder`` (one per consumable): the model's probability of a purchase in
  the repurchase window; value = price x margin; eligible when the run-out date falls
  before the end of the window;
- ``cross_sell``: the confidence P(B | owns A) of the co-purchase rule with the highest lift;
  value = price x margin;
- ``winback_offer``: churn probability x retention uplift; value = the 12-month CLV;
- ``order_status_help``: 1 when the customer asks about an order, else 0.3 within 14 days
  of an order;
- ``escalate_to_human``: 1 for a frustrated customer (negative sentiment in the context,
  frustrated words in the message, or an open ticket with recent negative sentiment);
- ``nothing_now``: when nothing else has a positive expected value.

Rules that always hold (checked by property tests): marketing actions need marketing
consent in force; a frustrated customer gets ``escalate_to_human`` first and no marketing;
an action within its cooldown or at its cap is not proposed; an unknown visitor gets only
non-personal service actions. Every suppressed candidate is reported with its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from serving.catalog import Catalog
from serving.locales import answer_locale

NEGATIVE = -0.3  # a sentiment at or below this is negative
RECENT_ORDER_DAYS = 14
FRUSTRATED_WORDS = re.compile(
    r"angry|terrible|awful|worst|useless|ridiculous|refund|complain|broken|still not|"
    r"生氣|生气|糟糕|爛|烂|退款|投訴|投诉|客訴|客诉|失望|壞掉|坏掉|還沒收到|还没收到",
    re.IGNORECASE,
)
ORDER_WORDS = re.compile(
    r"order|deliver|shipping|tracking|package|訂單|订单|出貨|发货|出货|物流|包裹|配送",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Consumable:
    product_id: str
    names: dict[str, str]  # locale -> name
    price: float
    repurchase_probability: float
    expected_next_purchase_at: datetime
    next_purchase_p10_at: datetime
    next_purchase_p90_at: datetime
    last_purchase_at: datetime


@dataclass(frozen=True)
class CrossSell:
    product_id: str
    names: dict[str, str]
    price: float
    confidence: float  # P(buys B | owns A)
    lift: float
    because_of: str  # the owned product A


@dataclass
class Profile:
    """What the policy knows of a customer (built by :mod:`serving.state`)."""

    customer_id: str
    locale: str = "en"
    marketing_consent: bool = False
    churn_probability: float | None = None
    clv_12m: float | None = None
    open_tickets: int = 0
    min_sentiment_30d: float | None = None
    last_order_at: datetime | None = None
    consumables: list[Consumable] = field(default_factory=list)
    cross_sell: list[CrossSell] = field(default_factory=list)


@dataclass(frozen=True)
class Context:
    channel: str = "chat"
    locale: str | None = None
    intent: str | None = None
    message: str | None = None
    sentiment: float | None = None


@dataclass(frozen=True)
class Exposure:
    """When an action (for a product) was last shown, and how often in the last 30 days."""

    last_shown_at: datetime
    shown_30d: int


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


def is_frustrated(profile: Profile | None, context: Context) -> bool:
    if context.sentiment is not None and context.sentiment <= NEGATIVE:
        return True
    if context.message and FRUSTRATED_WORDS.search(context.message):
        return True
    return bool(
        profile is not None
        and profile.open_tickets > 0
        and profile.min_sentiment_30d is not None
        and profile.min_sentiment_30d <= NEGATIVE
    )


def _confidence(probability: float) -> str:
    return "high" if probability >= 0.6 else "medium" if probability >= 0.3 else "low"


def _text(templates: dict[str, str], locale: str, **values) -> str:
    return templates.get(locale, templates["en"]).format(**values)


def rank(
    profile: Profile | None,
    context: Context,
    catalog: Catalog,
    *,
    now: datetime,
    exposures: dict[tuple[str, str | None], Exposure] | None = None,
    window_days: int = 14,
    max_actions: int = 3,
) -> Ranking:
    """Ranked suggestions for ``profile`` (``None``: an unknown visitor) in ``context``."""
    exposures = exposures or {}
    locale = answer_locale(context.locale, profile.locale if profile else None)
    frustrated = is_frustrated(profile, context)
    asks_order = context.intent == "order_status" or bool(
        context.message and ORDER_WORDS.search(context.message)
    )
    candidates: list[tuple[str, str | None, float, float, tuple[str, ...], dict]] = []
    # (action, product, probability, value, reason codes, template values)
    if frustrated:
        candidates.append(
            (
                "escalate_to_human",
                None,
                1.0,
                _value(catalog, "escalate_to_human"),
                ("FRUSTRATED",),
                {},
            )
        )
    recent = bool(
        profile
        and profile.last_order_at
        and now - profile.last_order_at <= timedelta(days=RECENT_ORDER_DAYS)
    )
    if asks_order or recent:
        codes = ("ASKED_ORDER_STATUS",) if asks_order else ("RECENT_ORDER",)
        candidates.append(
            (
                "order_status_help",
                None,
                1.0 if asks_order else 0.3,
                _value(catalog, "order_status_help"),
                codes,
                {},
            )
        )
    if profile is not None:
        horizon = now + timedelta(days=window_days)
        for item in profile.consumables:
            if item.expected_next_purchase_at > horizon:
                continue
            date = item.expected_next_purchase_at.date().isoformat()
            name = item.names.get(locale) or item.names["en"]
            candidates.append(
                (
                    "replenishment_reminder",
                    item.product_id,
                    item.repurchase_probability,
                    item.price * catalog.margin,
                    ("RUNOUT_DUE",),
                    {"product": name, "date": date},
                )
            )
        if profile.cross_sell:
            best = max(profile.cross_sell, key=lambda c: (c.lift, c.confidence))
            name = best.names.get(locale) or best.names["en"]
            candidates.append(
                (
                    "cross_sell",
                    best.product_id,
                    best.confidence,
                    best.price * catalog.margin,
                    ("CO_PURCHASE_LIFT",),
                    {"product": name},
                )
            )
        if not profile.marketing_consent:  # churn was not scored (purpose limitation)
            candidates.append(("winback_offer", None, 0.0, 0.0, ("CHURN_NOT_SCORED",), {}))
        elif profile.churn_probability is not None and profile.churn_probability >= 0.5:
            candidates.append(
                (
                    "winback_offer",
                    None,
                    profile.churn_probability * catalog.retention_uplift,
                    float(profile.clv_12m or 0.0),
                    ("CHURN_RISK",),
                    {},
                )
            )

    suggestions, suppressed = [], []
    for name, product, probability, value, codes, values in candidates:
        action = catalog[name]
        if action.purpose == "marketing":
            if profile is None:
                suppressed.append(Suppressed(name, product, "unknown visitor"))
                continue
            if not profile.marketing_consent:
                suppressed.append(Suppressed(name, product, "no marketing consent in force"))
                continue
            if frustrated:
                suppressed.append(Suppressed(name, product, "customer is frustrated"))
                continue
        seen = exposures.get((name, product))
        if seen is not None:
            if now - seen.last_shown_at < timedelta(days=action.cooldown_days):
                suppressed.append(Suppressed(name, product, "in cooldown"))
                continue
            if seen.shown_30d >= action.cap_per_30_days:
                suppressed.append(Suppressed(name, product, "frequency cap reached"))
                continue
        expected = probability * value - action.cost
        if expected <= 0:
            suppressed.append(Suppressed(name, product, "expected value not positive"))
            continue
        suggestions.append(
            Suggestion(
                action=name,
                purpose=action.purpose,
                product_id=product,
                probability=round(probability, 4),
                value=round(value, 2),
                expected_value=round(expected, 4),
                confidence=_confidence(probability),
                reason_codes=codes
                if profile is None or action.purpose == "service"
                else (*codes, "MARKETING_CONSENT"),
                reason=_text(action.reasons, locale, **values),
                message=_text(action.templates, locale, **values),
            )
        )
    # escalation first for a frustrated customer; then by expected value
    suggestions.sort(
        key=lambda s: (s.action != "escalate_to_human" or not frustrated, -s.expected_value)
    )
    suggestions = suggestions[:max_actions]
    if not suggestions:
        action = catalog["nothing_now"]
        suggestions = [
            Suggestion(
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
        ]
    return Ranking(suggestions, suppressed, frustrated, locale)


def _value(catalog: Catalog, name: str) -> float:
    value = catalog[name].value
    return float(value) if isinstance(value, int | float) else 0.0
