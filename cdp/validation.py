"""Checking a contract dataset: every violation at once, with table, column, count, examples.

Types are checked while reading (:mod:`cdp.io`); the value rules, keys and foreign
keys are pandera schemas built here, validated lazily so that all failures are collected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute
from pandera.errors import SchemaErrors

from cdp.contract import TABLES, ContractTables
from cdp.errors import BadInputError, ContractError, Violation
from cdp.io import is_parquet, locate_tables, read_tables, scan_raw, type_table
from cdp.privacy import drop_suppressed

_LOWER_WORD = r"^[a-z][a-z0-9_]*$"
_BCP47 = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"
_ISO_COUNTRY = r"^[A-Z]{2}$"
_EXAMPLES = 5
_NO_ONE = "neither customer_id nor anonymous_id is set"
#: Columns that checks on the whole frame are about (pandera reports every column), and
#: the columns whose values make a useful example of a failing row.
_FRAME_CHECK_COLUMNS = {_NO_ONE: ["customer_id", "anonymous_id"]}
_FRAME_CHECK_EXAMPLES = {
    _NO_ONE: ["event_id"],
    "multiple_fields_uniqueness": ["id_type", "id_value", "customer_id"],
}


#: The columns foreign keys point at.
KEYS = (("customers", "customer_id"), ("products", "product_id"))


def _keys(frames: dict[str, pd.DataFrame]) -> dict[str, pyarrow.Array | None]:
    """The values of each referenced key column (None when that column is unusable)."""
    return {
        table: pyarrow.array(frames[table][column].dropna().unique(), type=pyarrow.string())
        if column in frames[table].columns
        else None
        for table, column in KEYS
    }


def _isin(values: pd.Series, allowed: pyarrow.Array) -> pd.Series:
    """Which ``values`` are among ``allowed``: one hash lookup each, in Arrow (pandas'
    ``isin`` on Arrow strings rebuilds the value set in Python on every call)."""
    found = pyarrow.compute.is_in(pyarrow.array(values, type=pyarrow.string()), value_set=allowed)
    return pd.Series(found.to_numpy(zero_copy_only=False), index=values.index, dtype=bool)


def _fk(keys: dict[str, pyarrow.Array | None], table: str, column: str) -> list[pa.Check]:
    """A foreign-key check against ``table.column``; none when that column is unusable."""
    allowed = keys[table]
    if allowed is None:
        return []
    return [pa.Check(lambda s: _isin(s, allowed), error=f"not found in {table}.{column}")]


def _schemas(
    keys: dict[str, pyarrow.Array | None], broken: dict[str, set[str]]
) -> dict[str, pa.DataFrameSchema]:
    """One pandera schema per table; columns that could not be typed are left out."""
    identity_key = not {"id_type", "id_value"} & broken["identities"]
    who = not {"customer_id", "anonymous_id"} & broken["events"]
    customers = _fk(keys, "customers", "customer_id")
    products = _fk(keys, "products", "product_id")
    lower_word = pa.Check.str_matches(_LOWER_WORD, error="not a lowercase word")
    col = pa.Column

    schemas = {
        "customers": pa.DataFrameSchema(
            {
                "customer_id": col(None, unique=True, report_duplicates="all"),
                "created_at": col(None),
                "country": col(
                    None,
                    pa.Check.str_matches(_ISO_COUNTRY, error="not an ISO 3166 alpha-2 code"),
                    nullable=True,
                ),
                "locale": col(
                    None, pa.Check.str_matches(_BCP47, error="not a BCP 47 tag"), nullable=True
                ),
            }
        ),
        "identities": pa.DataFrameSchema(
            {
                "customer_id": col(None, customers),
                "id_type": col(None, lower_word),
                "id_value": col(None),
            },
            unique=["id_type", "id_value"] if identity_key else None,
        ),
        "consents": pa.DataFrameSchema(
            {
                "customer_id": col(None, customers),
                "purpose": col(None, lower_word),
                "granted": col(None),
                "recorded_at": col(None),
                "source": col(None, nullable=True),
            }
        ),
        "products": pa.DataFrameSchema(
            {
                "product_id": col(None, unique=True),
                "name": col(None),
                "category": col(None),
                "consumable": col(None),
                "price": col(None, pa.Check.ge(0, error="negative price (must be >= 0)")),
                "pack_size": col(None, pa.Check.ge(1, error="pack_size below 1"), nullable=True),
                "related_product_id": col(None, products, nullable=True),
                "variant_of": col(None, products, nullable=True),
                "name_zh_tw": col(None, nullable=True),
                "name_zh_cn": col(None, nullable=True),
                "department": col(None, nullable=True),
                "need": col(None, nullable=True),
                "brand": col(None, nullable=True),
            }
        ),
        "orders": pa.DataFrameSchema(
            {
                "order_id": col(None),
                "customer_id": col(None, customers),
                "ordered_at": col(None),
                "product_id": col(None, products),
                "quantity": col(None, pa.Check.ne(0, error="quantity is 0 (must be != 0)")),
                "amount": col(None),
            }
        ),
        "events": pa.DataFrameSchema(
            {
                "event_id": col(None, unique=True),
                "customer_id": col(None, customers, nullable=True),
                "anonymous_id": col(None, nullable=True),
                "occurred_at": col(None),
                "source": col(None, lower_word),
                "event_type": col(None, lower_word),
                "product_id": col(None, products, nullable=True),
                "sentiment": col(
                    None,
                    pa.Check.in_range(-1, 1, error="sentiment outside [-1, 1]"),
                    nullable=True,
                ),
            },
            checks=[
                pa.Check(
                    lambda df: df["customer_id"].notna() | df["anonymous_id"].notna(),
                    ignore_na=False,
                    error=_NO_ONE,
                )
            ]
            if who
            else [],
        ),
    }
    return {
        table: schema.remove_columns([c for c in broken[table] if c in schema.columns])
        for table, schema in schemas.items()
    }


_CHECK_MESSAGES = {
    "not_nullable": "missing values in a required column",
    "field_uniqueness": "duplicate values in a unique key",
    "multiple_fields_uniqueness": (
        "(id_type, id_value) appears more than once: one identity must belong to one customer"
    ),
}


def _examples(values: pd.Series) -> tuple[str, ...]:
    return tuple(repr(v) for v in pd.unique(values.dropna().astype(str).to_numpy())[:_EXAMPLES])


def _violations_from(table: str, frame: pd.DataFrame, cases: pd.DataFrame) -> list[Violation]:
    """Turn pandera's failure cases into one violation per (column, check)."""
    cases = cases.assign(check=cases["check"].astype(str))
    out = []
    by_column = cases[cases["schema_context"] == "Column"]
    for (column, check), group in by_column.groupby(["column", "check"], sort=True):
        rows = group["index"].nunique() if group["index"].notna().any() else len(group)
        problem = _CHECK_MESSAGES.get(check, check)
        out.append(Violation(table, column, problem, int(rows), _examples(group["failure_case"])))
    # Checks on several columns at once: name all the columns, show whole rows as examples.
    by_frame = cases[cases["schema_context"] != "Column"]
    for check, group in by_frame.groupby("check", sort=True):
        columns = _FRAME_CHECK_COLUMNS.get(check) or sorted(group["column"].dropna().unique())
        index = pd.unique(group["index"].dropna().to_numpy())
        shown = _FRAME_CHECK_EXAMPLES.get(check, columns)
        rows = frame.loc[frame.index.isin(index), shown].head(_EXAMPLES)
        examples = tuple(repr(tuple(r)) for r in rows.itertuples(index=False))
        problem = _CHECK_MESSAGES.get(check, check)
        out.append(Violation(table, "/".join(columns), problem, len(index), examples))
    return out


