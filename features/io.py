"""Writing and reading feature snapshots: ``customers.parquet``, ``pairs.parquet``,
``manifest.json``, written atomically (a killed run leaves nothing behind). A build in
partitions writes ``customers/`` and ``pairs/`` folders of part files instead, one part per
partition; reading gives the rows of one build in its order."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
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


def write_parts(
    parts: Iterable[FeatureTables],
    config: FeatureConfig,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
) -> dict:
    """Write a snapshot built in partitions (:func:`features.partitions.build_partitions`):
    each partition as it comes, as ``customers/part-K.parquet`` and ``pairs/part-K.parquet``,
    then the manifest; atomically, as :func:`write_snapshot`.

    Returns
    -------
    dict
        The manifest, with ``partitions``, the number of parts.
    """
    rows, first = {"customers": 0, "pairs": 0}, None
    with atomic_folder(out, overwrite=overwrite) as tmp:
        for k, part in enumerate(parts):
            first = first or part
            for name in rows:
                frame = getattr(part, name)
                if list(frame.columns) != list(getattr(first, name).columns):
                    raise RuntimeError(f"partition {k}: {name} columns differ from partition 0")
                (tmp / name).mkdir(exist_ok=True)
                write_table(frame, tmp / name / f"part-{k:05d}.parquet")
                rows[name] += len(frame)
        if first is None:
            raise ValueError("no partitions to write")
        return write_manifest(tmp, first, config, data, rows=rows, partitions=k + 1)


def write_manifest(
    folder: Path,
    shape: FeatureTables,
    config: FeatureConfig,
    data: str | os.PathLike,
    *,
    rows: dict[str, int],
    **more,
) -> dict:
    """Write ``folder/manifest.json`` for tables written in parts: ``shape`` gives the
    as-of, population and columns (its frames may be empty), ``rows`` the rows written,
    ``more`` what else the writer records (``partitions``, ``engine``)."""
    inputs, _ = locate_tables(Path(data))
    meta = manifest(shape, config, inputs) | {"rows": rows, **more}
    (folder / "manifest.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


#: How one build orders each table's rows (a snapshot in parts is read back in this order).
ORDER = {"customers": ["customer_id"], "pairs": ["customer_id", "product_id"]}


def restore_dtypes(frame: pd.DataFrame, dtypes: list[list[str]]) -> pd.DataFrame:
    """A table read from parts (Spark keeps no pandas types) in the build's column order
    and pandas types, as the manifest's ``dtypes`` lists them."""
    frame = frame[[c for c, _ in dtypes]] if dtypes else frame
    changed = {c: t for c, t in dtypes if str(frame[c].dtype) != t}
    return frame.astype(changed) if changed else frame


def _read_table(folder: Path, name: str, dtypes: list[list[str]]) -> pd.DataFrame:
    if not (folder / name).is_dir():
        return pd.read_parquet(folder / f"{name}.parquet")
    frame = restore_dtypes(pd.read_parquet(folder / name), dtypes)
    return frame.sort_values(ORDER[name], kind="stable", ignore_index=True)


def read_snapshot(folder: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Read a feature snapshot.

    Parameters
    ----------
    folder : str or os.PathLike
        A folder written by :func:`write_snapshot` or :func:`write_parts`.

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
    customers, pairs = (
        _read_table(folder, name, meta.get("dtypes", {}).get(name, []))
        for name in ("customers", "pairs")
    )
    return customers, pairs, meta
