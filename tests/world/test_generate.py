"""The simulated world: valid, deterministic, honest about time, and not trivially predictable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cdp.validation import load_contract, validate_folder
from cdp.world.config import WorldConfig
from cdp.world.generate import generate_world
from conftest import AS_OF


def test_generated_world_validates(small_world_dir):
    _, report = validate_folder(small_world_dir)
    assert report.ok, [str(v) for v in report.violations]
    assert report.rows["customers"] == 3_000


def test_same_seed_same_world_other_seed_other_world(small_world):
    again = generate_world(WorldConfig(customers=3_000, seed=11, as_of=AS_OF))
    other = generate_world(WorldConfig(customers=3_000, seed=12, as_of=AS_OF))
    for name, frame in small_world.tables.items():
        pd.testing.assert_frame_equal(frame, again.tables[name], check_exact=True)
    for name, frame in small_world.truth.items():
        pd.testing.assert_frame_equal(frame, again.truth[name], check_exact=True)
    assert not small_world.tables["orders"].equals(other.tables["orders"])


def test_history_on_both_sides_of_as_of(small_world):
    orders = small_world.tables["orders"]
    events = small_world.tables["events"]
    for stamps in (orders["ordered_at"], events["occurred_at"]):
        assert (stamps <= AS_OF).sum() > 0
        assert (stamps > AS_OF).sum() > 0
    assert orders["ordered_at"].min() >= AS_OF - pd.Timedelta(days=730)


def test_truth_is_what_happened_after_as_of(small_world):
    orders = small_world.tables["orders"]
    truth = small_world.truth["customers"]
    bought = orders[
        (orders["quantity"] > 0)
        & (orders["ordered_at"] > AS_OF)
        & (orders["ordered_at"] <= AS_OF + pd.Timedelta(days=90))
    ]
    expected = truth["customer_id"].isin(bought["customer_id"])
    assert (truth["purchased_within_horizon"] == expected).all()
    assert (truth["next_purchase_at"].dropna() > AS_OF).all()
    created = small_world.tables["customers"].set_index("customer_id")["created_at"]
    assert (created.reindex(truth["customer_id"]) <= AS_OF).all()

    pairs = small_world.truth["replenishment"]
    assert (pairs["last_purchase_at"] <= AS_OF).all()
    assert (pairs["next_purchase_at"].dropna() > AS_OF).all()
    window = pairs["next_purchase_at"] <= AS_OF + pd.Timedelta(days=14)
    assert (pairs["repurchased_within_window"] == window).all()


def _recency_days(world) -> tuple[np.ndarray, np.ndarray]:
    orders = world.tables["orders"]
    truth = world.truth["customers"]
    past = orders[(orders["ordered_at"] <= AS_OF) & (orders["quantity"] > 0)]
    last = past.groupby("customer_id")["ordered_at"].max()
    created = world.tables["customers"].set_index("customer_id")["created_at"]
    since = last.reindex(truth["customer_id"]).fillna(created.reindex(truth["customer_id"]))
    return (AS_OF - since).dt.days.to_numpy(), truth["purchased_within_horizon"].to_numpy()


def test_recency_alone_does_not_solve_churn():
    world = generate_world(WorldConfig(customers=20_000, seed=5, as_of=AS_OF))
    recency, bought = _recency_days(world)
    auc = roc_auc_score(bought, -recency)
    assert 0.6 < auc < 0.92, auc  # informative, but far from enough


def test_true_cycles_are_recoverable_from_orders(small_world):
    orders = small_world.tables["orders"]
    pairs = small_world.truth["replenishment"]
    lines = (
        orders[orders["quantity"] > 0]
        .merge(pairs[["customer_id", "product_id", "true_cycle_days"]])
        .sort_values("ordered_at")
    )
    by_pair = lines.groupby(["customer_id", "product_id"])
    gap_days = by_pair["ordered_at"].diff().dt.total_seconds() / 86_400
    per_unit = gap_days / by_pair["quantity"].shift()  # 2 units last about two cycles
    estimate = per_unit.groupby([lines["customer_id"], lines["product_id"]]).median()
    summary = by_pair.agg(n=("ordered_at", "size"), true=("true_cycle_days", "first"))
    summary = summary.assign(estimate=estimate)
    summary = summary[summary["n"] >= 4]
    error = ((summary["estimate"] - summary["true"]).abs() / summary["true"]).median()
    assert len(summary) > 500
    assert error < 0.15, error


def test_pack_sizes_last_longer(small_world):
    pairs = small_world.truth["replenishment"]
    median = pairs.groupby("product_id")["true_cycle_days"].median()
    assert 1.6 < median["P-INK-2"] / median["P-INK"] < 2.4
    assert 2.4 < median["P-FILTER-3"] / median["P-FILTER"] < 3.6


def test_durables_lead_to_consumables(small_world):
    orders = small_world.tables["orders"]
    printer_owners = set(orders.loc[orders["product_id"] == "P-PRINTER", "customer_id"])
    ink_buyers = set(orders.loc[orders["product_id"].isin(["P-INK", "P-INK-2"]), "customer_id"])
    everyone = set(orders["customer_id"])
    share_with_printer = len(ink_buyers & printer_owners) / len(printer_owners)
    share_overall = len(ink_buyers) / len(everyone)
    assert share_with_printer > 0.9
    assert share_with_printer > 2 * share_overall


def test_customers_lapse_and_some_return(small_world):
    truth = small_world.truth["customers"]
    lapsed = truth["lapse_at"].notna()
    returned = truth["return_at"].notna()
    assert 0.2 < lapsed.mean() < 0.9
    assert 0.2 < returned[lapsed].mean() < 0.6


def test_engagement_fades_and_sours_before_a_lapse(small_world):
    events = small_world.tables["events"]
    truth = small_world.truth["customers"].set_index("customer_id")
    lapse = truth["lapse_at"].dropna()
    chat = events[events["sentiment"].notna() & events["customer_id"].isin(lapse.index)]
    lapse_at = lapse.reindex(chat["customer_id"]).set_axis(chat.index)
    days_before = (lapse_at - chat["occurred_at"]).dt.days
    near = chat["sentiment"][(days_before >= 0) & (days_before < 30)]
    far = chat["sentiment"][days_before > 120]
    assert near.mean() < far.mean() - 0.3


def test_identities_stitching_consents_and_locales(small_world_dir):
    tables = load_contract(small_world_dir)
    ids = tables.identities
    assert {"email_sha256", "cookie", "device", "messenger", "line"} <= set(ids["id_type"])
    anonymous = tables.events[tables.events["customer_id"].isna()]
    stitched = anonymous["anonymous_id"].isin(ids.loc[ids["id_type"] == "cookie", "id_value"])
    assert 0.2 < stitched.mean() < 0.95  # some browsing is attributable, some never is
    withdrawn = tables.consents[
        (tables.consents["purpose"] == "marketing")
        & ~tables.consents["granted"]
        & (tables.consents["source"] == "preference_center")
    ]
    assert len(withdrawn) > 0
    assert set(tables.customers["locale"]) == {"zh-TW", "zh-CN", "en"}
    assert tables.products["name_zh_tw"].notna().all()


@pytest.mark.slow
def test_a_large_world_is_practical():
    world = generate_world(WorldConfig(customers=200_000, seed=3, as_of=AS_OF))
    assert len(world.tables["customers"]) == 200_000


def test_a_world_in_chunks_is_one_valid_world_with_ids_numbered_on(tmp_path):
    """`generate --chunk-customers`: each chunk its own customers, ids continuing across
    chunks (customers, orders, events, CRM ids), every table a folder of parts that
    validates (in partitions too) and builds."""
    import json

    from cdp.validation import validate_in_partitions
    from features.build import build_features
    from test_cli import nextbest

    out = tmp_path / "chunked"
    args = ["generate", "--customers", "2500", "--seed", "3", "--out", str(out)]
    done = nextbest(*args, "--chunk-customers", "1000")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (out / "orders").iterdir()) == [
        f"part-0000{k}.parquet" for k in range(3)
    ]
    tables = load_contract(out)
    assert len(tables.customers) == 2500 and tables.customers["customer_id"].is_unique
    assert tables.customers["customer_id"].max() == "C0002500"
    for name, key in (("orders", "order_id"), ("events", "event_id")):
        numbers = getattr(tables, name)[key].str.slice(1).astype(int)
        assert numbers.min() == 1 and numbers.max() == numbers.nunique()  # none skipped
    crm = tables.identities[tables.identities["id_type"] == "crm"]
    assert (crm["id_value"] == crm["customer_id"].str.replace("C", "CRM-0")).all()
    assert validate_in_partitions(out, 4).ok
    assert json.loads((out / "truth" / "meta.json").read_text())["customers"] == 2500
    truth = pd.read_parquet(out / "truth" / "customers")
    assert set(truth["customer_id"]) <= set(tables.customers["customer_id"])
    assert len(build_features(out, as_of=AS_OF).customers) > 2000
    again = tmp_path / "again"
    assert nextbest(*args[:-1], str(again), "--chunk-customers", "1000").returncode == 0
    for k in range(3):  # the same world from the same seed and chunk size
        part = f"part-0000{k}.parquet"
        pd.testing.assert_frame_equal(
            pd.read_parquet(out / "events" / part), pd.read_parquet(again / "events" / part)
        )
