"""Reading and writing contract folders: one Parquet or CSV file per table, or a folder of
Parquet part files per table (what Spark and CDP exports write; Hive-style ``key=value``
sub-folders allowed).

Reading never coerces silently: a value that does not parse as its contract type is
reported as a :class:`~cdp.errors.Violation`, never turned into a null. Writing is
atomic: files go to a temporary folder that is renamed into place once complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from cdp.contract import TABLES, ColumnSpec, dtype_of, empty_table
from cdp.errors import BadInputError, Violation

Format = Literal["parquet", "csv"]

_TRUE = {"true", "1", "t", "yes"}
_FALSE = {"false", "0", "f", "no"}
_EXAMPLES = 5


def _examples(values: pd.Series) -> tuple[str, ...]:
    return tuple(repr(v) for v in pd.unique(values.to_numpy())[:_EXAMPLES])


def hidden(path: Path, below: Path) -> bool:
    """Whether ``path`` is hidden (``.``) or bookkeeping (``_``) below the folder ``below``."""
    return any(part.startswith((".", "_")) for part in path.relative_to(below).parts)


def part_files(table: Path) -> list[Path]:
    """The Parquet part files of a table folder, in path order: any depth (Hive-style
    ``key=value`` folders), skipping hidden (``.``) and bookkeeping (``_``) names such as
    Spark's ``_SUCCESS``, ``_temporary/`` and ``.crc`` files, as Spark and pyarrow do."""
    return sorted(p for p in table.rglob("*.parquet") if not hidden(p, table))


def is_parquet(path: Path) -> bool:
    """Whether a located table is Parquet: a ``.parquet`` file or a folder of part files."""
    return path.is_dir() or path.suffix == ".parquet"


def scan_raw(path: Path):
    """A located Parquet table as a Polars lazy frame, untyped: a file, or a folder's parts
    with Hive keys as columns."""
    import polars as pl

    if path.is_dir():
        return pl.scan_parquet(part_files(path), hive_partitioning=True)
    return pl.scan_parquet(path)


def _read_raw(path: Path) -> pd.DataFrame:
    if path.is_dir():  # pyarrow reads the parts as one table, Hive keys as columns
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        # Every column as text: ids keep their leading zeros, types are checked below.
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    return pd.read_parquet(path)


def _is_text(series: pd.Series) -> bool:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return pd.api.types.infer_dtype(series.cat.categories, skipna=True) in ("string", "empty")
    if pd.api.types.is_string_dtype(series.dtype) and series.dtype != object:
        return True
    return series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in (
        "string",
        "empty",
    )


def _parse_failure(
    table: str, spec: ColumnSpec, raw: pd.Series, parsed: pd.Series, what: str
) -> Violation | None:
    bad = raw.notna() & parsed.isna()
    if not bad.any():
        return None
    return Violation(table, spec.name, f"not {what}", int(bad.sum()), _examples(raw[bad]))


def _type_column(
    table: str, spec: ColumnSpec, raw: pd.Series
) -> tuple[pd.Series | None, Violation | None]:
    """Convert ``raw`` to the contract type of ``spec``; ``None`` and a violation if it can't."""
    wrong_type = Violation(
        table, spec.name, f"expected {spec.kind}, found dtype {raw.dtype}", int(raw.notna().sum())
    )
    text = _is_text(raw)
    if spec.kind == "string":
        return (raw.astype("str"), None) if text or raw.isna().all() else (None, wrong_type)

    if spec.kind == "timestamp":
        if pd.api.types.is_datetime64_any_dtype(raw.dtype):
            ts = raw.dt.tz_localize("UTC") if raw.dt.tz is None else raw.dt.tz_convert("UTC")
            return ts.dt.as_unit("us"), None
        if not text and not raw.isna().all():
            return None, wrong_type
        ts = pd.to_datetime(raw, format="ISO8601", utc=True, errors="coerce").dt.as_unit("us")
        return ts, _parse_failure(table, spec, raw, ts, "an ISO-8601 timestamp")

    if spec.kind == "bool":
        if pd.api.types.is_bool_dtype(raw.dtype):
            return raw.astype(dtype_of(spec) if raw.isna().any() else "bool"), None
        if not text and not raw.isna().all():
            return None, wrong_type
        lowered = raw.astype("str").str.strip().str.lower()
        parsed = pd.Series(pd.NA, index=raw.index, dtype="boolean")
        parsed[lowered.isin(_TRUE)] = True
        parsed[lowered.isin(_FALSE)] = False
        return parsed, _parse_failure(table, spec, raw, parsed, "a boolean (true/false)")

    # Numbers.
    if pd.api.types.is_bool_dtype(raw.dtype):
        return None, wrong_type
    if text or raw.isna().all():
        parsed = pd.to_numeric(raw, errors="coerce").astype("float64")
    elif pd.api.types.is_numeric_dtype(raw.dtype):
        if spec.kind == "int" and not pd.api.types.is_integer_dtype(raw.dtype):
            return None, wrong_type
        parsed = raw.astype("float64")
    else:
        return None, wrong_type
    parsed = parsed.where(np.isfinite(parsed))
    if spec.kind == "float":
        return parsed, _parse_failure(table, spec, raw, parsed, "a finite number")
    integral = parsed.where(parsed == np.round(parsed))
    return integral.astype("Int64"), _parse_failure(table, spec, raw, integral, "an integer")


