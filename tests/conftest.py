"""Shared fixtures: a tiny hand-built contract dataset and a small simulated world."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pandas as pd
import pytest

from cdp.io import write_tables
from cdp.world.config import WorldConfig
from cdp.world.generate import generate_world

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")
#: The secret that keys customer pseudonyms in the services the tests start.
PSEUDONYM_KEY = "pseudonym-key-for-tests-000003"
#: The fixed clock of the services the tests start on the shared trained ``world``.
SERVE_NOW = (AS_OF + pd.Timedelta(hours=12)).isoformat()
#: What `make test-fast` leaves out: tests that train models, start servers (BentoML,
#: Redis, MCP, Spark, notebooks) or run the demo, found by the fixtures they use or the
#: ``heavy`` mark; what stays runs in a few minutes for the edit-run loop.
HEAVY_FIXTURES = {"world", "demo_run", "redis_url", "simulated", "server", "dataset",
                  "replenishment_data", "due", "registry"}  # fmt: skip


def pytest_addoption(parser):
    parser.addoption(
        "--fast",
        action="store_true",
        help="leave out the tests that train, start servers or run the demo (make test-fast)",
    )


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--fast"):
        return
    kept, dropped = [], []
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        heavy = bool(fixtures & HEAVY_FIXTURES) or item.get_closest_marker("heavy") is not None
        (dropped if heavy else kept).append(item)
    config.hook.pytest_deselected(items=dropped)
    items[:] = kept


def tiny_tables() -> dict[str, pd.DataFrame]:
    """A valid dataset small enough to read at a glance (plain Python values, as a CDP sends)."""
    ts = pd.Timestamp
    return {
        "customers": pd.DataFrame(
            {
                "customer_id": ["00001", "00002", "00003"],
                "created_at": [
                    ts("2024-01-05T10:00:00Z"),
                    ts("2024-02-01T00:00:00Z"),
                    ts("2024-03-01T12:30:00Z"),
                ],
                "country": ["TW", "CN", "US"],
                "locale": ["zh-TW", "zh-CN", "en"],
            }
        ),
        "identities": pd.DataFrame(
            {
                "customer_id": ["00001", "00001", "00002"],
                "id_type": ["cookie", "messenger", "line"],
                "id_value": ["ck-1", "psid-1", "U-2"],
            }
        ),
        "consents": pd.DataFrame(
            {
                "customer_id": ["00001", "00001", "00002"],
                "purpose": ["marketing", "marketing", "personalization"],
                "granted": [True, False, True],
                "recorded_at": [
                    ts("2024-01-05T10:00:00Z"),
                    ts("2024-06-01T00:00:00Z"),
                    ts("2024-02-01T00:00:00Z"),
                ],
                "source": ["signup", "preference_center", "signup"],
            }
        ),
        "products": pd.DataFrame(
            {
                "product_id": ["P-INK", "P-PRINTER"],
                "name": ["Black Ink", "Printer"],
                "category": ["printing", "printing"],
                "consumable": [True, False],
                "price": [25.0, 149.0],
            }
        ),
        "orders": pd.DataFrame(
            {
                "order_id": ["O1", "O1", "O2", "O3"],
                "customer_id": ["00001", "00001", "00001", "00002"],
                "ordered_at": [ts("2024-01-06T09:00:00Z")] * 2
                + [ts("2024-02-20T09:00:00Z"), ts("2024-03-01T00:00:00Z")],
                "product_id": ["P-PRINTER", "P-INK", "P-INK", "P-INK"],
                "quantity": [1, 1, 2, -1],
                "amount": [149.0, 25.0, 50.0, -25.0],
            }
        ),
        "events": pd.DataFrame(
            {
                "event_id": ["E1", "E2", "E3"],
                "customer_id": [None, "00001", "00003"],
                "anonymous_id": ["ck-1", None, None],
                "occurred_at": [
                    ts("2024-01-01T00:00:00Z"),
                    ts("2024-02-19T00:00:00Z"),
                    ts("2024-03-02T00:00:00Z"),
                ],
                "source": ["web", "web", "chatbot"],
                "event_type": ["page_view", "product_view", "chat_message"],
                "product_id": [None, "P-INK", None],
                "sentiment": [None, None, -0.4],
            }
        ),
    }


def write_folder(tables: dict[str, pd.DataFrame], folder: Path, fmt: str = "parquet") -> Path:
    write_tables(tables, folder, fmt)  # type: ignore[arg-type]
    return folder


@pytest.fixture(scope="session")
def small_world():
    """A simulated world of 3,000 customers (seed 11), in memory."""
    return generate_world(WorldConfig(customers=3_000, seed=11, as_of=AS_OF))


def once_per_run(tmp_path_factory, name: str, build) -> Path:
    """The folder ``name``, built by ``build(folder)`` once for the whole run: every
    pytest-xdist worker shares it (the first to ask builds it under a lock, the others wait
    for it), so the costly set-ups (a trained store, the demo) run once, not once per
    worker. A build that failed is retried by the next worker to ask, and fails there too."""
    import fcntl
    import os
    import shutil

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def small_world_dir(tmp_path_factory) -> Path:
    """The small world (``small_world``) written as a Parquet contract folder, once per run;
    the tests read it and never write into it."""

    def build(folder: Path) -> None:
        world = generate_world(WorldConfig(customers=3_000, seed=11, as_of=AS_OF))
        write_folder(world.tables, folder)
        write_folder(world.truth, folder / "truth")

    return once_per_run(tmp_path_factory, "small-world", build)


def contract(**tables: pd.DataFrame):
    """ContractTables from plain frames, typed by the real loader (via a Parquet folder)."""
    import tempfile

    from cdp.validation import load_contract

    frames = {"customers": tables.pop("customers", None)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        base = tiny_tables()
        merged = {name: tables.get(name, base[name]) for name in base}
        if frames["customers"] is not None:
            merged["customers"] = frames["customers"]
        write_folder(merged, folder)
        return load_contract(folder)


def at(day: float, base: str = "2025-01-01") -> pd.Timestamp:
    """A UTC timestamp ``day`` days after ``base`` (fractions give a time of day)."""
    return pd.Timestamp(base, tz="UTC") + pd.Timedelta(days=day)


def shared_frames(tmp_path_factory, name: str, build) -> dict[str, pd.DataFrame]:
    """The frames ``build()`` returns (a dict of DataFrames), built once per run and kept as
    Parquet (:func:`once_per_run`), read back by every worker that asks."""

    def write(folder: Path) -> None:
        folder.mkdir(parents=True)
        for key, frame in build().items():
            frame.to_parquet(folder / f"{key}.parquet")

    folder = once_per_run(tmp_path_factory, name, write)
    return {path.stem: pd.read_parquet(path) for path in sorted(folder.glob("*.parquet"))}


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """Churn examples of a 12,000-customer world (seed 21), horizon 90 days."""

    def build():
        from cdp.contract import ContractTables
        from features.config import FeatureConfig
        from training.dataset import churn_dataset, training_cutoffs

        world = generate_world(WorldConfig(customers=12_000, seed=21, as_of=AS_OF))
        tables = ContractTables(**world.tables)
        config = FeatureConfig(horizon_days=90)
        return churn_dataset(tables, config, training_cutoffs(AS_OF, horizon_days=90))

    return shared_frames(tmp_path_factory, "churn-dataset", build)


@pytest.fixture(scope="session")
def replenishment_data(tmp_path_factory):
    """Pair examples of a 12,000-customer world (seed 21), window 14 days, 4 training cutoffs."""

    def build():
        from cdp.contract import ContractTables
        from features.config import FeatureConfig
        from training.dataset import training_cutoffs
        from training.replenishment import replenishment_dataset

        world = generate_world(WorldConfig(customers=12_000, seed=21, as_of=AS_OF))
        cutoffs = training_cutoffs(AS_OF, horizon_days=14, n_train=4, step_days=14)
        return replenishment_dataset(ContractTables(**world.tables), FeatureConfig(), cutoffs)

    return shared_frames(tmp_path_factory, "replenishment-dataset", build)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty MLflow store (SQLite) in a temporary folder, configured for the test."""
    from training.registry import configure

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    configure(tmp_path / "mlruns")
    return tmp_path / "mlruns"


