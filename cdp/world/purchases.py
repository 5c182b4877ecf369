"""Simulated purchases: ordinary orders, durables that lead to consumables, replenishment, returns.

Every purchase is an *occasion* (one order) with one or more lines. Replenishment of a
consumable follows the customer's own cycle: after buying ``q`` units the next purchase
comes ``cycle * q * jitter`` days later (jitter log-normal, sigma 0.12), while the customer
is active; 5% of refills are bought elsewhere and never reach the shop's data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cdp.world.catalog import EVERYDAY, FAMILIES
from cdp.world.common import choose, uniform_in_segments
from cdp.world.population import Population


@dataclass(frozen=True)
class Lines:
    """Order lines before ids: customer number, time (days), occasion key, product, amounts."""

    owner: np.ndarray
    t: np.ndarray
    occasion: np.ndarray  # lines of one order share an occasion key
    product_id: np.ndarray
    quantity: np.ndarray

    @staticmethod
    def concat(parts: list[Lines]) -> Lines:
        """The order lines of ``parts``, one after another."""
        return Lines(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in Lines.__dataclass_fields__)
        )


def _occasion_keys(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.random(n)


def ordinary_orders(rng: np.random.Generator, pop: Population) -> Lines:
    """Everyday items: 1 + Poisson(0.4) lines per order.

    Orders are Poisson at the customer's rate while active, and at a tenth of it while
    lapsed (the occasional purchase of a customer who has mostly gone elsewhere).
    """
    s1, e1, s2, e2 = pop.segments()
    active = np.maximum(e1 - s1, 0) + np.maximum(e2 - s2, 0)
    owner = np.repeat(np.arange(pop.size), rng.poisson(pop.rate * active))
    t = uniform_in_segments(rng, owner, s1, e1, s2, e2)
    d1, d2 = e1, np.minimum(pop.return_at, pop.span)
    dormant = np.repeat(np.arange(pop.size), rng.poisson(0.1 * pop.rate * np.maximum(d2 - d1, 0)))
    owner = np.concatenate([owner, dormant])
    t = np.concatenate([t, d1[dormant] + rng.random(dormant.size) * (d2 - d1)[dormant]])
    key = _occasion_keys(rng, owner.size)
    lines = 1 + rng.poisson(0.4, owner.size)
    line_owner = np.repeat(owner, lines)
    products = np.array(list(EVERYDAY))
    weights = np.array(list(EVERYDAY.values()))
    return Lines(
        owner=line_owner,
        t=np.repeat(t, lines),
        occasion=np.repeat(key, lines),
        product_id=choose(rng, products, weights, line_owner.size),
        quantity=np.where(rng.random(line_owner.size) < 0.9, 1, 2),
    )


@dataclass(frozen=True)
class Pairs:
    """Customer x consumable pairs with their true cycle (days one unit of the product lasts)."""

    owner: np.ndarray
    product_id: np.ndarray
    cycle: np.ndarray
    start: np.ndarray  # first purchase, days


def needs_and_durables(
    rng: np.random.Generator, pop: Population, catalog: pd.DataFrame
) -> tuple[Pairs, Lines]:
    """Which customers need which consumable, and the durables they buy here.

    For a durable-first need (printer -> ink) the durable is bought here with the family's
    probability and the first refill follows within a week; otherwise the consumable comes
    first and some customers add the durable later (coffee beans -> grinder).
    """
    base_cycle = catalog.set_index("product_id")["base_cycle_days"]
    pack = catalog.set_index("product_id")["pack_size"]
    s1, e1, _, _ = pop.segments()
    pair_parts, durable_parts = [], []
    for durable, consumables, share, durable_first, here in FAMILIES:
        who = np.flatnonzero(rng.random(pop.size) < share)
        begin = s1[who] + rng.exponential(60, who.size)
        live = begin < e1[who]
        who, begin = who[live], begin[live]
        options = np.array([c for c, _ in consumables])
        product = choose(rng, options, np.array([w for _, w in consumables]), who.size)
        personal = rng.lognormal(0.0, 0.25, who.size)
        cycle = base_cycle[product].to_numpy() * pack[product].to_numpy() * personal
        bought_here = rng.random(who.size) < here
        if durable_first:
            durable_at = begin
            first = begin + rng.uniform(0, 7, who.size)
        else:
            first = begin
            durable_at = begin + rng.exponential(90, who.size)
        bought_here &= durable_at < e1[who]
        pair_parts.append(Pairs(who, product, cycle, first))
        n_durable = int(bought_here.sum())
        durable_parts.append(
            Lines(
                owner=who[bought_here],
                t=durable_at[bought_here],
                occasion=_occasion_keys(rng, n_durable),
                product_id=np.full(n_durable, durable),
                quantity=np.ones(n_durable, dtype="int64"),
            )
        )
    pairs = Pairs(
        *(np.concatenate([getattr(p, f) for p in pair_parts]) for f in Pairs.__dataclass_fields__)
    )
    return pairs, Lines.concat(durable_parts)


def replenishment(rng: np.random.Generator, pop: Population, pairs: Pairs) -> Lines:
    """Refill purchases of each pair while its customer is active (both active segments).

    Vectorized over pairs: each pass of the loop advances every pair still buying by one
    refill, so the loop runs as many times as the longest pair has refills.
    """
    _, e1, s2, e2 = pop.segments()
    # One renewal process per (pair, segment): from the first purchase to the lapse, and
    # from shortly after a return to the end of the simulation.
    back = np.isfinite(pop.return_at[pairs.owner]) & (s2[pairs.owner] < e2[pairs.owner])
    idx = np.concatenate([np.arange(pairs.owner.size), np.flatnonzero(back)])
    t = np.concatenate(
        [pairs.start, s2[pairs.owner[back]] + rng.uniform(0, 1, back.sum()) * pairs.cycle[back]]
    )
    end = np.concatenate([e1[pairs.owner], e2[pairs.owner[back]]])
    out_idx, out_t, out_q = [], [], []
    alive = t < end
    idx, t, end = idx[alive], t[alive], end[alive]
    while idx.size:
        q = np.where(rng.random(idx.size) < 0.85, 1, np.where(rng.random(idx.size) < 0.75, 2, 3))
        recorded = rng.random(idx.size) >= 0.05
        out_idx.append(idx[recorded])
        out_t.append(t[recorded])
        out_q.append(q[recorded])
        t = t + pairs.cycle[idx] * q * rng.lognormal(0.0, 0.12, idx.size)
        alive = t < end
        idx, t, end = idx[alive], t[alive], end[alive]
    pair_idx = np.concatenate(out_idx) if out_idx else np.zeros(0, dtype=int)
    return Lines(
        owner=pairs.owner[pair_idx],
        t=np.concatenate(out_t) if out_t else np.zeros(0),
        occasion=_occasion_keys(rng, pair_idx.size),
        product_id=pairs.product_id[pair_idx],
        quantity=np.concatenate(out_q) if out_q else np.zeros(0, dtype="int64"),
    )


def returns(
    rng: np.random.Generator,
    ordinary: Lines,
    amount: np.ndarray,
    span: float,
    share: float = 0.04,
    days: tuple[float, float] = (3, 30),
) -> tuple[Lines, np.ndarray]:
    """``share`` of the lines (4% of ordinary ones) come back ``days`` later (3-30) as
    their own order, fully refunded."""
    back = np.flatnonzero(rng.random(ordinary.owner.size) < share)
    t = ordinary.t[back] + rng.uniform(*days, back.size)
    keep = t < span
    back, t = back[keep], t[keep]
    lines = Lines(
        owner=ordinary.owner[back],
        t=t,
        occasion=_occasion_keys(rng, back.size),
        product_id=ordinary.product_id[back],
        quantity=-ordinary.quantity[back],
    )
    return lines, -amount[back]


def priced(rng: np.random.Generator, lines: Lines, catalog: pd.DataFrame) -> np.ndarray:
    """Line amounts: quantity x price, with a 10% (10% of orders) or 20% (5%) discount."""
    price = catalog.set_index("product_id")["price"].reindex(lines.product_id).to_numpy()
    discount = choose(
        rng, np.array([0.0, 0.1, 0.2]), np.array([0.85, 0.10, 0.05]), lines.owner.size
    )
    return np.round(lines.quantity * price * (1 - discount), 2)
