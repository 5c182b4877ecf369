"""A served state loaded from a snapshot: the champion models from the MLflow registry, a
feature snapshot (``nextbest features``) and the contract folder it was built from.

Every customer is scored once (vectorised, :func:`training.scoring.score_frames`) and the
result indexed by customer id (:class:`serving.memory.state.ServingState`), so a request is a
few dictionary lookups and the policy (well under 1 ms).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cdp.time import as_utc
from features.profile import (
    co_purchase_rules,
    open_tickets,
    owned,
    preferred_channel,
    recent_orders,
)
from policy.drivers import top_drivers
from policy.profile import Consumable
from serving.memory.customer import Customer, num, utc
from serving.memory.known import row_keys, snapshot_keys
from serving.memory.state import ServingState

#: Next-product candidates kept per customer (owned ones are left out at request time).
NEXT_PRODUCTS = 5


def load_snapshot(*, data: Path, features: Path) -> ServingState:
    """Champions from the configured MLflow registry, the snapshot, the contract data."""
    from cdp.contract import ContractTables
    from cdp.io import read_tables
    from features.config import FeatureConfig
    from features.io import read_snapshot
    from training.scoring import (
        check_settings,
        load_champions,
        score_candidates,
        score_frames,
        trained_with,
    )

    champions, versions = load_champions()
    customers, pairs, manifest = read_snapshot(features)
    config = FeatureConfig.from_dict(manifest["config"])
    check_settings(config, trained_with(versions), f"the snapshot {features}")
    as_of = as_utc(manifest["as_of"])
    scores = score_frames(
        customers, pairs, as_of=as_of, champions=champions, versions=versions, config=config
    )
    tables, _, _ = read_tables(data)
    state = ServingState(versions=versions, as_of=as_of, window_days=config.window_days)
    _index(state, customers, pairs, scores, tables, as_of)
    state.known_rows = snapshot_keys(tables)  # applied once: see serving.memory.known
    state.snapshot_events = np.unique(row_keys("events", tables["events"]))  # for compaction
    state.churn_model = champions["churn"]
    buyers = customers[customers["purchase_days"] > 0]
    state.churn_matrix = _numeric(state.churn_model, buyers)
    state.churn_row = {c: i for i, c in enumerate(buyers["customer_id"])}
    model = state.churn_model  # each customer's own churn drivers (TreeSHAP)
    drivers = top_drivers(model.contributions(buyers), buyers[model.features_])
    for customer_id, codes in zip(buyers["customer_id"], drivers, strict=True):
        if customer_id in state.customers:
            state.customers[customer_id].churn_drivers = codes
    scored = score_candidates(
        ContractTables(**tables),  # the tables read above, not the folder again
        customers,
        pairs,
        as_of=as_of,
        champions=champions,
        versions=versions,
        config=config,
    )
    if scored is not None:
        _index_next_products(state, champions["next_product"], scored)
    return state


def _index_next_products(state: ServingState, model, scored: pd.DataFrame) -> None:
    """Each customer's :data:`NEXT_PRODUCTS` best candidates by expected value, with
    their own drivers (TreeSHAP of the next-product model)."""
    scored = scored.assign(ev=scored["purchase_probability"] * scored["price"])
    refills = scored[scored["family_purchase_days"] > 0]  # families they buy already
    likely = refills.groupby(["customer_id", "family"])["purchase_probability"].max()
    for (customer_id, family), probability in likely.items():
        customer = state.customers.get(customer_id)
        if customer is not None:
            customer.next_purchase[family] = float(probability)
    top = (
        scored.sort_values(["customer_id", "ev"], ascending=[True, False], kind="stable")
        .groupby("customer_id", sort=False)
        .head(NEXT_PRODUCTS)
    )
    drivers = top_drivers(model.contributions(top), top[model.features_])
    keys = zip(top["customer_id"], top["product_id"], strict=True)
    rows = zip(keys, top["purchase_probability"], drivers, strict=True)
    for (customer_id, product_id), probability, codes in rows:
        customer = state.customers.get(customer_id)
        if customer is not None and product_id in state.products:
            customer.next_products.append((product_id, float(probability), codes))
    state.learned_cross_sell = True


def _index(
    state, customers: pd.DataFrame, pairs: pd.DataFrame, scores: dict, tables: dict, as_of
) -> None:
    """Index everything a request reads by customer (and product) id."""
    index_products(state, tables["products"])
    _index_customers(state, customers, scores, tables["events"], as_of)
    _index_history(state, tables, as_of)
    if "replenishment" in scores:
        _index_consumables(state, pairs, scores["replenishment"])


def index_products(state: ServingState, products: pd.DataFrame) -> None:
    for row in products.to_dict("records"):
        names = {"en": row["name"]}
        for locale, column in (("zh-TW", "name_zh_tw"), ("zh-CN", "name_zh_cn")):
            if isinstance(row.get(column), str):
                names[locale] = row[column]
        variant_of = row.get("variant_of")
        state.products[row["product_id"]] = {
            "names": names,
            "price": float(row["price"]),
            "consumable": bool(row["consumable"]),
            "category": row["category"],
            "pack_size": int(row.get("pack_size") or 1),
            # a pack of another product (a 2-pack of ink) refills the same consumable
            "family": variant_of if isinstance(variant_of, str) else row["product_id"],
        }


def _index_customers(
    state: ServingState, customers, scores: dict, events: pd.DataFrame, as_of
) -> None:
    """Each customer's scores, locale, segment, channel and open tickets."""
    frame = customers[
        [
            "customer_id",
            "locale",
            "segment",
            "sentiment_min_30d",
            "last_purchase_at",
            "gap_median_days",
        ]
    ].merge(scores["churn"], on="customer_id", how="left")
    frame = frame.merge(
        scores["clv"][["customer_id", "clv_12m", "p_alive"]], on="customer_id", how="left"
    )
    channel = preferred_channel(events, as_of)
    frame["preferred_channel"] = frame["customer_id"].map(channel)
    for row in frame.to_dict("records"):
        state.customers[row["customer_id"]] = Customer(
            customer_id=row["customer_id"],
            locale=row["locale"],
            segment=row["segment"],
            churn_probability=num(row["churn_probability"]),
            clv_12m=num(row["clv_12m"]),
            p_alive=num(row["p_alive"]),
            min_sentiment_30d=num(row["sentiment_min_30d"]),
            last_order_at=None
            if pd.isna(row["last_purchase_at"])
            else utc(row["last_purchase_at"]),
            usual_gap_days=num(row["gap_median_days"]),
            preferred_channel=row["preferred_channel"]
            if isinstance(row["preferred_channel"], str)
            else None,
        )
    for customer_id, n in open_tickets(events, as_of).items():
        if customer_id in state.customers:
            state.customers[customer_id].open_tickets = int(n)


