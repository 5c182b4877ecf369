"""Time-based training sets: features at earlier cutoffs, labels from each cutoff's own window.

To score at ``as_of`` with horizon H, the latest cutoff whose window is complete is
``as_of - H``: that is the validation cutoff. Training cutoffs lie further back, so that
every training label window ends at or before the validation cutoff:

    train: c_k = as_of - 2H - k * step   (k = 0 .. n-1), labelled on (c_k, c_k + H]
    valid: c_v = as_of - H,              labelled on (c_v, as_of]

No example is split at random across time: a model is always judged on a later period
than anything it (or its calibration) saw. Inside the training cutoffs the same rule picks
the model's settings (:func:`selection_split`), and the newest training cutoff is held out
for calibration (:func:`calibration_split`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from cdp.errors import BadInputError
from cdp.time import AsOf, as_utc
from features.build import build_features
from features.config import FeatureConfig
from features.inputs import Tables, as_inputs
from features.labels import churn_labels


@dataclass(frozen=True)
class Cutoffs:
    """Training cutoffs (oldest first) and the validation cutoff."""

    train: tuple[datetime, ...]
    valid: datetime


def training_cutoffs(
    as_of: AsOf, *, horizon_days: int, n_train: int = 6, step_days: int = 30
) -> Cutoffs:
    """The training and validation cutoffs before ``as_of`` (see the module docstring).

    Parameters
    ----------
    as_of : AsOf
        The moment the models will score at; settled to UTC here.
    horizon_days : int
        The label window: the churn horizon H, or the repurchase window W.
    n_train : int, default 6
        Training cutoffs.
    step_days : int, default 30
        Days between training cutoffs.

    Returns
    -------
    Cutoffs
        ``valid`` = ``as_of`` - H (its labels end at ``as_of``), and the training cutoffs
        (oldest first), the newest H before ``valid``: no label window overlaps the
        validation period.
    """
    as_of = as_utc(as_of)
    valid = as_of - timedelta(days=horizon_days)
    newest = valid - timedelta(days=horizon_days)
    train = tuple(newest - timedelta(days=step_days * k) for k in reversed(range(n_train)))
    return Cutoffs(train=train, valid=valid)


def check_history(
    first_order: datetime | None, as_of: datetime, cutoffs: Cutoffs, horizon_days: int
) -> None:
    """Refuse (``BadInputError``, one line) when the orders start too late for ``cutoffs``:
    choosing the model's settings needs a training cutoff whose label window of
    ``horizon_days`` ends by the newest one, with buyers before it (:func:`selection_split`),
    so the data must reach back to ``newest - horizon_days``."""
    need = cutoffs.train[-1] - timedelta(days=horizon_days)
    if first_order is not None and first_order <= need:
        return
    n = len(cutoffs.train)
    found = "no orders" if first_order is None else f"the first order is on {first_order:%Y-%m-%d}"
    later = (
        ""
        if first_order is None
        else f", or an --as-of on or after {first_order + (as_of - need):%Y-%m-%d}"
    )
    raise BadInputError(
        f"too little history before AS_OF {as_of:%Y-%m-%d} for {n} training cutoffs of"
        f" {horizon_days} days: need data from {need:%Y-%m-%d} and {found};"
        f" give more history{later}"
    )


def churn_examples(tables: Tables, cutoff: datetime, config: FeatureConfig) -> pd.DataFrame:
    """Customer features at ``cutoff`` for customers who had bought by then, with ``churned``.

    A column ``cutoff`` records the moment; features use only rows at or before it, the
    label only rows in ``(cutoff, cutoff + H]``.
    """
    built = build_features(tables, as_of=cutoff, config=config)
    buyers = built.customers[built.customers["purchase_days"] > 0]
    labels = churn_labels(tables, as_of=cutoff, horizon_days=config.horizon_days)
    frame = buyers.merge(labels[["customer_id", "churned"]], on="customer_id", how="inner")
    return frame.assign(cutoff=pd.Timestamp(cutoff))


def examples_by_cutoff(
    examples: Callable[..., pd.DataFrame], tables: Tables, config: FeatureConfig, cutoffs: Cutoffs
) -> dict[str, pd.DataFrame]:
    """``{"train": ..., "valid": ...}``: ``examples(tables, cutoff, config)`` for every
    training cutoff (concatenated) and for the validation cutoff."""
    inputs = as_inputs(tables)
    train = pd.concat([examples(inputs, c, config) for c in cutoffs.train], ignore_index=True)
    return {"train": train, "valid": examples(inputs, cutoffs.valid, config)}


def churn_dataset(
    tables: Tables, config: FeatureConfig, cutoffs: Cutoffs
) -> dict[str, pd.DataFrame]:
    """Churn examples (features at each cutoff, labels of the H days after) for the cutoffs.

    Parameters
    ----------
    tables : Tables
        The contract tables (or folder).
    config : FeatureConfig
        Feature settings (the horizon H).
    cutoffs : Cutoffs
        From :func:`training_cutoffs`.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``train`` (every training cutoff, with a ``cutoff`` column) and ``valid``.
    """
    return examples_by_cutoff(churn_examples, tables, config, cutoffs)


def take(
    frame: pd.DataFrame, mask: np.ndarray, max_rows: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """The rows of ``frame`` where ``mask`` holds; at most ``max_rows`` of them, a fixed random
    sample in their original order. Sampling positions first copies only the rows kept."""
    rows = np.flatnonzero(np.asarray(mask, dtype=bool))
    if max_rows is not None and rows.size > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, size=max_rows, replace=False))
    return frame.iloc[rows]


def calibration_split(
    train: pd.DataFrame, max_rows: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training examples of the older cutoffs, and those of the newest (for calibration),
    each at most ``max_rows``."""
    older = (train["cutoff"] < train["cutoff"].max()).to_numpy()
    if not older.any():  # a single cutoff leaves no later slice to calibrate on
        raise ValueError("training needs at least two training cutoffs")
    return take(train, older, max_rows), take(train, ~older, max_rows)


def selection_split(
    train: pd.DataFrame, horizon_days: int, max_rows: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Examples to fit candidate settings on, and the newest cutoff's examples to judge them
    (each at most ``max_rows``).

    Fitted cutoffs are those whose label window ends by the newest cutoff: neighbouring
    cutoffs' windows overlap (a purchase in the overlap labels both), and a judge that shares
    label days with the fit favours models that memorise customers. Empty fit examples mean
    the cutoffs are too close together for an honest choice.
    """
    newest = train["cutoff"].max()
    fit = train["cutoff"] + pd.Timedelta(days=horizon_days) <= newest
    return take(train, fit, max_rows), take(train, train["cutoff"] == newest, max_rows)
