"""lifetimes fits: weighted unique rows equal a plain fit; failures fall back with a warning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from lifetimes import BetaGeoFitter, GammaGammaFitter
from scipy.special import hyp2f1

from cdp.cdnow import cdnow_tables
from cdp.time import as_utc
from features.clv import (
    LifetimesFitWarning,
    bgnbd_expected_purchases,
    fit_lifetimes,
    lifetimes_features,
)
from features.config import FeatureConfig
from features.purchases import daily_purchases, purchase_history

AS_OF = as_utc("1997-09-30")


@pytest.fixture(scope="module")
def summary() -> pl.DataFrame:
    orders = pl.from_pandas(cdnow_tables()["orders"]).lazy()
    daily = daily_purchases(orders, as_of=AS_OF)
    return purchase_history(daily, as_of=AS_OF, config=FeatureConfig())


def test_weighted_fit_equals_plain_lifetimes_fit(summary):
    params = fit_lifetimes(summary, penalizer=0.001)
    plain = BetaGeoFitter(penalizer_coef=0.001).fit(
        summary["frequency"].to_numpy(), summary["recency"].to_numpy(), summary["T"].to_numpy()
    )
    for name, value in plain.params_.items():
        assert params.bgnbd[name] == pytest.approx(value, rel=1e-3)
    repeat = summary.filter((pl.col("frequency") > 0) & (pl.col("monetary_value") > 0))
    gg = GammaGammaFitter(penalizer_coef=0.001).fit(
        repeat["frequency"].to_numpy(), repeat["monetary_value"].to_numpy()
    )
    for name, value in gg.params_.items():
        assert params.gamma_gamma[name] == pytest.approx(value, rel=1e-3)


def test_features_match_lifetimes_predictions(summary):
    params = fit_lifetimes(summary, penalizer=0.001)
    out = lifetimes_features(
        summary, params, horizon_days=90, clv_months=12, monthly_discount_rate=0.01
    )
    bgf = BetaGeoFitter()
    bgf.params_ = pd.Series(params.bgnbd)
    f, r, t = (summary[c].to_numpy() for c in ("frequency", "recency", "T"))
    np.testing.assert_allclose(
        out["p_alive"].to_numpy(), bgf.conditional_probability_alive(f, r, t), rtol=1e-9
    )
    np.testing.assert_allclose(
        out["expected_purchases_90d"].to_numpy(),
        bgf.conditional_expected_number_of_purchases_up_to_time(90, f, r, t),
        rtol=1e-9,
    )
    gg = GammaGammaFitter()
    gg.params_ = pd.Series(params.gamma_gamma)
    m = summary["monetary_value"].to_numpy()
    value = gg.conditional_expected_average_profit(f, m)
    np.testing.assert_allclose(out["expected_order_value"].to_numpy(), value, rtol=1e-9)
    bgf.predict = bgf.conditional_expected_number_of_purchases_up_to_time  # set by fit()
    clv = gg.customer_lifetime_value(
        bgf,
        pd.Series(f),
        pd.Series(r),
        pd.Series(t),
        pd.Series(m),
        time=12,
        freq="D",
        discount_rate=0.01,
    )
    np.testing.assert_allclose(out["clv_12m"].to_numpy(), clv.to_numpy(), rtol=1e-6)


def test_failed_fit_falls_back_with_a_warning(summary, monkeypatch):
    def broken(self, *args, **kwargs):
        raise ValueError("did not converge")

    monkeypatch.setattr(BetaGeoFitter, "fit", broken)
    with pytest.warns(LifetimesFitWarning, match="BG/NBD fit did not converge"):
        params = fit_lifetimes(summary, penalizer=0.001)
    assert params.bgnbd is None and params.gamma_gamma is not None
    out = lifetimes_features(
        summary, params, horizon_days=90, clv_months=12, monthly_discount_rate=0.01
    )
    assert out["p_alive"].is_nan().all() or out["p_alive"].is_null().all()
    rate = summary["frequency"].to_numpy() / np.maximum(summary["T"].to_numpy(), 1)
    np.testing.assert_allclose(out["expected_purchases_90d"].to_numpy(), rate * 90)


def test_fits_reproduce_fader_hardie_lee_on_the_cdnow_sample():
    """BG/NBD (2005, table 1) and Gamma-Gamma ("RFM and CLV", 2005) on CDNOW's 2,357-customer
    sample in weeks, fitted through the project's weighted unique-row path."""
    from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value

    sample = pl.from_pandas(load_cdnow_summary_data_with_monetary_value().reset_index())
    sample = sample.with_columns(pl.col("frequency").cast(pl.Float64))
    params = fit_lifetimes(sample, penalizer=0.0)
    published_bgnbd = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    published_gg = {"p": 6.25, "q": 3.74, "v": 15.44}
    for name, value in published_bgnbd.items():
        assert params.bgnbd[name] == pytest.approx(value, rel=0.01), name
    for name, value in published_gg.items():
        assert params.gamma_gamma[name] == pytest.approx(value, rel=0.01), name


def test_expected_purchases_where_the_direct_series_overflows():
    """Heavy buyers make hyp2f1 overflow; only those rows take Euler's form, as in lifetimes."""
    params = {"r": 0.8, "alpha": 20.0, "a": 0.5, "b": 3.0}
    f = np.array([0.0, 3.0, 400.0, 1500.0, 2.0])
    r = np.array([0.0, 30.0, 700.0, 720.0, 10.0])
    t = np.array([50.0, 60.0, 730.0, 730.0, 400.0])
    z = 730.0 / (params["alpha"] + t + 730.0)
    with np.errstate(all="ignore"):
        direct = hyp2f1(params["r"] + f, params["b"] + f, params["a"] + params["b"] + f - 1, z)
    assert np.isinf(direct).any() and np.isfinite(direct).any()
    bgf = BetaGeoFitter()
    bgf.params_ = pd.Series(params)
    for horizon in (30.0, 730.0):
        np.testing.assert_allclose(
            bgnbd_expected_purchases(params, horizon, f, r, t),
            bgf.conditional_expected_number_of_purchases_up_to_time(horizon, f, r, t),
            rtol=1e-9,
        )
