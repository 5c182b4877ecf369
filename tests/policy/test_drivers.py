"""A customer's own churn drivers: the features that raise their score most, in words."""

from __future__ import annotations

import pandas as pd
import pytest

from cdp.errors import BadInputError
from policy.drivers import DEFAULT, OTHER, load_phrases, phrase, top_drivers


def test_the_strongest_raising_features_first_named_by_direction():
    contributions = pd.DataFrame(
        {
            "recency_days": [0.9, -0.4, 0.2, -0.1],
            "views_30d": [0.3, 0.5, -0.2, -0.3],
            "segment": [0.1, 0.2, 0.6, -0.2],
            "baseline": [5.0, 5.0, 5.0, 5.0],  # never a driver
        },
        index=["a", "b", "c", "d"],
    )
    values = pd.DataFrame(
        {
            "recency_days": [200.0, 3.0, 150.0, 10.0],  # median 80
            "views_30d": [1.0, 0.0, 9.0, 4.0],  # median 2.5
            "segment": pd.Categorical(["at risk", "loyal", "hibernating", "loyal"]),
        },
        index=contributions.index,
    )
    got = top_drivers(contributions, values)
    assert got["a"] == ("recency_days_high", "views_30d_low")
    assert got["b"] == ("views_30d_low", "segment_loyal")
    assert got["c"] == ("segment_hibernating", "recency_days_high")
    assert got["d"] == ()  # nothing raises d's score: no driver is invented


@pytest.mark.parametrize(
    ("code", "locale", "words"),
    [
        ("recency_days_high", "en", "no purchase for a long time"),
        ("recency_days_high", "zh-TW", "已經很久沒有購買"),
        ("overdue_ratio_high", "zh-CN", "距上次下单比平常久"),
        ("views_30d_low", "en", "less browsing and fewer email opens"),
        ("days_since_negative_sentiment_low", "en", "an unhappy recent contact"),
        ("support_tickets_90d_high", "zh-TW", "近期有客服案件"),
        ("segment_at_risk", "zh-TW", OTHER["zh-TW"]),
    ],
)
def test_a_driver_in_the_customers_language(code, locale, words):
    assert phrase(code, locale) == words


def test_a_phrase_file_missing_a_locale_or_with_a_bad_pattern_is_refused_naming_the_field(
    tmp_path,
):
    text = DEFAULT.read_text(encoding="utf-8")
    broken = text.replace('zh-CN: "已经很久没有购买"', "", 1).replace(
        'pattern: "return"', 'pattern: "return("', 1
    )
    assert broken.count("pattern") == text.count("pattern")
    path = tmp_path / "drivers.yaml"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(BadInputError) as error:
        load_phrases(path)
    assert "families.recency.high: missing locales ['zh-CN']" in str(error.value)
    assert "families.returns.pattern: not a regular expression" in str(error.value)


def test_the_served_state_carries_each_buyers_strongest_churn_drivers(world, small_world_dir):
    """On the trained store: each buyer's codes name, strongest first, the features whose
    TreeSHAP contributions (computed here again, through the model) raise their churn
    score most."""
    from serving.memory.snapshot import load_snapshot
    from training import registry

    registry.configure(world / "mlruns")
    state = load_snapshot(data=small_world_dir, features=world / "features")
    snapshot = pd.read_parquet(world / "features" / "customers.parquet")
    buyers = snapshot[snapshot["purchase_days"] > 0].head(200)
    contributions = state.churn_model.contributions(buyers).drop(columns="baseline")
    with_drivers = 0
    for index, customer_id in zip(buyers.index, buyers["customer_id"], strict=True):
        codes = state.customers[customer_id].churn_drivers
        raising = contributions.loc[index][lambda row: row > 0].sort_values(ascending=False)
        strongest = list(raising.index[: len(codes)])
        assert all(
            code.startswith(f"{feature}_") for code, feature in zip(codes, strongest, strict=True)
        ), (codes, strongest)
        assert len(codes) == min(2, len(raising))
        with_drivers += bool(codes)
    assert with_drivers > 150
