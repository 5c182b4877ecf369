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
