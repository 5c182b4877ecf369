"""Compaction: what a new snapshot holds leaves the online log at the next load, and what it
does not hold yet stays in force."""

from __future__ import annotations

import dataclasses
import os
import shutil
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from conftest import AS_OF, PSEUDONYM_KEY, SERVE_NOW
from serving.memory import compaction

NOW = pd.Timestamp(SERVE_NOW)


def test_the_rules_for_exposures_signals_and_erasures():
    now = datetime(2025, 7, 1, tzinfo=UTC)
    old = {"at": (now - timedelta(days=31)).isoformat()}
    recent = {"at": (now - timedelta(days=29)).isoformat()}
    assert compaction.stale_exposure(old, now, 30 * 86_400)
    assert not compaction.stale_exposure(recent, now, 30 * 86_400)
    day_ago = int((datetime.now(UTC).timestamp() - 86_400 - 60) * 1000)
    assert compaction.stale_signal(f"{day_ago}-0")
    assert not compaction.stale_signal(f"{int(datetime.now(UTC).timestamp() * 1000)}-0")
    assert not compaction.stale_signal(17)  # the embedded log's positions: no signals there

    from serving.memory.customer import Customer
    from serving.memory.state import ServingState

    state = ServingState(versions={}, as_of=now, window_days=14)
    state.customers["C1"] = Customer("C1", "en", "loyal")
    assert compaction.forgotten(state, {"customer_id": "C2"})
    assert not compaction.forgotten(state, {"customer_id": "C1"})


def _append(folder, table: str, rows: list[dict]) -> None:
    path = folder / f"{table}.parquet"
    frame = pd.read_parquet(path)
    extra = pd.DataFrame(rows)
    for column, dtype in frame.dtypes.items():
        if column in extra:
            extra[column] = extra[column].astype(dtype)
    pd.concat([frame, extra], ignore_index=True).to_parquet(path, index=False)


@pytest.fixture()
def env_key():
    os.environ["NEXTBEST_PSEUDONYM_KEY"] = PSEUDONYM_KEY
    yield
    os.environ.pop("NEXTBEST_PSEUDONYM_KEY", None)


@pytest.fixture(params=["embedded", "redis"])
def log_size(request, monkeypatch):
    """Which online log the runtime uses, and how to count its entries: the state folder's
    store, or a real Redis (a database of its own) shared by workers."""
    if request.param == "embedded":
        return lambda rt: rt.feedback.count("ingested")
    import redis

    url = request.getfixturevalue("redis_url").rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(url).flushdb()
    monkeypatch.setenv("NEXTBEST_ONLINE_STORE", url)
    return lambda rt: rt.online.client.xlen(rt.online.stream)


def test_a_snapshot_that_holds_the_online_rows_takes_them_out_of_the_log(
    world, small_world_dir, tmp_path, env_key, log_size
):
    from features.build import build_features
    from features.config import FeatureConfig
    from features.io import write_snapshot
    from serving import answers
    from serving.config import ServeConfig
    from serving.mcp import load_runtime
    from serving.memory.runtime import load_state
    from serving.schemas import EventBatch

    config = ServeConfig(
        data=small_world_dir,
        features=world / "features",
        mlruns=world / "mlruns",
        state=tmp_path / "state",
        now=NOW.to_pydatetime(),
    )
    rt = load_runtime(config)
    customers = pd.read_parquet(small_world_dir / "customers.parquet")["customer_id"]
    products = pd.read_parquet(small_world_dir / "products.parquet")["product_id"]
    buyer, visitor, withdrawn = customers.iloc[10], customers.iloc[11], customers.iloc[12]
    late = (AS_OF - pd.Timedelta(hours=1)).isoformat()  # a CDP delivering late
    exported = {
        "orders": [
            {"order_id": "LATE-1", "customer_id": buyer, "ordered_at": late,
             "product_id": products.iloc[0], "quantity": 2, "amount": 10.0},
        ],
        "events": [
            {"event_id": "LATE-EV-1", "customer_id": visitor, "occurred_at": late,
             "source": "web", "event_type": "page_view"},
        ],
        "consents": [
            {"customer_id": visitor, "purpose": "marketing", "granted": True,
             "recorded_at": late, "source": "preference_center"},
        ],
    }  # fmt: skip
    not_yet = {
        "consents": [
            {"customer_id": withdrawn, "purpose": "marketing", "granted": False,
             "recorded_at": (NOW - pd.Timedelta(hours=1)).isoformat(), "source": "chatbot"},
        ]
    }  # fmt: skip
    for rows in (exported, not_yet):
        answers.ingest(rt, EventBatch.model_validate(rows))
    assert log_size(rt) == 4
    assert rt.feedback.count("ingested") == 4  # this machine's copy (the stream's, with Redis)
    assert not rt.state.allows(withdrawn, "marketing", NOW)

    # the next export holds the three late rows (not the withdrawal: it came after it)
    export = tmp_path / "export"
    shutil.copytree(small_world_dir, export, ignore=shutil.ignore_patterns("truth"))
    for table, rows in exported.items():
        _append(export, table, [{**r, **_times(r)} for r in rows])
    snapshot = tmp_path / "features"
    feature_config = FeatureConfig()
    write_snapshot(
        build_features(export, as_of=AS_OF, config=feature_config), feature_config, export, snapshot
    )
    newer = dataclasses.replace(config, data=export, features=snapshot)
    state = load_state(rt, newer)
    assert log_size(rt) == 1  # only the withdrawal is left
    assert rt.feedback.count("ingested") == 1  # in this machine's copy too
    assert state.snapshot_events is None  # freed once compaction is done
    assert not state.allows(withdrawn, "marketing", NOW)  # still in force
    assert any(o["order_id"] == "LATE-1" for o in state.customers[buyer].recent_orders)
    assert state.allows(visitor, "marketing", NOW)

    # a later load drops nothing more and answers alike
    again = load_state(rt, newer)
    assert log_size(rt) == 1
    assert not again.allows(withdrawn, "marketing", NOW)
    assert again.customers[buyer].recent_orders == state.customers[buyer].recent_orders


def _times(row: dict) -> dict:
    """The row's times as pandas timestamps, as a CDP's export holds them."""
    return {k: pd.Timestamp(v) for k, v in row.items() if k.endswith("_at")}
