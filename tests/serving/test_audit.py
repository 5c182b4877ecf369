"""The audit log and the service's stores on their own: rotation, queries, erasure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from serving.audit import AuditLog, query
from serving.feedback import FeedbackStore, Recorded

T0 = datetime(2025, 6, 30, 12, tzinfo=UTC)


def _entry(i: int, customer: str, route: str = "/suggest", actions=("cross_sell",)) -> dict:
    return {
        "at": (T0 + timedelta(minutes=i)).isoformat(),
        "route": route,
        "key_id": "k1" if i % 2 else "k2",
        "customer": customer,
        "purposes": ["marketing"] if "cross_sell" in actions else ["service"],
        "actions": list(actions),
    }


def test_the_log_rotates_by_size_and_queries_across_files(tmp_path):
    log = AuditLog(tmp_path / "audit", max_bytes=600)
    for i in range(12):
        log.append(_entry(i, f"ps_{i % 3}"))
    files = log.files()
    assert len(files) > 2 and files[-1].name == "audit.jsonl"
    assert all(f.stat().st_size <= 600 for f in files)
    assert [e["at"] for e in log.entries()] == [_entry(i, "")["at"] for i in range(12)]
    mine = list(query(log, customers={"ps_1"}))
    assert [e["customer"] for e in mine] == ["ps_1"] * 4
    assert len(list(query(log, key_id="k1", since=T0 + timedelta(minutes=6)))) == 3
    assert list(query(log, purpose="service")) == []
    assert len(list(query(log, action="cross_sell", until=T0 + timedelta(minutes=1)))) == 2


def test_erasure_removes_every_line_of_the_subject_in_every_file(tmp_path):
    log = AuditLog(tmp_path / "audit", max_bytes=500)
    for i in range(10):
        log.append(_entry(i, "ps_gone" if i % 2 else "ps_stays"))
    assert log.erase({"ps_gone"}) == 5
    text = "".join(f.read_text() for f in log.files())
    assert "ps_gone" not in text and text.count("ps_stays") == 5


def test_the_store_erases_a_subject_and_leaves_no_bytes_on_disk(tmp_path):
    path = tmp_path / "serving.db"
    store = FeedbackStore(path)
    for i, who in enumerate(["ps_gone_aaaa", "ps_stays_bbb"] * 3):
        store.record_suggestion(f"r{i}", who, [("cross_sell", None)], T0)
    store.record_events([("orders", "ps_gone_aaaa", {"order_id": "O-GONE-1"})], T0)
    store.flush()

    class Feedback:
        request_id, action, product_id, outcome = "r0", "cross_sell", None, "shown"

    assert store.record_feedback(Feedback(), T0) is Recorded.STORED
    held = store.subject({"ps_gone_aaaa"})
    assert len(held["suggestions"]) == 3 and len(held["feedback"]) == 1
    assert held["ingested"][0]["row"] == {"order_id": "O-GONE-1"}
    assert store.exposures("ps_gone_aaaa", T0)

    counts = store.erase({"ps_gone_aaaa"})
    assert counts == {"suggestions": 3, "feedback": 1, "ingested": 1}
    assert store.subject({"ps_gone_aaaa"}) == {"suggestions": [], "feedback": [], "ingested": []}
    assert store.exposures("ps_gone_aaaa", T0) == {}
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"ps_gone_aaaa" not in on_disk and b"O-GONE-1" not in on_disk
    assert b"ps_stays_bbb" in on_disk


def test_a_store_from_before_pseudonyms_is_upgraded_in_place(tmp_path, monkeypatch):
    import json
    import sqlite3

    monkeypatch.setenv("NEXTBEST_PSEUDONYM_KEY", "a-secret-key-for-the-tests-0001")
    from nextbest.privacy import pseudonym

    path = tmp_path / "serving.db"
    old = sqlite3.connect(path)
    old.executescript(
        """
        create table suggestions (request_id text primary key, customer_id text, at text,
                                  actions text);
        create table feedback (request_id text, customer_id text, action text, product_id text,
                               outcome text, at text);
        create table events (at text not null, payload text not null);
        """
    )
    old.execute(
        "insert into suggestions values ('r1', 'C0000001', ?, '[\"cross_sell\"]')",
        (T0.isoformat(),),
    )
    old.execute(
        "insert into feedback values ('r1', 'C0000001', 'cross_sell', null, 'shown', ?)",
        (T0.isoformat(),),
    )
    batch = {"orders": [{"customer_id": "C0000001", "order_id": "O1"}], "consents": []}
    old.execute("insert into events values (?, ?)", (T0.isoformat(), json.dumps(batch)))
    old.commit()
    old.close()

    store = FeedbackStore(path)
    who = pseudonym("C0000001")
    held = store.subject({who})
    assert [r["request_id"] for r in held["suggestions"]] == ["r1"]
    assert held["feedback"][0]["outcome"] == "shown"
    assert held["ingested"][0]["row"]["order_id"] == "O1"
    assert store.exposures(who, T0)
    FeedbackStore(path)  # opening again is a no-op
    db = sqlite3.connect(path)
    tables = {row[0] for row in db.execute("select name from sqlite_master where type='table'")}
    assert tables == {"suggestions", "feedback", "ingested"}
    assert {row[0] for row in db.execute("select customer from suggestions")} == {who}
    assert {row[0] for row in db.execute("select customer from feedback")} == {who}
