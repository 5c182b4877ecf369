"""One online store for every worker and replica: a real ``redis-server`` (the ``redis_url``
fixture), a real ``nextbest serve --workers 2`` on 127.0.0.1, and the log on its own."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pandas as pd
import pytest
import redis

from conftest import SERVE_NOW, launch_service, serving_args, stop_service
from serving.memory.feedback import StoreUnavailable
from serving.memory.online import Entry, RedisLog
from test_cli import nextbest

CHATBOT = "chatbot-key-for-online-01"
ADMIN = "admin-key-for-online-0002"
KEYS = f"{CHATBOT}:chatbot,{ADMIN}:admin"
H_CHAT = {"x-api-key": CHATBOT}
H_ADMIN = {"x-api-key": ADMIN}
T0 = datetime(2025, 6, 30, 12, tzinfo=UTC)


@pytest.fixture
def log(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield RedisLog(redis_url, prefix="nextbest-test")
    client.flushdb()


def test_the_log_keeps_order_batches_whole_and_reads_after_a_position(log):
    first = [Entry("orders", f"o{i}", "b1", "ps_a") for i in range(3)]
    log.append(first)
    log.append([Entry("consents", "c1", "b2", "ps_b", "tok_b")])
    read = log.read(log.start)
    assert [(e.kind, e.secret, e.batch) for e in read] == [
        ("orders", "o0", "b1"),
        ("orders", "o1", "b1"),
        ("orders", "o2", "b1"),
        ("consents", "c1", "b2"),
    ]
    assert read[3].who == "ps_b" and read[3].anonymous == "tok_b" and read[0].anonymous is None
    assert [e.secret for e in log.read(read[1].position)] == ["o2", "c1"]
    assert log.read(read[-1].position) == []


def test_a_message_is_claimed_once_across_workers_and_only_with_its_rows(log, redis_url):
    from serving.memory.feedback import Claimed

    other = RedisLog(redis_url, prefix="nextbest-test")  # a second worker's connection
    assert log.unclaimed(["m1", "m2"]) == {"m1", "m2"}
    log.append([Entry("orders", "o1", "b1")], ["m1", "m2"], T0)
    assert other.unclaimed(["m2", "m3"]) == {"m3"}
    with pytest.raises(Claimed):  # m2 is taken: neither the claim of m3 nor the rows land
        other.append([Entry("orders", "o2", "b2")], ["m2", "m3"], T0)
    assert [e.secret for e in log.read(log.start)] == ["o1"]
    assert log.unclaimed(["m3"]) == {"m3"}
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", "default", "-xadd")
    try:  # the append refused: the claims are not kept either
        with pytest.raises(StoreUnavailable):
            log.append([Entry("orders", "o3", "b3")], ["m3"], T0)
    finally:
        admin.execute_command("ACL", "SETUSER", "default", "+xadd")
    assert log.unclaimed(["m3"]) == {"m3"}


def test_an_erasure_removes_the_subjects_entries_and_answers_only(log):
    log.append([Entry("orders", "o1", "b1", "ps_gone"), Entry("orders", "o2", "b1", "ps_stays")])
    log.append([Entry("events", "e1", "b2", None, "tok_gone")])
    log.remember_answer("r1", "ps_gone", [("cross_sell", "P1")])
    log.remember_answer("r2", "ps_stays", [("cross_sell", "P1")])
    assert log.answer("r1") == ("ps_gone", {("cross_sell", "P1")})
    assert log.erase({"ps_gone"}, {"tok_gone"}) == 3
    assert [e.secret for e in log.read(log.start)] == ["o2"]
    assert log.answer("r1") is None and log.answer("r2") is not None


def test_an_unreachable_or_foreign_store_is_one_line_naming_the_setting(tmp_path, free_port_url):
    for url, message in (
        (free_port_url, "cannot reach Redis at 127.0.0.1"),
        ("http://127.0.0.1:1/", "expected a redis:// URL"),
    ):
        result = nextbest(
            "serve", "--data", str(tmp_path), "--features", str(tmp_path),
            env={"NEXTBEST_ONLINE_STORE": url},
        )  # fmt: skip
        assert result.returncode == 2
        assert "NEXTBEST_ONLINE_STORE" in result.stderr and message in result.stderr, result.stderr
        assert "s3cret" not in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def free_port_url():
    from conftest import free_port

    return f"redis://:s3cret@127.0.0.1:{free_port()}/0"


# -- a real service with two workers ---------------------------------------------------------


def served_by(response: httpx.Response) -> str:
    return response.headers["x-served-by"]


def until(client, workers: set[str], call, check=lambda r: True, seconds: float = 60.0) -> dict:
    """Call (a new connection each time) until every worker in ``workers`` has answered;
    ``check`` must hold for each answer. Returns the last answer of each worker. Bounded by
    time, not by a count of calls: a worker busy swapping in a reloaded state answers a few
    seconds later, while the other may answer hundreds of calls meanwhile."""
    seen: dict[str, httpx.Response] = {}
    deadline, calls = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        response = call(client)
        calls += 1
        assert check(response), response.text
        seen[served_by(response)] = response
        if workers <= seen.keys():
            return seen
    pytest.fail(f"workers {workers - seen.keys()} never answered in {seconds:g} s ({calls} calls)")


@pytest.fixture(scope="module")
def pair(world, small_world_dir, redis_url, tmp_path_factory):
    """``nextbest serve --workers 2`` sharing a Redis online store; the client (a new
    connection per request, so requests spread over the workers), the worker ids, the
    service's arguments and the Redis URL."""
    redis.Redis.from_url(redis_url).flushdb()
    folder = tmp_path_factory.mktemp("online")
    args = serving_args(world, small_world_dir, folder / "state", SERVE_NOW)
    env = {"NEXTBEST_ONLINE_STORE": redis_url}
    process, url = launch_service(
        *args, "--workers", "2", keys=KEYS, log_path=folder / "serve.log", env=env
    )
    limits = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=url, timeout=60, limits=limits) as client:
        deadline = time.monotonic() + 300
        ready: set[str] = set()
        while len(ready) < 2:  # each worker loads its own state: wait for both
            assert time.monotonic() < deadline, "the second worker never became ready"
            response = client.post("/suggest", json={"customer_id": "nobody"}, headers=H_CHAT)
            if response.status_code == 200:
                ready.add(served_by(response))
        yield client, ready, args, env
    stop_service(process)
    log_text = (folder / "serve.log").read_text()
    assert CHATBOT not in log_text and ADMIN not in log_text


