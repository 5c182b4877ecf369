"""The feedback store's SQLite schema (:mod:`serving.memory.feedback`), and the upgrades that
bring a store written by an earlier version to it: each idempotent, each overwriting the
pages it leaves behind."""

from __future__ import annotations

import json
import sqlite3

INGESTED = """
create table if not exists ingested (
    seq integer primary key autoincrement, at text not null, kind text not null,
    customer text, row text not null, anonymous text, secret text, batch text
)"""
SCHEMA = f"""
create table if not exists suggestions (
    request_id text primary key, customer text, at text not null, actions text not null
);
create table if not exists feedback (
    request_id text not null, customer text, action text not null, product_id text,
    outcome text not null, at text not null
);
{INGESTED};
create table if not exists messages (message_id text primary key, at text not null);
create index if not exists suggestions_customer on suggestions (customer);
create index if not exists ingested_customer on ingested (customer);
create index if not exists ingested_anonymous on ingested (anonymous);
"""
TABLES = ("suggestions", "feedback", "ingested")


def upgrade(db: sqlite3.Connection) -> None:
    """Bring a store written before pseudonyms (raw ``customer_id`` columns, one JSON
    payload per ingested batch) to the current schema: ids become pseudonyms, batches
    become one row per contract row, and the old tables are dropped and their pages
    overwritten. Idempotent; needs ``NEXTBEST_PSEUDONYM_KEY``."""
    columns = {row[1] for row in db.execute("pragma table_info(suggestions)")}
    if "customer_id" not in columns:
        return
    from cdp.privacy import keys, pseudonym

    key = keys()[0]

    def name(customer_id):
        return pseudonym(customer_id, key) if customer_id else None

    db.execute("begin")
    for table in ("suggestions", "feedback"):
        db.execute(f"alter table {table} rename to old_{table}")
    for statement in filter(str.strip, SCHEMA.split(";")):  # executescript would commit
        db.execute(statement)
    db.executemany(
        "insert into suggestions values (?, ?, ?, ?)",
        [(r, name(c), at, a) for r, c, at, a in db.execute("select * from old_suggestions")],
    )
    db.executemany(
        "insert into feedback values (?, ?, ?, ?, ?, ?)",
        [(r, name(c), *rest) for r, c, *rest in db.execute("select * from old_feedback")],
    )
    rows = []
    for at, payload in db.execute("select at, payload from events"):
        for kind, items in json.loads(payload).items():
            rows += [(at, kind, name(item.get("customer_id")), json.dumps(item)) for item in items]
    db.executemany("insert into ingested (at, kind, customer, row) values (?, ?, ?, ?)", rows)
    for table in ("old_suggestions", "old_feedback", "events"):
        db.execute(f"drop table {table}")
    db.execute("commit")
    db.execute("vacuum")


def seal(db: sqlite3.Connection) -> None:
    """Bring a store whose ingested rows hold raw ids (before sealing) to the current
    schema: each row sealed (:func:`cdp.privacy.sealed_row`) with its anonymous id's
    token beside it, and the old pages overwritten. Idempotent; needs the pseudonym key."""
    columns = {row[1] for row in db.execute("pragma table_info(ingested)")}
    if not columns or "anonymous" in columns:
        return
    from cdp.privacy import keys, sealed_row

    key = keys()[0]
    db.execute("begin")
    db.execute("alter table ingested add column anonymous text")
    for rowid, text in db.execute("select rowid, row from ingested").fetchall():
        sealed, anonymous = sealed_row(json.loads(text), key)
        db.execute(
            "update ingested set row = ?, anonymous = ? where rowid = ?",
            (json.dumps(sealed), anonymous, rowid),
        )
    db.execute("commit")
    db.execute("vacuum")


def sequence(db: sqlite3.Connection) -> None:
    """Give a store from before the online log its ``seq`` numbers (never reused, unlike a
    rowid after an erasure deleted the last rows) and ``batch`` column; the old table's
    pages are overwritten. Idempotent."""
    columns = [row[1] for row in db.execute("pragma table_info(ingested)")]
    if not columns or "seq" in columns:
        return
    kept = ", ".join(
        c for c in ("at", "kind", "customer", "row", "anonymous", "secret") if c in columns
    )
    db.execute("begin")
    db.execute("alter table ingested rename to old_ingested")
    db.execute(INGESTED)
    db.execute(f"insert into ingested ({kept}) select {kept} from old_ingested order by rowid")
    db.execute("drop table old_ingested")
    db.execute("commit")
    db.execute("vacuum")
