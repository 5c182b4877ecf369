"""Customer x consumable features: personal cycles, where the customer is in the cycle now.

Only consumables (``products.consumable``) bought on at least two distinct UTC days by
``as_of`` get a row. A purchase covers ``quantity x pack_size`` units; the gap after a
purchase day is divided by the units bought that day, so it measures the days one unit
lasts (a 2-pack or two units cover about two cycles).
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from features.exact import exact_mean, exact_std, exact_sum
from features.time import days_between

MIN_PURCHASE_DAYS = 2


def pair_features(orders: pl.LazyFrame, products: pl.LazyFrame, *, as_of: datetime) -> pl.LazyFrame:
    """Per customer x consumable bought on 2+ days by ``as_of``:

    ``purchase_days``, ``units_total``; ``cycle_mean_days`` / ``cycle_median_days`` /
    ``cycle_std_days``: days per unit between consecutive purchase days;
    ``last_purchase_at``, ``last_units``, ``days_since_last``; ``expected_cycle_days`` =
    median cycle x units of the last purchase; ``cycle_position`` = days since last /
    expected cycle (1 = due now); ``expected_next_purchase_at``; ``category_share``: the
    pair's share of the customer's spend in the product's category;
    ``owns_related_durable``: the customer bought the durable the consumable serves
    (``products.related_product_id``) by ``as_of``.
    """
    catalog = products.select(
        "product_id", "category", "consumable", "pack_size", "related_product_id"
    ).collect()
    consumables = catalog.filter(pl.col("consumable"))
    pack = dict(zip(consumables["product_id"], consumables["pack_size"], strict=True))
    category = dict(zip(catalog["product_id"], catalog["category"], strict=True))
    related = consumables.select("product_id", "related_product_id").lazy()
    durables = consumables["related_product_id"].drop_nulls().unique().to_list()
    shared = consumables["category"].unique().to_list()

    bought = orders.filter((pl.col("ordered_at") <= as_of) & (pl.col("quantity") > 0))
    # The catalog is small: map columns through dicts rather than joining every order line.
    daily = (
        bought.filter(pl.col("product_id").is_in(list(pack)))
        .group_by("customer_id", "product_id", pl.col("ordered_at").dt.truncate("1d").alias("day"))
        .agg(
            units=(pl.col("quantity") * pl.col("product_id").replace_strict(pack)).sum(),
            last_at=pl.col("ordered_at").max(),
            spend=exact_sum(pl.col("amount")),
        )
    )
    # Sorted by pair and day: a row's gap is to the row before it if that row is the same
    # pair's, divided by the units bought then (cheaper than window functions).
    same_pair = (pl.col("customer_id") == pl.col("customer_id").shift(1)) & (
        pl.col("product_id") == pl.col("product_id").shift(1)
    )
    per_unit = pl.when(same_pair).then(
        days_between(pl.col("day"), pl.col("day").shift(1)) / pl.col("units").shift(1)
    )
    pairs = (
        daily.sort("customer_id", "product_id", "day")
        .with_columns(per_unit=per_unit)
        .group_by("customer_id", "product_id")
        .agg(
            purchase_days=pl.len().cast(pl.Int32),
            units_total=pl.col("units").sum(),
            cycle_mean_days=exact_mean(pl.col("per_unit"), 1e3),
            cycle_median_days=pl.col("per_unit").median(),
            cycle_std_days=exact_std(pl.col("per_unit")),
            last_purchase_at=pl.col("last_at").max(),
            last_units=pl.col("units").sort_by("day").last(),
            spend=exact_sum(pl.col("spend")),
        )
        .filter(pl.col("purchase_days") >= MIN_PURCHASE_DAYS)
        .with_columns(
            days_since_last=days_between(as_of, pl.col("last_purchase_at")),
            expected_cycle_days=pl.col("cycle_median_days") * pl.col("last_units"),
            category=pl.col("product_id").replace_strict(category),
        )
        .with_columns(
            cycle_position=pl.col("days_since_last") / pl.col("expected_cycle_days"),
            expected_next_purchase_at=pl.col("last_purchase_at")
            + pl.duration(
                microseconds=(pl.col("expected_cycle_days") * 86_400e6).round(0).cast(pl.Int64)
            ),
        )
    )
    category_spend = (
        bought.with_columns(category=pl.col("product_id").replace_strict(category, default=None))
        .filter(pl.col("category").is_in(shared))
        .group_by("customer_id", "category")
        .agg(category_spend=exact_sum(pl.col("amount")))
    )
    owned = (
        bought.filter(pl.col("product_id").is_in(durables))
        .select("customer_id", pl.col("product_id").alias("related_product_id"))
        .unique()
        .with_columns(owns_related_durable=pl.lit(True))
    )
    return (
        pairs.join(category_spend, on=["customer_id", "category"], how="left")
        .join(related, on="product_id", how="left")
        .join(owned, on=["customer_id", "related_product_id"], how="left")
        .with_columns(
            owns_related_durable=pl.col("owns_related_durable").fill_null(False),
            category_share=pl.col("spend") / pl.col("category_spend"),
        )
        .drop("spend", "category", "category_spend", "related_product_id")
    )
