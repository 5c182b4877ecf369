"""The figures `make eval-nba` prints, on hand-built tables with hand-counted answers."""

from __future__ import annotations

import pandas as pd

from benchmarks.nba import TIMES, families, history, scores

PRODUCTS = pd.DataFrame(
    {
        "product_id": ["P-INK", "P-INK-2", "P-MUG", "P-LAMP"],
        "variant_of": [None, "P-INK", None, None],
        "price": [25.0, 45.0, 10.0, 40.0],
    }
)


def test_hits_count_a_pack_as_the_product_and_customers_without_products_as_misses():
    ranked = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "b", "c", "d"],
            "rank": [1, 2, 3, 1, 2, 1, 1],
            "product_id": [None, "P-MUG", "P-INK", "P-LAMP", "P-MUG", "P-MUG", "P-INK"],
        }
    )
    bought = pd.DataFrame(
        {"customer_id": ["a", "b", "c", "x"], "product_id": ["P-INK-2", "P-MUG", "P-INK", "P-MUG"]}
    )
    customers = pd.Index(["a", "b", "c", "e"])  # d is not evaluated; e got no product
    margin = PRODUCTS.set_index("product_id")["price"] * 0.3
    got = scores(ranked, bought, customers, families(PRODUCTS), margin)
    # a: first product P-MUG misses, second P-INK hits via the 2-pack; b: P-MUG second hits
    assert got["hit@1"] == 0 / 4
    assert got["hit@3"] == 2 / 4
    assert got["margin / customer"] == (25.0 * 0.3 + 10.0 * 0.3) / 4


def test_the_history_holds_no_row_after_the_cut():
    at = pd.Timestamp("2025-06-30", tz="UTC")
    stamps = [at - pd.Timedelta(days=1), at, at + pd.Timedelta(seconds=1)]
    tables = {name: pd.DataFrame({column: stamps}) for name, column in TIMES.items()}
    tables["products"] = PRODUCTS
    past = history(tables, at)
    for name, column in TIMES.items():
        assert past[name][column].tolist() == stamps[:2], name
    assert past["products"].equals(PRODUCTS)


def test_hit_at_1_splits_into_repeat_and_new_items():
    ranked = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "rank": [1, 1, 1],
            "product_id": ["P-INK", "P-MUG", "P-LAMP"],
        }
    )
    bought = pd.DataFrame(
        {"customer_id": ["a", "b", "c"], "product_id": ["P-INK", "P-MUG", "P-INK"]}
    )
    before = pd.DataFrame({"customer_id": ["a", "c"], "product_id": ["P-INK-2", "P-LAMP"]})
    margin = PRODUCTS.set_index("product_id")["price"] * 0.3
    got = scores(ranked, bought, pd.Index(["a", "b", "c"]), families(PRODUCTS), margin, before)
    # a: ink again (bought as the 2-pack before), a repeat hit; b: a new hit; c: a miss
    assert (got["hit@1"], got["hit@1 repeat"], got["hit@1 new"]) == (2 / 3, 1 / 3, 1 / 3)


def test_p_topfreq_and_the_last_basket_by_hand():
    from benchmarks.nba import baselines

    ts = pd.Timestamp
    orders = pd.DataFrame(
        {
            "customer_id": ["a"] * 5,
            "product_id": ["milk", "milk", "tea", "eggs", "tea"],
            "ordered_at": [ts(f"2025-06-{d:02d}T10:00Z") for d in (1, 8, 8, 20, 15)],
            "quantity": [1, 2, 1, 1, 1],
        }
    )
    pairs = pd.DataFrame(columns=["customer_id", "product_id", "expected_next_purchase_at"])
    got = baselines({"orders": orders}, pairs, ts("2025-06-30", tz="UTC"), 14)
    assert got["P-TopFreq"]["product_id"].tolist() == ["tea", "milk", "eggs"]  # tea: later
    assert got["repeat last basket"]["product_id"].tolist() == ["eggs"]
