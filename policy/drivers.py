"""Why the model says what it says about *this* customer: their own top drivers.

A win-back's reason is the customer's churn drivers, not a fixed ``CHURN_RISK``: the
features whose TreeSHAP contributions (through the calibration,
:meth:`training.classifier.CalibratedClassifier.contributions`) push this customer's churn
probability up the most. Each becomes a code, ``<feature>_high`` or ``<feature>_low`` (the
customer's value against the median of every customer scored with them; a category names its
value, ``segment_at_risk``), and the one-sentence reason names the strongest in the
customer's language (:func:`phrase`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from cdp.errors import BadInputError
from policy.catalog import LOCALES
from policy.loader import read_yaml

TOP = 2  # drivers kept per customer
DEFAULT = Path(__file__).with_name("drivers.yaml")
DIRECTIONS = ("high", "low")


def load_phrases(path: str | Path = DEFAULT) -> tuple[dict, dict[str, str]]:
    """Read and check the driver phrases (``policy/drivers.yaml``): ``({family: (pattern,
    {direction: {locale: phrase}})}, {locale: phrase for any other feature})``. Every problem
    is reported at once, naming the field."""
    path = Path(path)
    raw = read_yaml(path, "the driver phrases")
    if not isinstance(raw, dict) or not isinstance(raw.get("families"), dict):
        raise BadInputError(f"{path}: expected a mapping 'families'")
    problems, families = [], {}
    for name, spec in raw["families"].items():
        spec = spec if isinstance(spec, dict) else {}
        try:
            re.compile(spec.get("pattern") or "")
        except re.error as error:
            problems.append(f"families.{name}.pattern: not a regular expression ({error})")
        if not spec.get("pattern"):
            problems.append(f"families.{name}.pattern: missing")
        for direction in DIRECTIONS:
            missing = [loc for loc in LOCALES if not (spec.get(direction) or {}).get(loc)]
            if missing:
                problems.append(f"families.{name}.{direction}: missing locales {missing}")
        families[name] = (spec.get("pattern"), {d: spec.get(d) for d in DIRECTIONS})
    other = raw.get("other") if isinstance(raw.get("other"), dict) else {}
    missing = [loc for loc in LOCALES if not other.get(loc)]
    if missing:
        problems.append(f"other: missing locales {missing}")
    if problems:
        raise BadInputError(f"{path}: " + "; ".join(problems))
    return families, other


FAMILIES, OTHER = load_phrases()


def top_drivers(contributions: pd.DataFrame, values: pd.DataFrame, top: int = TOP) -> pd.Series:
    """Each row's ``top`` features that raise the score most, as codes.

    Parameters
    ----------
    contributions : pandas.DataFrame
        One column per feature (plus ``baseline``, ignored): each feature's contribution
        to each row's log-odds.
    values : pandas.DataFrame
        The same rows' feature values (numbers, or categories).
    top : int, default 2
        Drivers per row.

    Returns
    -------
    pandas.Series
        A tuple of codes per row (same index), strongest first; only features with a
        positive contribution, so a row the model finds unremarkable may have none.
    """
    features = [c for c in contributions.columns if c != "baseline"]
    push = contributions[features].to_numpy(dtype=float)
    order = np.argsort(-push, axis=1, kind="stable")[:, :top]
    words = np.empty((len(values), len(features)), dtype=object)
    for j, feature in enumerate(features):  # a loop over the model's features, not rows
        column = values[feature]
        if not pd.api.types.is_numeric_dtype(column.dtype):  # a category or text: its value
            words[:, j] = feature + "_" + column.astype(str).map(_slug).to_numpy()
        else:
            x = column.to_numpy(dtype=float, na_value=np.nan)
            median = np.nanmedian(x) if np.isfinite(x).any() else np.nan
            words[:, j] = np.where(x > median, feature + "_high", feature + "_low")
    rows = np.arange(len(values))[:, None]
    chosen = np.where(push[rows, order] > 0, words[rows, order], None)
    return pd.Series(
        [tuple(c for c in row if c is not None) for row in chosen.tolist()], index=values.index
    )


def phrase(code: str, locale: str) -> str:
    """The driver ``code`` in words, in ``locale`` (en, zh-TW or zh-CN)."""
    feature, _, direction = code.rpartition("_")
    for pattern, phrases in FAMILIES.values():
        if direction in phrases and re.search(pattern, feature):
            return phrases[direction].get(locale, phrases[direction]["en"])
    return OTHER.get(locale, OTHER["en"])


def _slug(value: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", value.lower()).strip("_")
