"""A served state loaded from a snapshot: the champion models from the MLflow registry, a
feature snapshot (``nextbest features``) and the contract folder it was built from.

Every customer is scored once (vectorised; computed at the first load of a snapshot under
its champions and kept beside it, :mod:`serving.memory.prepared`) and the result indexed by
customer id (:class:`serving.memory.state.ServingState`), so a request is a few dictionary
lookups and the policy (well under 1 ms). Indexing goes column by column (no per-row pandas
objects): the 100,000-customer benchmark world loads in about 20 s with kept scores.
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
from policy.profile import Consumable
from serving.memory.customer import Customer, num_column, utc_column
from serving.memory.known import distinct, row_keys, snapshot_keys
from serving.memory.prepared import derive, kept_or_derived, prepared_key
from serving.memory.state import ServingState


def load_snapshot(*, data: Path, features: Path) -> ServingState:
    """Champions from the configured MLflow registry, the snapshot, the contract data; the
    scores and drivers derived from them are read when kept (:mod:`serving.memory.prepared`),
    else computed and kept."""
    from cdp.io import read_tables
    from features.config import FeatureConfig
    from features.io import read_snapshot
    from training.scoring import check_settings, load_champions, trained_with

    champions, versions = load_champions()
    customers, pairs, manifest = read_snapshot(features)
    config = FeatureConfig.from_dict(manifest["config"])
    check_settings(config, trained_with(versions), f"the snapshot {features}")
    as_of = as_utc(manifest["as_of"])
    tables, _, _ = read_tables(data)
    derived = kept_or_derived(
        features,
        prepared_key(manifest, Path(data), champions),
        lambda: derive(
            tables,
            customers,
            pairs,
            as_of=as_of,
            champions=champions,
            versions=versions,
            config=config,
        ),
    )
    state = ServingState(versions=versions, as_of=as_of, window_days=config.window_days)
    _index(state, customers, pairs, derived.scores, tables, as_of)
    state.known_rows = snapshot_keys(tables)  # applied once: see serving.memory.known
    state.snapshot_events = distinct(row_keys("events", tables["events"]))  # for compaction
    state.churn_model = champions["churn"]
    buyers = customers[customers["purchase_days"] > 0]
    state.churn_matrix = _numeric(state.churn_model, buyers)
    state.churn_row = {c: i for i, c in enumerate(buyers["customer_id"])}
    drivers = derived.churn_drivers
    for customer_id, codes in zip(drivers["customer_id"], drivers["drivers"], strict=True):
        if customer_id in state.customers:
            state.customers[customer_id].churn_drivers = codes
    if derived.next_products is not None:
        _index_next_products(state, derived.next_products, derived.next_purchase)
    return state


def _index_next_products(state: ServingState, best: pd.DataFrame, likely: pd.DataFrame) -> None:
    """Each customer's best next products (with their drivers) and the probability of each
    family they buy already (:class:`serving.memory.prepared.Prepared`)."""
    rows = zip(likely["customer_id"], likely["family"], likely["purchase_probability"], strict=True)
    for customer_id, family, probability in rows:
        customer = state.customers.get(customer_id)
        if customer is not None:
            customer.next_purchase[family] = float(probability)
    columns = ("customer_id", "product_id", "purchase_probability", "drivers")
    for customer_id, product_id, probability, codes in zip(
        *(best[c] for c in columns), strict=True
    ):
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
    channel = frame["customer_id"].map(preferred_channel(events, as_of))
    columns = zip(
        frame["customer_id"].tolist(),
        frame["locale"].tolist(),
        frame["segment"].tolist(),
        num_column(frame["churn_probability"]),
        num_column(frame["clv_12m"]),
        num_column(frame["p_alive"]),
        num_column(frame["sentiment_min_30d"]),
        utc_column(frame["last_purchase_at"]),
        num_column(frame["gap_median_days"]),
        channel.astype(object).where(channel.notna(), None).tolist(),
        strict=True,
    )
    for customer_id, locale, segment, churn, clv, alive, sentiment, last, gap, via in columns:
        state.customers[customer_id] = Customer(
            customer_id=customer_id,
            locale=locale,
            segment=segment,
            churn_probability=churn,
            clv_12m=clv,
            p_alive=alive,
            min_sentiment_30d=sentiment,
            last_order_at=last,
            usual_gap_days=gap,
            preferred_channel=via,
        )
    for customer_id, n in open_tickets(events, as_of).items():
        if customer_id in state.customers:
            state.customers[customer_id].open_tickets = int(n)


def _index_history(state: ServingState, tables: dict, as_of) -> None:
    """Identities, every consent record, what each customer owns, co-purchase rules and
    recent orders."""
    orders, identities = tables["orders"], tables["identities"]
    keys = zip(identities["id_type"].tolist(), identities["id_value"].tolist(), strict=True)
    state.identities.update(zip(keys, identities["customer_id"].tolist(), strict=True))
    # every record, in time order: which one is in force depends on the request's clock
    consents = tables["consents"].sort_values("recorded_at", kind="stable")
    records = zip(
        consents["customer_id"].tolist(),
        consents["purpose"].tolist(),
        utc_column(consents["recorded_at"]),
        consents["granted"].astype(bool).tolist(),
        strict=True,
    )
    for customer_id, purpose, recorded_at, granted in records:
        customer = state.customers.get(customer_id)
        if customer is not None:
            customer.consents.setdefault(purpose, []).append((recorded_at, granted))
    bought = owned(orders, as_of)
    ids, products = bought["customer_id"].tolist(), bought["product_id"].tolist()
    for customer_id, product_id in zip(ids, products, strict=True):
        customer = state.customers.get(customer_id)
        if customer is not None:
            customer.owned.add(product_id)
    rules = co_purchase_rules(bought)
    for product_id, group in rules.groupby("product_id", sort=False):
        state.rules[product_id] = list(
            zip(group["other"], group["confidence"], group["lift"], strict=True)
        )
    recent = recent_orders(orders, as_of)
    rows = zip(
        recent["customer_id"].tolist(),
        recent["order_id"].tolist(),
        utc_column(recent["ordered_at"]),
        recent["amount"].astype(float).tolist(),
        recent["lines"].astype(int).tolist(),
        strict=True,
    )
    for customer_id, order_id, ordered_at, amount, lines in rows:
        customer = state.customers.get(customer_id)
        if customer is not None:
            customer.recent_orders.append(
                {"order_id": order_id, "ordered_at": ordered_at, "amount": amount, "lines": lines}
            )


def _index_consumables(state: ServingState, pairs: pd.DataFrame, scored: pd.DataFrame) -> None:
    """Each customer's consumables: repurchase probability and run-out dates."""
    # the per-unit cycle and last purchase come from the snapshot's pair features
    cycles = pairs[["customer_id", "product_id", "cycle_median_days", "last_purchase_at"]]
    pairs = scored.merge(cycles, on=["customer_id", "product_id"], how="left")
    rows = zip(
        pairs["customer_id"].tolist(),
        pairs["product_id"].tolist(),
        pairs["repurchase_probability"].astype(float).tolist(),
        utc_column(pairs["expected_next_purchase_at"]),
        utc_column(pairs["next_purchase_p10_at"]),
        utc_column(pairs["next_purchase_p90_at"]),
        utc_column(pairs["last_purchase_at"]),
        pairs["cycle_median_days"].astype(float).tolist(),
        strict=True,
    )
    for customer_id, product_id, probability, expected, p10, p90, last, cycle in rows:
        customer = state.customers.get(customer_id)
        product = state.products.get(product_id)
        if customer is None or product is None:
            continue
        customer.consumables[product_id] = Consumable(
            product_id=product_id,
            names=product["names"],
            price=product["price"],
            repurchase_probability=probability,
            expected_next_purchase_at=expected,
            next_purchase_p10_at=p10,
            next_purchase_p90_at=p90,
            last_purchase_at=last,
            family=product["family"],
        )
        customer.cycle_days[product_id] = cycle


def _numeric(model, frame: pd.DataFrame) -> np.ndarray:
    """The model's features as one float matrix, categories coded as LightGBM coded them in
    training (:meth:`categories`), so one row predicts without pandas."""
    from training.classifier import model_frame

    x = model_frame(frame, model.features_)
    known = iter(model.categories())
    for column in x.columns:
        if isinstance(x[column].dtype, pd.CategoricalDtype):
            codes = pd.Categorical(x[column].astype(object), categories=next(known)).codes
            x[column] = np.where(codes >= 0, codes, np.nan)
    return np.ascontiguousarray(x.to_numpy(dtype=np.float64))
