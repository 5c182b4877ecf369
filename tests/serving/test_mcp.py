"""nextbest as an MCP server: the SDK's in-memory client on a trained store, a real
``nextbest mcp`` over stdio and over streamable HTTP with keys, and the answers compared
with ``POST /suggest`` of a real REST service on the same store."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time

import httpx
import httpx2
import pandas as pd
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from conftest import (
    AS_OF,
    PSEUDONYM_KEY,
    feedback_for,
    free_port,
    launch_service,
    serving_args,
    stop_service,
)
from test_cli import nextbest

NOW = (AS_OF + pd.Timedelta(hours=12)).isoformat()
CHATBOT = "chatbot-key-for-mcp-tests-01"
TOOLS = {"find_customer", "get_profile", "suggest_next_actions", "check_consent", "record_feedback"}
MESSAGE = {"message": "Hi, is my ink order on its way?", "locale": "en"}


@pytest.fixture(scope="module")
def runtime(world, small_world_dir, tmp_path_factory):
    from serving.config import ServeConfig
    from serving.mcp import load_runtime

    os.environ["NEXTBEST_PSEUDONYM_KEY"] = PSEUDONYM_KEY
    config = ServeConfig(
        data=small_world_dir,
        features=world / "features",
        mlruns=world / "mlruns",
        state=tmp_path_factory.mktemp("mcp-state"),
        now=pd.Timestamp(NOW).to_pydatetime(),
    )
    yield load_runtime(config)
    os.environ.pop("NEXTBEST_PSEUDONYM_KEY", None)


@pytest.fixture(scope="module")
def server(runtime):
    from serving.mcp import build_server

    return build_server(runtime)


def call(server, tool: str, arguments: dict):
    async def go():
        async with Client(server) as client:
            return await client.call_tool(tool, arguments)

    return asyncio.run(go())


def ok(server, tool: str, arguments: dict) -> dict:
    result = call(server, tool, arguments)
    assert not result.is_error, result.content
    return result.structured_content


@pytest.fixture(scope="module")
def people(small_world_dir):
    """Known customers with and without marketing consent in force at NOW, and identities."""
    consents = pd.read_parquet(small_world_dir / "consents.parquet")
    marketing = consents[(consents["purpose"] == "marketing") & (consents["recorded_at"] <= NOW)]
    latest = marketing.sort_values("recorded_at").drop_duplicates("customer_id", keep="last")
    customers = pd.read_parquet(small_world_dir / "customers.parquet")
    known = customers[customers["created_at"] <= AS_OF]["customer_id"]
    allowed = set(latest.loc[latest["granted"], "customer_id"])
    identities = pd.read_parquet(small_world_dir / "identities.parquet")
    return {
        "allowed": sorted(set(known) & allowed),
        "refused": sorted(set(known) - allowed),
        "messenger": identities[
            (identities["id_type"] == "messenger") & identities["customer_id"].isin(set(known))
        ].iloc[0],
    }


def test_the_tools_their_schemas_and_hints(server):
    async def go():
        async with Client(server) as client:
            return (await client.list_tools()).tools

    tools = {t.name: t for t in asyncio.run(go())}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert len(tool.description) > 80, tool.name  # written for a model to read
        assert tool.input_schema["type"] == "object" and tool.output_schema, tool.name
    for name in ("find_customer", "get_profile", "check_consent"):
        assert tools[name].annotations.read_only_hint is True
    # suggestions are recorded (for feedback, cooldowns and caps): not read-only
    assert not (tools["suggest_next_actions"].annotations or {}) or (
        not tools["suggest_next_actions"].annotations.read_only_hint
    )
    schema = tools["suggest_next_actions"].input_schema["properties"]
    assert {"customer_id", "id_type", "id_value", "message", "locale", "max_actions"} <= set(schema)
    outcome = tools["record_feedback"].input_schema["properties"]["outcome"]
    assert set(outcome["enum"]) == {"shown", "accepted", "dismissed", "converted"}


def test_each_tool_on_a_generated_world(server, people):
    who = people["allowed"][0]
    found = ok(server, "find_customer", {"customer_id": who})
    assert found["known"] and found["customer_id"] == who and found["locale"]
    link = people["messenger"]
    by_identity = ok(
        server, "find_customer", {"id_type": "messenger", "id_value": link["id_value"]}
    )
    assert by_identity["customer_id"] == link["customer_id"]

    profile = ok(server, "get_profile", {"customer_id": who})
    assert profile["known"] and profile["profile"]["customer_id"] == who
    assert profile["profile"]["marketing_allowed"] is True

    answer = ok(server, "suggest_next_actions", {"customer_id": who, **MESSAGE})
    assert answer["known"] and answer["actions"] and answer["locale"] == "en"
    consent = ok(server, "check_consent", {"customer_id": who, "purpose": "marketing"})
    assert consent == {"known": True, "customer_id": who, "purpose": "marketing", "allowed": True}

    feedback = feedback_for(answer, "accepted")
    assert ok(server, "record_feedback", feedback) == {"stored": True}


def test_unknown_customers_are_known_false(server):
    ghost = {"customer_id": "no-such-customer"}
    assert ok(server, "find_customer", ghost)["known"] is False
    assert ok(server, "get_profile", ghost) == {"known": False, "profile": None}
    answer = ok(server, "suggest_next_actions", ghost)
    assert answer["known"] is False
    assert all(a["purpose"] == "service" for a in answer["actions"])
    consent = ok(server, "check_consent", {**ghost, "purpose": "marketing"})
    assert consent["known"] is False and consent["allowed"] is False


@pytest.mark.parametrize(
    "tool, arguments, named",
    [
        ("find_customer", {}, "customer_id"),
        ("find_customer", {"customer_id": "C1", "id_type": "line"}, "not both"),
        ("find_customer", {"id_type": "line"}, "id_value"),
        ("suggest_next_actions", {"customer_id": "C1", "max_actions": 0}, "max_actions"),
        ("suggest_next_actions", {"customer_id": "C1", "sentiment": 3}, "sentiment"),
        ("record_feedback", {"request_id": "r", "action": "a", "outcome": "bought"}, "outcome"),
        ("record_feedback", {"request_id": "r0", "action": "a", "outcome": "shown"}, "r0"),
        ("check_consent", {"customer_id": "C1"}, "purpose"),
    ],
)
def test_bad_arguments_are_tool_errors_naming_the_argument(server, tool, arguments, named):
    result = call(server, tool, arguments)
    assert result.is_error
    text = " ".join(c.text for c in result.content)
    assert named in text, text
    assert ok(server, "find_customer", {"customer_id": "C1"}) is not None  # still serving


def test_no_marketing_suggestion_without_consent(server, people):
    refused = people["refused"][:40]
    assert len(refused) >= 20
    for who in refused:
        answer = ok(server, "suggest_next_actions", {"customer_id": who, **MESSAGE})
        assert answer["known"]
        assert all(a["purpose"] == "service" for a in answer["actions"]), who
        profile = ok(server, "get_profile", {"customer_id": who})["profile"]
        assert profile["churn_probability"] is None and profile["clv_12m"] is None


def test_audit_lines_are_pseudonymous_with_route_mcp(server, runtime, people):
    who = people["allowed"][1]
    ok(server, "suggest_next_actions", {"customer_id": who})
    runtime.audit.flush()
    entries = [e for e in runtime.audit.entries() if e["route"] == "mcp"]
    assert entries and all(e["key_id"] == "local" for e in entries)
    assert runtime.pseudonym(who) in {e["customer"] for e in entries}
    text = "".join(p.read_text() for p in runtime.audit.files())
    assert who not in text and people["allowed"][0] not in text


def _mcp_command(world, small_world_dir, state, *extra) -> list[str]:
    exe = shutil.which("nextbest") or "nextbest"
    return [exe, "mcp", *serving_args(world, small_world_dir, state, NOW), *extra]


def _without_request(answer: dict) -> dict:
    return {k: v for k, v in answer.items() if k != "request_id"}


#: A global control group every door is told of, as a deployment sets it once for all.
HOLDOUT = {"NEXTBEST_HOLDOUT": "0.3", "NEXTBEST_HOLDOUT_PERIOD": "2027H1"}


def test_three_doors_give_the_same_answers(world, small_world_dir, people, tmp_path):
    """The same customers to a real REST service, a real stdio MCP server (in a chat) and
    `nextbest suggest` (a campaign), three processes each on a fresh store, with a global
    control group of 30%: equal answers (request ids apart), no marketing for a customer
    without consent nor for one in the control group, whom every door agrees on."""
    from cdp.privacy import pseudonym
    from policy.holdout import Holdout

    key = PSEUDONYM_KEY.encode()
    holdout = Holdout(0.3, "2027H1")
    everyone = people["allowed"] + people["refused"]
    control = {c for c in everyone if holdout.in_control(pseudonym(c, key), key)}
    customers = people["allowed"][2:7] + people["refused"][:3]
    rest, url = launch_service(
        *serving_args(world, small_world_dir, tmp_path / "rest", NOW),
        keys=f"{CHATBOT}:chatbot",
        log_path=tmp_path / "rest.log",
        env=HOLDOUT,
    )
    try:
        with httpx.Client(base_url=url, timeout=30) as client:

            def ask(customer_id: str, context: dict) -> dict:
                body = {"customer_id": customer_id, "context": context}
                return client.post("/suggest", json=body, headers={"x-api-key": CHATBOT}).json()

            expected = [ask(c, MESSAGE) for c in customers]
            outbound = {c: ask(c, {"channel": "outbound"}) for c in people["allowed"][:40]}
            outbound |= {c: ask(c, {"channel": "outbound"}) for c in people["refused"][:20]}
    finally:
        stop_service(rest)
    campaign = nextbest(
        "suggest", *serving_args(world, small_world_dir, tmp_path / "unused", NOW)[:6],
        "--as-of", NOW, "--out", str(tmp_path / "campaign"),
        env={**HOLDOUT, "NEXTBEST_PSEUDONYM_KEY": PSEUDONYM_KEY},
    )  # fmt: skip
    assert campaign.returncode == 0, campaign.stderr
    rows = pd.read_parquet(tmp_path / "campaign" / "suggestions.parquet")
    fields = ("action", "purpose", "product_id", "probability", "expected_value", "message")
    for customer_id, answer in outbound.items():
        mine = rows[rows["customer_id"] == customer_id].sort_values("rank")
        assert mine["rank"].tolist() == list(range(1, len(answer["actions"]) + 1))
        assert set(mine["locale"]) == {answer["locale"]}
        for (_, row), action in zip(mine.iterrows(), answer["actions"], strict=True):
            got = {f: None if pd.isna(row[f]) else row[f] for f in fields}  # nulls read as NaN
            assert got == {f: action[f] for f in fields}
            assert list(row["reason_codes"]) == action["reason_codes"]
    refused = rows[rows["customer_id"].isin(people["refused"])]
    assert len(refused) and (refused["purpose"] == "service").all()
    assert any(rows.loc[rows["customer_id"].isin(people["allowed"]), "purpose"] == "marketing")
    held = rows[rows["customer_id"].isin(control)]
    assert len(held) and (held["purpose"] == "service").all()
    meta = json.loads((tmp_path / "campaign" / "suggestions.json").read_text())
    assert meta["withheld_for_holdout"] > 0
    asked = [c for c in outbound if c in control]
    assert asked and all(a["purpose"] == "service" for c in asked for a in outbound[c]["actions"])
    time.sleep(0.3)  # audit lines are written in 50 ms batches
    lines = [
        json.loads(line)
        for path in (tmp_path / "rest" / "audit").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    groups = {e["customer"]: e["group"] for e in lines if e.get("customer")}
    for c in outbound:  # every answer's audit line says the group, as the others draw it
        assert groups[pseudonym(c, key)] == ("control" if c in control else "treated")
    command = _mcp_command(world, small_world_dir, tmp_path / "mcp")
    params = StdioServerParameters(
        command=command[0],
        args=command[1:],
        env={**os.environ, **HOLDOUT, "NEXTBEST_PSEUDONYM_KEY": PSEUDONYM_KEY},
    )

    async def go():
        async with Client(params) as client:
            return [
                await client.call_tool("suggest_next_actions", {"customer_id": c, **MESSAGE})
                for c in customers
            ]

    got = [r.structured_content for r in asyncio.run(go())]
    assert any(a["actions"] for a in got)
    assert [_without_request(a) for a in got] == [_without_request(a) for a in expected]


def _wait_for_port(port: int, process, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    pytest.fail("nextbest mcp --http did not listen")


def test_streamable_http_needs_a_key(world, small_world_dir, people, tmp_path):
    port = free_port()
    command = _mcp_command(world, small_world_dir, tmp_path, "--http", "--port", str(port))
    env = {
        **os.environ,
        "NEXTBEST_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "NEXTBEST_API_KEYS": f"{CHATBOT}:chatbot",
    }
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_port(port, process)
        url = f"http://127.0.0.1:{port}/mcp"
        who = people["allowed"][0]

        async def go(headers):
            http = httpx2.AsyncClient(headers=headers, timeout=30)
            async with Client(streamable_http_client(url, http_client=http)) as client:
                return await client.call_tool("find_customer", {"customer_id": who})

        found = asyncio.run(go({"Authorization": f"Bearer {CHATBOT}"}))
        assert found.structured_content["customer_id"] == who
        refused = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert refused.status_code == 401
        with pytest.raises(Exception):  # noqa: B017 - the SDK's error for a 401
            asyncio.run(go({"Authorization": "Bearer not-a-key-0000000000"}))
    finally:
        process.terminate()
        process.wait(timeout=30)
