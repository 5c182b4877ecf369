"""lifetimes features: BG/NBD P(alive) and expected purchases, Gamma-Gamma order value, CLV.

BG/NBD (Fader, Hardie and Lee, 2005, "Counting your customers the easy way") models repeat
purchases and drop-out; Gamma-Gamma (Fader, Hardie and Lee, 2005, "RFM and CLV") the value
of a repeat purchase. Both are fitted only on the lifetimes summary at ``as_of`` (daily
periods: frequency, recency and T in days), on the unique (frequency, recency, T) rows with
weights, which gives the same likelihood as one row per customer at a fraction of the cost.

The fitted parameters are a population fact: :func:`fit_lifetimes` computes them once and
:func:`lifetimes_features` applies them to any set of customers (one partition or all).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import ArrayLike
from scipy.special import expit, hyp2f1

_RETRIES = 3


class LifetimesFitWarning(UserWarning):
    """A lifetimes fit did not converge; features fall back to empirical rates."""


@dataclass(frozen=True)
class LifetimesParams:
    """Fitted parameters (``None`` when the fit failed and features use the fallback)."""

    bgnbd: dict[str, float] | None
    gamma_gamma: dict[str, float] | None
    bgnbd_penalizer: float | None = None
    gamma_gamma_penalizer: float | None = None
    mean_repeat_value: float = 0.0  # the order value used when Gamma-Gamma has no answer


def _fit(make, args: tuple, weights: np.ndarray, penalizer: float, name: str):
    """Fit with ``penalizer``, raising it tenfold up to three times if the fit fails."""
    for attempt in range(_RETRIES + 1):
        coef = (
            penalizer * 10**attempt
            if penalizer > 0
            else (0.0 if attempt == 0 else 10.0 ** (attempt - 4))
        )
        model = make(coef)
        try:
            # lifetimes prints scipy's whole result on a failed fit; the retry handles it
            with (
                np.errstate(all="ignore"),
                warnings.catch_warnings(),
                contextlib.redirect_stdout(io.StringIO()),
            ):
                warnings.simplefilter("ignore")
                model.fit(*args, weights=weights)
        except Exception:
            continue
        params = {k: float(v) for k, v in model.params_.items()}
        if all(np.isfinite(v) and v > 0 for v in params.values()):
            return params, coef
    warnings.warn(
        f"{name} fit did not converge (penalizer {penalizer} up to x{10**_RETRIES}); "
        "using empirical purchase rates and order values instead",
        LifetimesFitWarning,
        stacklevel=3,
    )
    return None, None


def fit_lifetimes(summary: pl.DataFrame, penalizer: float) -> LifetimesParams:
    """Fit BG/NBD and Gamma-Gamma on a purchase summary (see :mod:`features.rfm`)."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    if summary.height == 0:
        return LifetimesParams(None, None)
    repeaters = summary.filter(pl.col("frequency") > 0)["monetary_value"]
    # sorted first: a float mean depends on the order it adds in
    mean_repeat_value = float(repeaters.sort().mean()) if repeaters.len() else 0.0
    frt = (
        summary.group_by("frequency", "recency", "T")
        .agg(w=pl.len())
        .sort("frequency", "recency", "T")
    )
    bgnbd, bg_coef = _fit(
        lambda c: BetaGeoFitter(penalizer_coef=c),
        (frt["frequency"].to_numpy(), frt["recency"].to_numpy(), frt["T"].to_numpy()),
        frt["w"].to_numpy(),
        penalizer,
        "BG/NBD",
    )
    repeat = (
        summary.filter((pl.col("frequency") > 0) & (pl.col("monetary_value") > 0))
        .group_by("frequency", "monetary_value")
        .agg(w=pl.len())
        .sort("frequency", "monetary_value")
    )
    gamma_gamma, gg_coef = (None, None)
    if repeat.height:
        gamma_gamma, gg_coef = _fit(
            lambda c: GammaGammaFitter(penalizer_coef=c),
            (repeat["frequency"].to_numpy(), repeat["monetary_value"].to_numpy()),
            repeat["w"].to_numpy(),
            penalizer,
            "Gamma-Gamma",
        )
    return LifetimesParams(bgnbd, gamma_gamma, bg_coef, gg_coef, mean_repeat_value)


