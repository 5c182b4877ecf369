"""Checking a contract dataset: every violation at once, with table, column, count, examples.

Types are checked while reading (:mod:`cdp.io`); the value rules, keys and foreign
keys are pandera schemas built here, validated lazily so that all failures are collected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from cdp.contract import TABLES, ContractTables
from cdp.errors import ContractError, Violation
from cdp.io import read_tables

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


def _fk(frames: dict[str, pd.DataFrame], table: str, column: str) -> list[pa.Check]:
    """A foreign-key check against ``table.column``; none when that column is unusable."""
    if column not in frames[table].columns:
        return []
    allowed = frozenset(frames[table][column].dropna().unique())
    return [pa.Check(lambda s: s.isin(allowed), error=f"not found in {table}.{column}")]


def _schemas(
    frames: dict[str, pd.DataFrame], broken: dict[str, set[str]]
) -> dict[str, pa.DataFrameSchema]:
    """One pandera schema per table; columns that could not be typed are left out."""
    identity_key = not {"id_type", "id_value"} & broken["identities"]
    who = not {"customer_id", "anonymous_id"} & broken["events"]
    customers = _fk(frames, "customers", "customer_id")
    products = _fk(frames, "products", "product_id")
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
    frames: dict[str, pd.DataFrame], skip: dict[str, set[str]] | None = None
) -> list[Violation]:
    """Check value rules, keys and foreign keys of typed frames; ``skip`` untypable columns."""
    broken = {table: set((skip or {}).get(table, ())) for table in TABLES}
    violations: list[Violation] = []
    for table, schema in _schemas(frames, broken).items():
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