def _scored_customers(client, world, n: int, exclude: set[str]) -> list[str]:
    """``n`` customers whose churn score is served (marketing consent in force)."""
    found = []
    for customer_id in pd.read_parquet(world / "features" / "customers.parquet")["customer_id"]:
        if customer_id in exclude:
            continue
        score = client.post("/score/churn", json={"customer_id": customer_id}, headers=H_CHAT)
        if score.status_code == 200 and score.json()["churn_probability"] is not None:
            found.append(customer_id)
            if len(found) == n:
                return found
    pytest.fail("not enough customers with marketing consent")


def test_two_workers_answer_alike_whichever_one_accepted_the_rows(
    pair, world, due, small_world_dir
):
    """For each worker: rows posted until that worker accepted them (a consent withdrawal, an
    order, a new identity) are in force in the other's next answers; feedback given to one
    worker on the other's answer is taken and its cooldown holds on both; an erasure on one
    is an erasure on both."""
    client, workers, _, _ = pair
    product = pd.read_parquet(small_world_dir / "products.parquet")["product_id"].iloc[0]
    at = (pd.Timestamp(SERVE_NOW) - pd.Timedelta(hours=1)).isoformat()
    customers = _scored_customers(client, world, len(workers), {due["customer_id"]})
    for n, (worker, customer) in enumerate(zip(sorted(workers), customers, strict=True)):
        for attempt in range(400):
            batch = {
                "consents": [
                    {"customer_id": customer, "purpose": "marketing", "granted": False,
                     "recorded_at": at}
                ],
                "orders": [
                    {"order_id": f"o-{n}-{attempt}", "customer_id": customer, "ordered_at": at,
                     "product_id": product, "quantity": 1, "amount": 10.0}
                ],
                "identities": [
                    {"customer_id": customer, "id_type": "messenger", "id_value": f"psid-{n}"}
                ],
            }  # fmt: skip
            accepted = client.post("/events", json=batch, headers=H_ADMIN)
            assert accepted.status_code == 200, accepted.text
            if served_by(accepted) == worker:
                break
        order = f"o-{n}-{attempt}"

        def profile(c, n=n):
            ask = {"id_type": "messenger", "id_value": f"psid-{n}"}
            return c.get("/profile", params=ask, headers=H_CHAT)

        def in_force(r, customer=customer, order=order) -> bool:
            body = r.json()
            return (
                r.status_code == 200
                and body["customer_id"] == customer
                and body["marketing_allowed"] is False
                and body["churn_probability"] is None
                and body["recent_orders"][0]["order_id"] == order
            )

        until(client, workers, profile, in_force)

    # feedback on one worker's answer, given to the other: taken, and a cooldown on both
    ask = {"customer_id": due["customer_id"]}
    first = until(client, workers, lambda c: c.post("/suggest", json=ask, headers=H_CHAT))
    giver, taker = sorted(workers)
    answer = first[giver].json()
    reminder = next(a for a in answer["actions"] if a["action"] == "replenishment_reminder")
    item = {
        "request_id": answer["request_id"],
        "action": reminder["action"],
        "product_id": reminder["product_id"],
        "outcome": "shown",
    }
    taken = until(client, {taker}, lambda c: c.post("/feedback", json=item, headers=H_CHAT))
    assert taken[taker].json() == {"stored": True}

    def cooled(r) -> bool:
        return r.status_code == 200 and all(
            (a["action"], a["product_id"]) != (item["action"], item["product_id"])
            for a in r.json()["actions"]
        )

    until(client, workers, lambda c: c.post("/suggest", json=ask, headers=H_CHAT), cooled)

    # an erasure on one worker: the customer is gone for both
    gone = customers[0]
    erased = client.post("/admin/subject/erase", json={"customer_id": gone}, headers=H_ADMIN)
    assert erased.status_code == 200 and erased.json()["stores"]["online_log"] >= 3, erased.text
    until(
        client,
        workers,
        lambda c: c.get("/profile", params={"customer_id": gone}, headers=H_CHAT),
        lambda r: r.status_code == 404,
    )


