"""Small vectorized helpers shared by the world generator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_HEX = np.array([f"{i:02x}" for i in range(256)], dtype="S2")


def ids(prefix: str, numbers: np.ndarray, width: int) -> pd.Series:
    """Identifiers like ``C0000042``: ``prefix`` then ``numbers`` zero-padded to ``width``."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0")
    joined = pc.binary_join_element_wise(prefix, digits, "")
    return pd.Series(pd.array(joined, dtype="str"))


def random_hex(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    """``n`` random lowercase hex strings of ``2 * nbytes`` characters (e.g. a SHA-256's 32)."""
    raw = rng.integers(0, 256, size=(n, nbytes), dtype=np.uint8)
    return _HEX[raw].view(f"S{2 * nbytes}").ravel().astype(f"U{2 * nbytes}")


def timestamps(start: pd.Timestamp, days: np.ndarray) -> pd.Series:
    """UTC timestamps ``days`` (fractional) after ``start``, to the second."""
    seconds = np.floor(np.asarray(days, dtype="float64") * 86_400).astype("int64")
    return pd.Series(start + pd.to_timedelta(seconds, unit="s")).dt.as_unit("us")


def uniform_in_segments(
    rng: np.random.Generator,
    owner: np.ndarray,
    start1: np.ndarray,
    end1: np.ndarray,
    start2: np.ndarray,
    end2: np.ndarray,
) -> np.ndarray:
    """One uniform time per ``owner`` entry within that owner's two segments.

    Segments are given per owner (``start1[owner]`` ...); an empty segment has end <= start.
    """
    len1 = np.maximum(end1 - start1, 0)[owner]
    len2 = np.maximum(end2 - start2, 0)[owner]
    u = rng.random(owner.size) * (len1 + len2)
    return np.where(u < len1, start1[owner] + u, start2[owner] + (u - len1))


def choose(
    rng: np.random.Generator, options: np.ndarray, weights: np.ndarray, n: int
) -> np.ndarray:
    """``n`` draws from ``options`` with probabilities proportional to ``weights``."""
    p = np.asarray(weights, dtype="float64")
    return options[rng.choice(options.size, size=n, p=p / p.sum())]


def take_text(vocabulary: np.ndarray | list[str], codes: np.ndarray) -> pd.Series:
    """Strings ``vocabulary[codes]`` as a pandas ``str`` Series; a negative code gives null.

    Built in Arrow, so no Python string objects are created per row.
    """
    table = pa.array(np.asarray(vocabulary), type=pa.string())
    codes = np.asarray(codes, dtype="int64")
    taken = table.take(pa.array(np.maximum(codes, 0), mask=codes < 0))
    return pd.Series(pd.array(taken, dtype="str"))
