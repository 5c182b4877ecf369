"""RFM: recency, frequency, monetary value, tenure, scores 1-5 and named segments.

The measures themselves come from :func:`features.purchases.purchase_history`.

Scores cut each measure at the population's quintiles (:func:`rfm_edges`): recency (days
since the last purchase; more recent is better), frequency (purchase days) and monetary
total. The edges are a population parameter, like the lifetimes fits: computed once on all
customers and passed in, so that features computed per partition of customers agree with
features computed at once.

Segments follow the R x F grid (the usual RFM segment map):

==========  ============================================================
R \\ F        1                2          3          4          5
==========  ============================================================
5           New              Potential  Potential  Champions  Champions
4           Promising        Potential  Potential  Loyal      Loyal
3           About to sleep   About to   Need       Loyal      Loyal
                             sleep      attention
2           Hibernating      Hib.       At risk    At risk    Can't lose them
1           Lost             Hib.       At risk    At risk    Can't lose them
==========  ============================================================

(Potential = Potential loyalist, Hib. = Hibernating.) Customers without a purchase by
``as_of`` get the segment "No purchase yet" and no scores.
"""

from __future__ import annotations

import numpy as np
import polars as pl

SCORED = ("recency_days", "purchase_days", "monetary_total")
#: The columns :func:`rfm_scores` adds.
SCORES = ("r_score", "f_score", "m_score", "rfm_score", "segment")

_GRID = {
    5: ["New", "Potential loyalist", "Potential loyalist", "Champions", "Champions"],
    4: ["Promising", "Potential loyalist", "Potential loyalist", "Loyal", "Loyal"],
    3: ["About to sleep", "About to sleep", "Need attention", "Loyal", "Loyal"],
    2: ["Hibernating", "Hibernating", "At risk", "At risk", "Can't lose them"],
    1: ["Lost", "Hibernating", "At risk", "At risk", "Can't lose them"],
}
SEGMENTS = {10 * r + f + 1: name for r, row in _GRID.items() for f, name in enumerate(row)}
NO_PURCHASE = "No purchase yet"


def rfm_edges(summary: pl.DataFrame) -> dict[str, list[float]]:
    """Quintile cut points (20/40/60/80%) of each scored measure over customers who bought."""
    frame = summary.collect() if isinstance(summary, pl.LazyFrame) else summary
    return {
        name: [float(x) for x in np.quantile(frame[name].to_numpy(), [0.2, 0.4, 0.6, 0.8])]
        if frame.height
        else [0.0, 0.0, 0.0, 0.0]
        for name in SCORED
    }


def _above(column: str, edges: list[float]) -> pl.Expr:
    return pl.sum_horizontal([(pl.col(column) > edge).cast(pl.Int8) for edge in edges])


def rfm_scores(summary: pl.LazyFrame, edges: dict[str, list[float]]) -> pl.LazyFrame:
    """Add ``r_score``, ``f_score``, ``m_score`` (1-5, 5 best), ``rfm_score`` and ``segment``."""
    return summary.with_columns(
        r_score=(5 - _above("recency_days", edges["recency_days"])).cast(pl.Int8),
        f_score=(1 + _above("purchase_days", edges["purchase_days"])).cast(pl.Int8),
        m_score=(1 + _above("monetary_total", edges["monetary_total"])).cast(pl.Int8),
    ).with_columns(
        rfm_score=(
            pl.col("r_score").cast(pl.Int16) * 100 + pl.col("f_score") * 10 + pl.col("m_score")
        ).cast(pl.Int16),
        segment=(pl.col("r_score").cast(pl.Int16) * 10 + pl.col("f_score")).replace_strict(
            SEGMENTS, return_dtype=pl.String
        ),
    )