def test_a_reload_on_one_worker_is_followed_by_the_other(pair):
    client, workers, _, _ = pair

    def reloads() -> float:  # BentoML sums the workers' counters on /metrics
        lines = client.get("/metrics").text.splitlines()
        mine = 'nextbest_reloads_total{outcome="reloaded"}'
        return sum(float(x.rsplit(" ", 1)[1]) for x in lines if x.startswith(mine))

    before = reloads()
    answer = client.post("/admin/reload", headers=H_ADMIN)  # started in the background
    assert answer.status_code == 202 and answer.json()["started"], answer.text
    deadline = time.monotonic() + 120
    while reloads() < before + len(workers):
        assert time.monotonic() < deadline, f"{reloads() - before} of {len(workers)} reloaded"
        until(
            client, workers, lambda c: c.post("/suggest", json={"customer_id": "x"}, headers=H_CHAT)
        )
        time.sleep(0.5)


def test_a_replica_with_an_empty_state_folder_starts_with_everything_accepted(
    pair, world, small_world_dir, tmp_path
):
    """A second service (another machine: its own, empty state folder) on the same Redis
    starts with every row the first accepted, and the erasure too."""
    client, _, _, env = pair
    args = serving_args(world, small_world_dir, tmp_path / "state", SERVE_NOW)
    process, url = launch_service(*args, keys=KEYS, log_path=tmp_path / "serve.log", env=env)
    try:
        with httpx.Client(base_url=url, timeout=60) as replica:
            for n in range(2):
                ask = {"id_type": "messenger", "id_value": f"psid-{n}"}
                mine = client.get("/profile", params=ask, headers=H_CHAT)
                theirs = replica.get("/profile", params=ask, headers=H_CHAT)
                assert theirs.status_code == mine.status_code, theirs.text
                if mine.status_code == 200:  # the other customer was erased: 404 on both
                    same = ("customer_id", "marketing_allowed", "recent_orders", "consents")
                    assert {k: theirs.json()[k] for k in same} == {k: mine.json()[k] for k in same}
    finally:
        stop_service(process)


