"""What really happened after ``as_of`` in a simulated world, to test models against.

``customers``: every customer who existed at ``as_of``, whether they were really active
then (latent), and whether and when they next purchased. ``replenishment``: every
customer x consumable pair bought at or before ``as_of``, its true cycle (days one unit
of that product lasts this customer), and its next purchase after ``as_of``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cdp.world.common import timestamps

if TYPE_CHECKING:
    from cdp.world.config import WorldConfig
    from cdp.world.grocery import Catalog, Staples
    from cdp.world.population import Population
    from cdp.world.purchases import Pairs


def _next_purchase(orders: pd.DataFrame, as_of: pd.Timestamp, keys: list[str]) -> pd.DataFrame:
    after = orders[(orders["ordered_at"] > as_of) & (orders["quantity"] > 0)]
    return (
        after.groupby(keys, as_index=False)["ordered_at"]
        .min()
        .rename(columns={"ordered_at": "next_purchase_at"})
    )


def truth_tables(
    config: WorldConfig,
    pop: Population,
    pairs: Pairs,
    orders: pd.DataFrame,
    products: pd.DataFrame,
) -> dict[str, pd.DataFrame]:
    """What really happened after ``as_of`` (the world's known truth): who bought in the
    churn horizon, which consumable pairs were re-bought in the window, and when."""
    as_of = config.as_of
    window = as_of + pd.Timedelta(days=config.window_days)
    customers = customer_truth(config, pop, orders)
    pair_frame = pd.DataFrame(
        {
            "customer_id": pop.customer_id.to_numpy()[pairs.owner],
            "product_id": pairs.product_id.astype(str),
            "true_cycle_days": np.round(pairs.cycle, 3),
        }
    ).astype({"customer_id": "str", "product_id": "str"})
    bought = orders[(orders["ordered_at"] <= as_of) & (orders["quantity"] > 0)]
    history = bought.groupby(["customer_id", "product_id"], as_index=False).agg(
        purchases_before_as_of=("ordered_at", "size"), last_purchase_at=("ordered_at", "max")
    )
    replenishment = pair_frame.merge(history, on=["customer_id", "product_id"], how="inner")
    replenishment = replenishment.merge(
        _next_purchase(orders, as_of, ["customer_id", "product_id"]), how="left"
    )
    replenishment["repurchased_within_window"] = replenishment["next_purchase_at"].le(window)
    consumable = set(products.loc[products["consumable"], "product_id"])
    assert replenishment["product_id"].isin(consumable).all()
    return {
        "customers": customers,
        "replenishment": replenishment.sort_values(["customer_id", "product_id"]).reset_index(
            drop=True
        ),
    }


def customer_truth(config: WorldConfig, pop: Population, orders: pd.DataFrame) -> pd.DataFrame:
    """Every customer who existed at ``as_of``: really active then (latent), their lapse,
    return and order rate, and their next purchase after ``as_of``."""
    as_of = config.as_of
    t_as_of = float(config.history_days)
    horizon = as_of + pd.Timedelta(days=config.horizon_days)
    s1, e1, s2, e2 = pop.segments()
    existed = pop.created <= t_as_of
    alive = ((s1 <= t_as_of) & (t_as_of < e1)) | ((s2 <= t_as_of) & (t_as_of < e2))
    finite = np.isfinite
    customers = pd.DataFrame(
        {
            "customer_id": pop.customer_id,
            "active_at_as_of": alive,
            "lapse_at": timestamps(config.start, np.where(finite(pop.lapse), pop.lapse, 0)).where(
                finite(pop.lapse)
            ),
            "return_at": timestamps(
                config.start, np.where(finite(pop.return_at), pop.return_at, 0)
            ).where(finite(pop.return_at)),
            "order_rate_per_year": np.round(pop.rate * 365.25, 4),
        }
    )[existed]
    customers = customers.merge(_next_purchase(orders, as_of, ["customer_id"]), how="left")
    customers["purchased_within_horizon"] = customers["next_purchase_at"].le(horizon)
    return customers.reset_index(drop=True)


#: The days after ``as_of`` whose purchases the grocery truth lists (the next-product window).
NEXT_DAYS = 30


def grocery_truth(
    config: WorldConfig, pop: Population, staples: Staples, catalog: Catalog, orders: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """The grocery world's truth: ``customers`` (as :func:`customer_truth`); ``staples``,
    every household x need it buys on a cycle and bought at or before ``as_of``, with the
    true cycle (days one unit lasts), and the next purchase of any product of that need after
    ``as_of``; ``next_products``, every product a household bought in the
    :data:`NEXT_DAYS` days after ``as_of``, when first, and whether it had bought it before
    (a repeat) and its need before."""
    as_of = config.as_of
    window = as_of + pd.Timedelta(days=config.window_days)
    need_names = catalog.products.groupby(catalog.need)["need"].first().to_numpy()
    need_of = pd.Series(catalog.products["need"].to_numpy(), index=catalog.products["product_id"])
    bought = orders[orders["quantity"] > 0][["customer_id", "product_id", "ordered_at"]]
    bought = bought.assign(need=bought["product_id"].map(need_of))
    before = bought[bought["ordered_at"] <= as_of]
    after = bought[bought["ordered_at"] > as_of]
    staple = pd.DataFrame(
        {
            "customer_id": pop.customer_id.to_numpy()[staples.owner],
            "need": need_names[staples.need],
            "true_cycle_days": np.round(staples.cycle, 3),
        }
    ).astype({"customer_id": "str", "need": "str"})
    history = before.groupby(["customer_id", "need"], as_index=False).agg(
        purchases_before_as_of=("ordered_at", "size"), last_purchase_at=("ordered_at", "max")
    )
    staple = staple.merge(history, on=["customer_id", "need"], how="inner")
    first_after = after.groupby(["customer_id", "need"], as_index=False)["ordered_at"].min()
    staple = staple.merge(
        first_after.rename(columns={"ordered_at": "next_purchase_at"}), how="left"
    )
    staple["repurchased_within_window"] = staple["next_purchase_at"].le(window)
    soon = after[after["ordered_at"] <= as_of + pd.Timedelta(days=NEXT_DAYS)]
    nexts = soon.groupby(["customer_id", "product_id", "need"], as_index=False)["ordered_at"].min()
    nexts = nexts.rename(columns={"ordered_at": "first_bought_at"})
    owned = before[["customer_id", "product_id"]].drop_duplicates().assign(repeat=True)
    needed = before[["customer_id", "need"]].drop_duplicates().assign(need_repeat=True)
    nexts = nexts.merge(owned, how="left").merge(needed, how="left")
    nexts = nexts.fillna({"repeat": False, "need_repeat": False}).astype(
        {"repeat": bool, "need_repeat": bool}
    )
    return {
        "customers": customer_truth(config, pop, orders),
        "staples": staple.sort_values(["customer_id", "need"], ignore_index=True),
        "next_products": nexts.sort_values(["customer_id", "product_id"], ignore_index=True),
    }
