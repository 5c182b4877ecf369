"""Order-independent sums and means.

Floating-point addition is not associative, and a parallel group-by adds a group's rows in
whatever order its threads meet them: the last bits of a sum could differ between two runs
on the same data, and a value on a score edge could even change score. These aggregations
round each value to a fixed grid (``scale``), add exact 64-bit integers, and divide once,
so the result is the same whatever the row order. A scale of 1e6 keeps amounts to a
millionth of a currency unit; 1e3 keeps days to about a minute and a half.
"""

from __future__ import annotations

import polars as pl


def on_grid(expr: pl.Expr, scale: float = 1e6) -> pl.Expr:
    """``expr`` in whole units of ``1/scale`` (Int64): sums of these are exact."""
    return (expr * scale).round(0).cast(pl.Int64)


def exact_sum(expr: pl.Expr, scale: float = 1e6) -> pl.Expr:
    """Sum of ``expr`` on a ``1/scale`` grid (nulls ignored; 0 for none)."""
    return on_grid(expr, scale).sum() / scale


def exact_mean(expr: pl.Expr, scale: float = 1e6) -> pl.Expr:
    """Mean of the non-null values of ``expr`` on a ``1/scale`` grid; null for none."""
    return on_grid(expr, scale).sum() / scale / expr.count().replace(0, None)


def std_from_sums(count: str, total: str, squares: str) -> pl.Expr:
    """Sample standard deviation (ddof 1) from the columns holding a group's count, sum and
    sum of squares (exact integers); null below 2 values."""
    n = pl.col(count).cast(pl.Float64)
    s1, s2 = pl.col(total).cast(pl.Float64), pl.col(squares).cast(pl.Float64)
    return pl.when(n >= 2).then(((s2 - s1 * s1 / n) / (n - 1)).clip(0).sqrt())
