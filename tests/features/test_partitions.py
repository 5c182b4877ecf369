"""A build in hash partitions of customer_id: the rows of one build, exactly."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import AS_OF, tiny_tables, write_folder
from features.build import build_features
from features.io import read_snapshot
from features.partitions import build_partitions
from test_cli import features_cli


def _together(parts) -> tuple[pd.DataFrame, pd.DataFrame]:
    parts = list(parts)
    customers = pd.concat([p.customers for p in parts]).sort_values("customer_id")
    pairs = pd.concat([p.pairs for p in parts]).sort_values(["customer_id", "product_id"])
    return customers.reset_index(drop=True), pairs.reset_index(drop=True)


@pytest.fixture(scope="module")
def one(small_world_dir):
    return build_features(small_world_dir, as_of=AS_OF)


def test_seven_partitions_equal_one_build_exactly(small_world_dir, one):
    parts = list(build_partitions(small_world_dir, as_of=AS_OF, partitions=7))
    ids = [set(p.customers["customer_id"]) for p in parts]
    assert all(ids) and sum(map(len, ids)) == len(set().union(*ids))  # disjoint, none empty
    customers, pairs = _together(parts)
    pd.testing.assert_frame_equal(customers, one.customers, check_exact=True)
    pd.testing.assert_frame_equal(pairs, one.pairs, check_exact=True)
    # anonymous browsing went to the customer whose cookie or device claims it
    assert customers["stitched_events_90d"].sum() == one.customers["stitched_events_90d"].sum() > 0


def test_empty_partitions_change_nothing(tmp_path):
    folder = write_folder(tiny_tables(), tmp_path / "tiny")
    whole = build_features(folder, as_of="2025-03-01")
    customers, pairs = _together(build_partitions(folder, as_of="2025-03-01", partitions=9))
    assert len(whole.customers) < 9  # some partitions hold nobody
    pd.testing.assert_frame_equal(customers, whole.customers, check_exact=True)
    pd.testing.assert_frame_equal(pairs, whole.pairs, check_exact=True)


def test_the_cli_in_five_partitions_writes_one_builds_rows(small_world_dir, world, tmp_path):
    out = tmp_path / "parts"
    done = features_cli(small_world_dir, out, "--partitions", "5")
    assert done.returncode == 0, done.stderr
    assert len(list((out / "customers").glob("part-*.parquet"))) == 5
    customers, pairs, meta = read_snapshot(out)
    one_customers, one_pairs, one_meta = read_snapshot(world / "features")
    pd.testing.assert_frame_equal(customers, one_customers, check_exact=True)
    pd.testing.assert_frame_equal(pairs, one_pairs, check_exact=True)
    assert meta["partitions"] == 5
    same = ("rows", "columns", "population", "inputs", "as_of")
    assert {k: meta[k] for k in same} == {k: one_meta[k] for k in same}
    assert json.loads((out / "manifest.json").read_text()) == meta


def test_a_partition_count_below_one_is_refused(small_world_dir, tmp_path):
    done = features_cli(small_world_dir, tmp_path / "x", "--partitions", "0")
    assert done.returncode == 2 and "--partitions" in done.stderr
    assert not (tmp_path / "x").exists()


def test_a_training_sample_holds_whole_customers_picked_by_their_id(small_world_dir, one):
    from cdp.validation import load_contract
    from features.partitions import sample_customers

    sample = sample_customers(small_world_dir, 500)
    again = sample_customers(load_contract(small_world_dir), 500)  # loaded, not scanned
    ids = set(sample.customers.collect()["customer_id"])
    assert len(ids) == 500 and ids == set(again.customers.collect()["customer_id"])
    orders = pd.read_parquet(small_world_dir / "orders.parquet")
    assert sample.orders.collect().height == orders["customer_id"].isin(ids).sum()
    # each sampled customer's own measures are theirs in full (anonymous browsing included);
    # only the population parameters (RFM edges, lifetimes fits) are the sample's
    built = build_features(sample, as_of=AS_OF).customers.set_index("customer_id")
    whole = one.customers.set_index("customer_id").loc[built.index]
    own = ["orders", "monetary_total", "purchase_days", "views_30d", "stitched_events_90d"]
    pd.testing.assert_frame_equal(built[own], whole[own])
    assert whole["stitched_events_90d"].sum() > 0
