"""Data-subject rights over files: find, export and erase one customer's rows in contract
folders and output folders (feature snapshots, score folders), and check that nothing is
left anywhere (including the MLflow store).

A table file is any ``.parquet`` or ``.csv`` below a folder (a part file of a partitioned
table too: each part is rewritten on its own); its rows about the customer
are those whose ``customer_id`` is theirs, or whose ``anonymous_id`` is one of their
identity values (anonymous events stitched to them). Files are rewritten through a
temporary file and a rename, so a crash leaves either the old or the new file.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from cdp.io import hidden

SUFFIXES = (".parquet", ".csv")


def table_files(folder: Path) -> list[Path]:
    """The table files (Parquet, CSV, JSON lines) under ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix in SUFFIXES and not hidden(p, folder))


def table_of(path: Path, folder: Path) -> str:
    """The table a file below ``folder`` holds: ``identities`` for ``identities.parquet``
    and for ``identities/country=TW/part-0.parquet``."""
    return Path(path.relative_to(folder).parts[0]).stem


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    return pd.read_parquet(path)


def _write(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if path.suffix == ".csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def _mask(frame: pd.DataFrame, customer_id: str, identity_values: set[str]) -> pd.Series:
    hit = pd.Series(False, index=frame.index)
    if "customer_id" in frame.columns:
        hit |= frame["customer_id"].astype("string").eq(customer_id).fillna(False)
    if "anonymous_id" in frame.columns and identity_values:
        hit |= frame["anonymous_id"].astype("string").isin(identity_values).fillna(False)
    return hit.astype(bool)


def identity_values(folder: Path, customer_id: str) -> set[str]:
    """The identity values of ``customer_id`` in a contract folder's identities table."""
    values: set[str] = set()
    for path in table_files(folder):
        if table_of(path, folder) == "identities":
            frame = _read(path)
            if {"customer_id", "id_value"} <= set(frame.columns):
                mine = frame["customer_id"].astype("string") == customer_id
                values |= set(frame.loc[mine.fillna(False), "id_value"].astype(str))
    return values


def rows_about(folder: Path, customer_id: str, values: set[str]) -> dict[str, list[dict]]:
    """Every row about the customer, by file path relative to ``folder``."""
    out = {}
    for path in table_files(folder):
        frame = _read(path)
        hit = _mask(frame, customer_id, values)
        if hit.any():
            out[str(path.relative_to(folder))] = frame[hit].to_dict(orient="records")
    return out


def erase_rows(folder: Path, customer_id: str, values: set[str]) -> dict[str, int]:
    """Remove every row about the customer from the table files below ``folder``; returns
    rows removed per file."""
    removed = {}
    for path in table_files(folder):
        frame = _read(path)
        hit = _mask(frame, customer_id, values)
        if hit.any():
            _write(frame[~hit.to_numpy()], path)
            removed[str(path.relative_to(folder))] = int(hit.sum())
    return removed


def traces(folders: list[Path], needles: set[str]) -> list[str]:
    """Files below ``folders`` that still contain one of ``needles``: table files by their
    values (compressed Parquet hides bytes), every other file by its bytes."""
    found = []
    encoded = [n.encode() for n in needles]
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if path.suffix in SUFFIXES and not path.name.startswith("."):
                frame = _read(path)
                text = frame.select_dtypes(exclude="number").astype(str)
                if any(
                    text.apply(lambda c, n=n: c.str.contains(n, regex=False)).any().any()
                    for n in needles
                ):
                    found.append(str(path))
                continue
            data = path.read_bytes()
            if any(n in data for n in encoded):
                found.append(str(path))
    return found
