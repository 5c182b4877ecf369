"""The service as a chatbot meets it: a real `nextbest serve` (BentoML) on 127.0.0.1, over HTTP,
with champion models trained into a real MLflow store in a temporary folder."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from conftest import (
    AS_OF,
    SERVE_NOW,
    feedback_for,
    launch_service,
    reload_and_wait,
    serving_args,
    stop_service,
)
from test_cli import nextbest

CHATBOT = "chatbot-key-for-tests-0001"
ADMIN = "admin-key-for-tests-000002"
NOW = SERVE_NOW
SEGMENT_SECRET = "segment-shared-secret-for-tests"
H_CHAT = {"x-api-key": CHATBOT}
H_ADMIN = {"authorization": f"Bearer {ADMIN}"}


@pytest.fixture(scope="module")
def server(world, small_world_dir):
    process, url = launch_service(
        *serving_args(world, small_world_dir, world / "state", NOW),
        keys=f"{CHATBOT}:chatbot,{ADMIN}:admin",
        log_path=world / "serve.log",
        env={"NEXTBEST_SEGMENT_SECRET": SEGMENT_SECRET},
    )
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client
    stop_service(process)
    assert CHATBOT not in (world / "serve.log").read_text()  # keys are never logged
    assert ADMIN not in (world / "serve.log").read_text()


def suggest(client, body: dict, headers=H_CHAT) -> dict:
    response = client.post("/suggest", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


PROTECTED = [
    ("post", "/suggest", {"customer_id": "x"}),
    ("post", "/suggest/batch", {"requests": [{"customer_id": "x"}]}),
    ("get", "/profile?customer_id=x", None),
    ("post", "/feedback", {"request_id": "r", "action": "a", "outcome": "shown"}),
    ("post", "/events", {}),
    ("post", "/admin/reload", None),
    ("post", "/score/churn", {"customer_id": "x"}),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_every_protected_route_needs_a_key(server, method, path, body):
    kwargs = {"json": body} if body is not None else {}
    assert server.request(method, path, **kwargs).status_code == 401
    wrong = server.request(method, path, headers={"x-api-key": "not-a-key-0000000000"}, **kwargs)
    assert wrong.status_code == 401


def test_admin_routes_need_the_admin_scope(server):
    assert server.post("/events", json={}, headers=H_CHAT).status_code == 403
    assert server.post("/admin/reload", headers=H_CHAT).status_code == 403
    assert server.post("/events", json={}, headers=H_ADMIN).status_code == 200


def test_the_simulated_clock_moves_only_forward_and_only_for_an_admin(server):
    at = pd.Timestamp(NOW)
    assert server.post("/admin/clock", json={"now": NOW}, headers=H_CHAT).status_code == 403
    same = server.post("/admin/clock", json={"now": NOW}, headers=H_ADMIN)
    assert same.status_code == 200 and pd.Timestamp(same.json()["now"]) == at
    back = (at - pd.Timedelta(days=1)).isoformat()
    refused = server.post("/admin/clock", json={"now": back}, headers=H_ADMIN)
    assert refused.status_code == 409 and "only moves forward" in refused.json()["detail"]
    naive = server.post("/admin/clock", json={"now": "2030-01-01T00:00:00"}, headers=H_ADMIN)
    assert naive.status_code == 422
    assert pd.Timestamp(suggest(server, {"customer_id": "nobody"})["now"]) == at


def test_the_committed_openapi_is_the_served_one_with_named_operations_and_examples(
    server, tmp_path
):
    served = server.get("/docs.json").json()
    committed_path = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
    fresh = tmp_path / "openapi.json"
    fresh.write_text(json.dumps(served, indent=2) + "\n")
    assert json.loads(committed_path.read_text()) == served, (
        f"docs/openapi.json differs from the service's /docs.json: copy {fresh} over it"
    )
    operations = [
        op for ops in served["paths"].values() for op in ops.values() if isinstance(op, dict)
    ]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z_]+", i) for i in ids), ids
    schemas = served["components"]["schemas"]
    for op in operations:
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body:
            name = body["schema"]["$ref"].rsplit("/", 1)[1]
            assert schemas[name].get("examples"), name


def test_open_routes_and_the_openapi(server):
    from importlib.metadata import version

    for path in ("/livez", "/readyz", "/metrics"):
        assert server.get(path).status_code == 200
    spec = server.get("/docs.json").json()
    for path in ("/suggest", "/suggest/batch", "/profile", "/events", "/feedback", "/admin/reload"):
        assert path in spec["paths"], path
    assert "401" in spec["paths"]["/suggest"]["post"]["responses"]
    assert "422" in spec["paths"]["/suggest"]["post"]["responses"]
    info = spec["info"]
    assert info["title"] == "nextbest" and info["version"] == version("nextbest")
    assert "BentoML" not in json.dumps(info)
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path in {"/livez", "/readyz", "/healthz", "/metrics"}:
                assert "security" not in operation, path
                continue
            assert operation["security"] == [{"bearer": []}, {"apiKey": []}], (method, path)
            success = next(code for code in operation["responses"] if code.startswith("2"))
            ok = operation["responses"][success]["content"]["application/json"]["schema"]
            assert "$ref" in ok or ok.get("properties"), (method, path)  # typed
    churn = spec["paths"]["/score/churn"]["post"]
    assert churn["x-nextbest-scope"] == "chatbot" and "401" in churn["responses"]


def test_unknown_paths_share_one_label_and_the_version_is_real(server):
    """Requests to paths with no route add no metric series of their own (a scanner cannot
    grow the series without end); the service_version label is the package's."""
    from importlib.metadata import version

    for n in range(3):
        assert server.get(f"/scan-{1722 + n}", headers=H_CHAT).status_code == 404
    suggest(server, {"customer_id": "nobody"})
    text = server.get("/metrics").text
    assert "/scan-" not in text
    totals = [x for x in text.splitlines() if x.startswith("bentoml_service_request_total{")]
    assert any('endpoint="other"' in x for x in totals), totals
    assert any('endpoint="/suggest"' in x for x in totals), totals  # known paths keep theirs
    assert f'service_version="{version("nextbest")}"' in text
    assert 'service_version="not available"' not in text


