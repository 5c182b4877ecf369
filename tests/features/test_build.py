"""build_features as a whole: time, order and partition invariance; CDNOW against lifetimes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifetimes.utils import summary_data_from_transaction_data

from cdp.cdnow import cdnow_tables
from cdp.contract import ContractTables
from cdp.validation import load_contract
from conftest import AS_OF
from features.build import build_features, fit_population


@pytest.fixture(scope="module")
def world_tables(small_world_dir) -> ContractTables:
    return load_contract(small_world_dir)


@pytest.fixture(scope="module")
def whole(world_tables):
    return build_features(world_tables, as_of=AS_OF)


def _assert_same(a, b):
    pd.testing.assert_frame_equal(a.customers, b.customers, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(a.pairs, b.pairs, check_exact=False, rtol=1e-9)


def _subset(tables: ContractTables, keep) -> ContractTables:
    """The tables of the customers in ``keep`` (their anonymous events go with them)."""
    ids = tables.identities[tables.identities["customer_id"].isin(keep)]
    events = tables.events
    theirs = events["customer_id"].isin(keep) | events["anonymous_id"].isin(ids["id_value"])
    return ContractTables(
        customers=tables.customers[tables.customers["customer_id"].isin(keep)],
        products=tables.products,
        orders=tables.orders[tables.orders["customer_id"].isin(keep)],
        identities=ids,
        consents=tables.consents[tables.consents["customer_id"].isin(keep)],
        events=events[theirs],
    )


def test_as_of_is_required(world_tables):
    with pytest.raises(TypeError):
        build_features(world_tables)  # type: ignore[call-arg]


def test_rows_after_as_of_change_nothing(world_tables, whole):
    before = ContractTables(
        customers=world_tables.customers[world_tables.customers["created_at"] <= AS_OF],
        products=world_tables.products,
        orders=world_tables.orders[world_tables.orders["ordered_at"] <= AS_OF],
        identities=world_tables.identities,
        consents=world_tables.consents[world_tables.consents["recorded_at"] <= AS_OF],
        events=world_tables.events[world_tables.events["occurred_at"] <= AS_OF],
    )
    assert len(before.orders) < len(world_tables.orders)
    _assert_same(build_features(before, as_of=AS_OF), whole)


def test_shuffled_rows_change_nothing(world_tables, whole):
    rng = np.random.default_rng(0)
    shuffled = ContractTables(
        **{
            name: frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
            for name, frame in world_tables.items()
        }
    )
    _assert_same(build_features(shuffled, as_of=AS_OF), whole)


def test_partitions_equal_the_whole(world_tables, whole):
    population = fit_population(world_tables, as_of=AS_OF)
    ids = world_tables.customers["customer_id"]
    parts = [
        build_features(_subset(world_tables, ids[k::3]), as_of=AS_OF, population=population)
        for k in range(3)
    ]
    customers = pd.concat([p.customers for p in parts]).sort_values("customer_id")
    pairs = pd.concat([p.pairs for p in parts]).sort_values(["customer_id", "product_id"])
    pd.testing.assert_frame_equal(customers.reset_index(drop=True), whole.customers, rtol=1e-9)
    pd.testing.assert_frame_equal(pairs.reset_index(drop=True), whole.pairs, rtol=1e-9)


def test_folder_scan_equals_loaded_tables(small_world_dir, whole):
    _assert_same(build_features(small_world_dir, as_of=AS_OF), whole)


def test_world_features_are_sane(whole):
    customers, pairs = whole.customers, whole.pairs
    assert customers["customer_id"].is_unique
    assert (customers["recency_days"].dropna() >= 0).all()
    assert customers["p_alive"].notna().any()
    assert customers["p_alive"].dropna().between(0, 1).all()
    assert (customers["stitched_events_90d"] > 0).any()
    assert (pairs["purchase_days"] >= 2).all()
    assert pairs["owns_related_durable"].any() and not pairs["owns_related_durable"].all()


@pytest.mark.parametrize("as_of", ["1997-06-30", "1997-09-30", "1998-06-30"])
def test_cdnow_summary_equals_lifetimes(as_of):
    tables = cdnow_tables()
    ours = build_features(ContractTables(**tables), as_of=as_of).customers
    orders = tables["orders"].assign(date=tables["orders"]["ordered_at"].dt.tz_localize(None))
    theirs = summary_data_from_transaction_data(
        orders,
        "customer_id",
        "date",
        monetary_value_col="amount",
        observation_period_end=as_of,
        freq="D",
    )
    ours = ours.dropna(subset=["frequency"]).set_index("customer_id")
    assert len(ours) == len(theirs) == 23_570
    theirs = theirs.reindex(ours.index)
    for column in ("frequency", "recency", "T"):
        np.testing.assert_array_equal(ours[column].to_numpy(), theirs[column].to_numpy())
    np.testing.assert_allclose(ours["monetary_value"], theirs["monetary_value"], rtol=1e-12)
