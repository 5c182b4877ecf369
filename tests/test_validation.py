"""Every kind of contract violation is reported, naming its table and column."""

from __future__ import annotations

import pandas as pd
import pytest

from cdp.errors import ContractError
from cdp.validation import load_contract, validate_folder, validate_in_partitions
from conftest import tiny_tables, write_folder


def _set(table: str, column: str, row: int, value):
    def mutate(tables):
        frame = tables[table].astype({column: object})
        frame.loc[row, column] = value
        tables[table] = frame

    return mutate


def _both(*mutations):
    def mutate(tables):
        for m in mutations:
            m(tables)

    return mutate


def _drop_table(table: str):
    def mutate(tables):
        del tables[table]

    return mutate


def _drop_column(table: str, column: str):
    def mutate(tables):
        tables[table] = tables[table].drop(columns=column)

    return mutate


# (mutation, file format, table, column, words expected in the problem)
CASES = {
    "missing required table": (_drop_table("orders"), "parquet", "orders", None, "required table"),
    "missing required column": (
        _drop_column("customers", "created_at"),
        "csv",
        "customers",
        "created_at",
        "missing",
    ),
    "text in an integer column": (
        _set("orders", "quantity", 0, "two"),
        "csv",
        "orders",
        "quantity",
        "not an integer",
    ),
    "fraction in an integer column": (
        _set("orders", "quantity", 0, "1.5"),
        "csv",
        "orders",
        "quantity",
        "not an integer",
    ),
    "number where a string is due": (
        _drop_column("products", "name"),
        "parquet",
        "products",
        "name",
        "missing",
    ),
    "unparseable timestamp": (
        _set("orders", "ordered_at", 1, "yesterday"),
        "csv",
        "orders",
        "ordered_at",
        "ISO-8601",
    ),
    "unparseable boolean": (
        _set("consents", "granted", 0, "maybe"),
        "csv",
        "consents",
        "granted",
        "boolean",
    ),
    "duplicate customer_id": (
        _set("customers", "customer_id", 2, "00001"),
        "parquet",
        "customers",
        "customer_id",
        "duplicate",
    ),
    "duplicate event_id": (
        _set("events", "event_id", 2, "E1"),
        "csv",
        "events",
        "event_id",
        "duplicate",
    ),
    "duplicate product_id": (
        _set("products", "product_id", 1, "P-INK"),
        "csv",
        "products",
        "product_id",
        "duplicate",
    ),
    "order of an unknown customer": (
        _set("orders", "customer_id", 3, "99999"),
        "parquet",
        "orders",
        "customer_id",
        "not found in customers",
    ),
    "order of an unknown product": (
        _set("orders", "product_id", 3, "P-NOPE"),
        "csv",
        "orders",
        "product_id",
        "not found in products",
    ),
    "identity of an unknown customer": (
        _set("identities", "customer_id", 2, "99999"),
        "csv",
        "identities",
        "customer_id",
        "not found in customers",
    ),
    "consent of an unknown customer": (
        _set("consents", "customer_id", 0, "99999"),
        "parquet",
        "consents",
        "customer_id",
        "not found in customers",
    ),
    "event of an unknown product": (
        _set("events", "product_id", 1, "P-NOPE"),
        "csv",
        "events",
        "product_id",
        "not found in products",
    ),
    "negative price": (
        _set("products", "price", 0, -1.0),
        "parquet",
        "products",
        "price",
        "negative price",
    ),
    "zero quantity": (
        _set("orders", "quantity", 2, 0),
        "parquet",
        "orders",
        "quantity",
        "quantity is 0",
    ),
    "sentiment above 1": (
        _set("events", "sentiment", 2, 1.5),
        "parquet",
        "events",
        "sentiment",
        "outside [-1, 1]",
    ),
    "event with no one": (
        _set("events", "anonymous_id", 0, None),
        "csv",
        "events",
        "customer_id/anonymous_id",
        "neither customer_id nor anonymous_id",
    ),
    "identity of two customers": (
        _both(
            _set("identities", "id_type", 2, "cookie"), _set("identities", "id_value", 2, "ck-1")
        ),
        "parquet",
        "identities",
        "id_type/id_value",
        "one identity",
    ),
    "missing required value": (
        _set("orders", "amount", 0, None),
        "csv",
        "orders",
        "amount",
        "missing values",
    ),
    "missing order_id": (
        _set("orders", "order_id", 0, None),
        "parquet",
        "orders",
        "order_id",
        "missing values",
    ),
    "bad locale": (
        _set("customers", "locale", 0, "zh_TW!"),
        "csv",
        "customers",
        "locale",
        "BCP 47",
    ),
    "upper-case id_type": (
        _set("identities", "id_type", 1, "Messenger"),
        "csv",
        "identities",
        "id_type",
        "lowercase",
    ),
}


