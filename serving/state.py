"""What the service holds in memory: champion models, scored profiles, identities, consents.

:meth:`ServingState.load` reads the champion models from the MLflow registry, a feature
snapshot (``nextbest features``) and the contract folder it was built from, scores every
customer once (vectorised, :func:`training.scoring.score_frames`) and indexes the result
by customer id, so a request is a few dictionary lookups and the policy (well under 1 ms).

Online updates (:meth:`ServingState.apply`) change a customer's state at once: an order
resets the bought consumable's run-out date (no reminder for ink bought a minute ago), a
ticket or a negative sentiment counts towards frustration, a consent record changes what
may be proposed, a new identity resolves to its customer.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cdp.time import as_utc
from features.profile import (
    RECENT_ORDERS,
    co_purchase_rules,
    open_tickets,
    owned,
    preferred_channel,
    recent_orders,
)
from features.rfm import NO_PURCHASE
from policy.catalog import Catalog
from policy.drivers import top_drivers
from policy.learning import Factors
from policy.profile import Consumable, Context, CrossSell, Profile
from policy.ranking import Ranking, rank

if TYPE_CHECKING:
    from serving.schemas import EventBatch


#: Next-product candidates kept per customer (owned ones are left out at request time).
NEXT_PRODUCTS = 5


def _utc(value) -> datetime:
    return pd.Timestamp(value).tz_convert("UTC").floor("us").to_pydatetime()  # no ns warning


def consent_in_force(history: list[tuple[datetime, bool]] | None, now: datetime) -> bool:
    """Whether a purpose's consent is granted at ``now``: the latest record at or before
    ``now`` decides (the data contract's rule); a record dated later is not in force yet, and
    no record means no consent."""
    if not history:
        return False
    i = bisect.bisect_right(history, now, key=lambda record: record[0])
    return i > 0 and history[i - 1][1]


@dataclass
class Customer:
    """One customer's served state (mutable by online updates, under the state's lock)."""

    customer_id: str
    locale: str
    segment: str
    # None for a customer created online (no features yet)
    churn_probability: float | None = None
    clv_12m: float | None = None
    p_alive: float | None = None
    min_sentiment_30d: float | None = None
    last_order_at: datetime | None = None
    usual_gap_days: float | None = None  # median days between purchase days (the snapshot's)
    preferred_channel: str | None = None
    #: purpose -> every record ``(recorded_at, granted)`` in time order
    consents: dict[str, list[tuple[datetime, bool]]] = field(default_factory=dict)
    open_tickets: int = 0
    consumables: dict[str, Consumable] = field(default_factory=dict)
    cycle_days: dict[str, float] = field(default_factory=dict)  # per unit, per consumable
    owned: set[str] = field(default_factory=set)
    recent_orders: list[dict] = field(default_factory=list)
    #: what raises this customer's churn probability most (:mod:`policy.drivers` codes)
    churn_drivers: tuple[str, ...] = ()
    #: the next-product model's best candidates: (product_id, probability, drivers), by
    #: expected value (probability x price) first
    next_products: list[tuple[str, float, tuple[str, ...]]] = field(default_factory=list)
    #: the next-product model's probability of each consumable family they buy
    next_purchase: dict[str, float] = field(default_factory=dict)


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
        #: how far along the online log this state is (:mod:`serving.online`), set by replay
        self.position: object = None

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, *, data: Path, features: Path) -> ServingState:
        """Champions from the configured MLflow registry, the snapshot, the contract data."""
        from cdp.contract import ContractTables
        from cdp.io import read_tables
        from features.config import FeatureConfig
        from features.io import read_snapshot
        from training.scoring import load_champions, score_candidates, score_frames

        champions, versions = load_champions()
        customers, pairs, manifest = read_snapshot(features)
        built_with = manifest["config"]
        config = FeatureConfig(
            **{**built_with, "engagement_windows": tuple(built_with["engagement_windows"])}
        )
        as_of = as_utc(manifest["as_of"])
        scores = score_frames(
            customers, pairs, as_of=as_of, champions=champions, versions=versions, config=config
        )
        tables, _, _ = read_tables(data)
        state = cls(versions=versions, as_of=as_of, window_days=config.window_days)
        state._index(customers, pairs, scores, tables, as_of)
        state.churn_model = champions["churn"]
        buyers = customers[customers["purchase_days"] > 0]
        state.churn_matrix = _numeric(state.churn_model, buyers)
        state.churn_row = {c: i for i, c in enumerate(buyers["customer_id"])}
        model = state.churn_model  # each customer's own churn drivers (TreeSHAP)
        drivers = top_drivers(model.contributions(buyers), buyers[model.features_])
        for customer_id, codes in zip(buyers["customer_id"], drivers, strict=True):
            if customer_id in state.customers:
                state.customers[customer_id].churn_drivers = codes
        scored = score_candidates(
            ContractTables(**tables),  # the tables read above, not the folder again
            customers,
            pairs,
            as_of=as_of,
            champions=champions,
            versions=versions,
            config=config,
        )
        if scored is not None:
            state._index_next_products(champions["next_product"], scored)
        return state

    def _index_next_products(self, model, scored: pd.DataFrame) -> None:
        """Each customer's :data:`NEXT_PRODUCTS` best candidates by expected value, with
        their own drivers (TreeSHAP of the next-product model)."""
        scored = scored.assign(ev=scored["purchase_probability"] * scored["price"])
        refills = scored[scored["family_purchase_days"] > 0]  # families they buy already
        likely = refills.groupby(["customer_id", "family"])["purchase_probability"].max()
        for (customer_id, family), probability in likely.items():
            customer = self.customers.get(customer_id)
            if customer is not None:
                customer.next_purchase[family] = float(probability)
        top = (
            scored.sort_values(["customer_id", "ev"], ascending=[True, False], kind="stable")
            .groupby("customer_id", sort=False)
            .head(NEXT_PRODUCTS)
        )
        drivers = top_drivers(model.contributions(top), top[model.features_])
        keys = zip(top["customer_id"], top["product_id"], strict=True)
        rows = zip(keys, top["purchase_probability"], drivers, strict=True)
        for (customer_id, product_id), probability, codes in rows:
            customer = self.customers.get(customer_id)
            if customer is not None and product_id in self.products:
                customer.next_products.append((product_id, float(probability), codes))
        self.learned_cross_sell = True

    def _index(
        self, customers: pd.DataFrame, pairs: pd.DataFrame, scores: dict, tables: dict, as_of
    ) -> None:
        """Index everything a request reads by customer (and product) id."""
        self._index_products(tables["products"])
        self._index_customers(customers, scores, tables["events"], as_of)
        self._index_history(tables, as_of)
        if "replenishment" in scores:
            self._index_consumables(pairs, scores["replenishment"])

    def _index_products(self, products: pd.DataFrame) -> None:
        for row in products.to_dict("records"):
            names = {"en": row["name"]}
            for locale, column in (("zh-TW", "name_zh_tw"), ("zh-CN", "name_zh_cn")):
                if isinstance(row.get(column), str):
                    names[locale] = row[column]
            variant_of = row.get("variant_of")
            self.products[row["product_id"]] = {
                "names": names,
                "price": float(row["price"]),
                "consumable": bool(row["consumable"]),
                "category": row["category"],
                "pack_size": int(row.get("pack_size") or 1),
                # a pack of another product (a 2-pack of ink) refills the same consumable
                "family": variant_of if isinstance(variant_of, str) else row["product_id"],
            }

    def _index_customers(self, customers, scores: dict, events: pd.DataFrame, as_of) -> None:
        """Each customer's scores, locale, segment, channel and open tickets."""
        frame = customers[
            [
                "customer_id",
                "locale",
                "segment",
                "sentiment_min_30d",
                "last_purchase_at",
                "gap_median_days",
            ]
        ].merge(scores["churn"], on="customer_id", how="left")
        frame = frame.merge(
            scores["clv"][["customer_id", "clv_12m", "p_alive"]], on="customer_id", how="left"
        )
        channel = preferred_channel(events, as_of)
        frame["preferred_channel"] = frame["customer_id"].map(channel)
        for row in frame.to_dict("records"):
            self.customers[row["customer_id"]] = Customer(
                customer_id=row["customer_id"],
                locale=row["locale"],
                segment=row["segment"],
                churn_probability=_num(row["churn_probability"]),
                clv_12m=_num(row["clv_12m"]),
                p_alive=_num(row["p_alive"]),
                min_sentiment_30d=_num(row["sentiment_min_30d"]),
                last_order_at=None
                if pd.isna(row["last_purchase_at"])
                else _utc(row["last_purchase_at"]),
                usual_gap_days=_num(row["gap_median_days"]),
                preferred_channel=row["preferred_channel"]
                if isinstance(row["preferred_channel"], str)
                else None,
            )
        for customer_id, n in open_tickets(events, as_of).items():
            if customer_id in self.customers:
                self.customers[customer_id].open_tickets = int(n)

    def _index_history(self, tables: dict, as_of) -> None:
        """Identities, every consent record, what each customer owns, co-purchase rules and
        recent orders."""
        orders = tables["orders"]
        for row in tables["identities"].to_dict("records"):
            self.identities[(row["id_type"], row["id_value"])] = row["customer_id"]
        # every record, in time order: which one is in force depends on the request's clock
        consents = tables["consents"].sort_values("recorded_at", kind="stable")
        for row in consents.to_dict("records"):
            customer = self.customers.get(row["customer_id"])
            if customer is not None:
                customer.consents.setdefault(row["purpose"], []).append(
                    (_utc(row["recorded_at"]), bool(row["granted"]))
                )
        bought = owned(orders, as_of)
        for customer_id, products in bought.groupby("customer_id")["product_id"]:
            if customer_id in self.customers:
                self.customers[customer_id].owned = set(products)
        rules = co_purchase_rules(bought)
        for product_id, group in rules.groupby("product_id", sort=False):
            self.rules[product_id] = list(
                zip(group["other"], group["confidence"], group["lift"], strict=True)
            )
        for row in recent_orders(orders, as_of).to_dict("records"):
            if row["customer_id"] in self.customers:
                self.customers[row["customer_id"]].recent_orders.append(
                    {
                        "order_id": row["order_id"],
                        "ordered_at": _utc(row["ordered_at"]),
                        "amount": float(row["amount"]),
                        "lines": int(row["lines"]),
                    }
                )

    def _index_consumables(self, pairs: pd.DataFrame, scored: pd.DataFrame) -> None:
        """Each customer's consumables: repurchase probability and run-out dates."""
        # the per-unit cycle and last purchase come from the snapshot's pair features
        cycles = pairs[["customer_id", "product_id", "cycle_median_days", "last_purchase_at"]]
        pairs = scored.merge(cycles, on=["customer_id", "product_id"], how="left")
        for row in pairs.to_dict("records"):
            customer = self.customers.get(row["customer_id"])
            product = self.products.get(row["product_id"])
            if customer is None or product is None:
                continue
            customer.consumables[row["product_id"]] = Consumable(
                product_id=row["product_id"],
                names=product["names"],
                price=product["price"],
                repurchase_probability=float(row["repurchase_probability"]),
                expected_next_purchase_at=_utc(row["expected_next_purchase_at"]),
                next_purchase_p10_at=_utc(row["next_purchase_p10_at"]),
                next_purchase_p90_at=_utc(row["next_purchase_p90_at"]),
                last_purchase_at=_utc(row["last_purchase_at"]),
                family=product["family"],
            )
            customer.cycle_days[row["product_id"]] = float(row["cycle_median_days"])

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

    # -- online updates --------------------------------------------------------------------

    def apply(self, batch: EventBatch) -> dict:
        """Apply an ingested batch (:class:`serving.schemas.EventBatch`); returns counts
        applied and the customers it ``created`` (a row naming a customer the state does not
        know creates them, with no features yet). Anonymous events nobody owns are
        ``ignored``."""
        counts = {
            "customers": 0,
            "orders": 0,
            "events": 0,
            "consents": 0,
            "identities": 0,
            "ignored": 0,
        }
        with self.lock:
            created = self._create(batch)
            for customer in batch.customers:
                self.customers[customer.customer_id].locale = customer.locale
                counts["customers"] += 1
            for identity in batch.identities:
                self.identities[(identity.id_type, identity.id_value)] = identity.customer_id
                counts["identities"] += 1
            for consent in batch.consents:
                c = self.customers[consent.customer_id]
                history = c.consents.setdefault(consent.purpose, [])
                record = (_utc(consent.recorded_at), consent.granted)
                # after every record of the same moment: the latest sent wins a tie
                history.insert(bisect.bisect_right(history, record[0], key=lambda r: r[0]), record)
                counts["consents"] += 1
            for order in batch.orders:
                c = self.customers[order.customer_id]
                at = _utc(order.ordered_at)
                counts["orders"] += 1
                if order.quantity <= 0:
                    continue
                c.last_order_at = max(filter(None, (c.last_order_at, at)))
                c.owned.add(order.product_id)
                c.recent_orders.insert(
                    0,
                    {
                        "order_id": order.order_id,
                        "ordered_at": at,
                        "amount": round(order.amount, 2),
                        "lines": 1,
                    },
                )
                del c.recent_orders[RECENT_ORDERS:]
                self._refill(c, order.product_id, order.quantity, at)
            for event in batch.events:
                customer_id = self.owner(event.customer_id, event.anonymous_id)
                c = self.customers.get(customer_id) if customer_id else None
                if c is None:
                    counts["ignored"] += 1
                    continue
                counts["events"] += 1
                if event.sentiment is not None:
                    c.min_sentiment_30d = min(
                        event.sentiment,
                        c.min_sentiment_30d if c.min_sentiment_30d is not None else 1.0,
                    )
                if event.event_type == "ticket_opened":
                    c.open_tickets += 1
                elif event.event_type == "ticket_resolved":
                    c.open_tickets = max(0, c.open_tickets - 1)
        return {**counts, "created": created}

    def _refill(self, c: Customer, product_id: str, quantity: int, at: datetime) -> None:
        """Move the run-out dates of every consumable the purchase refills: the product
        itself and its variants (``products.variant_of``: a 2-pack of the same ink), by the
        units bought (quantity x pack size)."""
        bought = self.products.get(product_id)
        if bought is None:  # gone from the catalog since the row was accepted
            return
        units = quantity * bought["pack_size"]
        for held, item in list(c.consumables.items()):
            same = self.products.get(held, {}).get("family") == bought["family"]
            if same and at >= item.last_purchase_at:
                c.consumables[held] = _reset(item, at, c.cycle_days.get(held), units)

    def _create(self, batch: EventBatch) -> list[str]:
        """Create the customers the batch names that the state does not know yet."""
        named = [
            row.customer_id
            for kind in ("customers", "identities", "consents", "orders", "events")
            for row in getattr(batch, kind)
            if row.customer_id is not None
        ]
        created = [c for c in dict.fromkeys(named) if c not in self.customers]
        for customer_id in created:
            self.customers[customer_id] = Customer(customer_id, "en", NO_PURCHASE)
        return created

    def churn_probability(self, row: int) -> float:
        """The churn model's calibrated probability for one row of the churn matrix: the
        booster on one thread, through the model's own calibration (no pandas)."""
        model = self.churn_model
        raw = model.booster_.predict(
            self.churn_matrix[row : row + 1], raw_score=True, num_threads=1
        )
        return float(model.calibrate(raw)[0])

    def has_order(self, customer_id: str, order_id: str) -> bool:
        """Whether ``order_id`` is among the customer's recent orders already."""
        c = self.customers.get(customer_id)
        return c is not None and any(o["order_id"] == order_id for o in c.recent_orders)

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