def bgnbd_p_alive(
    params: dict[str, float], frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> np.ndarray:
    """P(alive | x, t_x, T) under BG/NBD (Hardie, "P(alive) for the BG/NBD model").

    1 for customers without a repeat purchase (BG/NBD's drop-out happens only after one).
    """
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    x = np.asarray(frequency, dtype=float)
    log_odds = (r + x) * np.log((alpha + T) / (alpha + recency)) + np.log(
        a / (b + np.maximum(x, 1) - 1)
    )
    return np.where(x == 0, 1.0, expit(-log_odds))


def bgnbd_expected_purchases(
    params: dict[str, float], t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> np.ndarray:
    """E[purchases in (T, T + t] | x, t_x, T] under BG/NBD (Fader, Hardie and Lee 2005, eq. 10).

    The Gauss hypergeometric term is evaluated through Euler's transformation where the
    direct series overflows, as lifetimes does.
    """
    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    x, recency, T = np.broadcast_arrays(
        *(np.asarray(v, dtype=float) for v in (frequency, recency, T))
    )
    c = a + b + x - 1
    z = t / (alpha + T + t)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ln_hyp = np.log(hyp2f1(r + x, b + x, c, z))
        far = np.isinf(ln_hyp)  # the rare rows that need Euler's form: evaluate only those
        if far.any():
            xf, cf, zf = x[far], c[far], z[far]
            ln_hyp[far] = np.log(hyp2f1(cf - r - xf, cf - b - xf, cf, zf)) + (
                cf - r - 2 * xf - b
            ) * np.log(1 - zf)
        numerator = (
            (a + b + x - 1)
            / (a - 1)
            * (1 - np.exp(ln_hyp + (r + x) * np.log((alpha + T) / (alpha + t + T))))
        )
        denominator = 1 + (x > 0) * (a / (b + x - 1)) * ((alpha + T) / (alpha + recency)) ** (r + x)
    return numerator / denominator


def _expected_value(params: dict[str, float] | None, frequency, monetary, fallback: float):
    """Gamma-Gamma E[order value | frequency, mean repeat value]; ``fallback`` without a fit."""
    if params is None:
        return np.where(frequency > 0, monetary, fallback)
    p, q, v = params["p"], params["q"], params["v"]
    population = p * v / (q - 1) if q > 1 else fallback
    weight = (q - 1) / (p * frequency + q - 1)
    return weight * population + (1 - weight) * monetary


def lifetimes_features(
    summary: pl.DataFrame,
    params: LifetimesParams,
    *,
    horizon_days: int,
    clv_months: int,
    monthly_discount_rate: float,
) -> pl.DataFrame:
    """Per customer of ``summary``: ``p_alive``, ``expected_purchases_{H}d``,
    ``expected_order_value`` and ``clv_{months}m``.

    CLV follows lifetimes' ``customer_lifetime_value``: expected purchases in each month of
    30 days times the expected order value, discounted monthly. Without a BG/NBD fit,
    expected purchases are the customer's repeat rate (frequency / T) times the period and
    ``p_alive`` is null; without a Gamma-Gamma fit the order value is the customer's own
    repeat mean (the population's for one-time buyers).
    """
    h = horizon_days
    frt = summary.select("frequency", "recency", "T").unique().sort("frequency", "recency", "T")
    f, r, t = (frt[c].to_numpy() for c in ("frequency", "recency", "T"))
    months = 30.0 * np.arange(clv_months + 1)
    if params.bgnbd is not None:
        p_alive = bgnbd_p_alive(params.bgnbd, f, r, t)
        cumulative = np.stack(
            [
                bgnbd_expected_purchases(params.bgnbd, m, f, r, t) if m > 0 else np.zeros_like(f)
                for m in months
            ]
        )
        in_horizon = bgnbd_expected_purchases(params.bgnbd, h, f, r, t)
    else:
        rate = f / np.maximum(t, 1.0)
        p_alive = np.full(f.shape, np.nan)
        cumulative = np.outer(months, rate)
        in_horizon = rate * h
    discount = (1 + monthly_discount_rate) ** np.arange(1, clv_months + 1)
    purchases_per_month = np.diff(cumulative, axis=0)
    discounted_purchases = (purchases_per_month / discount[:, None]).sum(axis=0)
    by_frt = frt.with_columns(
        p_alive=pl.Series(p_alive),
        **{f"expected_purchases_{h}d": pl.Series(in_horizon)},
        discounted_purchases=pl.Series(discounted_purchases),
    )
    out = summary.select("customer_id", "frequency", "recency", "T", "monetary_value").join(
        by_frt, on=["frequency", "recency", "T"], how="left"
    )
    value = _expected_value(
        params.gamma_gamma,
        out["frequency"].to_numpy(),
        out["monetary_value"].to_numpy(),
        params.mean_repeat_value,
    )
    return out.select(
        "customer_id",
        "p_alive",
        f"expected_purchases_{h}d",
        expected_order_value=pl.Series(value),
        **{f"clv_{clv_months}m": pl.col("discounted_purchases") * pl.Series(value)},
    )
