"""``build_features``: the customer table and the customer x consumable table at ``as_of``.

Pure and deterministic: the same tables, ``as_of``, config and population parameters give
the same frames, whatever the order of the input rows. Only rows at or before ``as_of``
are read (orders by ``ordered_at``, events by ``occurred_at``, customers by
``created_at``, consents by ``recorded_at``).

Scale-out: everything is computed per customer except the population parameters (RFM
quintile edges and the lifetimes fits). :func:`fit_population` computes those on all
customers; passing them to :func:`build_features` for disjoint partitions of customers
(each with its own orders, events and identities) and concatenating gives the same tables
as one build, which is what lets this code run under Spark ``applyInPandas`` later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
import polars as pl

from cdp.time import AsOf, as_utc
from features.clv import LifetimesParams, fit_lifetimes, lifetimes_features
from features.config import FeatureConfig
from features.engagement import engagement_features
from features.inputs import FeatureInputs, Tables, as_inputs
from features.purchases import (
    INTERVALS,
    SUMMARY,
    daily_purchases,
    purchase_history,
    returned_amounts,
)
from features.replenishment import pair_features, staples_kept
from features.rfm import NO_PURCHASE, SCORED, SCORES, rfm_edges, rfm_scores
from features.time import days_between


@dataclass(frozen=True)
class PopulationParams:
    """Parameters fitted on the whole population at ``as_of``."""

    as_of: datetime
    rfm_edges: dict[str, list[float]]
    lifetimes: LifetimesParams


@dataclass(frozen=True)
class FeatureTables:
    """The output of a build: one row per customer, one per customer x consumable."""

    as_of: datetime
    customers: pd.DataFrame
    pairs: pd.DataFrame
    population: PopulationParams


def fit_population(
    tables: Tables, *, as_of: AsOf, config: FeatureConfig | None = None
) -> PopulationParams:
    """Fit the population parameters on every customer's purchases at or before ``as_of``.

    Parameters
    ----------
    tables : Tables
        Loaded contract tables, feature inputs, or a contract folder.
    as_of : AsOf
        The moment; settled to UTC here (:func:`cdp.time.as_utc`).
    config : FeatureConfig, optional
        Feature settings (the lifetimes penalizer); the defaults when not given.

    Returns
    -------
    PopulationParams
        The RFM score edges and the BG/NBD and Gamma-Gamma fits at ``as_of``.
    """
    config = config or FeatureConfig()
    inputs, as_of = as_inputs(tables), as_utc(as_of)
    return population_of(purchase_summary(inputs, as_of=as_of, config=config), as_of, config)


#: The columns of a buyer's purchase summary the population parameters are fitted on.
POPULATION_COLUMNS = ("frequency", "recency", "T", "monetary_value", *SCORED)


def purchase_summary(
    inputs: FeatureInputs, *, as_of: datetime, config: FeatureConfig
) -> pl.DataFrame:
    """Each buyer's :data:`POPULATION_COLUMNS` at ``as_of`` (a settled moment): what
    :func:`population_of` needs, computable on any partition of customers."""
    daily = daily_purchases(inputs.orders, as_of=as_of)
    return purchase_history(daily, as_of=as_of, config=config).select(POPULATION_COLUMNS)


def population_of(
    summary: pl.DataFrame, as_of: datetime, config: FeatureConfig
) -> PopulationParams:
    """The population parameters from every buyer's purchase summary (in any row order):
    the RFM quintile edges and the lifetimes fits."""
    return PopulationParams(
        as_of=as_of,
        rfm_edges=rfm_edges(summary),
        lifetimes=fit_lifetimes(summary, config.penalizer),
    )


def build_features(
    tables: Tables,
    *,
    as_of: AsOf,
    config: FeatureConfig | None = None,
    population: PopulationParams | None = None,
) -> FeatureTables:
    """Build the customer and pair feature tables from a contract dataset at ``as_of``.

    Only rows at or before ``as_of`` are read. The columns and their meaning are listed by
    :func:`features.manifest.describe`.

    Parameters
    ----------
    tables : Tables
        A :class:`~cdp.contract.ContractTables`, a contract folder, or
        :class:`~features.inputs.FeatureInputs`.
    as_of : AsOf
        The moment; settled to UTC here (:func:`cdp.time.as_utc`).
    config : FeatureConfig, optional
        Feature settings; the defaults when not given.
    population : PopulationParams, optional
        Parameters from :func:`fit_population` at the same ``as_of`` (fitted here on
        ``tables`` when not given).

    Returns
    -------
    FeatureTables
        One row per customer (``customers``) and per customer x consumable (``pairs``).

    Raises
    ------
    ValueError
        When ``population`` was fitted at another moment.
    """
    config = config or FeatureConfig()
    inputs, as_of = as_inputs(tables), as_utc(as_of)
    if population is None:
        population = fit_population(inputs, as_of=as_of, config=config)
    elif population.as_of != as_of:
        raise ValueError(f"population parameters are for {population.as_of}, not {as_of}")

    daily = daily_purchases(inputs.orders, as_of=as_of)
    history = purchase_history(daily, as_of=as_of, config=config)
    scored = rfm_scores(history.lazy(), population.rfm_edges).select(
        "customer_id", *SUMMARY, *SCORES, *INTERVALS
    )
    customers = inputs.customers.filter(pl.col("created_at") <= as_of).select(
        "customer_id", "locale", "country", tenure_days=days_between(as_of, pl.col("created_at"))
    )
    engagement = engagement_features(
        inputs.events,
        inputs.identities,
        customers,
        as_of=as_of,
        windows=config.engagement_windows,
        negative_sentiment=config.negative_sentiment,
    )
    plan = (
        customers.join(scored, on="customer_id", how="left")
        .join(returned_amounts(inputs.orders, as_of=as_of), on="customer_id", how="left")
        .join(engagement.lazy(), on="customer_id", how="left")
    )
    pairs = pair_features(inputs.orders, inputs.products, as_of=as_of)
    frame = plan.collect(engine="streaming")

    lifetimes = lifetimes_features(
        frame.filter(pl.col("purchase_days").is_not_null()).select(
            "customer_id", "frequency", "recency", "T", "monetary_value"
        ),
        population.lifetimes,
        horizon_days=config.horizon_days,
        clv_months=config.clv_months,
        monthly_discount_rate=config.monthly_discount_rate,
    )
    counts = [c for c, t in engagement.schema.items() if t == pl.Int32]
    frame = (
        frame.join(lifetimes, on="customer_id", how="left")
        .join(staples_kept(pairs), on="customer_id", how="left")
        .with_columns(
            pl.col("purchase_days", "orders", "staples").fill_null(0),
            pl.col("monetary_total", "returned_amount").fill_null(0.0),
            pl.col(counts).fill_null(0),
            pl.col("segment").fill_null(NO_PURCHASE),
        )
        .with_columns(
            returns_share=pl.when(pl.col("monetary_total") > 0).then(
                pl.col("returned_amount") / pl.col("monetary_total")
            ),
            overdue_ratio=pl.col("recency_days") / pl.col("gap_median_days"),
        )
        .sort("customer_id")
    )
    # Scores are small integers, null for customers without a purchase: keep them integers.
    scores = {"r_score": "Int8", "f_score": "Int8", "m_score": "Int8", "rfm_score": "Int16"}
    return FeatureTables(
        as_of=as_of,
        customers=frame.to_pandas().astype(scores),
        pairs=pairs.to_pandas(),
        population=population,
    )
