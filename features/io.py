"""Writing and reading feature snapshots: ``customers.parquet``, ``pairs.parquet``,
``manifest.json``, written atomically (a killed run leaves nothing behind)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from cdp.errors import BadInputError
from cdp.io import atomic_folder, locate_tables, write_table
from features.build import FeatureTables
from features.config import FeatureConfig
from features.manifest import manifest


def write_snapshot(
    features: FeatureTables,
    config: FeatureConfig,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
) -> dict:
    """Write a feature snapshot (what ``nextbest features`` writes), atomically.

    Parameters
    ----------
    features : FeatureTables
        The built tables.
    config : FeatureConfig
        The settings they were built with (kept in the manifest).
    data : str or os.PathLike
        The contract folder they were built from (its files' digests are kept).
    out : str or os.PathLike
        The snapshot folder: ``customers.parquet``, ``pairs.parquet``, ``manifest.json``.
    overwrite : bool, default False
        Replace a non-empty ``out``.

    Returns
    -------
    dict
        The manifest: as-of, settings, columns, row counts, input digests.
    """
    inputs, _ = locate_tables(Path(data))
    meta = manifest(features, config, inputs)
    with atomic_folder(out, overwrite=overwrite) as tmp:
        write_table(features.customers, tmp / "customers.parquet")
        write_table(features.pairs, tmp / "pairs.parquet")
        (tmp / "manifest.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def read_snapshot(folder: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Read a feature snapshot.

    Parameters
    ----------
    folder : str or os.PathLike
        A folder written by :func:`write_snapshot`.

    Returns
    -------
    tuple of (pandas.DataFrame, pandas.DataFrame, dict)
        The customer table, the pair table and the manifest.

    Raises
    ------
    BadInputError
        When ``folder`` has no ``manifest.json``.
    """
    folder = Path(folder)
    if not (folder / "manifest.json").is_file():
        raise BadInputError(f"{folder}: not a feature snapshot (no manifest.json)")
    meta = json.loads((folder / "manifest.json").read_text())
    customers = pd.read_parquet(folder / "customers.parquet")
    pairs = pd.read_parquet(folder / "pairs.parquet")
    return customers, pairs, meta
