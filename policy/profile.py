"""What the policy reads: a customer's :class:`Profile` (with the consumables they run out
of and the products to cross-sell), the chatbot's :class:`Context`, and each action's
:class:`Exposure` (when it was last shown). Small value objects, built by the service
(:mod:`serving.memory.state`) or by hand in tests and notebooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


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
    family: str | None = None  # the consumable a pack refills (products.variant_of)


@dataclass(frozen=True)
class CrossSell:
    product_id: str
    names: dict[str, str]
    price: float
    probability: float  # of a purchase within the next-product window
    codes: tuple[str, ...]  # why: an action code, then the customer's own drivers
    family: str | None = None  # the consumable a pack refills (products.variant_of)


@dataclass
class Profile:
    """What the policy knows of a customer (built by :mod:`serving.memory.state`)."""

    customer_id: str
    locale: str = "en"
    marketing_consent: bool = False
    churn_probability: float | None = None
    churn_drivers: tuple[str, ...] = ()  # the customer's own (policy.drivers), strongest first
    clv_12m: float | None = None
    open_tickets: int = 0
    min_sentiment_30d: float | None = None
    last_order_at: datetime | None = None
    usual_gap_days: float | None = None  # median days between purchase days
    consumables: list[Consumable] = field(default_factory=list)
    cross_sell: list[CrossSell] = field(default_factory=list)
    #: the next-product model's probability of a purchase of each consumable family it
    #: scored (the reminders' check, see ``actions.yaml``)
    next_purchase: dict[str, float] = field(default_factory=dict)
    #: in the global control group (:mod:`policy.holdout`): service actions only
    holdout: bool = False


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