def check_tables(
    frames: dict[str, pd.DataFrame],
    skip: dict[str, set[str]] | None = None,
    *,
    only: tuple[str, ...] | None = None,
    keys: dict[str, pyarrow.Array | None] | None = None,
) -> list[Violation]:
    """Check value rules, keys and foreign keys of typed frames; ``skip`` untypable columns.
    ``only`` checks those tables; ``keys`` are the referenced keys' values when computed
    before (:func:`validate_in_partitions` checks many chunks against the same keys)."""
    broken = {table: set((skip or {}).get(table, ())) for table in TABLES}
    violations: list[Violation] = []
    for table, schema in _schemas(keys or _keys(frames), broken).items():
        if only is not None and table not in only:
            continue
        try:
            schema.validate(frames[table], lazy=True)
        except SchemaErrors as err:
            violations.extend(_violations_from(table, frames[table], err.failure_cases))
    return violations


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating a contract folder."""

    folder: str
    rows: dict[str, int]
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        """Whether no rule is broken."""
        return not self.violations

    def summary_line(self) -> str:
        """One line for a valid folder: its tables' row counts."""
        counts = ", ".join(f"{n:,} {t}" for t, n in self.rows.items())
        return f"{self.folder}: valid ({counts})"


def validate_folder(folder: str | os.PathLike) -> tuple[dict[str, pd.DataFrame], ValidationReport]:
    """Read, type and check a contract folder; return the frames and every violation found."""
    frames, violations, broken = read_tables(folder)
    violations = violations + check_tables(frames, broken)
    rows = {name: len(frame) for name, frame in frames.items()}
    return frames, ValidationReport(str(folder), rows, violations)