@pytest.mark.parametrize(
    ("mutate", "fmt", "table", "column", "words"), CASES.values(), ids=CASES.keys()
)
def test_each_violation_is_reported(tmp_path, mutate, fmt, table, column, words):
    tables = tiny_tables()
    mutate(tables)
    folder = write_folder(tables, tmp_path / "data", fmt)

    _, report = validate_folder(folder)

    assert not report.ok
    found = [v for v in report.violations if v.table == table and v.column == column]
    assert found, f"no violation for {table}.{column}: {[str(v) for v in report.violations]}"
    assert any(words in str(v) for v in found), [str(v) for v in found]
    assert all(v.rows >= 0 for v in found)


def test_tiny_dataset_is_valid_in_both_formats(tmp_path):
    for fmt in ("csv", "parquet"):
        _, report = validate_folder(write_folder(tiny_tables(), tmp_path / fmt, fmt))
        assert report.ok, [str(v) for v in report.violations]


def test_every_violation_is_reported_at_once_with_counts_and_examples(tmp_path):
    tables = tiny_tables()
    for mutate, *_ in (
        CASES["negative price"],
        CASES["zero quantity"],
        CASES["order of an unknown customer"],
        CASES["sentiment above 1"],
    ):
        mutate(tables)
    tables["orders"].loc[1, "customer_id"] = "88888"
    _, report = validate_folder(write_folder(tables, tmp_path / "data"))

    by_where = {(v.table, v.column): v for v in report.violations}
    assert {
        ("products", "price"),
        ("orders", "quantity"),
        ("orders", "customer_id"),
        ("events", "sentiment"),
    } <= set(by_where)
    unknown = by_where[("orders", "customer_id")]
    assert unknown.rows == 2
    assert set(unknown.examples) == {"'99999'", "'88888'"}


def test_parquet_ids_stored_as_integers_are_rejected_not_coerced(tmp_path):
    tables = tiny_tables()
    tables["customers"]["customer_id"] = [1, 2, 3]
    _, report = validate_folder(write_folder(tables, tmp_path / "data"))
    messages = [str(v) for v in report.violations if v.column == "customer_id"]
    assert any("customers.customer_id: expected string, found dtype int64" in m for m in messages)


def test_load_contract_raises_with_every_violation(tmp_path):
    tables = tiny_tables()
    CASES["negative price"][0](tables)
    CASES["zero quantity"][0](tables)
    with pytest.raises(ContractError) as raised:
        load_contract(write_folder(tables, tmp_path / "data"))
    assert len(raised.value.violations) == 2
    assert "products.price" in str(raised.value)


def test_loader_types_and_defaults(tmp_path):
    tables = tiny_tables()
    tables["customers"] = tables["customers"].drop(columns=["locale", "country"])
    del tables["events"]
    loaded = load_contract(write_folder(tables, tmp_path / "data", "csv"))

    assert loaded.customers["customer_id"].tolist() == ["00001", "00002", "00003"]
    assert loaded.customers["locale"].tolist() == ["en"] * 3  # the contract's default
    assert loaded.customers["country"].isna().all()
    assert str(loaded.orders["ordered_at"].dtype) == "datetime64[us, UTC]"
    assert loaded.orders["quantity"].dtype == "int64"
    assert loaded.consents["granted"].dtype == bool
    assert loaded.products["pack_size"].tolist() == [1, 1]
    assert loaded.events.empty and "sentiment" in loaded.events.columns