def _reset(item: Consumable, at: datetime, cycle_days: float | None, units: int) -> Consumable:
    """The consumable after a purchase of ``units`` at ``at``: its run-out dates move one
    cycle on (the units bought times the per-unit cycle, or the previous spacing when
    unknown)."""
    previous = (item.expected_next_purchase_at - item.last_purchase_at).total_seconds() / 86_400
    cycle = cycle_days * units if cycle_days and cycle_days > 0 else max(previous, 1.0)
    shift = at + timedelta(days=cycle) - item.expected_next_purchase_at
    return replace(
        item,
        last_purchase_at=at,
        expected_next_purchase_at=item.expected_next_purchase_at + shift,
        next_purchase_p10_at=item.next_purchase_p10_at + shift,
        next_purchase_p90_at=item.next_purchase_p90_at + shift,
    )


def _num(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def utc_now() -> datetime:
    """The wall clock in UTC."""
    return datetime.now(UTC)


def _numeric(model, frame: pd.DataFrame) -> np.ndarray:
    """The model's features as one float matrix, categories coded as LightGBM coded them in
    training (its ``pandas_categorical``), so one row predicts without pandas."""
    from training.classifier import model_frame

    x = model_frame(frame, model.features_)
    known = iter(model.booster_.pandas_categorical or [])
    for column in x.columns:
        if isinstance(x[column].dtype, pd.CategoricalDtype):
            codes = pd.Categorical(x[column].astype(object), categories=next(known)).codes
            x[column] = np.where(codes >= 0, codes, np.nan)
    return np.ascontiguousarray(x.to_numpy(dtype=np.float64))
