"""Online rows applied to a served state, at once: an order resets the bought consumable's
run-out date (no reminder for ink bought a minute ago), a ticket or a negative sentiment counts
towards frustration, a consent record changes what may be proposed, a new identity resolves
to its customer, and a row naming a customer the state does not know creates them."""

from __future__ import annotations

import bisect
from dataclasses import replace
from datetime import datetime, timedelta

from features.profile import RECENT_ORDERS
from features.rfm import NO_PURCHASE
from policy.profile import Consumable
from serving.memory.customer import Customer, utc
from serving.memory.state import ServingState
from serving.schemas import EventBatch


def apply(state: ServingState, batch: EventBatch) -> dict:
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
    with state.lock:
        created = _create(state, batch)
        for customer in batch.customers:
            state.customers[customer.customer_id].locale = customer.locale
            counts["customers"] += 1
        for identity in batch.identities:
            state.identities[(identity.id_type, identity.id_value)] = identity.customer_id
            counts["identities"] += 1
        for consent in batch.consents:
            c = state.customers[consent.customer_id]
            history = c.consents.setdefault(consent.purpose, [])
            record = (utc(consent.recorded_at), consent.granted)
            # after every record of the same moment: the latest sent wins a tie
            history.insert(bisect.bisect_right(history, record[0], key=lambda r: r[0]), record)
            counts["consents"] += 1
        for order in batch.orders:
            c = state.customers[order.customer_id]
            at = utc(order.ordered_at)
            counts["orders"] += 1
            if order.quantity <= 0:
                continue
            c.last_order_at = max(filter(None, (c.last_order_at, at)))
            c.owned.add(order.product_id)
            # newest first, wherever a late row's date puts it
            c.recent_orders.insert(
                bisect.bisect_left(c.recent_orders, -at.timestamp(), key=_newest_first),
                {
                    "order_id": order.order_id,
                    "ordered_at": at,
                    "amount": round(order.amount, 2),
                    "lines": 1,
                },
            )
            del c.recent_orders[RECENT_ORDERS:]
            _refill(state, c, order.product_id, order.quantity, at)
        for event in batch.events:
            customer_id = state.owner(event.customer_id, event.anonymous_id)
            c = state.customers.get(customer_id) if customer_id else None
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


def _refill(state: ServingState, c: Customer, product_id: str, quantity: int, at: datetime) -> None:
    """Move the run-out dates of every consumable the purchase refills: the product
    itself and its variants (``products.variant_of``: a 2-pack of the same ink), by the
    units bought (quantity x pack size)."""
    bought = state.products.get(product_id)
    if bought is None:  # gone from the catalog since the row was accepted
        return
    units = quantity * bought["pack_size"]
    for held, item in list(c.consumables.items()):
        same = state.products.get(held, {}).get("family") == bought["family"]
        if same and at >= item.last_purchase_at:
            c.consumables[held] = _reset(item, at, c.cycle_days.get(held), units)


def _create(state: ServingState, batch: EventBatch) -> list[str]:
    """Create the customers the batch names that the state does not know yet."""
    named = [
        row.customer_id
        for kind in ("customers", "identities", "consents", "orders", "events")
        for row in getattr(batch, kind)
        if row.customer_id is not None
    ]
    created = [c for c in dict.fromkeys(named) if c not in state.customers]
    for customer_id in created:
        state.customers[customer_id] = Customer(customer_id, "en", NO_PURCHASE)
    return created


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


def _newest_first(order: dict) -> float:
    return -order["ordered_at"].timestamp()