def test_livez_stays_quick_while_redis_hangs(pair, redis_url):
    """Redis stopped (SIGSTOP): requests that read the shared log wait for it (up to its
    timeout) in the thread pool, and /livez answers at once on both workers."""
    import os
    import signal
    import threading

    client, _, _, _ = pair
    pid = redis.Redis.from_url(redis_url).info()["process_id"]
    base = str(client.base_url)

    def ask() -> None:
        with httpx.Client(base_url=base, timeout=30) as mine:
            mine.post("/suggest", json={"customer_id": "nobody"}, headers=H_CHAT)

    os.kill(pid, signal.SIGSTOP)
    try:
        waiting = [threading.Thread(target=ask) for _ in range(6)]
        for thread in waiting:
            thread.start()
        time.sleep(0.3)  # the requests are inside, waiting on Redis
        took = []
        for _ in range(10):
            started = time.perf_counter()
            assert client.get("/livez").status_code == 200
            took.append(time.perf_counter() - started)
    finally:
        os.kill(pid, signal.SIGCONT)
    for thread in waiting:
        thread.join(timeout=60)
    # each under 100 ms (about 3 ms here); the first waited 9.8 s when the loop read Redis
    assert max(took) < 0.1, took


def test_a_503_stores_and_claims_nothing_and_its_retry_applies_once(pair, redis_url, world):
    """Redis refusing appends (ACL -xadd): a Segment message and a feedback item each get 503
    with nothing stored or claimed; once Redis takes them, the retries apply once."""
    import sqlite3
    from pathlib import Path

    from conftest import feedback_for

    client, _, args, _ = pair
    db = Path(args[args.index("--state") + 1]) / "serving.db"

    def count(table: str) -> int:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return con.execute(f"select count(*) from {table}").fetchone()[0]

    [customer] = _scored_customers(client, world, 1, set())
    message = {
        "messageId": "fault-message-1",
        "userId": customer,
        "traits": {"consent_marketing": "false"},
    }
    answer = client.post("/suggest", json={"customer_id": customer}, headers=H_CHAT).json()
    item = feedback_for(answer, "accepted")
    time.sleep(0.3)  # the answer record reaches Redis in its 50 ms batch
    before = {t: count(t) for t in ("ingested", "feedback", "messages")}
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", "default", "-xadd")
    try:
        refused = client.post("/v1/identify", json=message, headers=H_ADMIN)
        assert refused.status_code == 503, refused.text
        lost = client.post("/feedback", json=item, headers=H_CHAT)
        assert lost.status_code == 503, lost.text
    finally:
        admin.execute_command("ACL", "SETUSER", "default", "+xadd")
    assert {t: count(t) for t in before} == before  # nothing stored, nothing claimed
    retried = client.post("/v1/identify", json=message, headers=H_ADMIN)
    assert retried.status_code == 200, retried.text
    assert retried.json()["applied"]["consents"] == 1 and retried.json()["duplicates"] == 0
    again = client.post("/v1/identify", json=message, headers=H_ADMIN).json()
    assert again["duplicates"] == 1 and again["applied"]["consents"] == 0
    assert client.post("/feedback", json=item, headers=H_CHAT).status_code == 200
    assert count("feedback") == before["feedback"] + 1
    profile = client.get("/profile", params={"customer_id": customer}, headers=H_CHAT).json()
    assert profile["marketing_allowed"] is False