def _finish_dtypes(frame: pd.DataFrame, table: str, broken: set[str]) -> pd.DataFrame:
    """Fill documented defaults and move masked dtypes to plain ones where no nulls remain."""
    out = {}
    for spec in TABLES[table].columns:
        if spec.name in broken:
            continue
        col = frame[spec.name]
        if spec.default is not None:
            col = col.fillna(spec.default)
        target = dtype_of(spec)
        if not col.isna().any() or target in ("str", "float64", "datetime64[us, UTC]"):
            col = col.astype(target)
        out[spec.name] = col
    return frame.assign(**out)


def locate_tables(folder: Path) -> tuple[dict[str, Path], list[Violation]]:
    """Find each contract table in ``folder``: ``NAME.parquet``, ``NAME.csv`` or a folder
    ``NAME/`` of Parquet part files; report missing, empty or ambiguous ones."""
    found: dict[str, Path] = {}
    violations: list[Violation] = []
    for name, spec in TABLES.items():
        files = [folder / f"{name}.{ext}" for ext in ("parquet", "csv")]
        present = [p for p in files if p.is_file()]
        if (folder / name).is_dir():
            present.append(folder / name)
        if len(present) > 1:
            kinds = " and ".join(p.name + ("/" if p.is_dir() else "") for p in present)
            violations.append(Violation(name, None, f"both {kinds}; keep exactly one"))
        elif present and present[0].is_dir() and not part_files(present[0]):
            violations.append(Violation(name, None, f"folder {name}/ has no .parquet part files"))
        elif present:
            found[name] = present[0]
        elif spec.required:
            violations.append(
                Violation(
                    name,
                    None,
                    f"required table missing: expected {name}.parquet, {name}.csv or a folder"
                    f" {name}/ of Parquet part files",
                )
            )
    return found, violations


def type_table(name: str, raw: pd.DataFrame) -> tuple[pd.DataFrame, list[Violation], set[str]]:
    """Type the raw rows of table ``name`` as the contract says: the typed frame (absent
    optional columns added with their defaults, extra columns carried along), the
    violations found, and the columns that could not be typed."""
    spec, violations, broken = TABLES[name], [], set()
    if raw.columns.duplicated().any():
        dupes = sorted(set(raw.columns[raw.columns.duplicated()]))
        violations.append(Violation(name, None, f"duplicate column names {dupes}"))
        raw = raw.loc[:, ~raw.columns.duplicated()]
    typed = {}
    for col in spec.columns:
        if col.name not in raw.columns:
            if col.required:
                violations.append(Violation(name, col.name, "required column missing"))
                broken.add(col.name)
            else:
                typed[col.name] = pd.Series(col.default, index=raw.index, dtype=dtype_of(col))
            continue
        series, problem = _type_column(name, col, raw[col.name])
        if problem is not None:
            violations.append(problem)
            broken.add(col.name)
        if series is not None:
            typed[col.name] = series
    extra = [c for c in raw.columns if c not in spec.column_names]
    frame = pd.DataFrame(typed, index=raw.index).join(raw[extra])
    return _finish_dtypes(frame, name, broken), violations, broken


def read_tables(
    folder: str | os.PathLike, only: tuple[str, ...] | None = None
) -> tuple[dict[str, pd.DataFrame], list[Violation], dict[str, set[str]]]:
    """Read and type every table of a contract folder (or ``only`` those named).

    Returns the typed frames (absent optional tables as empty frames; without the rows of
    customers on the suppression list, see :mod:`cdp.privacy`), the violations
    found while reading and typing, and per table the columns that could not be typed
    (the validator skips their value checks).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(f"{folder}: not a folder (expected a contract folder of table files)")
    files, violations = locate_tables(folder)
    frames: dict[str, pd.DataFrame] = {}
    broken: dict[str, set[str]] = {}
    for name in TABLES:
        broken[name] = set()
        if name not in files or (only is not None and name not in only):
            frames[name] = empty_table(name)
            continue
        try:
            raw = _read_raw(files[name])
        except Exception as exc:
            violations.append(Violation(name, None, f"cannot read {files[name].name}: {exc}"))
            frames[name] = empty_table(name)
            continue
        frames[name], found, broken[name] = type_table(name, raw)
        violations += found
    from cdp.privacy import drop_suppressed

    return drop_suppressed(frames), violations, broken


def _remove_stale_temporaries(out: Path) -> None:
    """Remove temporary folders left next to ``out`` by writers that were killed."""
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        try:
            pid = int(stale.name.rsplit(".tmp-", 1)[1].split("-", 1)[0])
            os.kill(pid, 0)  # still running: not stale
        except (ValueError, ProcessLookupError):
            shutil.rmtree(stale, ignore_errors=True)
        except PermissionError:
            pass


@contextlib.contextmanager
def atomic_folder(out: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``out`` only if the block completes.

    On an error the temporary folder is removed and ``out`` is left as it was; a writer
    killed outright leaves only its temporary folder (``.NAME.tmp-PID-*``), which the next
    writer of ``out`` removes.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise BadInputError(f"{out}: folder is not empty (pass --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write one table as Parquet or CSV (chosen by the suffix), via a temporary file."""
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".csv":
        frame.to_csv(tmp, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def write_tables(tables: dict[str, pd.DataFrame], folder: Path, fmt: Format = "parquet") -> None:
    """Write each frame of ``tables`` as ``folder/NAME.<fmt>``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        write_table(frame, folder / f"{name}.{fmt}")