def free_port() -> int:
    """A port of 127.0.0.1 free now, below the ephemeral range (32768 and up on Linux), so
    that no client connection of another process takes it before the service binds it."""
    import random
    import socket

    while True:
        port = random.randint(20_000, 32_000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def launch_service(*args: str, keys: str, log_path: Path, env: dict | None = None):
    """Start ``nextbest serve ARGS`` on a free port of 127.0.0.1 with the API ``keys``; return
    the process (its own session, so a test can stop the whole tree) and the URL, once
    ready. A port another process bound first is tried again on another port (three
    times); the test fails with the log's tail if the service never becomes ready."""
    import os
    import subprocess

    from serving.demo import wait_ready

    for _ in range(3):
        port = free_port()
        log = open(log_path, "w")  # noqa: SIM115 - the child keeps writing to it
        process = subprocess.Popen(
            ["nextbest", "serve", *args, "--port", str(port)],
            env={
                **os.environ,
                "NEXTBEST_API_KEYS": keys,
                "NEXTBEST_PSEUDONYM_KEY": PSEUDONYM_KEY,
                **(env or {}),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        url = f"http://127.0.0.1:{port}"
        if wait_ready(url, process) and process.poll() is None:  # ours, not another's
            return process, url
        stop_service(process)
        if "Address already in use" not in log_path.read_text():
            break
    pytest.fail("the service did not become ready: " + log_path.read_text()[-3000:])


def stop_service(process) -> None:
    import os
    import signal

    with contextlib.suppress(ProcessLookupError):  # the whole group has exited already
        os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """``nextbest demo`` run once per run in a fresh folder with its default paths
    (``data/demo``, ``mlruns``), as ``make demo`` runs it after the install: the folder, the
    environment and the result (kept beside the folder, for the workers that did not run it)."""
    import json
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "NEXTBEST_PSEUDONYM_KEY": "demo-pseudonym-key-for-tests-01",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    args = ["nextbest", "demo", "--customers", "3000"]

    def build(folder: Path) -> None:
        folder.mkdir(parents=True)
        done = subprocess.run(
            args, cwd=folder, env=env, capture_output=True, text=True, timeout=900
        )
        outcome = {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
        (folder.parent / "demo.json").write_text(json.dumps(outcome))

    folder = once_per_run(tmp_path_factory, "demo", build)
    outcome = json.loads((folder.parent / "demo.json").read_text())
    return folder, env, subprocess.CompletedProcess(args, **outcome)


@pytest.fixture(scope="session")
def world(small_world_dir, tmp_path_factory):
    """A feature snapshot (``features/``) and champions trained by `nextbest train` into a
    real MLflow store (``mlruns/``), for the REST, MCP and CLI tests; the train command's
    output is kept in ``train.out`` and ``train.err``. Trained once per run, then copied
    for each worker (test_service.py retrains, corrupts and restores its copy's champion)."""
    import shutil
    import subprocess

    def build(root: Path) -> None:
        common = ("--data", str(small_world_dir), "--as-of", AS_OF.date().isoformat())
        exe = shutil.which("nextbest") or "nextbest"
        steps = {
            "features": ("--out", str(root / "features")),
            "train": ("--mlruns", str(root / "mlruns")),
        }
        for command, args in steps.items():
            done = subprocess.run(
                [exe, command, *common, *args], capture_output=True, text=True, timeout=600
            )
            assert done.returncode == 0, done.stderr
        (root / "train.out").write_text(done.stdout)
        (root / "train.err").write_text(done.stderr)

    trained = once_per_run(tmp_path_factory, "trained-world", build)
    root = tmp_path_factory.mktemp("serving")
    relocate_store(trained, root)
    return root


def relocate_store(source: Path, target: Path) -> None:
    """Copy the folder ``source`` (a snapshot and an MLflow store) to ``target``, with the
    absolute paths MLflow wrote (the SQLite store's artifact locations, each model's
    ``MLmodel``) pointed at the copy, so changing the copy leaves the original as it was."""
    import shutil
    import sqlite3

    shutil.copytree(source, target, dirs_exist_ok=True)
    old, new = f"{source}/", f"{target}/"
    for mlmodel in target.rglob("MLmodel"):
        mlmodel.write_text(mlmodel.read_text().replace(old, new))
    with sqlite3.connect(target / "mlruns" / "mlflow.db") as db:
        tables = [row[0] for row in db.execute("select name from sqlite_master where type='table'")]
        for table in tables:
            for column in db.execute(f'pragma table_info("{table}")').fetchall():
                if "CHAR" in column[2].upper() or "TEXT" in column[2].upper():
                    db.execute(
                        f'update "{table}" set "{column[1]}" = replace("{column[1]}", ?, ?)'
                        f' where instr("{column[1]}", ?) > 0',
                        (old, new, old),
                    )
    db.close()


def serving_args(world: Path, data: Path, state: Path, now: str) -> list[str]:
    """The options of `nextbest serve` and `nextbest mcp` on the shared trained ``world``."""
    features, mlruns = str(world / "features"), str(world / "mlruns")
    return [
        "--data",
        str(data),
        "--features",
        features,
        "--mlruns",
        mlruns,
        "--state",
        str(state),
        "--now",
        now,
    ]


def reload_and_wait(client, headers: dict, timeout: float = 120.0) -> dict:
    """``POST /admin/reload`` (202 at once, a reload started in the background), then the
    status from ``GET /admin/reload`` once that reload has ended."""
    import time
    from datetime import datetime

    started = client.post("/admin/reload", headers=headers)
    assert started.status_code == 202, started.text
    since = datetime.fromisoformat(started.json()["started_at"])
    deadline = time.monotonic() + timeout
    while True:
        status = client.get("/admin/reload", headers=headers).json()
        ended = status["status"] in ("reloaded", "failed")
        if ended and datetime.fromisoformat(status["finished_at"]) >= since:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def feedback_for(answer: dict, outcome: str, rank: int = 0) -> dict:
    """A feedback item on the action at ``rank`` of a suggestion ``answer``."""
    action = answer["actions"][rank]
    return {
        "request_id": answer["request_id"],
        "action": action["action"],
        "product_id": action["product_id"],
        "outcome": outcome,
    }


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real ``redis-server`` on a free loopback port (append-only file on, as the README
    asks of a deployment), for the session; its URL. ``make test`` installs the server."""
    import shutil
    import subprocess
    import time

    import redis

    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed: `make test` installs it (apt-get)")
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    options = {"port": port, "bind": "127.0.0.1", "dir": folder, "save": "", "appendonly": "yes"}
    options["logfile"] = folder / "redis.log"
    process = subprocess.Popen(
        [exe, *(x for name, value in options.items() for x in (f"--{name}", str(value)))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("redis-server did not start: " + (folder / "redis.log").read_text())
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="session")
def due(small_world_dir, world):
    """A customer with marketing consent in force and a consumable due within the window."""
    pairs = pd.read_parquet(world / "features" / "pairs.parquet")
    consents = pd.read_parquet(small_world_dir / "consents.parquet")
    consents = consents[(consents["purpose"] == "marketing") & (consents["recorded_at"] <= AS_OF)]
    latest = consents.sort_values("recorded_at").drop_duplicates("customer_id", keep="last")
    allowed = set(latest.loc[latest["granted"], "customer_id"])
    now = pd.Timestamp(SERVE_NOW)
    soon = pairs[
        pairs["customer_id"].isin(allowed)
        & (pairs["expected_next_purchase_at"] > now)
        & (pairs["expected_next_purchase_at"] <= now + pd.Timedelta(days=10))
        & (pairs["purchase_days"] >= 3)
    ]
    assert not soon.empty
    return soon.sort_values("purchase_days", ascending=False).iloc[0]