def test_naive_and_offset_timestamps_are_utc(tmp_path):
    tables = tiny_tables()
    folder = write_folder(tables, tmp_path / "data", "csv")
    text = (folder / "orders.csv").read_text().splitlines()
    text[1] = text[1].replace("2024-01-06T09:00:00.000000Z", "2024-01-06T17:00:00+08:00")
    text[2] = text[2].replace("2024-01-06T09:00:00.000000Z", "2024-01-06 09:00:00")
    (folder / "orders.csv").write_text("\n".join(text) + "\n")
    orders = load_contract(folder).orders
    assert (orders["ordered_at"].iloc[:2] == pd.Timestamp("2024-01-06T09:00:00Z")).all()


def test_extra_columns_are_carried_along(tmp_path):
    tables = tiny_tables()
    tables["orders"]["channel"] = ["web", "web", "app", "pos"]
    loaded = load_contract(write_folder(tables, tmp_path / "data"))
    assert loaded.orders["channel"].tolist() == ["web", "web", "app", "pos"]


def test_both_formats_of_one_table_is_ambiguous(tmp_path):
    folder = write_folder(tiny_tables(), tmp_path / "data")
    write_folder({"orders": tiny_tables()["orders"]}, folder, "csv")
    _, report = validate_folder(folder)
    assert any(v.table == "orders" and "both" in v.problem for v in report.violations)


def _found(report) -> set[tuple]:
    return {(v.table, v.column, v.problem, v.rows) for v in report.violations}


@pytest.mark.parametrize(
    ("mutate", "fmt", "table", "column", "words"), CASES.values(), ids=CASES.keys()
)
def test_validation_in_partitions_finds_what_one_pass_finds(
    tmp_path, mutate, fmt, table, column, words
):
    tables = tiny_tables()
    mutate(tables)
    folder = write_folder(tables, tmp_path / "data", fmt)
    _, whole = validate_folder(folder)
    parts = validate_in_partitions(folder, 3)
    assert _found(parts) == _found(whole) != set()
    assert parts.rows == whole.rows


def test_duplicates_and_unknown_keys_are_counted_across_partitions(
    small_world, tmp_path, monkeypatch
):
    """Duplicate event ids and identities in different rows of a large table, and orders of
    unknown customers, counted once each over 5 partitions (and over the more chunks a
    large table gets), as in one pass."""
    tables = {name: frame.copy() for name, frame in small_world.tables.items()}
    events, identities, orders = tables["events"], tables["identities"], tables["orders"]
    events.loc[events.index[-40:], "event_id"] = events["event_id"].iloc[:40].to_numpy()
    identities.loc[identities.index[-3:], ["id_type", "id_value"]] = (
        identities[["id_type", "id_value"]].iloc[:3].to_numpy()
    )
    orders.loc[orders.index[::500], "customer_id"] = "nobody"
    folder = write_folder(tables, tmp_path / "data")
    _, whole = validate_folder(folder)
    parts = validate_in_partitions(folder, 5)
    assert _found(parts) == _found(whole)
    rows = {(v.table, v.column): v.rows for v in parts.violations}
    assert rows[("events", "event_id")] == 80  # both rows of each of the 40 duplicates
    assert rows[("orders", "customer_id")] == len(orders.index[::500])
    assert ("identities", "id_type/id_value") in rows
    assert parts.rows == whole.rows
    import cdp.validation

    monkeypatch.setattr(cdp.validation, "CHUNK_ROWS", 7_000)  # events: 14 chunks, not 5
    assert _found(validate_in_partitions(folder, 5)) == _found(whole)
