"""The grocery world (cdp/world/grocery.py): a large catalog in a hierarchy, weekly trips of
about ten lines, staples on personal cycles with brand loyalty, and its truth."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cdp.world.config import WorldConfig
from cdp.world.generate import generate_grocery_world

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")


@pytest.fixture(scope="module")
def grocery():
    config = WorldConfig(customers=600, seed=3, as_of=AS_OF, history_days=365)
    return generate_grocery_world(config, 5_000)


def test_the_catalog_is_a_hierarchy_with_a_long_tail(grocery):
    products, orders = grocery.tables["products"], grocery.tables["orders"]
    assert len(products) == 5_000 and products["product_id"].is_unique
    # each need belongs to one category, each category to one department
    assert products.groupby("need")["category"].nunique().max() == 1
    assert products.groupby("category")["department"].nunique().max() == 1
    assert products["need"].nunique() >= 150
    per_need = products.groupby("need").size()
    assert per_need.max() >= 10 * per_need.median()  # a few needs hold many products
    sold = orders[orders["quantity"] > 0]["product_id"].value_counts()
    top = sold.head(len(products) // 100).sum() / sold.sum()
    assert top > 0.15, f"the top 1% of products sell {top:.0%} of lines"
    assert (products["price"] >= 0).all()


def test_weekly_trips_of_about_ten_lines_with_quantities_and_returns(grocery):
    orders = grocery.tables["orders"]
    bought = orders[orders["quantity"] > 0]
    lines = bought.groupby("order_id").size()
    assert 8 <= lines.mean() <= 12, lines.mean()
    trips = bought.groupby("order_id").agg(
        customer_id=("customer_id", "first"), at=("ordered_at", "first")
    )
    trips = trips.sort_values(["customer_id", "at"])
    gaps = trips.groupby("customer_id")["at"].diff().dt.total_seconds().dropna() / 86_400
    assert 5 <= gaps.median() <= 10, gaps.median()
    several = (bought["quantity"] > 1).mean()
    assert 0.05 < several < 0.4, several
    returned = (orders["quantity"] < 0).mean()
    assert 0.003 < returned < 0.03, returned
    assert (orders.loc[orders["quantity"] < 0, "amount"] <= 0).all()


def test_staples_come_back_on_their_cycle_mostly_as_the_usual_brand(grocery):
    orders, products = grocery.tables["orders"], grocery.tables["products"]
    staples = grocery.truth["staples"]
    assert staples["purchases_before_as_of"].min() >= 1
    need_of = products.set_index("product_id")["need"]
    bought = orders[(orders["quantity"] > 0) & (orders["ordered_at"] <= AS_OF)]
    bought = bought.assign(need=bought["product_id"].map(need_of))
    pairs = staples[staples["purchases_before_as_of"] >= 6][["customer_id", "need"]]
    mine = bought.merge(pairs, on=["customer_id", "need"])
    # loyalty: the usual product is most of a staple's purchases, not all of them
    share = mine.groupby(["customer_id", "need"])["product_id"].agg(
        lambda p: p.value_counts().iloc[0] / len(p)
    )
    assert 0.7 < share.mean() < 0.95, share.describe()
    assert (share < 1).mean() > 0.3  # switching within a need happens
    # cycles: the observed gap per unit follows the true cycle
    days = mine.groupby(["customer_id", "need", "ordered_at"], as_index=False)["quantity"].sum()
    days = days.sort_values(["customer_id", "need", "ordered_at"])
    gap = days.groupby(["customer_id", "need"])["ordered_at"].diff().dt.total_seconds() / 86_400
    per_unit = (gap / days.groupby(["customer_id", "need"])["quantity"].shift()).rename("g")
    observed = days.assign(g=per_unit).groupby(["customer_id", "need"])["g"].median()
    truth = staples.set_index(["customer_id", "need"])["true_cycle_days"]
    joined = pd.concat([observed, truth], axis=1, join="inner").dropna()
    rho = joined.corr(method="spearman").iloc[0, 1]
    assert rho > 0.8, rho


def test_the_truth_lists_what_each_household_bought_in_the_next_30_days(grocery):
    orders, truth = grocery.tables["orders"], grocery.truth["next_products"]
    window = (orders["ordered_at"] > AS_OF) & (
        orders["ordered_at"] <= AS_OF + pd.Timedelta(30, "D")
    )
    expected = (
        orders[window & (orders["quantity"] > 0)]
        .groupby(["customer_id", "product_id"], as_index=False)["ordered_at"]
        .min()
    )
    got = truth[["customer_id", "product_id", "first_bought_at"]].rename(
        columns={"first_bought_at": "ordered_at"}
    )
    pd.testing.assert_frame_equal(
        got.sort_values(["customer_id", "product_id"], ignore_index=True),
        expected.sort_values(["customer_id", "product_id"], ignore_index=True),
        check_dtype=False,
    )
    before = orders[(orders["ordered_at"] <= AS_OF) & (orders["quantity"] > 0)]
    owned = set(zip(before["customer_id"], before["product_id"], strict=True))
    repeat = [
        (c, p) in owned for c, p in zip(truth["customer_id"], truth["product_id"], strict=True)
    ]
    assert truth["repeat"].tolist() == repeat
    assert 0.3 < truth["repeat"].mean() < 0.95  # most of what comes next was bought before


def test_households_drift_away_before_they_lapse(grocery):
    """Partial defection: in the 60 days before a lapse, trips thin out, baskets shrink
    and staples stop, against the same households' 60 to 240 days before it."""
    orders, people = grocery.tables["orders"], grocery.truth["customers"]
    lapse = people.dropna(subset=["lapse_at"]).set_index("customer_id")["lapse_at"]
    bought = orders[orders["quantity"] > 0].merge(lapse.rename("lapse"), on="customer_id")
    before = (bought["lapse"] - bought["ordered_at"]).dt.total_seconds() / 86_400
    trips = (
        bought.assign(before=before)
        .groupby(["customer_id", "order_id"], as_index=False)
        .agg(at=("ordered_at", "first"), before=("before", "first"), lines=("product_id", "size"))
        .sort_values(["customer_id", "at"])
    )
    trips["gap"] = trips.groupby("customer_id")["at"].diff().dt.total_seconds() / 86_400
    late, early = trips[trips["before"].between(0, 60)], trips[trips["before"].between(60, 240)]
    assert len(late) >= 500 and len(early) >= 1000
    assert late["gap"].median() > 1.3 * early["gap"].median()
    assert late["lines"].mean() < 0.85 * early["lines"].mean()
    bought = bought[before > 0]
    # needs bought 3+ times 90 to 240 days before: still bought in the last 30 days, against
    # the 30 days from 90 to 60 days before
    needs = bought.merge(grocery.tables["products"][["product_id", "need"]], on="product_id")
    days = (needs["lapse"] - needs["ordered_at"]).dt.total_seconds() / 86_400
    pair = pd.Index(list(zip(needs["customer_id"], needs["need"], strict=True)))
    counts = pair[(days >= 90) & (days < 240)].value_counts()
    staples = counts[counts >= 3].index

    def still(low, high):
        return staples.isin(pair[(days >= low) & (days < high)]).mean()

    assert still(0, 30) < 0.8 * still(60, 90), (still(0, 30), still(60, 90))


