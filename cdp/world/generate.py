"""A simulated CDP world: contract tables before and after ``as_of``, and the truth after it.

Deterministic per seed: the same :class:`WorldConfig` gives identical tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from cdp.errors import BadInputError
from cdp.world import engagement, population, purchases
from cdp.world.catalog import catalog
from cdp.world.common import ids, take_text, timestamps
from cdp.world.config import WorldConfig


@dataclass
class World:
    """Contract tables (``tables``) and what really happened after ``as_of`` (``truth``)."""

    config: WorldConfig
    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class Numbering:
    """The first number of each id series in a world (a chunk of a larger world continues
    where the previous chunk ended)."""

    customer: int = 1
    order: int = 1
    event: int = 1


def _orders(
    rng: np.random.Generator,
    lines: purchases.Lines,
    amount: np.ndarray,
    pop,
    start,
    first=1,
    products: np.ndarray | None = None,
) -> pd.DataFrame:
    """Order lines sorted by time; order ids ``O`` + 9 digits numbered in time order.
    ``products``: the product ids when ``lines`` hold catalog row numbers."""
    order = np.lexsort((lines.occasion, lines.t))
    t, occasion = lines.t[order], lines.occasion[order]
    new_order = np.r_[True, (occasion[1:] != occasion[:-1]) | (t[1:] != t[:-1])]
    number = np.cumsum(new_order) + (first - 1)
    return pd.DataFrame(
        {
            "order_id": ids("O", number, 9),
            "customer_id": take_text(pop.customer_id, lines.owner[order]),
            "ordered_at": timestamps(start, t),
            "product_id": take_text(lines.product_id[order], np.arange(order.size))
            if products is None
            else take_text(products, lines.product_id[order]),
            "quantity": lines.quantity[order].astype("int64"),
            "amount": amount[order],
        }
    )


def generate_world(
    config: WorldConfig, numbering: Numbering | None = None, rng: np.random.Generator | None = None
) -> World:
    """Simulate ``config.customers`` customers; see the package modules for the mechanisms.
    ``numbering`` and ``rng`` are for a chunk of a larger world (:func:`generate_chunks`)."""
    from cdp.world.truth import truth_tables

    numbering = numbering or Numbering()
    rng = rng or np.random.default_rng(config.seed)
    span = float(config.history_days + config.future_days)
    as_of = float(config.history_days)
    start = config.start
    products = catalog()

    pop = population.simulate_population(rng, config.customers, span, as_of, numbering.customer)
    customers = population.customers_table(rng, pop, start)
    identities, cookie, device = population.identities_table(rng, pop)
    consents = population.consents_table(rng, pop, start)

    ordinary = purchases.ordinary_orders(rng, pop)
    pairs, durables = purchases.needs_and_durables(rng, pop, products)
    refills = purchases.replenishment(rng, pop, pairs)
    sold = purchases.Lines.concat([ordinary, durables, refills])
    sold_amount = purchases.priced(rng, sold, products)
    back, back_amount = purchases.returns(rng, ordinary, sold_amount[: ordinary.owner.size], span)
    lines = purchases.Lines.concat([sold, back])
    amounts = np.concatenate([sold_amount, back_amount])
    orders = _orders(rng, lines, amounts, pop, start, numbering.order)

    events = engagement.events_table(
        rng, pop, cookie, device, sold, products["product_id"].to_numpy(), start, numbering.event
    )
    tables = {
        "customers": customers,
        "identities": identities,
        "consents": consents.reset_index(drop=True),
        "products": products.drop(columns="base_cycle_days"),
        "orders": orders,
        "events": events,
    }
    truth = truth_tables(config, pop, pairs, orders, products)
    return World(config, tables, truth)


def generate_grocery_world(config: WorldConfig, products: int) -> World:
    """A grocery shop of ``products`` products (:mod:`cdp.world.grocery`) and
    ``config.customers`` households; the truth adds each household's staples and what it
    bought in the 30 days after ``as_of``."""
    from cdp.world import grocery
    from cdp.world.truth import grocery_truth

    rng = np.random.default_rng([config.seed, 7])
    span = float(config.history_days + config.future_days)
    start = config.start
    catalog = grocery.grocery_catalog(rng, products)
    pop = population.simulate_population(rng, config.customers, span, float(config.history_days))
    pop = grocery.shoppers(rng, pop)
    customers = population.customers_table(rng, pop, start)
    identities, cookie, device = population.identities_table(rng, pop)
    consents = population.consents_table(rng, pop, start)
    sold, staples = grocery.grocery_lines(rng, pop, catalog)
    price = catalog.products["price"].to_numpy()
    discount = np.where(rng.random(sold.owner.size) < 0.1, 0.8, 1.0)  # 10% of lines on offer
    sold_amount = np.round(sold.quantity * price[sold.product_id] * discount, 2)
    back, back_amount = purchases.returns(rng, sold, sold_amount, span, 0.01, (1, 14))
    lines = purchases.Lines.concat([sold, back])
    ids = catalog.products["product_id"].to_numpy()
    orders = _orders(
        rng, lines, np.concatenate([sold_amount, back_amount]), pop, start, products=ids
    )
    viewed = np.flatnonzero(rng.random(sold.owner.size) < 0.05)  # few views before a trip
    seen = purchases.Lines(
        sold.owner[viewed],
        sold.t[viewed],
        sold.occasion[viewed],
        ids[sold.product_id[viewed]],
        sold.quantity[viewed],
    )
    events = engagement.events_table(rng, pop, cookie, device, seen, ids, start)
    tables = {
        "customers": customers,
        "identities": identities,
        "consents": consents.reset_index(drop=True),
        "products": catalog.products,
        "orders": orders,
        "events": events,
    }
    truth = grocery_truth(config, pop, staples, catalog, orders)
    return World(config, tables, truth)


def generate_chunks(config: WorldConfig, chunk: int) -> Iterator[World]:
    """Simulate ``config.customers`` customers ``chunk`` at a time: each chunk a world of its
    own customers (with its own random stream, ``(seed, k)``), numbered on from the previous
    chunk's last customer, order and event. Memory is bounded by one chunk; the same config
    and chunk size give the same worlds."""
    if chunk < 1:
        raise BadInputError(f"--chunk-customers must be at least 1, got {chunk}")
    numbering = Numbering()
    for k, first in enumerate(range(0, config.customers, chunk)):
        size = min(chunk, config.customers - first)
        part = replace(config, customers=size)
        world = generate_world(part, numbering, np.random.default_rng([config.seed, k]))
        yield world
        orders, events = world.tables["orders"], world.tables["events"]
        numbering = Numbering(
            customer=numbering.customer + size,
            order=_last(orders["order_id"], numbering.order - 1) + 1,
            event=_last(events["event_id"], numbering.event - 1) + 1,
        )


def _last(numbered: pd.Series, none: int) -> int:
    """The highest number in a series of ids (prefix + digits); ``none`` when empty."""
    return int(numbered.str.slice(1).astype("int64").max()) if len(numbered) else none
