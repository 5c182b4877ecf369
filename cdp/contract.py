"""The unified-profile data contract (v1): tables, columns, types and rules.

This module is the single written form of ``docs/data-contract.md``. The loader
(:mod:`cdp.io`) types columns by it and the validator
(:mod:`cdp.validation`) checks its rules. Change it only by adding optional columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

Kind = Literal["string", "timestamp", "bool", "float", "int"]

#: pandas dtype of each contract type once loaded. Timestamps are UTC, microseconds.
DTYPES: dict[Kind, str] = {
    "string": "str",
    "timestamp": "datetime64[us, UTC]",
    "bool": "bool",
    "float": "float64",
    "int": "int64",
}


@dataclass(frozen=True)
class ColumnSpec:
    """One contract column.

    ``required`` columns must be present in the file; optional ones are added by the
    loader (filled with ``default`` or left null) when absent. ``nullable`` says whether a
    present column may hold missing values.
    """

    name: str
    kind: Kind
    required: bool = True
    nullable: bool = False
    default: object = None


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[ColumnSpec, ...]
    required: bool = True
    key: tuple[str, ...] = ()
    doc: str = ""

    def column(self, name: str) -> ColumnSpec:
        """The spec of column ``name``."""
        return next(c for c in self.columns if c.name == name)

    @property
    def column_names(self) -> list[str]:
        """The columns in contract order."""
        return [c.name for c in self.columns]


def _opt(name: str, kind: Kind, default: object = None) -> ColumnSpec:
    return ColumnSpec(name, kind, required=False, nullable=True, default=default)


TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        TableSpec(
            "customers",
            (
                ColumnSpec("customer_id", "string"),
                ColumnSpec("created_at", "timestamp"),
                _opt("country", "string"),
                _opt("locale", "string", default="en"),
            ),
            key=("customer_id",),
            doc="One row per unified customer.",
        ),
        TableSpec(
            "identities",
            (
                ColumnSpec("customer_id", "string"),
                ColumnSpec("id_type", "string"),
                ColumnSpec("id_value", "string"),
            ),
            required=False,
            key=("id_type", "id_value"),
            doc="Identifiers stitched to a customer; one identity belongs to one customer.",
        ),
        TableSpec(
            "consents",
            (
                ColumnSpec("customer_id", "string"),
                ColumnSpec("purpose", "string"),
                ColumnSpec("granted", "bool"),
                ColumnSpec("recorded_at", "timestamp"),
                _opt("source", "string"),
            ),
            required=False,
            doc="Consent records; the latest per (customer, purpose) is in force.",
        ),
        TableSpec(
            "products",
            (
                ColumnSpec("product_id", "string"),
                ColumnSpec("name", "string"),
                ColumnSpec("category", "string"),
                ColumnSpec("consumable", "bool"),
                ColumnSpec("price", "float"),
                # Optional extensions (nextbest): units per pack, the durable a consumable
                # serves, the product this one is a pack of, and localized names for messages.
                _opt("pack_size", "int", default=1),
                _opt("related_product_id", "string"),
                _opt("variant_of", "string"),
                _opt("name_zh_tw", "string"),
                _opt("name_zh_cn", "string"),
                # a grocer's hierarchy: department > category > need (what several
                # products serve: whole milk), and the brand
                _opt("department", "string"),
                _opt("need", "string"),
                _opt("brand", "string"),
            ),
            key=("product_id",),
            doc="The catalog.",
        ),
        TableSpec(
            "orders",
            (
                ColumnSpec("order_id", "string"),
                ColumnSpec("customer_id", "string"),
                ColumnSpec("ordered_at", "timestamp"),
                ColumnSpec("product_id", "string"),
                ColumnSpec("quantity", "int"),
                ColumnSpec("amount", "float"),
            ),
            doc="Order lines; negative quantity and amount are returns.",
        ),
        TableSpec(
            "events",
            (
                ColumnSpec("event_id", "string"),
                ColumnSpec("customer_id", "string", nullable=True),
                ColumnSpec("anonymous_id", "string", nullable=True),
                ColumnSpec("occurred_at", "timestamp"),
                ColumnSpec("source", "string"),
                ColumnSpec("event_type", "string"),
                ColumnSpec("product_id", "string", nullable=True),
                ColumnSpec("sentiment", "float", nullable=True),
            ),
            required=False,
            key=("event_id",),
            doc="Behaviour and engagement: web, app, email, support, chatbot.",
        ),
    )
}

#: Identity types whose values may appear as ``events.anonymous_id`` (identity stitching).
STITCHABLE_ID_TYPES = ("cookie", "device")

#: Consent purposes that need an explicit grant; ``service`` needs none.
CONSENTED_PURPOSES = ("marketing", "personalization")


def dtype_of(spec: ColumnSpec) -> str:
    """The loaded pandas dtype of a column; nullable ints and bools without a default are masked."""
    masked = spec.nullable and spec.default is None
    if masked and spec.kind == "int":
        return "Int64"
    if masked and spec.kind == "bool":
        return "boolean"
    return DTYPES[spec.kind]


def empty_table(name: str) -> pd.DataFrame:
    """An empty frame with the contract columns and dtypes of table ``name``."""
    spec = TABLES[name]
    return pd.DataFrame({c.name: pd.Series([], dtype=dtype_of(c)) for c in spec.columns})


@dataclass
class ContractTables:
    """A loaded contract dataset: one typed frame per table (absent optional tables empty)."""

    customers: pd.DataFrame
    products: pd.DataFrame
    orders: pd.DataFrame
    identities: pd.DataFrame = field(default_factory=lambda: empty_table("identities"))
    consents: pd.DataFrame = field(default_factory=lambda: empty_table("consents"))
    events: pd.DataFrame = field(default_factory=lambda: empty_table("events"))

    def items(self) -> list[tuple[str, pd.DataFrame]]:
        """``(name, frame)`` of every table, in contract order."""
        return [(name, getattr(self, name)) for name in TABLES]

    def summary(self) -> dict[str, int]:
        """Rows per table."""
        return {name: len(frame) for name, frame in self.items()}
