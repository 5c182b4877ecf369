"""Customer x consumable features: personal cycles, where the customer is in the cycle now.

What runs out is a *need* when the catalog names one (``products.need``: whole milk,
whatever the brand), else the product: a customer's cycle is learned over every product of
the need, and the pair's ``product_id`` is the one they usually buy for it (on the most
days, the latest of equals). Only consumables (``products.consumable``) bought on at least
two distinct UTC days by ``as_of`` get a row. A purchase covers ``quantity x pack_size``
units; the gap after a purchase day is divided by the units bought that day, so it measures
the days one unit lasts (a 2-pack or two units cover about two cycles).
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from features.exact import on_grid, std_from_sums
from features.runs import day_runs, needs_exact_sort, oldest
from features.time import day_of, days_between

MIN_PURCHASE_DAYS = 2


#: The longest cycle (days, times the units last bought) a date is computed from: ten years.
#: 10,000 units of a 30-day product would otherwise be dated 822 years on, past what pandas
#: (year 2262) and Spark can hold.
MAX_CYCLE_DAYS = 3_650.0


def refill_keys(products: pl.LazyFrame) -> pl.LazyFrame:
    """``product_id`` -> ``key``: what runs out when the product is used up, its ``need``
    (whole milk, whichever brand) when the catalog names one, else the product itself."""
    if "need" not in products.collect_schema().names():
        return products.select("product_id", key=pl.col("product_id"))
    return products.select("product_id", key=pl.coalesce("need", "product_id"))


def pair_features(orders: pl.LazyFrame, products: pl.LazyFrame, *, as_of: datetime) -> pl.DataFrame:
    """Per customer x consumable bought on 2+ days by ``as_of``:

    ``purchase_days``, ``units_total``; ``cycle_mean_days`` / ``cycle_median_days`` /
    ``cycle_std_days``: days per unit between consecutive purchase days;
    ``last_purchase_at``, ``last_units``, ``days_since_last``; ``expected_cycle_days`` =
    median cycle x units of the last purchase; ``cycle_position`` = days since last /
    expected cycle (1 = due now); ``expected_next_purchase_at``; ``category_share``: the
    pair's share of the customer's spend in the product's category;
    ``owns_related_durable``: the customer bought the durable the consumable serves
    (``products.related_product_id``) by ``as_of``. Sorted by customer and product.
    """
    catalog = (
        products.select("product_id", "category", "consumable", "pack_size", "related_product_id")
        .join(refill_keys(products), on="product_id")
        .collect()
    )
    consumables = catalog.filter(pl.col("consumable")).sort("product_id")
    # What runs out (:func:`refill_keys`), by a small integer code (the packed sort key has
    # room for a few bits).
    keys = consumables["key"]
    index = {k: i for i, k in enumerate(keys.unique().sort())}
    code = {p: index[k] for p, k in zip(consumables["product_id"], keys, strict=True)}
    bought = orders.filter((pl.col("ordered_at") <= as_of) & (pl.col("quantity") > 0))
    lines = (
        bought.filter(pl.col("product_id").is_in(list(code)))
        .join(consumables.select("product_id", "pack_size").lazy(), on="product_id")
        .with_columns(
            code=pl.col("product_id").replace_strict(code, return_dtype=pl.UInt32),
            day=pl.col("ordered_at").dt.truncate("1d"),
            units=pl.col("quantity") * pl.col("pack_size"),
        )
    )
    daily = lines.group_by("customer_id", "code", "day").agg(
        units=pl.col("units").sum(),
        last_at=pl.col("ordered_at").max(),
        cents=on_grid(pl.col("amount")).sum(),
    )
    # the product each customer usually buys for it: on the most days, the latest of equals
    usual = (
        lines.group_by("customer_id", "code", "product_id")
        .agg(days=pl.col("day").n_unique(), latest=pl.col("ordered_at").max())
        .sort(
            ["customer_id", "code", "days", "latest", "product_id"],
            descending=[False, False, True, True, False],
        )
        .group_by("customer_id", "code", maintain_order=True)
        .first()
        .select("customer_id", "code", "product_id")
    )
    bits = max(len(index) - 1, 0).bit_length()
    pairs = _cycles(daily, as_of=as_of, bits=bits, exact=False).collect(engine="streaming")
    if needs_exact_sort(pairs, ["customer_id", "code"]):
        pairs = _cycles(daily, as_of=as_of, bits=bits, exact=True).collect(engine="streaming")
    pairs = pairs.join(usual.collect(engine="streaming"), on=["customer_id", "code"], how="left")

    shared = consumables["category"].unique().to_list()
    durables = consumables["related_product_id"].drop_nulls().unique().to_list()
    category = dict(zip(catalog["product_id"], catalog["category"], strict=True))
    in_shared = [p for p, c in category.items() if c in shared]
    category_spend, owned = pl.collect_all(
        [
            bought.filter(pl.col("product_id").is_in(in_shared))
            .group_by(
                "customer_id", pl.col("product_id").replace_strict(category).alias("category")
            )
            .agg(category_cents=on_grid(pl.col("amount")).sum()),
            bought.filter(pl.col("product_id").is_in(durables))
            .select("customer_id", pl.col("product_id").alias("related_product_id"))
            .unique()
            .with_columns(owns_related_durable=pl.lit(True)),
        ],
        engine="streaming",
    )
    return (
        pairs.filter(pl.col("purchase_days") >= MIN_PURCHASE_DAYS)
        .join(catalog.select("product_id", "category", "related_product_id"), on="product_id")
        .join(category_spend, on=["customer_id", "category"], how="left")
        .join(owned, on=["customer_id", "related_product_id"], how="left")
        .with_columns(
            owns_related_durable=pl.col("owns_related_durable").fill_null(False),
            category_share=pl.col("cents") / pl.col("category_cents"),
        )
        .select(
            "customer_id",
            "product_id",
            "purchase_days",
            "units_total",
            "cycle_mean_days",
            "cycle_median_days",
            "cycle_std_days",
            "last_purchase_at",
            "last_units",
            "days_since_last",
            "expected_cycle_days",
            "cycle_position",
            "expected_next_purchase_at",
            "owns_related_durable",
            "category_share",
        )
        .sort("customer_id", "product_id")
    )


#: A pair bought on at least this many days is one of the customer's staples.
STAPLE_DAYS = 3
#: A staple is still bought while its days since the last purchase are at most this many
#: of its cycles.
KEPT_CYCLES = 2.0


def staples_kept(pairs: pl.DataFrame) -> pl.DataFrame:
    """Per customer with a staple (a pair bought on ``STAPLE_DAYS`` days or more):
    ``staples``, their number, and ``staples_kept_share``, the share still bought (last
    bought within ``KEPT_CYCLES`` of its expected cycle). A household moving its shopping
    elsewhere stops its staples here one by one, before its trips stop. Memory: one row
    per customer with staples."""
    position = pl.col("cycle_position")
    return (
        pairs.lazy()
        .filter(pl.col("purchase_days") >= STAPLE_DAYS)
        .group_by("customer_id")
        .agg(
            staples=pl.len().cast(pl.Int64),
            staples_kept_share=(position.is_not_null() & (position <= KEPT_CYCLES)).mean(),
        )
        .collect()
    )


def _cycles(daily: pl.LazyFrame, *, as_of: datetime, bits: int, exact: bool) -> pl.LazyFrame:
    """Per customer x consumable code: purchase days, units, cycles per unit, last purchase."""
    first, day, units = pl.col("first"), pl.col("day"), pl.col("units")
    # A row's cycle is the gap to the row before it in the same run, over the units bought then.
    per_unit = (day - day.shift(1)).dt.total_days() / units.shift(1)
    rows = day_runs(daily, today=day_of(as_of), code="code", code_bits=bits, exact=exact)
    rows = rows.with_columns(
        cycle=pl.when(~first).then(per_unit),
        last_units=pl.when(pl.col("run") != pl.col("run").shift(-1, fill_value=0)).then(units),
    ).with_columns(grid=on_grid(pl.col("cycle"), 1e3))  # sums of these are exact

    return (
        rows.group_by("run")
        .agg(
            pl.col("customer_id").first(),
            pl.col("code").first(),
            oldest(),
            pl.len().cast(pl.Int32).alias("purchase_days"),
            units.sum().alias("units_total"),
            pl.col("cycle").count().alias("cycles"),
            pl.col("grid").sum().alias("cycle_sum"),
            (pl.col("grid") * pl.col("grid")).sum().alias("cycle_sq_sum"),
            pl.col("cycle").median().alias("cycle_median_days"),
            pl.col("last_at").max().alias("last_purchase_at"),
            pl.col("last_units").sum(),
            pl.col("cents").sum(),
        )
        .with_columns(
            cycle_mean_days=pl.when(pl.col("cycles") > 0).then(
                pl.col("cycle_sum") / pl.col("cycles") / 1e3
            ),
            cycle_std_days=std_from_sums("cycles", "cycle_sum", "cycle_sq_sum") / 1e3,
            days_since_last=days_between(as_of, pl.col("last_purchase_at")),
            expected_cycle_days=(pl.col("cycle_median_days") * pl.col("last_units")).clip(
                upper_bound=MAX_CYCLE_DAYS
            ),
        )
        .with_columns(
            cycle_position=pl.col("days_since_last") / pl.col("expected_cycle_days"),
            expected_next_purchase_at=pl.col("last_purchase_at")
            + pl.duration(
                microseconds=(pl.col("expected_cycle_days") * 86_400e6).round(0).cast(pl.Int64)
            ),
        )
        .drop("run", "cycles", "cycle_sum", "cycle_sq_sum")
    )
