"""CLV: lifetimes value per customer, judged on the spend of the following period."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cdp.contract import ContractTables
from conftest import AS_OF
from features.config import FeatureConfig
from training.clv import ClvModel, clv_holdout, spend_metrics, train_clv

pytestmark = pytest.mark.heavy  # trains models or starts Spark: not in `make test-fast`


@pytest.fixture(scope="module")
def clv(small_world_dir, dataset_small):
    return train_clv(small_world_dir, dataset_small["valid"], config=FeatureConfig())


@pytest.fixture(scope="module")
def dataset_small(small_world_dir):
    from training.dataset import churn_dataset, training_cutoffs

    cutoffs = training_cutoffs(AS_OF, horizon_days=90, n_train=2)
    return churn_dataset(small_world_dir, FeatureConfig(), cutoffs)


def test_model_beats_the_historical_spend_rate_on_the_next_period(clv):
    m = clv.metrics
    assert m.loc["model", "mae"] < m.loc["historical_rate", "mae"], m
    assert m.loc["model", "spearman"] > 0.3, m
    assert abs(m.loc["model", "total_relative_error"]) < 0.35, m


def test_fitted_only_on_data_before_the_validation_period(clv, small_world, dataset_small):
    cutoff = dataset_small["valid"]["cutoff"].iloc[0]
    tables = dict(small_world.tables)
    tables["orders"] = tables["orders"][tables["orders"]["ordered_at"] <= cutoff]
    refit = ClvModel().fit(ContractTables(**tables), cutoff=cutoff, config=FeatureConfig())
    assert refit.to_dict() == clv.model.to_dict()  # nothing after the cutoff played a part


def test_json_round_trip_predicts_the_same(clv, small_world_dir, dataset_small):
    again = ClvModel.from_dict(clv.model.to_dict())
    holdout = clv_holdout(small_world_dir, dataset_small["valid"], horizon_days=90)
    a = clv.model.predict(holdout, horizon_days=90)
    b = again.predict(holdout, horizon_days=90)
    pd.testing.assert_frame_equal(a, b)
    assert (a["clv_12m"] >= 0).all() and a["customer_id"].tolist() == holdout[
        "customer_id"
    ].tolist()


def test_prediction_needs_the_summary_columns(clv):
    with pytest.raises(ValueError, match="monetary_value"):
        clv.model.predict(pd.DataFrame({"customer_id": ["a"], "frequency": [1.0]}), horizon_days=90)


def test_spend_metrics_by_hand():
    actual = np.array([0.0, 10.0, 30.0])
    m = spend_metrics(actual, np.array([0.0, 20.0, 20.0]))
    assert m["mae"] == pytest.approx(20 / 3)
    assert m["rmse"] == pytest.approx(np.sqrt(200 / 3))
    assert m["total_relative_error"] == 0.0
    assert m["top_decile_spend_share"] == pytest.approx(10 / 40)  # the first of the tied 20s