def test_tastes_drift_what_was_bought_often_fades(grocery):
    """Favourites last a while, then others take their place: of the products a staying
    household bought on 3+ days 240 to 360 days ago, fewer are bought in the last 120 days
    than 120 to 240 days ago. (With favourites for life: 0.90 against 0.92.)"""
    orders, people = grocery.tables["orders"], grocery.truth["customers"]
    stay = people.loc[people["lapse_at"].isna(), "customer_id"]
    bought = orders[(orders["quantity"] > 0) & (orders["ordered_at"] <= AS_OF)]
    bought = bought[bought["customer_id"].isin(stay)]
    ago = (AS_OF - bought["ordered_at"]).dt.total_seconds() / 86_400
    pair = pd.Index(list(zip(bought["customer_id"], bought["product_id"], strict=True)))
    early = ago.between(240, 360, inclusive="left")
    days = pd.Series(bought["ordered_at"].dt.floor("D").to_numpy()[early], index=pair[early])
    often = days.groupby(level=[0, 1]).nunique()
    often = often[often >= 3].index
    assert len(often) >= 200

    def still(low, high):
        return often.isin(pair[ago.between(low, high, inclusive="left")]).mean()

    assert still(0, 120) < 0.85 * still(120, 240), (still(0, 120), still(120, 240))


def test_the_same_seed_gives_the_same_grocery_world():
    config = WorldConfig(customers=50, seed=9, as_of=AS_OF, history_days=365)
    a, b = (generate_grocery_world(config, 500) for _ in range(2))
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name])
    other = generate_grocery_world(WorldConfig(customers=50, seed=10, as_of=AS_OF), 500)
    assert not other.tables["orders"].equals(a.tables["orders"])


SCRIPT = """
import sys
from nextbest.cli import main
code = main(["generate", "--shop", "grocery", "--customers", "2000", "--products", "50000",
             "--seed", "4", "--out", sys.argv[1]])
peak = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM"))
print(code, peak // 1024)
"""


def test_generate_shop_grocery_writes_a_valid_50000_product_world_in_bounded_memory(tmp_path):
    """The CLI writes 2,000 households x 50,000 products (about half a million lines) that
    `nextbest validate` accepts, with the generator's peak under 1 GiB."""
    out = tmp_path / "grocery"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out)], capture_output=True, text=True, check=True
    )
    code, peak_mb = map(int, done.stdout.split()[-2:])
    assert code == 0, done.stderr
    assert peak_mb < 1024, f"peak {peak_mb} MB"
    from cdp.validation import validate_folder

    _, report = validate_folder(out)
    assert not report.violations, report.violations
    products = pd.read_parquet(out / "products.parquet")
    assert len(products) == 50_000
    assert {"department", "need", "brand"} <= set(products.columns)
    assert np.isin(
        ["staples.parquet", "next_products.parquet", "customers.parquet"],
        [p.name for p in (out / "truth").iterdir()],
    ).all()
