"""What the service holds in memory: champion models, scored profiles, identities, consents,
and the answers read from them.

A state is loaded from a snapshot (:func:`serving.memory.snapshot.load_snapshot`), changed by
online rows (:func:`serving.memory.updates.apply`) under its lock, and swapped whole on
reload.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np

from policy.catalog import Catalog
from policy.learning import Factors
from policy.profile import Context, CrossSell, Profile
from policy.ranking import Ranking, rank
from serving.memory.customer import Customer, consent_in_force, utc
from serving.memory.known import unseen


class ServingState:
    """Everything a request needs, loaded once and swapped whole on reload."""

    def __init__(self, *, versions: dict[str, str], as_of: datetime, window_days: int) -> None:
        self.versions = versions
        self.as_of = as_of
        self.window_days = window_days
        self.customers: dict[str, Customer] = {}
        self.identities: dict[tuple[str, str], str] = {}
        self.products: dict[str, dict] = {}
        self.rules: dict[str, list[tuple[str, float, float]]] = {}  # A -> [(B, conf, lift)]
        #: whether the next-product model chose the cross-sells (else co-purchase rules)
        self.learned_cross_sell = False
        self.lock = threading.Lock()
        #: how far along the online log this state is (:mod:`serving.memory.online`), set by replay
        self.position: object = None
        #: the snapshot's order lines and events, hashed (:mod:`serving.memory.known`)
        self.known_rows = np.empty(0, np.uint64)
        #: every event of the snapshot, hashed, while the log is compacted at load
        #: (:mod:`serving.memory.compaction`); None once it is done
        self.snapshot_events: np.ndarray | None = None
        #: customer id -> in the global control group (:mod:`policy.holdout`); set by the
        #: door that holds the key (:func:`serving.memory.runtime.hold_out`)
        self.in_control: Callable[[str], bool] = _nobody

    # -- requests --------------------------------------------------------------------------

    def resolve(
        self, customer_id: str | None, id_type: str | None, id_value: str | None
    ) -> str | None:
        """The customer id for a reference, or ``None`` for an unknown visitor."""
        if customer_id is None:
            customer_id = self.identities.get((id_type, id_value))
        return customer_id if customer_id in self.customers else None

    def allows(self, customer_id: str, purpose: str, now: datetime) -> bool:
        """Whether the customer's consent for ``purpose`` is in force at ``now``: the one
        check every route makes before it returns a score that serves that purpose."""
        c = self.customers.get(customer_id)
        return c is not None and consent_in_force(c.consents.get(purpose), now)

    def consents_at(self, customer_id: str, now: datetime) -> dict[str, bool]:
        """Purpose -> granted, as in force at ``now``."""
        c = self.customers[customer_id]
        return {purpose: consent_in_force(history, now) for purpose, history in c.consents.items()}

    def profile(self, customer_id: str, now: datetime) -> Profile:
        """The policy's view of ``customer_id`` at ``now`` (consent as in force then)."""
        c = self.customers[customer_id]
        granted = self.allows(customer_id, "marketing", now)
        return Profile(
            customer_id=customer_id,
            locale=c.locale,
            marketing_consent=granted,
            # purpose limitation: churn and CLV serve marketing, skipped without consent
            churn_probability=c.churn_probability if granted else None,
            churn_drivers=c.churn_drivers if granted else (),
            clv_12m=c.clv_12m if granted else None,
            open_tickets=c.open_tickets,
            min_sentiment_30d=c.min_sentiment_30d,
            last_order_at=c.last_order_at,
            usual_gap_days=c.usual_gap_days,
            consumables=list(c.consumables.values()),
            cross_sell=self._cross_sell(c) if granted else [],
            next_purchase=c.next_purchase if granted else {},
            holdout=self.in_control(customer_id),
        )

    def _cross_sell(self, c: Customer) -> list[CrossSell]:
        """The products to cross-sell: the next-product model's candidates (else the
        co-purchase rules of what the customer owns), never a durable they own."""
        offers = []
        if self.learned_cross_sell:
            for product_id, probability, codes in c.next_products:
                product = self.products[product_id]
                if product_id in c.owned and not product["consumable"]:
                    continue
                offers.append(
                    CrossSell(
                        product_id,
                        product["names"],
                        product["price"],
                        probability,
                        ("LIKELY_NEXT_PURCHASE", *codes),
                        product["family"],
                    )
                )
            return offers
        for held in c.owned:
            for product_id, confidence, lift in self.rules.get(held, ()):
                product = self.products[product_id]
                if product_id in c.owned or product["consumable"]:
                    continue
                codes = ("CO_PURCHASE_LIFT", f"co_purchase_lift_{'high' if lift > 1 else 'low'}")
                offers.append(
                    CrossSell(
                        product_id,
                        product["names"],
                        product["price"],
                        confidence,
                        codes,
                        product["family"],
                    )
                )
        return offers

    def ranking(
        self,
        customer_id: str | None,
        context: Context,
        catalog: Catalog,
        *,
        now: datetime,
        exposures: dict | None = None,
        max_actions: int = 3,
        factors: Factors | None = None,
    ) -> Ranking:
        """The policy's ranked answer for a known customer (or ``None``: an unknown
        visitor) at ``now``: what ``/suggest``, the MCP tool and ``nextbest suggest`` give.
        ``factors``: what feedback learned (:mod:`policy.learning`), by the customer's
        segment."""
        profile = self.profile(customer_id, now) if customer_id else None
        segment = self.customers[customer_id].segment if customer_id else None
        return rank(
            profile,
            context,
            catalog,
            now=now,
            exposures=exposures,
            window_days=self.window_days,
            max_actions=max_actions,
            factors=factors.of(segment) if factors is not None else None,
        )

    def churn_probability(self, row: int) -> float:
        """The churn champion's calibrated probability for one row of the churn matrix: on
        one thread, through the model's own calibration (no pandas)."""
        model = self.churn_model
        raw = model.raw_scores(self.churn_matrix[row : row + 1], num_threads=1)
        return float(model.calibrate(raw)[0])

    def new_rows(self, kind: str, rows: list[dict]) -> list[dict]:
        """The ``rows`` of ``kind`` (as the online log holds them) that this state does not
        hold already, by identity (:mod:`serving.memory.known`): an order line or event of
        the snapshot, or a consent record the customer's history has."""
        if kind != "consents":
            return unseen(kind, rows, self.known_rows)
        fresh = []
        for row in rows:
            c = self.customers.get(row["customer_id"])
            record = (utc(row["recorded_at"]), bool(row["granted"]))
            if c is None or record not in c.consents.get(row["purpose"], ()):
                fresh.append(row)
        return fresh

    def owner(self, customer_id: str | None, anonymous_id: str | None) -> str | None:
        """Whose event this is: its customer id, or the customer whose cookie or device
        identity is the anonymous id (identity stitching)."""
        return (
            customer_id
            or self.identities.get(("cookie", anonymous_id or ""))
            or self.identities.get(("device", anonymous_id or ""))
        )

    def identities_of(self, customer_id: str) -> list[tuple[str, str]]:
        """Every ``(id_type, id_value)`` that resolves to the customer (a scan: for the
        data-subject routes, not the request path)."""
        return [key for key, who in self.identities.items() if who == customer_id]

    def forget(self, customer_id: str) -> int:
        """Remove a customer and every identity that points at them (an erasure); returns
        how many identities went. Their row of the churn matrix is unreachable after this
        and freed at the next reload."""
        with self.lock:
            self.customers.pop(customer_id, None)
            self.churn_row.pop(customer_id, None)
            mine = self.identities_of(customer_id)
            for key in mine:
                del self.identities[key]
        return len(mine)


def utc_now() -> datetime:
    """The wall clock in UTC."""
    return datetime.now(UTC)


def _nobody(customer_id: str) -> bool:
    return False