SEED = 7  # of the partition hash (any fixed value)
#: At most about this many rows of a table are typed and checked at once.
CHUNK_ROWS = 2_000_000
#: The tables read in partitions by :func:`validate_in_partitions`, and the columns whose
#: hash picks a row's partition (so that a duplicate key lands in one partition).
PARTITIONED = {
    "orders": ("customer_id",),
    "identities": ("id_type", "id_value"),
    "consents": ("customer_id",),
    "events": ("event_id",),
}


def _chunk(path: Path, table: str, k: int, partitions: int) -> pd.DataFrame:
    """The raw rows of partition ``k`` of a Parquet table: rows whose key hashes to ``k``
    (by row number when a key column is absent: its absence is reported anyway)."""
    import polars as pl

    frame = scan_raw(path)
    key = PARTITIONED[table]
    if set(key) <= set(frame.collect_schema().names()):
        text = pl.concat_str([pl.col(c).cast(pl.String) for c in key], separator="\x00")
        return frame.filter(text.hash(SEED) % partitions == k).collect().to_pandas()
    numbered = frame.with_row_index("_row").filter(pl.col("_row") % partitions == k)
    return numbered.drop("_row").collect().to_pandas()


def _rows(path: Path) -> int:
    """A Parquet table's row count, from its footers (0 when they do not read: the chunk
    read reports why)."""
    import polars as pl

    try:
        return scan_raw(path).select(pl.len()).collect().item()
    except Exception:
        return 0


def _merged(violations: list[Violation]) -> list[Violation]:
    """One violation per (table, column, problem): rows added up, the first examples kept."""
    out: dict[tuple, Violation] = {}
    for v in violations:
        key = (v.table, v.column, v.problem)
        if key not in out:
            out[key] = v
            continue
        seen = out[key]
        examples = tuple(dict.fromkeys(seen.examples + v.examples))[:_EXAMPLES]
        out[key] = replace(seen, rows=seen.rows + v.rows, examples=examples)
    return list(out.values())


def validate_in_partitions(folder: str | os.PathLike, partitions: int) -> ValidationReport:
    """:func:`validate_folder` with memory bounded by one partition of each large table.

    ``customers`` and ``products`` are read whole (foreign keys point at them). Each Parquet
    table of :data:`PARTITIONED` is read in ``partitions`` parts (more for a table of more
    than ``partitions`` x :data:`CHUNK_ROWS` rows) by the hash of its key,
    typed and checked against those keys; a table's duplicate keys share a part, so unique
    keys are checked across the whole table. A CSV table is read whole. Violations found
    in several parts are reported once, their rows added up.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(f"{folder}: not a folder (expected a contract folder of table files)")
    if partitions < 1:
        raise BadInputError(f"partitions must be at least 1, not {partitions}")
    files, _ = locate_tables(folder)
    small, violations, broken = read_tables(folder, only=("customers", "products"))
    violations += check_tables(small, broken, only=("customers", "products"))
    keys = _keys(small)
    rows = {name: len(small[name]) for name in ("customers", "products")}
    for table in PARTITIONED:
        rows[table] = 0
        path = files.get(table)
        if path is not None and not is_parquet(path):  # CSV: whole
            frames, found, bad = read_tables(folder, only=(table,))
            violations += found + check_tables(frames, bad, only=(table,), keys=keys)
            rows[table] = len(frames[table])
            continue
        chunks = 0 if path is None else max(partitions, -(-_rows(path) // CHUNK_ROWS))
        for k in range(chunks):
            try:
                raw = _chunk(path, table, k, chunks)
            except Exception as exc:  # the file does not read: say so, as the loader does
                violations.append(Violation(table, None, f"cannot read {path.name}: {exc}"))
                break
            typed, found, bad = type_table(table, raw)
            typed = drop_suppressed({table: typed})[table]
            chunk = dict(small) | {table: typed}
            violations += found + check_tables(chunk, {table: bad}, only=(table,), keys=keys)
            rows[table] += len(typed)
    rows = {name: rows[name] for name in TABLES}
    return ValidationReport(str(folder), rows, _merged(violations))


def check_in_partitions(folder: str | os.PathLike, partitions: int) -> None:
    """:func:`validate_in_partitions`, raising :class:`ContractError` with every violation
    (what :func:`load_contract` does, with memory bounded by a partition)."""
    report = validate_in_partitions(folder, partitions)
    if not report.ok:
        raise ContractError(report.violations, source=str(folder))


def load_contract(folder: str | os.PathLike) -> ContractTables:
    """Load a contract folder into typed frames.

    Parameters
    ----------
    folder : str or os.PathLike
        A folder of the contract's tables (Parquet or CSV).

    Returns
    -------
    ContractTables
        Every table, typed as the contract says.

    Raises
    ------
    ContractError
        Naming every broken rule (table, column, problem, rows, examples).
    """
    frames, report = validate_folder(folder)
    if not report.ok:
        raise ContractError(report.violations, source=str(folder))
    return ContractTables(**frames)
