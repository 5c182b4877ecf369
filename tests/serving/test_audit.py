"""The audit log and the service's stores on their own: rotation, queries, erasure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from cdp.privacy import lock_row
from serving.memory.audit import AuditLog, query
from serving.memory.feedback import FeedbackStore, Recorded

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
    secret = lock_row({"order_id": "O-GONE-1", "customer_id": "00001"}, b"k" * 16)
    row = ("orders", "ps_gone_aaaa", {"order_id": "O-GONE-1"}, None, secret)
    store.record_events([row], T0, "batch-1")
    store.flush()
    assert store.ingested_after(0) == [(1, "batch-1", "orders", secret)]

    class Feedback:
        request_id, action, product_id, outcome = "r0", "cross_sell", None, "shown"

    assert store.record_feedback(Feedback(), T0) is Recorded.STORED
    held = store.subject({"ps_gone_aaaa"})
    assert len(held["suggestions"]) == 3 and len(held["feedback"]) == 1
    assert held["ingested"][0]["row"] == {"order_id": "O-GONE-1"}
    assert held["ingested"][0]["replayable"] is True
    assert store.exposures("ps_gone_aaaa", T0)

    counts = store.erase({"ps_gone_aaaa"})
    assert counts == {"suggestions": 3, "feedback": 1, "ingested": 1}
    assert store.subject({"ps_gone_aaaa"}) == {"suggestions": [], "feedback": [], "ingested": []}
    assert store.exposures("ps_gone_aaaa", T0) == {} and store.ingested_after(0) == []
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"ps_gone_aaaa" not in on_disk and b"O-GONE-1" not in on_disk
    assert secret.encode() not in on_disk
    assert b"ps_stays_bbb" in on_disk


def test_a_store_from_before_pseudonyms_is_upgraded_in_place(tmp_path, monkeypatch):
    import json
    import sqlite3

    monkeypatch.setenv("NEXTBEST_PSEUDONYM_KEY", "a-secret-key-for-the-tests-0001")
    from cdp.privacy import pseudonym

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
    query = "select name from sqlite_master where type='table' and name not like 'sqlite_%'"
    tables = {row[0] for row in db.execute(query)}
    assert tables == {"suggestions", "feedback", "ingested", "messages"}
    assert {row[0] for row in db.execute("select customer from suggestions")} == {who}
    assert {row[0] for row in db.execute("select customer from feedback")} == {who}


FULL_DISK = """
import json, resource, signal, sys
from pathlib import Path
from serving.memory.audit import AuditLog

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
log = AuditLog(Path(sys.argv[1]))

def line(i):
    return {"at": "2025-06-30T12:00:00+00:00", "route": "/suggest", "customer": f"ps_{i:03d}",
            "purposes": ["service"], "actions": ["x" * 40]}

for i in range(3):
    log.append(line(i))
log.flush()
room = log.path.stat().st_size + 150  # room for about one and a half lines more
resource.setrlimit(resource.RLIMIT_FSIZE, (room, resource.RLIM_INFINITY))
for i in range(3, 8):
    log.append(line(i))
try:
    log.flush()
    print("error: none")
except OSError as error:
    print("error:", error.errno)
print("healthy:", log.healthy)
print("during:", json.dumps([e["customer"] for e in log.entries()]), json.dumps(log.torn))
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
log.flush()  # the queued lines are written once there is room again
print("healthy:", log.healthy)
print("after:", json.dumps([e["customer"] for e in log.entries()]), json.dumps(log.torn))
"""


def test_a_full_disk_leaves_whole_lines_and_loses_none(tmp_path):
    """A write that runs out of room part-way (RLIMIT_FSIZE: the kernel's own short write
    and EFBIG, as on a full disk) is cut back to whole lines and kept for later."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path / "audit")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    lines = done.stdout.splitlines()
    assert out["error"] == "27"  # EFBIG
    assert lines[2] == 'during: ["ps_000", "ps_001", "ps_002"] {}'  # whole lines, none torn
    assert lines[1] == "healthy: False" and lines[3] == "healthy: True"
    every = json.dumps([f"ps_{i:03d}" for i in range(8)])
    assert lines[4] == f"after: {every} {{}}"


def test_readers_skip_a_torn_line_and_erasure_keeps_permissions(tmp_path):
    log = AuditLog(tmp_path / "audit")
    for i in range(3):
        log.append(_entry(i, "ps_torn_one" if i == 1 else "ps_whole"))
    log.flush()
    lines = log.path.read_text().splitlines(keepends=True)
    lines[1] = lines[1][: lines[1].index('"purposes"')]  # torn: part of a line, then the next
    log.path.write_text("".join(lines))
    log.path.chmod(0o640)
    # the torn half is gone; the whole line glued onto it is read
    assert [e["customer"] for e in log.entries()] == ["ps_whole", "ps_whole"]
    assert log.torn == {"audit.jsonl": 1}
    assert list(query(log, customers={"ps_whole"}))  # a query does not fail on it
    assert log.erase({"ps_torn_one"}) == 1  # the torn line names them: it goes too
    assert "ps_torn_one" not in log.path.read_text()
    assert log.path.stat().st_mode & 0o777 == 0o640
