"""The next-product model: its candidates, labels and time-based evaluation."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cdp.contract import ContractTables
from conftest import AS_OF
from features.build import build_features
from features.candidates import next_product_candidates
from features.config import FeatureConfig
from training.dataset import training_cutoffs
from training.next_product import next_product_dataset, train_next_product
from training.packaging import model_from_parts, parts_of

pytestmark = pytest.mark.heavy  # trains models or starts Spark: not in `make test-fast`

W = 30


@pytest.fixture(scope="module")
def tables(small_world):
    return ContractTables(**small_world.tables)


@pytest.fixture(scope="module")
def cutoffs():
    return training_cutoffs(AS_OF, horizon_days=W, n_train=4, step_days=W)


@pytest.fixture(scope="module")
def dataset(tables, cutoffs):
    return next_product_dataset(tables, FeatureConfig(next_product_days=W), cutoffs)


def _families(products: pd.DataFrame) -> pd.Series:
    variant = products["variant_of"]
    return pd.Series(
        variant.where(variant.notna(), products["product_id"]).to_numpy(),
        index=products["product_id"].to_numpy(),
    )


def test_candidates_never_hold_a_durable_the_customer_owns(tables):
    built = build_features(tables, as_of=AS_OF, config=FeatureConfig())
    frame = next_product_candidates(tables, built.customers, as_of=AS_OF, pairs=built.pairs)
    orders = tables.orders[(tables.orders["ordered_at"] <= AS_OF) & (tables.orders["quantity"] > 0)]
    durable = tables.products.set_index("product_id")["consumable"].eq(False)
    owned = orders[orders["product_id"].map(durable)][["customer_id", "product_id"]]
    clash = frame.merge(owned.drop_duplicates(), on=["customer_id", "product_id"])
    assert clash.empty
    assert frame.set_index(["customer_id", "product_id"]).index.is_unique
    # every kind of candidate is there: refills, related durables, best sellers, views
    assert (frame["family_purchase_days"] > 0).any() and frame["owns_related"].any()
    assert (frame["viewed_product_30d"] > 0).any() and (frame["popularity_90d"] > 0).all()


def test_candidates_use_only_rows_at_or_before_as_of(small_world):
    """The same candidates and features from the world and from its history alone."""
    full = ContractTables(**small_world.tables)
    times = {"orders": "ordered_at", "events": "occurred_at", "consents": "recorded_at"}
    past = ContractTables(
        **{
            name: frame[frame[times[name]] <= AS_OF] if name in times else frame
            for name, frame in small_world.tables.items()
        }
    )
    frames = []
    for tables in (full, past):
        built = build_features(tables, as_of=AS_OF, config=FeatureConfig())
        frames.append(
            next_product_candidates(tables, built.customers, as_of=AS_OF, pairs=built.pairs)
        )
    pd.testing.assert_frame_equal(frames[0], frames[1])


def test_a_label_is_a_purchase_of_the_family_in_the_window(tables, dataset, cutoffs):
    """``bought`` against the orders, recomputed here with pandas: the product or a pack of
    it (``variant_of``), in ``(cutoff, cutoff + W]``."""
    valid = dataset["valid"]
    family = _families(tables.products)
    start, end = cutoffs.valid, cutoffs.valid + pd.Timedelta(days=W)
    orders = tables.orders
    window = orders[
        (orders["ordered_at"] > start) & (orders["ordered_at"] <= end) & (orders["quantity"] > 0)
    ]
    bought = set(zip(window["customer_id"], window["product_id"].map(family), strict=True))
    expected = [
        (c, f) in bought
        for c, f in zip(valid["customer_id"], valid["product_id"].map(family), strict=True)
    ]
    assert valid["bought"].tolist() == expected
    assert 0.02 < valid["bought"].mean() < 0.5
    # a pack of the same consumable labels the single one too
    packs = valid[valid["product_id"].map(family) != valid["product_id"]]
    assert packs["bought"].any()


def test_trained_on_earlier_windows_and_judged_on_a_later_one(dataset, cutoffs):
    train = dataset["train"]
    assert set(train["cutoff"]) == set(cutoffs.train)
    assert (dataset["valid"]["cutoff"] == cutoffs.valid).all()
    # every training label window ends by the validation cutoff, whose own ends by AS_OF
    assert max(cutoffs.train) + pd.Timedelta(days=W) <= cutoffs.valid
    assert cutoffs.valid + pd.Timedelta(days=W) <= AS_OF

    result = train_next_product(dataset, window_days=W)
    metrics = result.metrics
    for baseline in (
        "popularity",
        "co_purchase_lift",
        "bought_lately",
        "p_topfreq",
        "repeat_last_basket",
    ):
        assert metrics.loc["model", "roc_auc"] > metrics.loc[baseline, "roc_auc"], metrics
        assert metrics.loc["model", "hit_at_1"] > metrics.loc[baseline, "hit_at_1"], metrics
    # the product's id is a key, not an input; stored that way too
    assert "product_id" not in result.classifier.features_
    parts = json.loads(json.dumps(parts_of("next_product", result.classifier)))
    again = model_from_parts(parts, result.classifier.booster_)
    assert again.get_params() == result.classifier.get_params()
    assert again.get_params()["ignore"] == ("product_id",)
    # calibrated on a later slice: the mean probability is near the later rate
    p = result.classifier.predict_proba(dataset["valid"])
    assert abs(p.mean() - dataset["valid"]["bought"].mean()) < 0.03


def test_the_repeat_baselines_by_hand():
    """P-TopFreq puts the customer's most often bought family first (recency breaks a tie);
    repeat-last-basket the families of their last purchase day (the most bought first)."""
    from training.next_product import baselines

    frame = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b", "b"],
            "product_id": ["milk", "eggs", "tea", "new", "milk", "tea"],
            "family_purchase_days": [9, 3, 9, 0, 1, 1],
            "days_since_family": [5.0, 1.0, 2.0, None, 10.0, 3.0],
            "popularity_90d": [0.5, 0.2, 0.1, 0.9, 0.5, 0.1],
            "co_purchase_lift": [None] * 6,
        }
    )
    scored = baselines(frame)

    def order(name, customer):
        mine = frame["customer_id"] == customer
        return frame.loc[mine, "product_id"].iloc[(-scored[name][mine]).argsort(kind="stable")]

    assert order("p_topfreq", "a").tolist() == ["tea", "milk", "eggs", "new"]
    assert order("p_topfreq", "b").tolist() == ["tea", "milk"]
    assert order("repeat_last_basket", "a").tolist()[0] == "eggs"
    assert order("repeat_last_basket", "b").tolist()[0] == "tea"
