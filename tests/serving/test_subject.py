"""Data-subject rights end to end: a generated world, a real MLflow store, a real running
service; export, erasure everywhere, suppression against re-import, purpose limitation and
the audit log."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import httpx
import pandas as pd
import pytest

from conftest import AS_OF, PSEUDONYM_KEY, launch_service, reload_and_wait, stop_service
from nextbest.subject import traces

CHATBOT = "chatbot-key-for-subjects-0001"
ADMIN = "admin-key-for-subjects-000002"
NOW = (AS_OF + pd.Timedelta(hours=12)).isoformat()


def run(*args: str, env: dict) -> subprocess.CompletedProcess:
    exe = shutil.which("nextbest") or "nextbest"
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=600, env={**os.environ, **env}
    )


@pytest.fixture(scope="module")
def site(small_world_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("subjects")
    data = root / "data"
    shutil.copytree(small_world_dir, data)
    env = {
        "NEXTBEST_PSEUDONYM_KEY": PSEUDONYM_KEY,
        "NEXTBEST_SUPPRESSION": str(root / "suppression.json"),
        "NEXTBEST_ADMIN_KEY": ADMIN,
    }
    common = ("--data", str(data), "--as-of", AS_OF.date().isoformat())
    built = run("features", *common, "--out", str(root / "features"), env=env)
    assert built.returncode == 0, built.stderr
    trained = run("train", *common, "--mlruns", str(root / "mlruns"), env=env)
    assert trained.returncode == 0, trained.stderr
    os.environ["NEXTBEST_SUPPRESSION"] = env["NEXTBEST_SUPPRESSION"]  # for the service
    try:
        process, url = launch_service(
            "--data",
            str(data),
            "--features",
            str(root / "features"),
            "--mlruns",
            str(root / "mlruns"),
            "--state",
            str(root / "state"),
            "--now",
            NOW,
            keys=f"{CHATBOT}:chatbot,{ADMIN}:admin",
            log_path=root / "serve.log",
        )
    finally:
        del os.environ["NEXTBEST_SUPPRESSION"]
    with httpx.Client(base_url=url, timeout=60) as client:
        yield {
            "root": root,
            "data": data,
            "env": {**env, "NEXTBEST_SERVICE_URL": url},
            "client": client,
        }
    stop_service(process)


def _chat(site, path: str, body: dict) -> dict:
    response = site["client"].post(path, json=body, headers={"x-api-key": CHATBOT})
    assert response.status_code == 200, response.text
    return response.json()


def _admin(site, path: str, body: dict) -> dict:
    response = site["client"].post(path, json=body, headers={"x-api-key": ADMIN})
    assert response.status_code == 200, response.text
    return response.json()


def _subject(site) -> tuple[str, pd.DataFrame]:
    """A customer with several identities, orders and events."""
    identities = pd.read_parquet(site["data"] / "identities.parquet")
    orders = pd.read_parquet(site["data"] / "orders.parquet")
    counts = identities[identities["id_type"].isin(["cookie", "messenger", "line"])]
    counts = counts.groupby("customer_id").size()
    buyers = set(orders.loc[orders["ordered_at"] <= AS_OF, "customer_id"])
    customer_id = next(c for c in counts.sort_values(ascending=False).index if c in buyers)
    return customer_id, identities[identities["customer_id"] == customer_id]


@pytest.mark.heavy  # trains and serves a world of its own
def test_export_then_erase_leaves_no_trace_and_a_retrain_cannot_bring_them_back(site):
    from cdp import privacy

    customer_id, identities = _subject(site)
    original = site["root"] / "original"
    shutil.copytree(site["data"], original)  # what the CDP will export again later

    # the customer talks to the chatbot: suggestions, a profile look-up, feedback, an order
    answer = _chat(site, "/suggest", {"customer_id": customer_id})
    assert answer["known"]
    if answer["actions"]:
        _chat(
            site,
            "/feedback",
            {
                "request_id": answer["request_id"],
                "action": answer["actions"][0]["action"],
                "product_id": answer["actions"][0]["product_id"],
                "outcome": "shown",
            },
        )
    cookie = identities.iloc[0]
    profile = site["client"].get(
        "/profile",
        params={"id_type": cookie["id_type"], "id_value": cookie["id_value"]},
        headers={"x-api-key": CHATBOT},
    )
    assert profile.status_code == 200 and profile.json()["customer_id"] == customer_id
    order = {
        "order_id": "O-SUBJECT-1",
        "customer_id": customer_id,
        "ordered_at": NOW,
        "product_id": "P-INK",
        "quantity": 1,
        "amount": 25.0,
    }
    _admin(site, "/events", {"orders": [order]})

    # access: one document with everything
    args = ("--customer-id", customer_id, "--data", str(site["data"]))
    outputs = ("--outputs", str(site["root"] / "features"))
    exported = run("subject", "export", *args, *outputs, env=site["env"])
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    assert len(document["contract"]["customers.parquet"]) == 1
    assert len(document["contract"]["identities.parquet"]) == len(identities)
    assert document["contract"]["orders.parquet"] and document["contract"]["events.parquet"]
    assert document["outputs"][str(site["root"] / "features")]["customers.parquet"]
    service = document["service"]
    assert service["known"] and service["served_profile"]["customer_id"] == customer_id
    assert service["holdout_group"] == "treated"  # no control group in this deployment
    assert len(service["stores"]["suggestions"]) >= 1
    assert service["stores"]["ingested"][0]["row"]["order_id"] == "O-SUBJECT-1"
    assert {e["route"] for e in service["audit"]} >= {"/suggest", "/profile"}
    if answer["actions"]:
        assert len(service["stores"]["feedback"]) == 1

    # before erasure the search finds them: in the data, the snapshot, the stores, the audit
    os.environ["NEXTBEST_PSEUDONYM_KEY"] = PSEUDONYM_KEY
    try:
        pseudonym = privacy.pseudonym(customer_id)
    finally:
        del os.environ["NEXTBEST_PSEUDONYM_KEY"]
    root = site["root"]
    assert len(traces([root / "data", root / "features"], {customer_id})) >= 5
    assert len(traces([root / "state"], {pseudonym})) >= 2  # serving.db and audit.jsonl

    # erasure everywhere
    erased = run(
        "subject",
        "erase",
        *args,
        *outputs,
        "--mlruns",
        str(site["root"] / "mlruns"),
        env=site["env"],
    )
    assert erased.returncode == 0, erased.stderr + erased.stdout
    assert "no trace left" in erased.stdout

    # a search for the raw id and the pseudonym across data, snapshots, mlruns, the stores,
    # the audit log and the service's log finds nothing
    searched = [
        root / "data",
        root / "features",
        root / "mlruns",
        root / "state",
        root / "serve.log",
    ]
    assert traces([p for p in searched if p.is_dir()], {customer_id, pseudonym}) == []
    log = (root / "serve.log").read_text()
    assert customer_id not in log and pseudonym not in log

    # every identity that was theirs is unknown now
    for row in identities.itertuples():
        again = _chat(
            site, "/suggest", {"identity": {"id_type": row.id_type, "id_value": row.id_value}}
        )
        assert again["known"] is False and again["customer_id"] is None
    assert _chat(site, "/suggest", {"customer_id": customer_id})["known"] is False

    # the CDP exports them again; features, a retrain and a reload still leave them out
    shutil.rmtree(site["data"])
    shutil.copytree(original, site["data"])
    rebuilt = run(
        "features",
        "--data",
        str(site["data"]),
        "--as-of",
        AS_OF.date().isoformat(),
        "--out",
        str(root / "rebuilt"),
        env=site["env"],
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert customer_id not in set(
        pd.read_parquet(root / "rebuilt" / "customers.parquet")["customer_id"]
    )
    retrained = run(
        "retrain",
        "--data",
        str(site["data"]),
        "--as-of",
        AS_OF.date().isoformat(),
        "--mlruns",
        str(root / "mlruns"),
        "--force",
        env=site["env"],
    )
    assert retrained.returncode in (0, 3), retrained.stderr
    assert reload_and_wait(site["client"], {"x-api-key": ADMIN})["reloaded"]
    assert _chat(site, "/suggest", {"customer_id": customer_id})["known"] is False
    assert traces([root / "mlruns", root / "rebuilt"], {customer_id, pseudonym}) == []

    # the erasure is audited, without personal data
    audit = (root / "state" / "audit" / "audit.jsonl").read_text()
    assert '"erasure"' in audit and customer_id not in audit and pseudonym not in audit


def test_audit_records_hold_no_raw_ids_and_no_keys(site):
    customers = pd.read_parquet(site["root"] / "features" / "customers.parquet")["customer_id"]
    for customer_id in customers.head(5):
        _chat(site, "/suggest", {"customer_id": customer_id})
    time.sleep(0.5)  # audit lines are written in 50 ms batches
    text = "".join(p.read_text() for p in (site["root"] / "state" / "audit").glob("*.jsonl"))
    entries = [json.loads(line) for line in text.splitlines()]
    assert len(entries) >= 5
    assert all(e["key_id"] and len(e["key_id"]) == 8 for e in entries if e["route"] == "/suggest")
    assert CHATBOT not in text and ADMIN not in text
    written = set(text.replace('"', " ").replace(",", " ").split())
    assert not written & set(customers)  # no raw customer id anywhere

    # the CLI finds one customer's entries through their pseudonym
    queried = run(
        "audit",
        "query",
        "--state",
        str(site["root"] / "state"),
        "--customer-id",
        customers.iloc[0],
        "--json",
        env=site["env"],
    )
    assert queried.returncode == 0, queried.stderr
    lines = [json.loads(x) for x in queried.stdout.splitlines()]
    assert lines and all(x["route"] == "/suggest" for x in lines)
    assert customers.iloc[0] not in queried.stdout


def test_consent_withdrawn_through_events_stops_marketing_on_the_next_request(site):
    consents = pd.read_parquet(site["data"] / "consents.parquet")
    latest = consents[consents["purpose"] == "marketing"].sort_values("recorded_at")
    latest = latest.drop_duplicates("customer_id", keep="last")
    customer_id = latest.loc[latest["granted"], "customer_id"].iloc[0]
    before = (
        site["client"]
        .get("/profile", params={"customer_id": customer_id}, headers={"x-api-key": CHATBOT})
        .json()
    )
    assert before["marketing_scoring"] == "used"
    withdraw = {
        "customer_id": customer_id,
        "purpose": "marketing",
        "granted": False,
        "recorded_at": NOW,
        "source": "chatbot",
    }
    _admin(site, "/events", {"consents": [withdraw]})
    answer = _chat(site, "/suggest", {"customer_id": customer_id})
    assert all(a["purpose"] != "marketing" for a in answer["actions"])
    reasons = {s["action"]: s["reason"] for s in answer["do_not_suggest"]}
    assert reasons.get("winback_offer") == "no marketing consent in force"
    after = (
        site["client"]
        .get("/profile", params={"customer_id": customer_id}, headers={"x-api-key": CHATBOT})
        .json()
    )
    assert after["marketing_scoring"].startswith("skipped") and after["churn_probability"] is None
    assert "marketing: no marketing consent in force" in after["do_not_suggest"]


def test_an_anonymous_event_linked_later_is_found_erased_and_never_stored_raw(site):
    import sqlite3

    features = pd.read_parquet(site["root"] / "features" / "customers.parquet")
    erased_before, _ = _subject(site)
    customer_id = next(c for c in features["customer_id"] if c != erased_before)
    cookie = "ck-anonymous-then-linked-0001"
    event = {
        "event_id": "E-ANON-THEN-LINKED",
        "anonymous_id": cookie,
        "occurred_at": NOW,
        "source": "web",
        "event_type": "page_view",
    }
    _admin(site, "/events", {"events": [event]})  # nobody's yet: the cookie is unknown
    link = {"customer_id": customer_id, "id_type": "cookie", "id_value": cookie}
    _admin(site, "/events", {"identities": [link]})

    state = site["root"] / "state"
    stored = b"".join(p.read_bytes() for p in state.glob("serving.db*"))
    assert cookie.encode() not in stored and customer_id.encode() not in stored  # sealed

    exported = _admin(site, "/admin/subject/export", {"customer_id": customer_id})
    rows = exported["stores"]["ingested"]
    assert {r["row"].get("event_id") for r in rows} >= {"E-ANON-THEN-LINKED"}
    erased = _admin(site, "/admin/subject/erase", {"customer_id": customer_id})
    assert erased["stores"]["ingested"] >= 2  # the anonymous event and the link
    again = _admin(site, "/admin/subject/export", {"customer_id": customer_id})
    assert again["stores"]["ingested"] == []
    with sqlite3.connect(state / "serving.db") as db:
        left = [row for (row,) in db.execute("select row from ingested")]
    assert not any("E-ANON-THEN-LINKED" in row for row in left)
