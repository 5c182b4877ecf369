"""Population stability between a champion's training snapshot and now.

A *profile* keeps, for each feature, the bins of its distribution at the snapshot (decile
edges of a numeric feature, the categories of a categorical one, plus a bin for missing
values) and the share of customers in each bin. It is an aggregate: no row, no customer
id, no single value of anybody, so it can live in MLflow beside the model.

The population stability index (PSI) of a current sample against a profile is

    PSI = sum over bins of (a - e) * ln(a / e)

with ``e`` the profile's share and ``a`` the current share of a bin, both floored at
``EPS`` so an empty bin counts as rare rather than infinite. Common reading (Siddiqi,
*Credit Risk Scorecards*, 2006): below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25
a major shift. The thresholds are settings (:class:`DriftThresholds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

#: Floor of a bin share in the PSI, so that an empty bin gives a large, finite term.
EPS = 1e-4
#: Quantile bins of a numeric feature in a profile.
BINS = 10


@dataclass(frozen=True)
class DriftThresholds:
    """PSI at or above ``moderate`` is reported as a moderate shift, at or above ``major``
    as a major one. Drift is reported, never acted on: the champion gate decides."""

    moderate: float = 0.1
    major: float = 0.25

    def __post_init__(self) -> None:
        if not 0 <= self.moderate <= self.major:
            raise ValueError(
                f"drift thresholds: need 0 <= moderate <= major, got {self.moderate}, {self.major}"
            )

    def level(self, psi: float) -> str:
        """stable, moderate or major for a PSI value (unknown when it is not finite)."""
        if not np.isfinite(psi):
            return "unknown"
        return "major" if psi >= self.major else "moderate" if psi >= self.moderate else "stable"


def psi(expected: ArrayLike, actual: ArrayLike) -> float:
    """PSI between two vectors of bin shares (each summing to 1 over the same bins)."""
    e = np.maximum(np.asarray(expected, dtype=float), EPS)
    a = np.maximum(np.asarray(actual, dtype=float), EPS)
    if e.shape != a.shape:
        raise ValueError(f"psi: {e.size} expected bins against {a.size} actual bins")
    return float(np.sum((a - e) * np.log(a / e)))


def feature_profile(values: pd.Series, bins: int = BINS) -> dict:
    """The bins of ``values`` and the share of each: ``{"kind", "edges" | "categories",
    "shares"}``; the last share is that of missing values."""
    if not pd.api.types.is_numeric_dtype(values.dtype):  # categories, strings
        categories = sorted(str(c) for c in values.dropna().unique())
        profile = {"kind": "categorical", "categories": categories}
    else:
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        present = numbers[~np.isnan(numbers)]
        quantiles = np.linspace(0, 1, bins + 1)[1:-1]
        edges = np.unique(np.quantile(present, quantiles)) if present.size else np.array([])
        profile = {"kind": "numeric", "edges": [float(e) for e in edges]}
    profile["shares"] = [float(s) for s in bin_shares(profile, values)]
    return profile


def bin_shares(profile: dict, values: pd.Series) -> np.ndarray:
    """Shares of ``values`` in the bins of ``profile`` (missing and unseen categories last)."""
    n = max(len(values), 1)
    if profile["kind"] == "categorical":
        categories = profile["categories"]
        labels = values.astype("string").to_numpy(dtype=object, na_value=None)
        codes = pd.Index(categories, dtype=object).get_indexer(labels)  # -1: missing, unseen
        counts = np.bincount(
            np.where(codes < 0, len(categories), codes), minlength=len(categories) + 1
        )
        return counts / n
    numbers = values.to_numpy(dtype="float64", na_value=np.nan)
    missing = np.isnan(numbers)
    edges = np.asarray(profile["edges"], dtype=float)
    # bins (-inf, e1], (e1, e2], ..., (ek, inf), then missing
    index = np.searchsorted(edges, numbers[~missing], side="left")
    counts = np.bincount(index, minlength=edges.size + 1)
    return np.append(counts, missing.sum()) / n


def reference_profile(
    frame: pd.DataFrame, columns: list[str], scores: np.ndarray, as_of: datetime
) -> dict:
    """The profile of ``columns`` of ``frame`` and of the model's ``scores`` on it, at
    ``as_of``: what :func:`drift_report` later compares against."""
    return {
        "as_of": pd.Timestamp(as_of).isoformat(),
        "rows": len(frame),
        "features": {c: feature_profile(frame[c]) for c in columns},
        "score": feature_profile(pd.Series(np.asarray(scores, dtype=float))),
    }


def drift_report(
    reference: dict, frame: pd.DataFrame, scores: np.ndarray, thresholds: DriftThresholds
) -> pd.DataFrame:
    """PSI of each profiled feature of ``frame`` and of ``scores`` against ``reference``:
    one row per feature (``score`` last) with ``psi`` and ``level``, largest shift first."""
    rows = []
    for name, profile in reference["features"].items():
        if name not in frame.columns:
            rows.append({"feature": name, "psi": np.nan, "note": "missing now"})
            continue
        rows.append(
            {"feature": name, "psi": psi(profile["shares"], bin_shares(profile, frame[name]))}
        )
    features = pd.DataFrame(rows, columns=["feature", "psi", "note"]).sort_values(
        "psi", ascending=False, na_position="last"
    )
    score = reference["score"]
    score_row = pd.DataFrame(
        [
            {
                "feature": "score",
                "psi": psi(score["shares"], bin_shares(score, pd.Series(scores, dtype=float))),
                "note": "champion's churn probability",
            }
        ]
    )
    report = pd.concat([features, score_row], ignore_index=True)
    report["level"] = [thresholds.level(v) for v in report["psi"]]
    report["note"] = report["note"].fillna("")
    return report[["feature", "psi", "level", "note"]]
