"""Labels: what happened after ``as_of``, from rows after it only.

- churn: a customer who existed at ``as_of`` made no purchase in ``(as_of, as_of + H]``;
- repurchase: a customer x product pair was bought again in ``(as_of, as_of + W]``;
- next product: a candidate's family (the product or a pack of it, ``variant_of``) was
  bought in ``(as_of, as_of + W]``;
- ``next_purchase_at``: the first purchase after ``as_of``, whenever it came (for timing
  error), null if none is in the data;
- holdout spend: what a customer spent on purchases (returns not netted) in
  ``(as_of, as_of + H]``, for the error of CLV.

A label needs its whole window in the data: if the data end (the latest order or event)
comes before ``as_of + H`` (or ``+ W``), :class:`IncompleteWindowError` says so.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import polars as pl

from cdp.errors import BadInputError
from cdp.time import AsOf, as_utc
from features.candidates import product_families
from features.inputs import FeatureInputs, Tables, as_inputs
from features.replenishment import refill_keys


class IncompleteWindowError(BadInputError):
    """The data ends before the label window does."""


def data_end(inputs: FeatureInputs) -> datetime | None:
    """The latest order or event timestamp: how far the data reaches."""
    ends = (
        pl.concat(
            [
                inputs.orders.select(pl.col("ordered_at").max().alias("t")),
                inputs.events.select(pl.col("occurred_at").max().alias("t")),
            ]
        )
        .select(pl.col("t").max())
        .collect()
    )
    return ends.item()


def _check_window(inputs: FeatureInputs, end: datetime, what: str) -> None:
    last = data_end(inputs)
    if last is None or last < end:
        raise IncompleteWindowError(
            f"{what}: the data ends at {last}, before the window ends at {end}; "
            "choose an earlier as_of or a shorter window"
        )


def _next_purchases(inputs: FeatureInputs, as_of: datetime, keys: list[str]) -> pl.LazyFrame:
    return (
        inputs.orders.filter((pl.col("ordered_at") > as_of) & (pl.col("quantity") > 0))
        .group_by(keys)
        .agg(next_purchase_at=pl.col("ordered_at").min())
    )


def churn_labels(tables: Tables, *, as_of: AsOf, horizon_days: int = 90) -> pd.DataFrame:
    """Churn labels: did each customer buy in the H days after ``as_of``?

    Parameters
    ----------
    tables : Tables
        The contract tables (or folder); they must reach ``as_of`` + H.
    as_of : AsOf
        The cutoff; settled to UTC here.
    horizon_days : int, default 90
        The churn horizon H.

    Returns
    -------
    pandas.DataFrame
        Per customer created by ``as_of``, by ``customer_id``: ``churned`` (no order in
        ``(as_of, as_of + H]``) and ``next_purchase_at``.

    Raises
    ------
    IncompleteWindowError
        When the data end before ``as_of`` + H (the labels would be unknown).
    """
    inputs, as_of = as_inputs(tables), as_utc(as_of)
    end = as_of + timedelta(days=horizon_days)
    _check_window(inputs, end, f"churn labels with horizon {horizon_days} days")
    frame = (
        inputs.customers.filter(pl.col("created_at") <= as_of)
        .select("customer_id")
        .join(_next_purchases(inputs, as_of, ["customer_id"]), on="customer_id", how="left")
        .with_columns(
            churned=pl.col("next_purchase_at").is_null() | (pl.col("next_purchase_at") > end)
        )
        .sort("customer_id")
        .collect()
    )
    return frame.to_pandas()


def repurchase_labels(
    tables: Tables, pairs: pd.DataFrame, *, as_of: AsOf, window_days: int = 14
) -> pd.DataFrame:
    """Per (customer_id, product_id) of ``pairs``: ``repurchased`` and ``next_purchase_at``,
    of the product or, when the catalog names its need, of any product of the need."""
    inputs, as_of = as_inputs(tables), as_utc(as_of)
    end = as_of + timedelta(days=window_days)
    _check_window(inputs, end, f"repurchase labels with window {window_days} days")
    keys = ["customer_id", "product_id"]
    refill = refill_keys(inputs.products)  # a pair stands for its need: any brand refills it
    after = (
        inputs.orders.filter((pl.col("ordered_at") > as_of) & (pl.col("quantity") > 0))
        .join(refill, on="product_id")
        .group_by("customer_id", "key")
        .agg(next_purchase_at=pl.col("ordered_at").min())
    )
    frame = (
        pl.from_pandas(pairs[keys])
        .lazy()
        .join(refill, on="product_id", how="left")
        .join(after, on=["customer_id", "key"], how="left")
        .drop("key")
        .with_columns(
            repurchased=pl.col("next_purchase_at").is_not_null()
            & (pl.col("next_purchase_at") <= end)
        )
        .collect()
    )
    return frame.to_pandas()


def next_product_labels(
    tables: Tables, candidates: pd.DataFrame, *, as_of: AsOf, window_days: int = 30
) -> pd.DataFrame:
    """Per (customer_id, product_id) of ``candidates`` (with their ``family``): ``bought``,
    whether any product of the family was bought in ``(as_of, as_of + W]``."""
    inputs, as_of = as_inputs(tables), as_utc(as_of)
    end = as_of + timedelta(days=window_days)
    _check_window(inputs, end, f"next-product labels with window {window_days} days")
    families = product_families(inputs.products).select("product_id", "family")
    bought = (
        inputs.orders.filter(pl.col("ordered_at") > as_of)
        .filter((pl.col("ordered_at") <= end) & (pl.col("quantity") > 0))
        .join(families, on="product_id", how="inner")
        .select("customer_id", "family")
        .unique()
        .with_columns(bought=pl.lit(True))
    )
    keys = ["customer_id", "product_id", "family"]
    frame = (
        pl.from_pandas(candidates[keys])
        .lazy()
        .join(bought, on=["customer_id", "family"], how="left")
        .with_columns(pl.col("bought").fill_null(False))
        .select("customer_id", "product_id", "bought")
        .collect()
    )
    return frame.to_pandas()


def spend_labels(tables: Tables, *, as_of: AsOf, horizon_days: int = 90) -> pd.DataFrame:
    """What each customer spent in the H days after ``as_of`` (the CLV model's holdout).

    Parameters
    ----------
    tables : Tables
        The contract tables (or folder); they must reach ``as_of`` + H.
    as_of : AsOf
        The cutoff; settled to UTC here.
    horizon_days : int, default 90
        The horizon H.

    Returns
    -------
    pandas.DataFrame
        Per customer created by ``as_of``: ``holdout_spend`` and ``holdout_purchase_days``
        in ``(as_of, as_of + H]`` (zero without a purchase).

    Raises
    ------
    IncompleteWindowError
        When the data end before ``as_of`` + H.
    """
    inputs, as_of = as_inputs(tables), as_utc(as_of)
    end = as_of + timedelta(days=horizon_days)
    _check_window(inputs, end, f"holdout spend with horizon {horizon_days} days")
    bought = (
        inputs.orders.filter(
            (pl.col("ordered_at") > as_of)
            & (pl.col("ordered_at") <= end)
            & (pl.col("quantity") > 0)
        )
        .group_by("customer_id")
        .agg(
            holdout_spend=pl.col("amount").sum(),
            holdout_purchase_days=pl.col("ordered_at").dt.date().n_unique(),
        )
    )
    frame = (
        inputs.customers.filter(pl.col("created_at") <= as_of)
        .select("customer_id")
        .join(bought, on="customer_id", how="left")
        .with_columns(
            pl.col("holdout_spend").fill_null(0.0),
            pl.col("holdout_purchase_days").fill_null(0).cast(pl.Int64),
        )
        .sort("customer_id")
        .collect()
    )
    return frame.to_pandas()
