"""A simulated CDP world: contract tables before and after ``as_of``, and the truth after it.

Deterministic per seed: the same :class:`WorldConfig` gives identical tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cdp.errors import BadInputError
from cdp.time import as_utc
from cdp.world import engagement, population, purchases
from cdp.world.catalog import catalog
from cdp.world.common import ids, take_text, timestamps


@dataclass(frozen=True)
class WorldConfig:
    """What to simulate.

    ``history_days`` of data end at ``as_of``; ``future_days`` follow it, long enough to
    label the churn horizon (``horizon_days``) and the replenishment window (``window_days``).
    """

    customers: int
    seed: int
    as_of: pd.Timestamp
    history_days: int = 730
    future_days: int = 120
    horizon_days: int = 90
    window_days: int = 14

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise BadInputError(f"--customers must be at least 1, got {self.customers}")
        if self.seed < 0:
            raise BadInputError(f"--seed must be >= 0, got {self.seed}")
        if self.future_days < max(self.horizon_days, self.window_days):
            raise BadInputError(
                f"future_days ({self.future_days}) must cover horizon_days ({self.horizon_days})"
                f" and window_days ({self.window_days})"
            )
        object.__setattr__(self, "as_of", pd.Timestamp(as_utc(self.as_of)))

    @property
    def start(self) -> pd.Timestamp:
        """The first moment of the simulated history."""
        return self.as_of - pd.Timedelta(days=self.history_days)


@dataclass
class World:
    """Contract tables (``tables``) and what really happened after ``as_of`` (``truth``)."""

    config: WorldConfig
    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame] = field(default_factory=dict)


def _orders(
    rng: np.random.Generator, lines: purchases.Lines, amount: np.ndarray, pop, start
) -> pd.DataFrame:
    """Order lines sorted by time; order ids ``O`` + 9 digits numbered in time order."""
    order = np.lexsort((lines.occasion, lines.t))
    t, occasion = lines.t[order], lines.occasion[order]
    new_order = np.r_[True, (occasion[1:] != occasion[:-1]) | (t[1:] != t[:-1])]
    number = np.cumsum(new_order)
    return pd.DataFrame(
        {
            "order_id": ids("O", number, 9),
            "customer_id": take_text(pop.customer_id, lines.owner[order]),
            "ordered_at": timestamps(start, t),
            "product_id": take_text(lines.product_id[order], np.arange(order.size)),
            "quantity": lines.quantity[order].astype("int64"),
            "amount": amount[order],
        }
    )


def generate_world(config: WorldConfig) -> World:
    """Simulate ``config.customers`` customers; see the package modules for the mechanisms."""
    from cdp.world.truth import truth_tables

    rng = np.random.default_rng(config.seed)
    span = float(config.history_days + config.future_days)
    as_of = float(config.history_days)
    start = config.start
    products = catalog()

    pop = population.simulate_population(rng, config.customers, span, as_of)
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
    orders = _orders(rng, lines, np.concatenate([sold_amount, back_amount]), pop, start)

    events = engagement.events_table(
        rng, pop, cookie, device, sold, products["product_id"].to_numpy(), start
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
