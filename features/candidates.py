"""Next-product candidates: the products a customer might buy next, with point-in-time features.

For every customer at ``as_of``, the candidates are the union of

- the consumables they have bought (a pack of the same consumable, ``variant_of``, is the
  same *family*);
- products related to what they own: the consumables of an owned durable (printer -> ink),
  the durable of a bought consumable (beans -> grinder);
- the best sellers of the last :data:`POPULAR_DAYS` days: the :data:`TOP_OVERALL` of the
  shop and the :data:`TOP_PER_CATEGORY` of each category the customer has bought from;
- the products they viewed or put in their cart in the last :data:`VIEW_DAYS` days
  (anonymous events stitched to the customer through their cookie and device identities);

less the durables they already own (never re-offered). A cheap first stage keeps at most
:data:`MAX_CANDIDATES` of them per customer (:func:`_first_stage`: the families they buy
most often now first, then what they viewed, then the best sellers), so a grocery household
that has bought hundreds of products does not carry them all to the model. Each candidate
gets features of the customer, the product and the two together (:data:`FEATURES`); only
rows at or before ``as_of`` are read. The learned model (:mod:`training.next_product`)
scores them.

Memory: the order lines, the views and the candidates before the cut grow with lines (the
distinct products each customer bought) and customers (the best sellers each gets); the
frame returned, with customers x :data:`MAX_CANDIDATES`; none with the catalog.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import polars as pl

from cdp.time import AsOf, as_utc
from features.engagement import stitched_events
from features.inputs import FeatureInputs, Tables, as_inputs
from features.profile import co_purchase_rules

POPULAR_DAYS = 90
TOP_OVERALL = 5
TOP_PER_CATEGORY = 2
VIEW_DAYS = 30
#: The age at which a purchase day counts half in ``family_recent``.
RECENT_HALF_LIFE_DAYS = 60.0
#: Candidates kept per customer by the first stage, for the model to score.
MAX_CANDIDATES = 60
#: Customer columns (of a feature build) added to each candidate as context.
CONTEXT = (
    "recency_days",
    "purchase_days",
    "gap_median_days",
    "monetary_mean",
    "p_alive",
    "segment",
)
KEYS = ["customer_id", "product_id"]
_DAY = 86_400_000_000  # microseconds


def product_families(products: pl.LazyFrame) -> pl.LazyFrame:
    """``product_id`` -> ``family`` (``variant_of``, else itself) and ``need`` (the grocer's
    need, else the family), with the product columns the candidates use."""
    has_need = "need" in products.collect_schema().names()
    family = pl.coalesce("variant_of", "product_id")
    return products.select(
        "product_id",
        "category",
        "consumable",
        "price",
        pl.col("pack_size").cast(pl.Int64),
        pl.col("related_product_id").alias("related"),
        family=family,
        need=pl.coalesce(pl.col("need"), family) if has_need else family,
    )


def next_product_candidates(
    tables: Tables, customers: pd.DataFrame, *, as_of: AsOf, pairs: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The candidate products of every customer in ``customers`` at ``as_of``, with features.

    Parameters
    ----------
    tables : Tables
        The contract tables (or folder).
    customers : pandas.DataFrame
        The customer table of a feature build at ``as_of`` (its :data:`CONTEXT` columns).
    as_of : AsOf
        The moment; settled to UTC here.
    pairs : pandas.DataFrame, optional
        The build's customer x consumable table: its ``cycle_position`` and
        ``expected_cycle_days`` join the candidates of the same product.

    Returns
    -------
    pandas.DataFrame
        One row per (``customer_id``, ``product_id``) candidate, sorted by both: ``family``,
        ``category``, the product's ``price``, ``consumable``, ``pack_size``,
        ``popularity_90d``, and the customer's ``family_purchase_days`` (also
        ``family_days_30d``, ``family_days_90d``, ``family_share`` of their purchase days,
        ``family_gap_days`` between them and ``family_due``, days since over that gap,
        ``family_recent``, weighed by age, and ``family_trips_since``, their purchase days
        since), ``days_since_family``, ``need_purchase_days``, ``days_since_need``,
        ``latest_in_need`` (the family was the need's last purchase),
        ``owns_related``, ``category_share``,
        ``days_since_category``, ``viewed_product_7d``, ``viewed_product_30d``,
        ``carted_product_30d``, ``days_since_viewed_product``, ``co_purchase_lift``,
        ``cycle_position``, ``expected_cycle_days`` and ``customer_<context>``.
    """
    inputs, as_of = as_inputs(tables), as_utc(as_of)
    products = product_families(inputs.products).collect()
    known = pl.from_pandas(customers[["customer_id"]].astype({"customer_id": "str"}))
    lines = (
        inputs.orders.filter((pl.col("ordered_at") <= as_of) & (pl.col("quantity") > 0))
        .select("customer_id", "product_id", "ordered_at")
        .join(products.lazy(), on="product_id", how="inner")
        .join(known.lazy(), on="customer_id", how="semi")
        .collect()
    )
    views = _views(inputs, as_of, known)
    popular = _popular(lines, products, as_of)
    history = _family_history(lines, as_of)
    candidates = _first_stage(
        _candidates(lines, products, views, popular, known).join(
            products, on="product_id", how="left"
        ),
        history,
        views,
        popular,
    )
    frame = (
        candidates.join(history, on=["customer_id", "family"], how="left")
        .join(_need_history(lines, as_of), on=["customer_id", "need"], how="left")
        .join(_category_history(lines, as_of), on=["customer_id", "category"], how="left")
        .join(_related(lines, products), on=KEYS, how="left")
        .join(_view_counts(views, as_of), on=KEYS, how="left")
        .join(_lift(lines), on=KEYS, how="left")
        .join(popular.select("product_id", "popularity_90d"), on="product_id", how="left")
        .with_columns(
            pl.col(
                "family_purchase_days",
                "family_days_30d",
                "family_days_90d",
                "need_purchase_days",
                "viewed_product_7d",
                "viewed_product_30d",
                "carted_product_30d",
            ).fill_null(0),
            pl.col("owns_related").fill_null(False),
            pl.col("category_share", "family_share", "family_recent", "popularity_90d").fill_null(
                0.0
            ),
            pl.col("consumable").cast(pl.Int8),
            latest_in_need=(pl.col("latest_in_need") == pl.col("family")).fill_null(False),
        )
        .drop("related", "need")
        .sort(KEYS)
        .to_pandas()
    )
    context = customers[["customer_id", *CONTEXT]].rename(
        columns={c: f"customer_{c}" for c in CONTEXT}
    )
    frame = frame.merge(context, on="customer_id", how="left")
    cycle = ("cycle_position", "expected_cycle_days")
    if pairs is not None and not pairs.empty:
        frame = frame.merge(pairs[[*KEYS, *cycle]], on=KEYS, how="left")
    else:
        frame = frame.assign(**{c: float("nan") for c in cycle})
    return frame


