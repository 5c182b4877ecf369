"""Labels come from rows after as_of only, and need their whole window in the data."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import at, contract
from features.labels import IncompleteWindowError, churn_labels, repurchase_labels, spend_labels

AS_OF = at(100)


def _orders() -> pd.DataFrame:
    rows = [
        ("O1", "00001", at(50), "P-INK", 1, 25.0),
        ("O2", "00001", at(110), "P-INK", 1, 25.0),  # 10 days after as_of
        ("O3", "00002", at(60), "P-INK", 1, 25.0),
        ("O4", "00002", at(150), "P-INK", -1, -25.0),  # a return is not a purchase
        ("O5", "00002", at(195), "P-INK", 1, 25.0),  # 95 days after: outside H = 90
        ("O6", "00003", at(100), "P-INK", 1, 25.0),  # exactly at as_of: not after it
    ]
    return pd.DataFrame(
        rows, columns=["order_id", "customer_id", "ordered_at", "product_id", "quantity", "amount"]
    )


@pytest.fixture(scope="module")
def tables():
    return contract(orders=_orders())


def test_churn_labels(tables):
    labels = churn_labels(tables, as_of=AS_OF, horizon_days=90).set_index("customer_id")
    assert not labels.loc["00001", "churned"]
    assert labels.loc["00001", "next_purchase_at"] == at(110)
    assert labels.loc["00002", "churned"]
    assert labels.loc["00002", "next_purchase_at"] == at(195)  # the timing, whenever it came
    assert labels.loc["00003", "churned"] and pd.isna(labels.loc["00003", "next_purchase_at"])


def test_repurchase_labels(tables):
    pairs = pd.DataFrame({"customer_id": ["00001", "00002"], "product_id": ["P-INK", "P-INK"]})
    labels = repurchase_labels(tables, pairs, as_of=AS_OF, window_days=14)
    labels = labels.set_index("customer_id")
    assert labels.loc["00001", "repurchased"]
    assert not labels.loc["00002", "repurchased"]
    assert labels.loc["00002", "next_purchase_at"] == at(195)


def test_window_past_the_data_is_an_error(tables):
    with pytest.raises(IncompleteWindowError, match="data ends at"):
        churn_labels(tables, as_of=at(150), horizon_days=90)


def test_spend_labels(tables):
    spend = spend_labels(tables, as_of=AS_OF, horizon_days=90).set_index("customer_id")
    assert spend.loc["00001", "holdout_spend"] == 25.0  # at(110), inside (as_of, as_of + 90]
    assert spend.loc["00001", "holdout_purchase_days"] == 1
    assert spend.loc["00002", "holdout_spend"] == 0.0  # a return, then a purchase after 95 days
    assert spend.loc["00003", "holdout_spend"] == 0.0  # bought at as_of: not after it
