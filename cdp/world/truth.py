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
    t_as_of = float(config.history_days)
    horizon = as_of + pd.Timedelta(days=config.horizon_days)
    window = as_of + pd.Timedelta(days=config.window_days)

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
        "customers": customers.reset_index(drop=True),
        "replenishment": replenishment.sort_values(["customer_id", "product_id"]).reset_index(
            drop=True
        ),
    }