def _days(since: pl.Expr, as_of: datetime) -> pl.Expr:
    return (pl.lit(as_of) - since).dt.total_microseconds() / _DAY


def _views(inputs: FeatureInputs, as_of: datetime, known: pl.DataFrame) -> pl.DataFrame:
    """Product views and add-to-carts of the last :data:`VIEW_DAYS` days, stitched."""
    start = as_of - timedelta(days=VIEW_DAYS)
    return (
        stitched_events(inputs.events, inputs.identities, extra=("product_id",))
        .filter(
            pl.col("event_type").is_in(["product_view", "add_to_cart"])
            & pl.col("product_id").is_not_null()
            & (pl.col("occurred_at") > start)
            & (pl.col("occurred_at") <= as_of)
        )
        .select("customer_id", "product_id", "event_type", "occurred_at")
        .join(known.lazy(), on="customer_id", how="semi")
        .collect()
    )


def _popular(lines: pl.DataFrame, products: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """Each product's share of the last 90 days' buyers, and its rank in its category."""
    recent = lines.filter(pl.col("ordered_at") > as_of - timedelta(days=POPULAR_DAYS))
    buyers = max(recent["customer_id"].n_unique(), 1)
    counts = recent.group_by("product_id").agg(n=pl.col("customer_id").n_unique())
    return (
        products.select("product_id", "category")
        .join(counts, on="product_id", how="left")
        .with_columns(pl.col("n").fill_null(0))
        .with_columns(
            popularity_90d=pl.col("n") / buyers,
            overall=pl.col("n").rank("ordinal", descending=True),
            in_category=pl.col("n").rank("ordinal", descending=True).over("category"),
        )
    )


def _candidates(
    lines: pl.DataFrame,
    products: pl.DataFrame,
    views: pl.DataFrame,
    popular: pl.DataFrame,
    known: pl.DataFrame,
) -> pl.DataFrame:
    """The (customer_id, product_id) candidates, owned durables left out."""
    bought = lines.select("customer_id", "family", "category", "product_id", "consumable")
    consumables = products.filter(pl.col("consumable"))
    same_family = (
        bought.filter(pl.col("consumable"))
        .select("customer_id", "family")
        .unique()
        .join(consumables.select("product_id", "family"), on="family")
        .select(KEYS)
    )
    owned_durables = bought.filter(~pl.col("consumable")).select(KEYS).unique()
    of_durables = owned_durables.join(
        consumables.select(pl.col("related").alias("owned"), pl.col("product_id").alias("other")),
        left_on="product_id",
        right_on="owned",
    ).select("customer_id", pl.col("other").alias("product_id"))
    durables_of = (
        bought.filter(pl.col("consumable"))
        .join(products.select("product_id", "related"), on="product_id")
        .filter(pl.col("related").is_not_null())
        .select("customer_id", pl.col("related").alias("product_id"))
    )
    top = popular.filter(pl.col("overall") <= TOP_OVERALL).select("product_id")
    overall = known.join(top, how="cross")
    best = popular.filter(pl.col("in_category") <= TOP_PER_CATEGORY).select(
        "category", "product_id"
    )
    by_category = bought.select("customer_id", "category").unique().join(best, on="category")
    parts = [same_family, of_durables, durables_of, overall, by_category.select(KEYS)]
    parts.append(views.select(KEYS))
    return (
        pl.concat([p.select(KEYS) for p in parts])
        .unique()
        .join(owned_durables, on=KEYS, how="anti")
    )


def _first_stage(
    candidates: pl.DataFrame, history: pl.DataFrame, views: pl.DataFrame, popular: pl.DataFrame
) -> pl.DataFrame:
    """At most :data:`MAX_CANDIDATES` candidates per customer: the families they bought on
    the most days first, recent days weighing more (``family_recent``: the customer's own
    top frequency, the strongest simple rule for repeat purchases, as tastes are now), then
    the products they viewed or carted most, then the best sellers; ties by product id, so
    the cut is deterministic."""
    order = ["family_recent", "family_purchase_days", "views", "n"]
    return (
        candidates.join(
            history.select("customer_id", "family", "family_recent", "family_purchase_days"),
            on=["customer_id", "family"],
            how="left",
        )
        .join(views.group_by(KEYS).agg(views=pl.len()), on=KEYS, how="left")
        .join(popular.select("product_id", "n"), on="product_id", how="left")
        .with_columns(pl.col(order).fill_null(0))
        .sort(
            ["customer_id", *order, "product_id"], descending=[False, True, True, True, True, False]
        )
        .filter(pl.int_range(pl.len()).over("customer_id") < MAX_CANDIDATES)
        .drop(order)
    )


def _family_history(lines: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """Per customer and family: purchase days (in all, in the last 30 and 90 days, as a
    share of the customer's purchase days, and ``family_recent``, each weighed by
    ``0.5 ** (age / RECENT_HALF_LIFE_DAYS)``: what a customer buys now, not what they bought
    most a year ago, as tastes drift), days since the last and ``family_trips_since``, the
    customer's purchase days after it (0: bought on their last trip), the mean days between
    purchase days, and the days since the last as a multiple of that mean (due at 1).
    Everything is read from one pass over the distinct (customer, family, day) purchases.
    Grows with lines."""
    days = lines.group_by("customer_id", "family", pl.col("ordered_at").dt.date().alias("day")).agg(
        first=pl.col("ordered_at").min(), last=pl.col("ordered_at").max()
    )
    trips = (
        days.select("customer_id", "day")
        .unique()
        .with_columns(
            order=pl.col("day").rank("dense").over("customer_id"),
            trips=pl.len().over("customer_id"),
        )
    )
    age = (pl.lit(as_of.date()) - pl.col("day")).dt.total_days()
    since = _days(pl.col("last").max(), as_of)
    span = _days(pl.col("first").min(), as_of) - since
    return (
        days.group_by("customer_id", "family")
        .agg(
            family_purchase_days=pl.len(),
            family_days_30d=(pl.col("last") > as_of - timedelta(days=30)).sum(),
            family_days_90d=(pl.col("last") > as_of - timedelta(days=90)).sum(),
            days_since_family=since,
            span=span,
            family_recent=(0.5 ** (age / RECENT_HALF_LIFE_DAYS)).sum(),
            day=pl.col("day").max(),
        )
        .join(trips, on=["customer_id", "day"], how="left")
        .with_columns(
            family_share=pl.col("family_purchase_days") / pl.col("trips"),
            family_gap_days=pl.when(pl.col("family_purchase_days") > 1).then(
                pl.col("span") / (pl.col("family_purchase_days") - 1)
            ),
            family_trips_since=(pl.col("trips") - pl.col("order")).cast(pl.Int32),
        )
        .with_columns(
            family_due=pl.col("days_since_family") / pl.col("family_gap_days").clip(lower_bound=1.0)
        )
        .select(
            "customer_id",
            "family",
            "family_purchase_days",
            "family_days_30d",
            "family_days_90d",
            "days_since_family",
            "family_share",
            "family_gap_days",
            "family_due",
            "family_recent",
            "family_trips_since",
        )
    )


def _need_history(lines: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    """Per customer and need (any product serving it: a brand switch stays the same need):
    purchase days, days since the last, and the family bought last (a candidate of another
    brand of the need was switched away from)."""
    return lines.group_by("customer_id", "need").agg(
        need_purchase_days=pl.col("ordered_at").dt.date().n_unique(),
        days_since_need=_days(pl.col("ordered_at").max(), as_of),
        latest_in_need=pl.col("family").sort_by("ordered_at", "family").last(),  # ties: by id
    )


def _category_history(lines: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    per = lines.group_by("customer_id", "category").agg(
        n=pl.len(), days_since_category=_days(pl.col("ordered_at").max(), as_of)
    )
    return per.with_columns(
        category_share=pl.col("n") / pl.col("n").sum().over("customer_id")
    ).drop("n")


def _related(lines: pl.DataFrame, products: pl.DataFrame) -> pl.DataFrame:
    """``owns_related``: the customer owns the durable a consumable serves, or has bought a
    consumable a durable serves."""
    bought = lines.select("customer_id", "product_id", "related").unique()
    consumable_side = (
        bought.filter(pl.col("related").is_null())  # durables (and everyday items) owned
        .join(
            products.select(pl.col("related").alias("durable"), pl.col("product_id").alias("c")),
            left_on="product_id",
            right_on="durable",
        )
        .select("customer_id", pl.col("c").alias("product_id"))
    )
    durable_side = bought.filter(pl.col("related").is_not_null()).select(
        "customer_id", pl.col("related").alias("product_id")
    )
    return (
        pl.concat([consumable_side, durable_side]).unique().with_columns(owns_related=pl.lit(True))
    )


def _view_counts(views: pl.DataFrame, as_of: datetime) -> pl.DataFrame:
    seen = pl.col("event_type") == "product_view"
    recent = pl.col("occurred_at") > as_of - timedelta(days=7)
    return views.group_by(KEYS).agg(
        viewed_product_7d=(seen & recent).sum(),
        viewed_product_30d=seen.sum(),
        carted_product_30d=(pl.col("event_type") == "add_to_cart").sum(),
        days_since_viewed_product=_days(pl.col("occurred_at").max(), as_of),
    )


def _lift(lines: pl.DataFrame) -> pl.DataFrame:
    """The highest co-purchase lift of the product among the rules of what the customer owns
    (:func:`features.profile.co_purchase_rules`): one feature among many."""
    owned = lines.select(KEYS).unique()
    rules = co_purchase_rules(owned.to_pandas())
    if rules.empty:
        return pl.DataFrame(
            schema={
                "customer_id": pl.String,
                "product_id": pl.String,
                "co_purchase_lift": pl.Float64,
            }
        )
    rules = pl.from_pandas(rules[["product_id", "other", "lift"]])
    return (
        owned.join(rules, on="product_id")
        .group_by("customer_id", "other")
        .agg(co_purchase_lift=pl.col("lift").max())
        .rename({"other": "product_id"})
    )
