"""Customer x consumable cycles on hand-built purchases."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import at, contract, tiny_tables
from features import replenishment, runs
from features.build import build_features

AS_OF = at(100)


def _products() -> pd.DataFrame:
    products = tiny_tables()["products"]
    extra = pd.DataFrame(
        {
            "product_id": ["P-INK-2", "P-PAPER"],
            "name": ["Ink 2-pack", "Paper"],
            "category": ["printing", "printing"],
            "consumable": [True, True],
            "price": [45.0, 5.0],
        }
    )
    products = pd.concat([products, extra], ignore_index=True)
    products["pack_size"] = [1, 1, 2, 1]
    products["related_product_id"] = ["P-PRINTER", None, "P-PRINTER", None]
    return products


def _orders() -> pd.DataFrame:
    rows = [
        ("O1", "00001", at(0.3), "P-INK", 1, 25.0),
        ("O2", "00001", at(30.3), "P-INK", 2, 50.0),  # 30 days after 1 unit
        ("O3", "00001", at(90.3), "P-INK", 1, 25.0),  # 60 days after 2 units
        ("O4", "00001", at(95.0), "P-PAPER", 1, 5.0),  # one day only: no pair row
        ("O5", "00002", at(0.5), "P-PRINTER", 1, 149.0),
        ("O5", "00002", at(0.5), "P-INK-2", 1, 45.0),
        ("O6", "00002", at(60.5), "P-INK-2", 1, 45.0),  # 60 days after a 2-pack
        ("O7", "00002", at(110.5), "P-INK-2", 1, 45.0),  # after as_of: ignored
    ]
    return pd.DataFrame(
        rows, columns=["order_id", "customer_id", "ordered_at", "product_id", "quantity", "amount"]
    )


@pytest.fixture(scope="module")
def pairs():
    tables = contract(products=_products(), orders=_orders())
    return build_features(tables, as_of=AS_OF).pairs.set_index(["customer_id", "product_id"])


def test_quantity_adjusted_cycle(pairs):
    ink = pairs.loc[("00001", "P-INK")]
    assert ink["purchase_days"] == 3 and ink["units_total"] == 4
    assert ink["cycle_median_days"] == pytest.approx(30.0)
    assert ink["cycle_std_days"] == pytest.approx(0.0)
    assert ink["last_units"] == 1
    assert ink["expected_cycle_days"] == pytest.approx(30.0)
    assert ink["days_since_last"] == pytest.approx(100 - 90.3)
    assert ink["cycle_position"] == pytest.approx((100 - 90.3) / 30.0)
    expected_next = ink["last_purchase_at"] + pd.Timedelta(days=30)
    assert ink["expected_next_purchase_at"] == expected_next
    assert not ink["owns_related_durable"]
    assert ink["category_share"] == pytest.approx(100.0 / 105.0)


def test_pack_size_counts_units(pairs):
    two_pack = pairs.loc[("00002", "P-INK-2")]
    assert two_pack["units_total"] == 4  # two 2-packs by as_of
    assert two_pack["cycle_median_days"] == pytest.approx(30.0)  # 60 days / 2 units
    assert two_pack["expected_cycle_days"] == pytest.approx(60.0)
    assert two_pack["owns_related_durable"]


def test_only_consumables_bought_on_two_days(pairs):
    assert set(pairs.index) == {("00001", "P-INK"), ("00002", "P-INK-2")}


def test_the_exact_sort_gives_the_same_pairs(monkeypatch, pairs):
    """Days that do not fit the packed sort key send the pairs through the exact sort."""
    calls = []
    original = replenishment._cycles

    def spy(*args, exact, **kwargs):
        calls.append(exact)
        return original(*args, exact=exact, **kwargs)

    monkeypatch.setattr(runs, "DAY_BITS", 5)  # 31 days; these purchases span 90
    monkeypatch.setattr(replenishment, "_cycles", spy)
    tables = contract(orders=_orders(), products=_products())
    got = build_features(tables, as_of=AS_OF).pairs.set_index(["customer_id", "product_id"])
    assert calls == [False, True]
    pd.testing.assert_frame_equal(got, pairs)


def test_a_grocery_cycle_is_learned_per_need_across_brands_and_names_the_usual_product(tmp_path):
    """On the grocery world: one pair per household and need whatever the brands bought, its
    cycle close to the staple's true one, its product the one bought on the most days, and
    its label any brand of the need bought in the window."""
    from cdp.world.config import WorldConfig
    from cdp.world.generate import generate_grocery_world
    from conftest import write_folder
    from features.labels import repurchase_labels

    as_of = pd.Timestamp("2025-06-30", tz="UTC")
    config = WorldConfig(customers=400, seed=3, as_of=as_of, history_days=365)
    world = generate_grocery_world(config, 3_000)
    folder = write_folder(world.tables, tmp_path / "grocery")
    pairs = build_features(folder, as_of=as_of).pairs
    need = world.tables["products"].set_index("product_id")["need"]
    pairs = pairs.assign(need=pairs["product_id"].map(need))
    assert not pairs.duplicated(["customer_id", "need"]).any()

    truth = world.truth["staples"]
    staples = truth[truth["purchases_before_as_of"] >= 6]
    joined = pairs.merge(staples, on=["customer_id", "need"])
    assert len(joined) > 500
    rho = joined[["cycle_median_days", "true_cycle_days"]].corr(method="spearman").iloc[0, 1]
    assert rho > 0.85, rho

    orders = world.tables["orders"]
    bought = orders[(orders["ordered_at"] <= as_of) & (orders["quantity"] > 0)]
    bought = bought.assign(
        need=bought["product_id"].map(need), day=bought["ordered_at"].dt.floor("D")
    )
    days = bought.groupby(["customer_id", "need", "product_id"])["day"].nunique()
    most = days.groupby(level=[0, 1]).max()
    keys = zip(joined["customer_id"], joined["need"], joined["product_id"], strict=True)
    chosen = days.reindex(list(keys))
    assert (chosen.to_numpy() == most.reindex(chosen.index.droplevel(2)).to_numpy()).all()

    labels = repurchase_labels(folder, joined[["customer_id", "product_id"]], as_of=as_of)
    both = joined.merge(labels, on=["customer_id", "product_id"], suffixes=("_truth", ""))
    pd.testing.assert_series_equal(
        both["next_purchase_at"], both["next_purchase_at_truth"], check_names=False
    )