def _index_history(state: ServingState, tables: dict, as_of) -> None:
    """Identities, every consent record, what each customer owns, co-purchase rules and
    recent orders."""
    orders = tables["orders"]
    for row in tables["identities"].to_dict("records"):
        state.identities[(row["id_type"], row["id_value"])] = row["customer_id"]
    # every record, in time order: which one is in force depends on the request's clock
    consents = tables["consents"].sort_values("recorded_at", kind="stable")
    for row in consents.to_dict("records"):
        customer = state.customers.get(row["customer_id"])
        if customer is not None:
            customer.consents.setdefault(row["purpose"], []).append(
                (utc(row["recorded_at"]), bool(row["granted"]))
            )
    bought = owned(orders, as_of)
    for customer_id, products in bought.groupby("customer_id")["product_id"]:
        if customer_id in state.customers:
            state.customers[customer_id].owned = set(products)
    rules = co_purchase_rules(bought)
    for product_id, group in rules.groupby("product_id", sort=False):
        state.rules[product_id] = list(
            zip(group["other"], group["confidence"], group["lift"], strict=True)
        )
    for row in recent_orders(orders, as_of).to_dict("records"):
        if row["customer_id"] in state.customers:
            state.customers[row["customer_id"]].recent_orders.append(
                {
                    "order_id": row["order_id"],
                    "ordered_at": utc(row["ordered_at"]),
                    "amount": float(row["amount"]),
                    "lines": int(row["lines"]),
                }
            )


def _index_consumables(state: ServingState, pairs: pd.DataFrame, scored: pd.DataFrame) -> None:
    """Each customer's consumables: repurchase probability and run-out dates."""
    # the per-unit cycle and last purchase come from the snapshot's pair features
    cycles = pairs[["customer_id", "product_id", "cycle_median_days", "last_purchase_at"]]
    pairs = scored.merge(cycles, on=["customer_id", "product_id"], how="left")
    for row in pairs.to_dict("records"):
        customer = state.customers.get(row["customer_id"])
        product = state.products.get(row["product_id"])
        if customer is None or product is None:
            continue
        customer.consumables[row["product_id"]] = Consumable(
            product_id=row["product_id"],
            names=product["names"],
            price=product["price"],
            repurchase_probability=float(row["repurchase_probability"]),
            expected_next_purchase_at=utc(row["expected_next_purchase_at"]),
            next_purchase_p10_at=utc(row["next_purchase_p10_at"]),
            next_purchase_p90_at=utc(row["next_purchase_p90_at"]),
            last_purchase_at=utc(row["last_purchase_at"]),
            family=product["family"],
        )
        customer.cycle_days[row["product_id"]] = float(row["cycle_median_days"])


def _numeric(model, frame: pd.DataFrame) -> np.ndarray:
    """The model's features as one float matrix, categories coded as LightGBM coded them in
    training (its ``pandas_categorical``), so one row predicts without pandas."""
    from training.classifier import model_frame

    x = model_frame(frame, model.features_)
    known = iter(model.booster_.pandas_categorical or [])
    for column in x.columns:
        if isinstance(x[column].dtype, pd.CategoricalDtype):
            codes = pd.Categorical(x[column].astype(object), categories=next(known)).codes
            x[column] = np.where(codes >= 0, codes, np.nan)
    return np.ascontiguousarray(x.to_numpy(dtype=np.float64))
