"""What each feature column means, and the manifest written next to a feature snapshot."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

from cdp import package_version
from cdp.io import part_files
from features.build import FeatureTables
from features.config import FeatureConfig
from features.engagement import COUNTED

#: Bump when a column is added, removed or changes meaning.
FEATURES_VERSION = "2"  # 2: trip regularity, basket trend, staples kept

_COUNT_DOCS = {
    "views": "web and app page and product views",
    "product_views": "product views",
    "email_opens": "email opens",
    "email_clicks": "email clicks",
    "support_tickets": "support tickets opened",
    "chat_messages": "chatbot messages",
}
assert set(_COUNT_DOCS) == set(COUNTED)


#: Feature families, the modules that make them, and the purposes they may serve
#: (purpose limitation: a family is computed for these purposes and no other).
FAMILIES = {
    "rfm": {"module": "features.rfm", "purposes": ["service", "marketing", "analytics"]},
    "intervals": {"module": "features.purchases", "purposes": ["marketing", "analytics"]},
    "engagement": {"module": "features.engagement", "purposes": ["service", "marketing"]},
    "lifetimes": {"module": "features.clv", "purposes": ["marketing", "analytics"]},
    "replenishment": {"module": "features.replenishment", "purposes": ["marketing"]},
}


def describe(config: FeatureConfig) -> dict[str, dict[str, str]]:
    """Column -> one-line meaning, for the customer table and the pair table."""
    h, longest = config.horizon_days, config.longest_window
    customers = {
        "customer_id": "customer identifier",
        "locale": "BCP 47 locale (en when the CDP gives none)",
        "country": "ISO 3166 alpha-2 country",
        "tenure_days": "days from sign-up to as_of",
        "last_purchase_at": "time of the last purchase at or before as_of",
        "purchase_days": "distinct UTC days with a purchase",
        "orders": "orders with a purchase",
        "monetary_total": "purchase value in total (before returns)",
        "monetary_mean": "purchase value per order",
        "recency_days": "days from the last purchase to as_of",
        "frequency": "lifetimes: purchase days - 1 (repeat purchase days)",
        "recency": "lifetimes: days from the first to the last purchase day",
        "T": "lifetimes: days from the first purchase day to as_of's day",
        "monetary_value": "lifetimes: mean value of repeat purchase days (0 without repeats)",
        "r_score": "recency score 1-5 (5 = most recent quintile)",
        "f_score": "frequency score 1-5 on purchase days",
        "m_score": "monetary score 1-5 on monetary_total",
        "rfm_score": "R, F and M scores as one three-digit number",
        "segment": "RFM segment from the R x F grid (features.rfm)",
        "gap_mean_days": "mean days between consecutive purchase days",
        "gap_median_days": "median days between consecutive purchase days",
        "gap_std_days": "standard deviation of days between purchase days",
        "gap_trend": f"mean of the last {config.recent_gaps} gaps / mean of earlier gaps",
        "overdue_ratio": "recency_days / gap_median_days (above 1: overdue)",
        "spend_last": f"purchase value in the last {config.spend_trend_days} days",
        "spend_before": f"purchase value in the {config.spend_trend_days} days before those",
        "spend_trend": "(spend_last - spend_before) / (spend_last + spend_before)",
        "gap_cv": "gap_std_days / gap_mean_days (trip regularity: 0 is like clockwork)",
        "basket_lines_mean": "order lines per purchase day",
        "basket_trend": (
            f"mean lines of the last {config.recent_gaps} purchase days / mean of earlier ones"
        ),
        "staples": "products (or needs) bought on 3 days or more (features.replenishment)",
        "staples_kept_share": "share of the staples last bought within two of their cycles",
        "returned_amount": "value refunded for returns",
        "returns_share": "returned_amount / monetary_total",
        f"stitched_events_{longest}d": "anonymous events attributed through a cookie or device",
        "days_since_last_event": "days from the last attributed event to as_of",
        "days_since_negative_sentiment": (
            f"days since the last event with sentiment below {config.negative_sentiment}"
        ),
        "p_alive": "BG/NBD probability the customer is still active",
        f"expected_purchases_{h}d": f"BG/NBD expected purchases in the next {h} days",
        "expected_order_value": "Gamma-Gamma expected value of a future purchase",
        f"clv_{config.clv_months}m": (
            f"expected purchase value over {config.clv_months} months, discounted "
            f"{config.monthly_discount_rate:.0%} a month"
        ),
    }
    for w in config.engagement_windows:
        for stem, doc in _COUNT_DOCS.items():
            customers[f"{stem}_{w}d"] = f"{doc} in the last {w} days"
        customers[f"sentiment_mean_{w}d"] = f"mean sentiment of events in the last {w} days"
        customers[f"sentiment_min_{w}d"] = f"lowest sentiment of events in the last {w} days"
    pairs = {
        "customer_id": "customer identifier",
        "product_id": "consumable product",
        "purchase_days": "distinct UTC days the product was bought",
        "units_total": "units bought (quantity x pack_size)",
        "cycle_mean_days": "mean days one unit lasted (gap / units of the previous purchase)",
        "cycle_median_days": "median days one unit lasted",
        "cycle_std_days": "standard deviation of the days one unit lasted",
        "last_purchase_at": "time of the last purchase of the product",
        "last_units": "units bought on the last purchase day",
        "days_since_last": "days from the last purchase to as_of",
        "expected_cycle_days": "cycle_median_days x last_units",
        "cycle_position": "days_since_last / expected_cycle_days (1 = due now)",
        "expected_next_purchase_at": "last_purchase_at + expected_cycle_days",
        "owns_related_durable": "the customer bought the durable the consumable serves",
        "category_share": "the product's share of the customer's spend in its category",
    }
    return {"customers": customers, "pairs": pairs}


def file_digest(path: Path) -> str:
    """SHA-256 of a table file's bytes; of a folder of part files, SHA-256 over each part's
    path in the folder and its own digest (renaming or changing a part changes it)."""
    digest = hashlib.sha256()
    if path.is_dir():
        for part in part_files(path):
            digest.update(f"{part.relative_to(path).as_posix()}\0{file_digest(part)}\n".encode())
        return digest.hexdigest()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(features: FeatureTables, config: FeatureConfig, inputs: dict[str, Path]) -> dict:
    """The manifest of a snapshot: as_of, rows, columns with meanings, inputs, parameters."""
    docs = describe(config)
    tables = {"customers": features.customers, "pairs": features.pairs}
    population = features.population
    return {
        "as_of": features.as_of.isoformat(),
        "nextbest_version": package_version(),
        "features_version": FEATURES_VERSION,
        "config": asdict(config),
        "families": FAMILIES,
        "rows": {name: len(frame) for name, frame in tables.items()},
        "columns": {
            name: {column: docs[name].get(column, "") for column in frame.columns}
            for name, frame in tables.items()
        },
        # the column order and types a reader restores where a writer (Spark) keeps no
        # pandas types: [column, dtype] pairs, in order
        "dtypes": {
            name: [[column, str(dtype)] for column, dtype in frame.dtypes.items()]
            for name, frame in tables.items()
        },
        "inputs": {
            name: {"file": p.name + ("/" if p.is_dir() else ""), "sha256": file_digest(p)}
            for name, p in inputs.items()
        },
        "population": {
            "rfm_edges": population.rfm_edges,
            "lifetimes": asdict(population.lifetimes),
        },
    }