def _group_alive(pgid: int) -> bool:
    import os

    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_counters_survive_a_second_service_which_sigterm_or_sigkill_stops_whole(
    server, world, small_world_dir
):
    """BentoML wipes BENTOML_HOME/prometheus_multiproc_dir when a server starts; each service
    has its own home, so a second service on the machine leaves this one's counters alone.
    SIGTERM to `nextbest serve` alone stops its whole tree and frees the port; a port in use
    is refused with one line."""
    import os
    import re
    import signal

    from conftest import PSEUDONYM_KEY

    def counts() -> tuple[float, float]:
        text = server.get("/metrics").text
        pattern = (
            r"bentoml_service_request_{}"
            r'\{{endpoint="/suggest",http_response_code="200"[^}}]*\}} (\S+)'
        )
        found = [re.search(pattern.format(n), text) for n in ("total", "duration_seconds_count")]
        return tuple(float(m.group(1)) if m else 0.0 for m in found)

    before = counts()
    for _ in range(5):
        suggest(server, {"customer_id": "nobody"})
    after = counts()
    assert after[0] - before[0] == 5 and after[1] - before[1] == 5, (before, after)

    # fmt: off
    args = ("--data", str(small_world_dir), "--features", str(world / "features"),
            "--mlruns", str(world / "mlruns"), "--state", str(world / "other"), "--now", NOW)
    env = {**os.environ, "NEXTBEST_API_KEYS": f"{CHATBOT}:chatbot",
           "NEXTBEST_PSEUDONYM_KEY": PSEUDONYM_KEY}
    port = server.base_url.port
    busy = subprocess.run(["nextbest", "serve", *args, "--port", str(port)], env=env,
                          capture_output=True, text=True, timeout=120)
    # fmt: on
    assert busy.returncode == 2 and f"--port {port}: 127.0.0.1:{port} is in use" in busy.stderr
    assert "Traceback" not in busy.stderr and len(busy.stderr.strip().splitlines()) == 1

    keys = f"{CHATBOT}:chatbot"
    other, url = launch_service(*args, keys=keys, log_path=world / "other.log")
    for _ in range(5):
        suggest(server, {"customer_id": "nobody"})
    last = counts()
    assert last[0] - after[0] == 5 and last[1] - after[1] == 5, (after, last)

    os.kill(other.pid, signal.SIGTERM)  # the nextbest process only, as a supervisor would
    other.wait(timeout=60)
    deadline = time.monotonic() + 30
    while _group_alive(other.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group_alive(other.pid), "BentoML's server or worker outlived nextbest serve"
    import socket

    with socket.socket() as probe:  # the port is free again for a restart
        probe.bind(("127.0.0.1", int(url.rsplit(":", 1)[1])))

    # SIGKILL leaves nextbest no chance to forward: the kernel stops the server (PDEATHSIG)
    again, url = launch_service(*args, keys=keys, log_path=world / "again.log")
    os.kill(again.pid, signal.SIGKILL)
    again.wait(timeout=60)
    deadline = time.monotonic() + 30
    while _group_alive(again.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group_alive(again.pid), "BentoML's server or worker outlived a killed nextbest"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", int(url.rsplit(":", 1)[1])))


# -- purpose limitation on every route ------------------------------------------------------

#: Keys whose values are model scores that serve marketing (churn, CLV, repurchase).
MARKETING_SCORES = {
    "churn_probability",
    "churn_risk",
    "clv_12m",
    "clv_band",
    "p_alive",
    "repurchase_probability",
}
#: How to ask each route of the OpenAPI about one customer, as a chatbot would.
ASK = {
    ("post", "/suggest"): lambda c: {"json": {"customer_id": c}},
    ("post", "/suggest/batch"): lambda c: {"json": {"requests": [{"customer_id": c}] * 2}},
    ("get", "/profile"): lambda c: {"params": {"customer_id": c}},
    ("post", "/score/churn"): lambda c: {"json": {"customer_id": c}},
}
#: Routes that return no score about a customer (ingestion, feedback, reload), or that answer
#: a data subject's right of access (the export shows everything held, by design).
NO_SCORE = {
    ("post", "/feedback"),
    ("post", "/events"),
    ("post", "/admin/reload"),
    ("get", "/admin/reload"),
    ("post", "/admin/clock"),
    ("post", "/admin/subject/export"),
    ("post", "/admin/subject/erase"),
    *(("post", f"/v1/{kind}") for kind in ("batch", "track", "identify", "page", "alias")),
}


def _marketing_scores(answer) -> list:
    """Every marketing-purpose score in an answer, wherever it is nested."""
    found = []
    if isinstance(answer, dict):
        if answer.get("purpose") == "marketing":
            found.append(answer)
        for key, value in answer.items():
            if key in MARKETING_SCORES and value is not None:
                found.append({key: value})
            found += _marketing_scores(value)
    elif isinstance(answer, list):
        for value in answer:
            found += _marketing_scores(value)
    return found


def _without_consent(small_world_dir) -> list[str]:
    """Customers known at the features' as-of with no marketing consent in force at NOW."""
    consents = pd.read_parquet(small_world_dir / "consents.parquet")
    customers = pd.read_parquet(small_world_dir / "customers.parquet")
    orders = pd.read_parquet(small_world_dir / "orders.parquet")
    buyers = set(orders.loc[orders["ordered_at"] <= AS_OF, "customer_id"])
    marketing = consents[
        (consents["purpose"] == "marketing") & (consents["recorded_at"] <= pd.Timestamp(NOW))
    ]
    latest = marketing.sort_values("recorded_at").drop_duplicates("customer_id", keep="last")
    allowed = set(latest.loc[latest["granted"], "customer_id"])
    known = customers.loc[customers["created_at"] <= AS_OF, "customer_id"]
    return sorted(c for c in known if c not in allowed and c in buyers)


def test_every_route_is_classified_for_purpose_limitation(server):
    spec = server.get("/docs.json").json()
    routes = {
        (method, path)
        for path, operations in spec["paths"].items()
        for method in operations
        if path not in {"/livez", "/readyz", "/healthz", "/metrics"}
    }
    assert routes == set(ASK) | NO_SCORE, "classify the new route in ASK or NO_SCORE"


def test_no_route_returns_a_marketing_score_without_marketing_consent(server, small_world_dir):
    """Property: for any customer without marketing consent in force and any route that
    returns scores, the answer holds no marketing score (and /score/churn says why)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    never = _without_consent(small_world_dir)
    assert len(never) > 20

    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(customer=st.sampled_from(never), route=st.sampled_from(sorted(ASK)))
    def check(customer, route):
        method, path = route
        response = server.request(method, path, headers=H_CHAT, **ASK[route](customer))
        assert response.status_code == 200, response.text
        assert _marketing_scores(response.json()) == [], (route, customer)

    check()


def test_a_consent_withdrawn_online_withholds_every_score_at_once(server, due, world):
    from cdp.privacy import pseudonym
    from conftest import PSEUDONYM_KEY

    consents = pd.read_parquet(world / "features" / "customers.parquet")["customer_id"]
    candidates = [c for c in consents if c != due["customer_id"]]
    customer = next(
        c
        for c in candidates
        if server.post("/score/churn", json={"customer_id": c}, headers=H_CHAT)
        .json()
        .get("churn_probability")
        is not None
    )
    for route, ask in ASK.items():  # in force before: the scores are there
        answer = server.request(*route, headers=H_CHAT, **ask(customer)).json()
        if route != ("post", "/suggest") and route != ("post", "/suggest/batch"):
            assert _marketing_scores(answer), route
    withdraw = {
        "customer_id": customer,
        "purpose": "marketing",
        "granted": False,
        "recorded_at": NOW,
    }
    assert server.post("/events", json={"consents": [withdraw]}, headers=H_ADMIN).status_code == 200
    for route, ask in ASK.items():
        answer = server.request(*route, headers=H_CHAT, **ask(customer)).json()
        assert _marketing_scores(answer) == [], route
    score = server.post("/score/churn", json={"customer_id": customer}, headers=H_CHAT).json()
    assert (
        score["churn_probability"] is None and "no marketing consent" in score["marketing_scoring"]
    )
    time.sleep(0.3)  # audit lines are written in 50 ms batches
    who = pseudonym(customer, PSEUDONYM_KEY.encode())
    lines = [
        json.loads(line)
        for path in (world / "state" / "audit").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    churn = [e for e in lines if e["route"] == "/score/churn" and e["customer"] == who]
    assert churn[-1]["purposes"] == [] and churn[-1]["actions"] == []
    assert "marketing" in churn[0]["purposes"]


def test_rows_accepted_online_survive_a_reload_and_a_restart(server, due, world, small_world_dir):
    """A consent withdrawal, an order and a new identity sent to /events are each still in
    force after POST /admin/reload and in a second service started on the stored state; so
    are a withdrawal and an order a CDP delivered late, dated before the snapshot's as-of."""
    import sqlite3

    customers = pd.read_parquet(world / "features" / "customers.parquet")["customer_id"]
    consenting = (
        c
        for c in customers[::-1]
        if c != due["customer_id"]
        and server.post("/score/churn", json={"customer_id": c}, headers=H_CHAT)
        .json()
        .get("churn_probability")
        is not None
    )
    customer, late = next(consenting), next(consenting)
    product = pd.read_parquet(small_world_dir / "products.parquet")["product_id"].iloc[0]
    at = (pd.Timestamp(NOW) - pd.Timedelta(hours=1)).isoformat()
    batch = {
        "consents": [
            {"customer_id": customer, "purpose": "marketing", "granted": False, "recorded_at": at}
        ],
        "orders": [
            {
                "order_id": "online-order-1",
                "customer_id": customer,
                "ordered_at": at,
                "product_id": product,
                "quantity": 1,
                "amount": 12.5,
            }
        ],
        "identities": [
            {"customer_id": customer, "id_type": "messenger", "id_value": "psid-online-1"}
        ],
    }
    assert server.post("/events", json=batch, headers=H_ADMIN).status_code == 200
    # a CDP delivering late: rows dated an hour before the snapshot's as-of, not in it
    before = (AS_OF - pd.Timedelta(hours=1)).isoformat()
    late_rows = {
        "consents": [
            {"customer_id": late, "purpose": "marketing", "granted": False, "recorded_at": before}
        ],
        "orders": [
            {
                "order_id": "late-order-1",
                "customer_id": late,
                "ordered_at": before,
                "product_id": product,
                "quantity": 1,
                "amount": 12.5,
            }
        ],
    }
    assert server.post("/events", json=late_rows, headers=H_ADMIN).status_code == 200

    def in_force(client) -> None:
        mine = client.get("/profile", params={"customer_id": late}, headers=H_CHAT).json()
        assert mine["marketing_allowed"] is False and mine["churn_probability"] is None, mine
        assert "late-order-1" in [o["order_id"] for o in mine["recent_orders"]], mine
        answer = suggest(client, {"customer_id": late})
        assert all(a["purpose"] == "service" for a in answer["actions"]), answer
        ask = {"id_type": "messenger", "id_value": "psid-online-1"}
        profile = client.get("/profile", params=ask, headers=H_CHAT).json()
        assert profile["customer_id"] == customer, profile
        assert profile["marketing_allowed"] is False and profile["churn_probability"] is None
        assert profile["recent_orders"][0]["order_id"] == "online-order-1"
        answer = suggest(client, {"identity": ask})
        assert answer["known"] and all(a["purpose"] == "service" for a in answer["actions"])
        age = (pd.Timestamp(NOW) - AS_OF).total_seconds() / 86_400  # how old the features are
        assert profile["features_age_days"] == answer["features_age_days"] == round(age, 2)

    def metric(client, name: str) -> float:
        lines = client.get("/metrics").text.splitlines()
        return sum(float(x.rsplit(" ", 1)[1]) for x in lines if x.startswith(name))

    in_force(server)
    online = 'nextbest_online_rows_applied_total{table="consents",via="'
    assert metric(server, online + 'events"}') >= 1
    replayed = metric(server, online + 'replay"}')
    reloaded = reload_and_wait(server, H_ADMIN)
    assert reloaded["reloaded"], reloaded
    in_force(server)
    assert metric(server, online + 'replay"}') >= replayed + 1
    snapshot = metric(server, "nextbest_snapshot_as_of_timestamp_seconds")
    assert snapshot == AS_OF.timestamp()
    # A restart: a second service on the store as it is on disk (a consistent copy, so the
    # first keeps serving the other tests and its metrics folder is left alone).
    restarted_state = world / "restarted"
    restarted_state.mkdir()
    source = sqlite3.connect(world / "state" / "serving.db")
    copy = sqlite3.connect(restarted_state / "serving.db")
    source.backup(copy)
    source.close(), copy.close()
    again, url = launch_service(
        *serving_args(world, small_world_dir, restarted_state, NOW),
        keys=f"{CHATBOT}:chatbot,{ADMIN}:admin",
        log_path=world / "restart.log",
    )
    try:
        with httpx.Client(base_url=url, timeout=30) as restarted:
            in_force(restarted)
    finally:
        stop_service(again)


def test_every_door_reads_the_same_log(server, world, small_world_dir, due, tmp_path):
    """A withdrawal the service acknowledged holds in an MCP server started on the same
    --state before it (at its next answer) and in `nextbest suggest --state`."""
    import os

    from conftest import PSEUDONYM_KEY
    from serving import answers
    from serving.config import ServeConfig
    from serving.mcp import load_runtime

    os.environ["NEXTBEST_PSEUDONYM_KEY"] = PSEUDONYM_KEY
    try:
        mcp = load_runtime(
            ServeConfig(
                data=small_world_dir,
                features=world / "features",
                mlruns=world / "mlruns",
                state=world / "state",
                now=pd.Timestamp(NOW).to_pydatetime(),
            )
        )
    finally:
        os.environ.pop("NEXTBEST_PSEUDONYM_KEY", None)
    common = ("--data", str(small_world_dir), "--as-of", NOW, "--mlruns", str(world / "mlruns"))
    common += ("--features", str(world / "features"))
    env = {"NEXTBEST_PSEUDONYM_KEY": PSEUDONYM_KEY}
    before = nextbest("suggest", *common, "--out", str(tmp_path / "before"), env=env)
    assert before.returncode == 0, before.stderr[-2000:]
    rows = pd.read_parquet(tmp_path / "before" / "suggestions.parquet")
    marketing = rows[rows["purpose"] == "marketing"]["customer_id"].unique()
    marketing = [c for c in marketing if c != due["customer_id"]]  # the later tests' own
    # (earlier tests withdrew some consents online: the campaign without --state ignores
    # them, the MCP runtime does not)
    customers = [c for c in marketing if answers.consent_of(mcp, c, "marketing", "mcp")][-3:]
    assert len(customers) == 3
    withdraw = [
        {"customer_id": c, "purpose": "Marketing", "granted": False, "recorded_at": NOW}
        for c in customers
    ]
    assert server.post("/events", json={"consents": withdraw}, headers=H_ADMIN).status_code == 200
    assert not any(answers.consent_of(mcp, c, "marketing", "mcp") for c in customers)
    state = ("--state", str(world / "state"))
    after = nextbest("suggest", *common, *state, "--out", str(tmp_path / "after"), env=env)
    assert after.returncode == 0, after.stderr[-2000:]
    rows = pd.read_parquet(tmp_path / "after" / "suggestions.parquet")
    mine = rows[rows["customer_id"].isin(customers)]
    assert len(mine) and set(mine["purpose"]) == {"service"}, mine
    missing = nextbest("suggest", *common, "--state", str(tmp_path), "--out", "x", env=env)
    assert missing.returncode == 2 and "holds no serving.db" in missing.stderr


# -- hostile and careless input: 4xx naming the problem, never a 500 -------------------------

JSON = {**H_ADMIN, "content-type": "application/json"}
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e309"]
BODIES = {
    "/suggest": '{{"customer_id": "C1", "context": {{"sentiment": {x}}}}}',
    "/suggest/batch": '{{"requests": [{{"customer_id": "C1", "context": {{"sentiment": {x}}}}}]}}',
    "/events": '{{"events": [{{"event_id": "E", "customer_id": "C1", "occurred_at":'
    ' "2025-06-30T00:00:00Z", "source": "web", "event_type": "x", "sentiment": {x}}}]}}',
    "/events#amount": '{{"orders": [{{"order_id": "O", "customer_id": "C1", "ordered_at":'
    ' "2025-06-30T00:00:00Z", "product_id": "P", "quantity": 1, "amount": {x}}}]}}',
}


@pytest.mark.parametrize("number", NON_FINITE)
@pytest.mark.parametrize("route", sorted(BODIES))
def test_non_finite_numbers_are_422(server, route, number):
    body = BODIES[route].format(x=number)
    response = server.post(route.split("#")[0], content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"][0] == "body"


SURROGATE = {
    "/suggest": '{"customer_id": "C\\ud800"}',
    "/suggest/batch": '{"requests": [{"customer_id": "C\\ud800"}]}',
    "/feedback": '{"request_id": "r\\ud800", "action": "a", "outcome": "shown"}',
    "/score/churn": '{"customer_id": "C\\ud800"}',
    "/admin/subject/export": '{"customer_id": "C\\ud800"}',
    "/admin/subject/erase": '{"customer_id": "C\\ud800"}',
    "/events": '{"identities": [{"customer_id": "C\\ud800", "id_type": "t", "id_value": "v"}]}',
    "/events#key": '{"orders": [], "\\ud800": 1}',
}


@pytest.mark.parametrize("route", sorted(SURROGATE))
def test_text_that_is_not_utf8_is_422(server, route):
    response = server.post(route.split("#")[0], content=SURROGATE[route], headers=JSON)
    assert response.status_code == 422, response.text
    response.json()  # the answer itself is valid JSON


def test_a_stray_byte_in_a_header_is_not_a_crash(server):
    headers = {**H_CHAT, "x-note": b"caf\xe9"}
    assert server.post("/suggest", json={"customer_id": "x"}, headers=headers).status_code == 200
    bad_key = server.post("/suggest", json={"customer_id": "x"}, headers={"x-api-key": b"\xff"})
    assert bad_key.status_code == 401


@pytest.mark.parametrize("route", ["/score/churn", "/suggest", "/events"])
def test_the_body_limit_holds_for_chunked_bodies_on_every_route(server, route):
    def chunks():
        yield b'{"customer_id": "'
        for _ in range(40):
            yield b"a" * 50_000
        yield b'"}'

    response = server.post(route, content=chunks(), headers=JSON)
    assert response.status_code == 413, response.text


def test_events_refuse_times_without_a_zone_from_the_future_and_absurd_quantities(server, due):
    customer_id = due["customer_id"]
    order = {
        "order_id": "O-HOSTILE-1",
        "customer_id": customer_id,
        "ordered_at": NOW,
        "product_id": due["product_id"],
        "quantity": 1,
        "amount": 25.0,
    }
    before = server.get("/profile", params={"customer_id": customer_id}, headers=H_CHAT).json()
    cases = {
        "no zone": ({**order, "ordered_at": "2025-06-30T11:00:00"}, "ordered_at"),
        "far future": ({**order, "ordered_at": "9999-12-31T00:00:00Z"}, "ordered_at"),
        "huge quantity": ({**order, "quantity": 10**18}, "quantity"),
        "a number for a time": ({**order, "ordered_at": 0}, "ordered_at"),
        "a flag for a count": ({**order, "quantity": True}, "quantity"),
        "text for an amount": ({**order, "amount": "25"}, "amount"),
        "a product not in the catalog": ({**order, "product_id": "P-NOT-SOLD"}, "product_id"),
        "a quantity of zero": ({**order, "quantity": 0}, "quantity"),
    }
    for name, (row, field) in cases.items():
        response = server.post("/events", json={"orders": [row]}, headers=H_ADMIN)
        assert response.status_code == 422, (name, response.text)
        assert response.json()["errors"][0]["loc"][-1] == field, name
    consent = {"customer_id": customer_id, "purpose": "marketing", "granted": False}
    future = server.post(
        "/events",
        json={"consents": [{**consent, "recorded_at": "2030-01-01T00:00:00Z"}]},
        headers=H_ADMIN,
    )
    assert future.status_code == 422 and "from the future" in future.text
    after = server.get("/profile", params={"customer_id": customer_id}, headers=H_CHAT).json()
    assert "O-HOSTILE-1" not in {o["order_id"] for o in after["recent_orders"]}
    assert after["marketing_allowed"] == before["marketing_allowed"]  # nothing applied


def test_events_create_new_customers_and_move_identities_only_when_asked(
    server, due, small_world_dir, world
):
    identities = pd.read_parquet(small_world_dir / "identities.parquet")
    mine = identities[identities["customer_id"] == due["customer_id"]].iloc[0]
    link = {"id_type": mine["id_type"], "id_value": mine["id_value"]}
    newcomer = "C-NEW-ONLINE-1"
    bad = {
        "orders": [
            {"order_id": "O-N1", "customer_id": newcomer, "ordered_at": NOW,
             "product_id": "P-NOT-SOLD", "quantity": 1, "amount": 5.0},
            {"order_id": "O-N2", "customer_id": newcomer, "ordered_at": NOW,
             "product_id": due["product_id"], "quantity": 0, "amount": 5.0},
        ],
        "identities": [{"customer_id": newcomer, **link}],
    }  # fmt: skip
    refused = server.post("/events", json=bad, headers=H_ADMIN)
    assert refused.status_code == 422, refused.text
    where = sorted(tuple(e["loc"][1:]) for e in refused.json()["errors"])
    assert where == [
        ("identities", 0, "id_value"),
        ("orders", 0, "product_id"),
        ("orders", 1, "quantity"),
    ]
    assert mine["id_value"] not in refused.text  # named, not echoed
    ask = {"customer_id": newcomer}
    assert server.get("/profile", params=ask, headers=H_CHAT).status_code == 404  # nothing applied

    good = {
        "orders": [{**bad["orders"][1], "quantity": 2}],
        "identities": [{"customer_id": newcomer, **link, "move": True}],
    }
    applied = server.post("/events", json=good, headers=H_ADMIN).json()
    assert applied["created"] == [newcomer] and applied["orders"] == 1
    profile = server.get("/profile", params=link, headers=H_CHAT).json()
    assert profile["customer_id"] == newcomer and profile["recent_orders"][0]["order_id"] == "O-N2"
    assert suggest(server, ask)["known"]
    back = {"identities": [{"customer_id": due["customer_id"], **link, "move": True}]}
    assert server.post("/events", json=back, headers=H_ADMIN).status_code == 200
    time.sleep(0.3)  # audit lines are written in 50 ms batches
    lines = [
        json.loads(line)
        for path in (world / "state" / "audit").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    moves = [e for e in lines if e["actions"] and e["actions"][0].startswith("identity_moved")]
    assert len(moves) == 4 and newcomer not in json.dumps(moves)  # pseudonyms only


def _signed(server, path: str, body: dict, secret: str = SEGMENT_SECRET):
    import hashlib
    import hmac

    raw = json.dumps(body).encode()
    signature = hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()
    headers = {"content-type": "application/json", "x-signature": signature}
    return server.post(path, content=raw, headers=headers)


def test_a_cdp_pushes_the_segment_spec_signed_and_each_message_once(server, small_world_dir):
    products = pd.read_parquet(small_world_dir / "products.parquet")["product_id"].tolist()
    who, t0, t1 = "C-SEGMENT-1", (AS_OF + pd.Timedelta(hours=1)), (AS_OF + pd.Timedelta(hours=2))
    identify = {
        "type": "identify",
        "messageId": "m-identify-1",
        "userId": who,
        "anonymousId": "anon-seg-1",
        "timestamp": t0.isoformat(),
        "traits": {"email": " Someone@Example.com ", "locale": "zh-TW", "consent_marketing": True},
    }
    order = {
        "type": "track",
        "messageId": "m-order-1",
        "userId": who,
        "timestamp": t0.isoformat(),
        "event": "Order Completed",
        "properties": {
            "order_id": "SEG-O-1",
            "products": [
                {"product_id": products[0], "quantity": 2, "price": 10.0},
                {"sku": products[1], "price": 4.5},
            ],
        },
    }
    page = {
        "type": "page",
        "messageId": "m-page-1",
        "anonymousId": "anon-seg-1",
        "timestamp": t0.isoformat(),
        "name": "Home",
    }
    odd = {
        "type": "track",
        "messageId": "m-odd-1",
        "userId": who,
        "timestamp": t0.isoformat(),
        "event": "Coupon Applied",
        "properties": {"coupon": "X"},
    }
    body = {"batch": [identify, order, page, odd]}  # fmt: skip
    assert _signed(server, "/v1/batch", body, "not-the-secret").status_code == 401
    assert server.post("/v1/batch", json=body).status_code == 401  # no signature
    answer = _signed(server, "/v1/batch", body)
    assert answer.status_code == 200, answer.text
    applied = answer.json()["applied"]
    assert applied["created"] == [who] and applied["orders"] == 2 and applied["consents"] == 1
    assert applied["events"] == 2 and applied["customers"] == 1  # page + unknown track name
    again = _signed(server, "/v1/batch", body).json()
    assert again["duplicates"] == 4 and again["applied"]["orders"] == 0

    profile = server.get("/profile", params={"customer_id": who}, headers=H_CHAT).json()
    assert profile["locale"] == "zh-TW" and profile["marketing_allowed"] is True
    lines = [o for o in profile["recent_orders"] if o["order_id"] == "SEG-O-1"]
    assert sorted(o["amount"] for o in lines) == [4.5, 20.0]
    email = hashlib.sha256(b"someone@example.com").hexdigest()
    by_email = {"id_type": "email_sha256", "id_value": email}
    assert server.get("/profile", params=by_email, headers=H_CHAT).json()["customer_id"] == who

    withdraw = {
        "type": "identify", "messageId": "m-identify-2", "userId": who,
        "timestamp": t1.isoformat(), "traits": {"consent_marketing": False},
    }  # fmt: skip
    assert _signed(server, "/v1/identify", withdraw).status_code == 200
    after = server.get("/profile", params={"customer_id": who}, headers=H_CHAT).json()
    assert after["marketing_allowed"] is False  # the next answer changed
    unknown = {**order, "messageId": "m-order-2", "properties": {"products": [{"sku": "NOPE"}]}}
    refused = _signed(server, "/v1/track", unknown)
    assert refused.status_code == 422 and refused.json()["errors"][0]["loc"][-1] == "product_id"


def test_score_churn_404_names_no_customer_and_logs_no_error(server, world):
    response = server.post("/score/churn", json={"customer_id": "C-NOT-THERE-42"}, headers=H_CHAT)
    assert response.status_code == 404 and "C-NOT-THERE-42" not in response.text
    time.sleep(0.2)
    assert "C-NOT-THERE-42" not in (world / "serve.log").read_text()


def test_a_deleted_store_is_restored_and_a_locked_one_answers_503(server, due, world):
    """Nothing acknowledged is lost when serving.db is deleted under the service; a store
    locked by another process gives 503 with Retry-After, and /livez stays quick."""
    import sqlite3

    db_path = world / "state" / "serving.db"
    first = suggest(server, {"customer_id": due["customer_id"], "max_actions": 10})
    item = feedback_for(first, "accepted")
    earlier = {"request_id": first["request_id"], **{k: item[k] for k in ("action", "product_id")}}
    assert server.post("/feedback", json={**earlier, "outcome": "shown"}, headers=H_CHAT).is_success
    time.sleep(0.3)  # the suggestion record lands (50 ms batches)
    for path in db_path.parent.glob("serving.db*"):
        path.unlink()
    assert server.post("/feedback", json=item, headers=H_CHAT).status_code == 200
    with sqlite3.connect(db_path) as db:
        mine = db.execute(
            "select outcome from feedback where request_id = ?", (first["request_id"],)
        ).fetchall()
        every = db.execute("select count(*) from feedback").fetchone()[0]
    assert mine == [("shown",), ("accepted",)] and every >= 2  # acknowledged before, and now

    locker = sqlite3.connect(db_path, isolation_level=None)
    locker.execute("begin exclusive")
    latencies, stop = [], threading.Event()

    def probe():
        while not stop.is_set():
            started = time.monotonic()
            server.get("/livez")
            latencies.append(time.monotonic() - started)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        converted = {**item, "outcome": "converted"}
        locked = server.post("/feedback", json=converted, headers=H_CHAT)
        assert locked.status_code == 503 and locked.headers["retry-after"] == "5", locked.text
    finally:
        stop.set()
        prober.join()
        locker.execute("rollback")
        locker.close()
    assert latencies and max(latencies) < 1.0, max(latencies)
    assert server.post("/feedback", json=converted, headers=H_CHAT).status_code == 200


def test_every_answer_logs_its_propensities_and_a_policy_is_judged_on_them(
    server, due, world, tmp_path
):
    """Each /suggest answer's audit line holds its eligible actions with propensities 1 and
    0 (exploration off); `nextbest evaluate-policy` reads the state folder: the served
    catalog as the target agrees with every answer, and conversions are its rewards."""
    for _ in range(3):
        answer = suggest(server, {"customer_id": due["customer_id"], "max_actions": 10})
        item = {**feedback_for(answer, "converted"), "outcome": "converted"}
        assert server.post("/feedback", json=item, headers=H_CHAT).status_code == 200
    time.sleep(0.5)  # the audit lines land (batched)
    files = (world / "state" / "audit").glob("*.jsonl")
    lines = [json.loads(x) for f in files for x in f.read_text().splitlines()]
    mine = [x for x in lines if x.get("request_id") == answer["request_id"]]
    assert len(mine) == 1 and mine[0]["eligible"][0]["propensity"] == 1.0
    assert {e["propensity"] for e in mine[0]["eligible"][1:]} <= {0.0}
    assert mine[0]["eligible"][0]["action"] == answer["actions"][0]["action"]
    out = tmp_path / "report.json"
    done = nextbest("evaluate-policy", "--feedback", str(world / "state"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["answers"] >= 3 and report["matched"] >= 0.95 * report["answers"]
    assert report["logged"]["value"] > 0 and report["snips"]["value"] > 0


def test_hot_reload_under_load_then_a_corrupt_champion_is_rejected(server, world, small_world_dir):
    retrained = nextbest(
        "train",
        "--data",
        str(small_world_dir),
        "--as-of",
        AS_OF.date().isoformat(),
        "--mlruns",
        str(world / "mlruns"),
        "--confidence",
        "0",  # the same data trains the same model: promote it on the point estimate
    )
    assert retrained.returncode == 0, retrained.stderr
    statuses, versions, stop = [], set(), threading.Event()

    def hammer():
        with httpx.Client(base_url=str(server.base_url), timeout=30) as client:
            while not stop.is_set():
                r = client.post("/suggest", json={"customer_id": "nobody"}, headers=H_CHAT)
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.add(r.json()["model_versions"]["churn"])

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    count = "nextbest_reload_duration_seconds_count "

    def reloads_done() -> float:
        lines = server.get("/metrics").text.splitlines()
        return sum(float(x.split()[-1]) for x in lines if x.startswith(count))

    before = reloads_done()
    clock = time.monotonic()
    started = server.post("/admin/reload", headers=H_ADMIN)
    answered_in = time.monotonic() - clock
    joined = server.post("/admin/reload", headers=H_ADMIN)  # while the first still loads
    running = server.get("/admin/reload", headers=H_ADMIN).json()
    metrics = server.get("/metrics").text
    deadline = time.monotonic() + 120
    while (status := server.get("/admin/reload", headers=H_ADMIN).json())["status"] == "running":
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    # 202 at once, the load in the background; a second request joins it
    assert started.status_code == 202 and started.json()["started"] is True, started.text
    assert started.headers["location"] == "/admin/reload" and answered_in < 1.0, answered_in
    assert joined.status_code == 202 and joined.json()["started"] is False, joined.text
    assert running["status"] == "running" and "nextbest_reload_running 1.0" in metrics
    assert status["status"] == "reloaded" and status["reloaded"], status
    assert status["model_versions"]["churn"] == "2" and status["seconds"] > 0
    assert status["started_at"] == started.json()["started_at"]
    assert statuses and set(statuses) == {200}  # no failed request during the switch
    assert versions <= {"1", "2"} and "2" in versions
    assert "nextbest_reload_running 0.0" in server.get("/metrics").text
    assert reloads_done() == before + 1  # the joined request started none

    # point the champion at version 1 and corrupt its stored parts: the reload must fail
    from mlflow import MlflowClient

    # a client of its own: mlflow.set_tracking_uri would export MLFLOW_TRACKING_URI to every
    # later subprocess of the test session
    uri = f"sqlite:///{world / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    v1 = client.get_model_version("nextbest-churn", "1")
    stored = client.get_logged_model(v1.source.removeprefix("models:/")).artifact_location
    booster = Path(stored.removeprefix("file://")) / "artifacts" / "model.lgb"
    # a truncated booster with garbage appended: the digest check refuses it before LightGBM
    # ever parses it (LightGBM aborts the process on a malformed model file)
    booster.write_bytes(booster.read_bytes()[:4_000] + b"\x00garbage")
    client.set_registered_model_alias("nextbest-churn", "champion", "1")
    rejected = reload_and_wait(server, H_ADMIN)
    assert rejected["status"] == "failed"
    assert rejected["reloaded"] is False and rejected["model_versions"]["churn"] == "2"
    assert suggest(server, {"customer_id": "nobody"})["model_versions"]["churn"] == "2"
    metrics = server.get("/metrics").text
    assert 'nextbest_reloads_total{outcome="failed"}' in metrics
    assert "is corrupt" in rejected["detail"] and "model.lgb" in rejected["detail"]
    # starting a service on the corrupt champion: one clear line, no traceback, no crash
    import os

    from conftest import PSEUDONYM_KEY, free_port

    started = subprocess.run(
        ["nextbest", "serve", "--data", str(small_world_dir), "--features",
         str(world / "features"), "--mlruns", str(world / "mlruns"), "--port", str(free_port())],
        env={**os.environ, "NEXTBEST_API_KEYS": f"{CHATBOT}:chatbot",
             "NEXTBEST_PSEUDONYM_KEY": PSEUDONYM_KEY},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert started.returncode == 1, started.stderr
    assert started.stderr.strip().splitlines() == [
        line for line in started.stderr.strip().splitlines() if line.startswith("nextbest:")
    ]
    assert "nextbest-churn v1 (champion) is corrupt" in started.stderr
    assert "Traceback" not in started.stderr
    client.set_registered_model_alias("nextbest-churn", "champion", "2")
    # the retraining job's reload: it asks, then follows the status until that reload ends
    from training.retrain import RetrainConfig, _reload

    job = RetrainConfig(data=small_world_dir, service_url=str(server.base_url), admin_key=ADMIN)
    followed = _reload(job, every=0.1)
    assert followed["reloaded"] and followed["model_versions"]["churn"] == "2", followed
    assert _reload(RetrainConfig(data=small_world_dir, service_url=job.service_url)) == {
        "reloaded": False,
        "detail": "HTTP 401",
    }


def test_the_operator_metrics_count_and_every_rule_and_panel_reads_a_real_series(
    server, small_world_dir
):
    """Actions by kind and purpose, marketing withheld, feedback outcomes, refused rows and
    the model versions serving are on /metrics, and every metric the alert rules and the
    Grafana dashboard (deploy/) query is one the service exports."""
    customers = pd.read_parquet(small_world_dir / "customers.parquet")["customer_id"]
    asked = [*customers.head(200), *_without_consent(small_world_dir)[:100]]
    body = {"requests": [{"customer_id": c} for c in asked]}
    batch = server.post("/suggest/batch", json=body, headers=H_CHAT)
    assert batch.status_code == 200, batch.text
    answer = next(
        a
        for a in batch.json()["responses"]
        if any(x["purpose"] == "marketing" for x in a["actions"])
    )
    marketing = [a for a in answer["actions"] if a["purpose"] == "marketing"]
    feedback = feedback_for(answer, "shown", answer["actions"].index(marketing[0]))
    assert server.post("/feedback", json=feedback, headers=H_CHAT).status_code == 200
    future = (pd.Timestamp(NOW) + pd.Timedelta(days=30)).isoformat()
    late = {"orders": [{"order_id": "Z1", "customer_id": answer["customer_id"],
                        "ordered_at": future, "product_id": marketing[0]["product_id"] or "P01",
                        "quantity": 1, "amount": 1.0}]}  # fmt: skip
    assert server.post("/events", json=late, headers=H_ADMIN).status_code == 422
    view = {"event_id": "metrics-view-1", "customer_id": answer["customer_id"],
            "occurred_at": NOW, "source": "web", "event_type": "page_view"}  # fmt: skip
    assert server.post("/events", json={"events": [view]}, headers=H_ADMIN).status_code == 200
    text = server.get("/metrics").text

    def value(pattern: str) -> float:
        found = re.findall(rf"^{pattern} ([0-9.e+]+)$", text, re.MULTILINE)
        assert found, pattern
        return sum(float(x) for x in found)

    action = marketing[0]["action"]
    assert value(rf'nextbest_actions_served_total{{action="{action}",purpose="marketing"}}') >= 1
    assert value(r'nextbest_feedback_total\{outcome="shown",result="stored"\}') >= 1
    assert value(r'nextbest_online_rows_refused_total\{route="/events"\}') >= 1
    assert value(r'nextbest_marketing_withheld_total\{reason="consent"\}') >= 1
    serving = re.findall(r'^nextbest_model_info\{model="(\w+)",version="(\w+)"\} 1\.0$', text, re.M)
    assert {m for m, _ in serving} == {"churn", "clv", "replenishment", "next_product"}
    exported = set(re.findall(r"^([a-z_:]+)(?:\{| )", text, re.MULTILINE))
    deploy = Path(__file__).resolve().parents[2] / "deploy"
    queries = [t["expr"] for p in json.loads((deploy / "grafana" / "nextbest.json").read_text())
               ["panels"] for t in p["targets"]]  # fmt: skip
    queries += re.findall(
        r"expr: (.*(?:\n {12}.*)*)", (deploy / "prometheus" / "alerts.yaml").read_text()
    )
    used = {name for q in queries for name in re.findall(r"\b((?:nextbest|bentoml)_[a-z_]+)", q)}
    assert used and used <= exported, used - exported


def test_every_error_is_one_documented_problem(server):
    """RFC 9457 problems from every layer: the key check, the body parser, validation, a
    route's own 404 and 422; ``detail`` is always text, ``errors`` lists fields."""
    unknown_answer = {"request_id": "r", "action": "a", "outcome": "shown"}
    cases = [
        ("post", "/suggest", {"json": {"customer_id": "x"}}, 401),
        ("post", "/suggest", {"content": b"\xff{", "headers": {**H_CHAT, **JSON}}, 400),
        ("post", "/suggest", {"json": {"customer_id": None}, "headers": H_CHAT}, 422),
        ("post", "/suggest", {"json": {"customer_id": "x", "identity": None}}, 422),
        ("post", "/suggest", {"json": {"context": {"sentiment": False}}}, 422),
        ("get", "/profile", {"params": {}, "headers": H_CHAT}, 422),
        ("post", "/score/churn", {"json": {"customer_id": "nobody"}, "headers": H_CHAT}, 404),
        ("post", "/feedback", {"json": unknown_answer}, 404),
    ]
    for method, path, kwargs, status in cases:
        kwargs.setdefault("headers", H_CHAT if status != 401 else {})
        response = server.request(method.upper(), path, **kwargs)
        assert response.status_code == status, (path, kwargs, response.text)
        assert response.headers["content-type"] == "application/problem+json", path
        problem = response.json()
        assert problem["status"] == status and isinstance(problem["detail"], str), problem
        assert problem["title"] and problem["type"] == "about:blank"
        if status == 422:
            assert problem["errors"] and all("loc" in e and "msg" in e for e in problem["errors"])
    spec = server.get("/docs.json").json()
    suggest = spec["paths"]["/suggest"]["post"]
    body = suggest["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request = spec["components"]["schemas"][body.rsplit("/", 1)[-1]]
    assert request["oneOf"] == [{"required": ["customer_id"]}, {"required": ["identity"]}]
    for status in ("400", "401", "403", "413", "422", "503"):
        content = suggest["responses"][status]["content"]
        assert list(content) == ["application/problem+json"], (status, content)


def test_schemathesis_finds_no_server_error_and_no_schema_violation(server):
    """A bounded schemathesis run over every operation in /docs.json but the clock's (last:
    it ingests random events and reloads): no 5xx, every status, content type, header and body as
    documented, and input the schema forbids refused (tests/serving/schemathesis.toml)."""
    import shutil

    st = shutil.which("st")
    assert st is not None, "schemathesis is a dev dependency"
    checks = (
        "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_headers_conformance,response_schema_conformance,negative_data_rejection"
    )
    result = subprocess.run(
        [
            st,
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{server.base_url}/docs.json",
            "--checks",
            checks,
            "--max-examples",
            "20",
            "--phases",
            "examples,coverage,fuzzing",
            "-H",
            f"x-api-key: {ADMIN}",
            "--seed",
            "1",
            # a move of the simulated clock is kept in the state folder: later tests share it
            "--exclude-path",
            "/admin/clock",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert "passed" in result.stdout and "Server error" not in result.stdout
