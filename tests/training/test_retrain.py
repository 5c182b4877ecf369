"""`nextbest retrain` as a scheduler runs it: real subprocesses, a real MLflow store in a
temporary folder, and a real running service that must reload a better model and keep
answering the same after every failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from mlflow import MlflowClient

from conftest import free_port, launch_service, stop_service, tiny_tables
from training.retrain import latest_complete_day

pytestmark = pytest.mark.heavy  # trains models or starts Spark: not in `make test-fast`

ADMIN = "admin-key-for-retrain-0000001"
CHATBOT = "chatbot-key-for-retrain-00002"
EARLY = "2024-09-01"  # a champion trained on little history, so that later data beats it
NOW = "2025-10-28T12:00:00+00:00"  # the service's clock: after the newest data


def retrain(*args: str, env: dict | None = None, code: str | None = None):
    """Run `nextbest retrain ARGS`; with ``code``, run that Python first in the same process
    (to inject a failure into a real job)."""
    if code is None:
        command = [shutil.which("nextbest") or "nextbest", "retrain", *args]
    else:
        prelude = f"{code}\nfrom nextbest.cli import main\nsys.exit(main(sys.argv[1:]))"
        command = [sys.executable, "-c", f"import sys\n{prelude}", "retrain", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}
    )


def client_of(mlruns: Path) -> MlflowClient:
    uri = f"sqlite:///{mlruns / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champions(mlruns: Path) -> dict[str, str]:
    client = client_of(mlruns)
    return {
        kind: str(client.get_model_version_by_alias(f"nextbest-{kind}", "champion").version)
        for kind in ("churn", "clv", "replenishment")
    }


def versions(mlruns: Path, kind: str = "churn") -> list[str]:
    found = client_of(mlruns).search_model_versions(f"name = 'nextbest-{kind}'")
    return sorted(str(v.version) for v in found)


def jobs(mlruns: Path) -> list[dict]:
    """The journal's records, oldest first."""
    lines = (mlruns / "retrain-journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def job_run(mlruns: Path, run_id: str):
    return client_of(mlruns).get_run(run_id)


@pytest.fixture(scope="module")
def site(small_world_dir, tmp_path_factory):
    """A first job on little history, with a second one started while it runs."""
    root = tmp_path_factory.mktemp("retrain")
    mlruns, features = root / "mlruns", root / "features"
    args = ("--data", str(small_world_dir), "--mlruns", str(mlruns), "--as-of", EARLY)
    first = subprocess.Popen(
        [shutil.which("nextbest") or "nextbest", "retrain", *args, "--features-out", str(features)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = mlruns / "retrain.lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().startswith("pid")):
        assert time.monotonic() < deadline and first.poll() is None, "the first job never locked"
        time.sleep(0.05)
    second = retrain(*args)
    out, err = first.communicate(timeout=600)
    return {
        "root": root,
        "mlruns": mlruns,
        "features": features,
        "args": args,
        "first": (first.returncode, out, err),
        "second": second,
    }


def test_two_concurrent_jobs_never_both_train(site):
    code, out, err = site["first"]
    assert code == 0, err
    assert "promoted" in out and "exit 0" in out
    second = site["second"]
    assert second.returncode == 4, second.stderr
    assert "another retrain is running (pid" in second.stderr
    assert versions(site["mlruns"]) == ["1"]  # one job trained
    records = [j["outcome"] for j in jobs(site["mlruns"])]
    assert sorted(records) == ["busy", "promoted"]


def test_a_second_run_on_the_same_data_is_up_to_date(site):
    again = retrain(*site["args"])
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout and "churn v1" in again.stdout
    for kind in ("churn", "clv", "replenishment"):
        assert versions(site["mlruns"], kind) == ["1"]  # no duplicate version
    assert jobs(site["mlruns"])[-1]["outcome"] == "up to date"


def test_the_default_as_of_is_the_latest_complete_day(small_world_dir):
    from cdp.validation import load_contract

    tables = load_contract(small_world_dir)
    newest = max(tables.orders["ordered_at"].max(), tables.events["occurred_at"].max())
    assert latest_complete_day(tables) == newest.floor("D")
    assert latest_complete_day(tables) <= newest


@pytest.fixture(scope="module")
def service(site, small_world_dir):
    process, url = launch_service(
        "--data",
        str(small_world_dir),
        "--features",
        str(site["features"]),
        "--mlruns",
        str(site["mlruns"]),
        "--state",
        str(site["root"] / "state"),
        "--now",
        NOW,
        keys=f"{CHATBOT}:chatbot,{ADMIN}:admin",
        log_path=site["root"] / "serve.log",
    )
    with httpx.Client(base_url=url, timeout=60) as client:
        yield client
    stop_service(process)
    assert ADMIN not in (site["root"] / "serve.log").read_text()


def answers(service, customers: list[str]) -> list[dict]:
    """What the service says about ``customers``, without the per-request fields."""
    response = service.post(
        "/suggest/batch",
        json={"requests": [{"customer_id": c} for c in customers]},
        headers={"x-api-key": CHATBOT},
    )
    assert response.status_code == 200, response.text
    keep = ("customer_id", "known", "features_as_of", "actions", "model_versions")
    return [{k: a[k] for k in keep} for a in response.json()["responses"]]


@pytest.fixture(scope="module")
def customers(site):
    frame = pd.read_parquet(site["features"] / "customers.parquet")
    return frame.loc[frame["purchase_days"] > 1, "customer_id"].head(5).tolist()


def _broken_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    orders = pd.read_parquet(target / "orders.parquet")
    orders.loc[orders.index[:3], "customer_id"] = "not-a-customer-77"
    orders.to_parquet(target / "orders.parquet")
    return target


def test_every_failure_leaves_the_champion_and_the_service_unchanged(
    site, service, customers, small_world_dir, tmp_path
):
    mlruns = site["mlruns"]
    before, said = champions(mlruns), answers(service, customers)
    newer = ("--data", str(small_world_dir), "--mlruns", str(mlruns))  # default as-of: later
    notify = {"NEXTBEST_SERVICE_URL": str(service.base_url), "NEXTBEST_ADMIN_KEY": ADMIN}

    # 1. a broken contract: exit 2, recorded in MLflow without the offending values
    broken = _broken_copy(small_world_dir, tmp_path / "broken")
    bad = retrain("--data", str(broken), "--mlruns", str(mlruns), env=notify)
    assert bad.returncode == 2, bad.stderr
    assert "orders.customer_id" in bad.stderr and "not-a-customer-77" not in bad.stderr
    record = jobs(mlruns)[-1]
    assert record["outcome"] == "bad input" and record["stage"] == "validate"
    run = job_run(mlruns, record["mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["nextbest.outcome"] == "bad input"
    assert "not-a-customer-77" not in json.dumps(record)

    # 2. a crash in training after two models were registered: those versions are removed
    crash = retrain(
        *newer,
        env=notify,
        code="import training.pipeline as p\n"
        "def boom(*a, **k):\n    raise RuntimeError('injected failure')\n"
        "p.train_replenishment = boom",
    )
    assert crash.returncode == 1, crash.stderr
    assert "train: RuntimeError: injected failure" in crash.stderr
    record = jobs(mlruns)[-1]
    assert record["outcome"] == "failed" and record["stage"] == "train"
    assert versions(mlruns, "churn") == ["1"] and versions(mlruns, "clv") == ["1"]
    assert job_run(mlruns, record["mlflow_run_id"]).info.status == "FAILED"

    # 3. the tracking store is unreachable: nothing is done, the local journal says so
    down = retrain(
        *newer,
        env={
            **notify,
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
        },
    )
    assert down.returncode == 1, down.stderr
    assert "tracking:" in down.stderr
    record = jobs(mlruns)[-1]
    assert record["outcome"] == "failed" and record["stage"] == "tracking"
    assert record["mlflow_run_id"] is None

    # 4. a challenger that does not beat the champion by the margin: exit 3
    worse = retrain(*newer, "--margin", "1000", env=notify)  # no metric moves by 1000
    assert worse.returncode == 3, worse.stderr
    assert "not promoted" in worse.stdout and "champions unchanged" in worse.stdout
    record = jobs(mlruns)[-1]
    assert record["outcome"] == "not promoted"
    assert all(not d["promoted"] for d in record["decisions"])

    assert champions(mlruns) == before
    assert answers(service, customers) == said
    assert ADMIN not in (mlruns / "retrain-journal.jsonl").read_text()


def test_newer_data_promotes_a_better_model_and_the_service_reloads_it(
    site, service, customers, small_world_dir
):
    mlruns = site["mlruns"]
    before = champions(mlruns)
    said = answers(service, customers)
    newer = retrain(
        "--data",
        str(small_world_dir),
        "--mlruns",
        str(mlruns),
        "--force",  # the margin run above already trained this data: train it again
        "--features-out",
        str(site["features"]),
        "--log-format",
        "json",
        env={"NEXTBEST_SERVICE_URL": str(service.base_url), "NEXTBEST_ADMIN_KEY": ADMIN},
    )
    assert newer.returncode == 0, newer.stderr
    lines = [json.loads(line) for line in newer.stderr.splitlines()]  # every line is JSON
    events = {line["event"] for line in lines}
    assert {"as_of", "drift", "realised", "gate", "promoted", "reloaded"} <= events
    record = json.loads(newer.stdout)
    assert record["outcome"] == "promoted" and record["exit_code"] == 0
    churn = record["champions_after"]["churn"]
    assert churn != before["churn"] and champions(mlruns)["churn"] == churn
    assert record["as_of"] > pd.Timestamp(EARLY, tz="UTC").isoformat()

    now = answers(service, customers)
    assert all(a["model_versions"]["churn"] == churn for a in now)
    as_of = pd.Timestamp(record["as_of"])
    assert all(pd.Timestamp(a["features_as_of"]) == as_of for a in now)
    assert now != said

    # the drift report is in the job's run: PSI per feature and of the champion's scores
    run = job_run(mlruns, record["mlflow_run_id"])
    assert "psi.score" in run.data.metrics and "realised.roc_auc" in run.data.metrics
    assert run.data.metrics["psi.tenure_days"] > 0.25  # a year later, tenure has moved
    artifacts = {a.path for a in client_of(mlruns).list_artifacts(run.info.run_id)}
    assert {"drift.json", "job.json", "plots"} <= artifacts
    assert ADMIN not in newer.stderr + newer.stdout


def test_a_contract_without_orders_is_bad_input(tmp_path):
    from conftest import write_folder

    tables = tiny_tables()
    tables["orders"] = tables["orders"].head(0)
    tables["events"] = tables["events"].head(0)
    folder = write_folder(tables, tmp_path / "empty")
    result = retrain("--data", str(folder), "--mlruns", str(tmp_path / "mlruns"))
    assert result.returncode == 2, result.stderr
    assert "orders: no rows" in result.stderr


#: Python run before `nextbest retrain` in the same process: the CLV gate writes a marker and
#: waits, so a test can stop the job at a known point (churn registered and gated, the CLV
#: run open with its version registered and aliased challenger).
HANG_IN_CLV_GATE = """
import pathlib, time
import training.tracking as t
def hang(*args, **kwargs):
    pathlib.Path({marker!r}).write_text("in the CLV gate")
    time.sleep(600)
t.score_clv = hang
"""


def _stopped_in_clv_gate(args: tuple, marker: Path, signum: int):
    """A retrain stopped with ``signum`` while it gates CLV; its exit code and stderr."""
    import signal

    prelude = HANG_IN_CLV_GATE.format(marker=str(marker))
    prelude += "\nfrom nextbest.cli import main\nsys.exit(main(sys.argv[1:]))"
    job = subprocess.Popen(
        [sys.executable, "-c", f"import sys\n{prelude}", "retrain", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()[1][-2000:]
        time.sleep(0.1)
    job.send_signal(signum)
    _, err = job.communicate(timeout=120)
    assert signal.Signals(signum).name != "SIGTERM" or "stopped by SIGTERM" in err, err
    return job.returncode, err


def test_a_stopped_or_killed_job_leaves_no_debris_and_the_next_one_trains(
    small_world_dir, tmp_path
):
    """SIGTERM: the job undoes itself at once (versions deleted, runs failed, exit 143).
    SIGKILL: nothing runs, so the next job recognises the dead process's runs, marks them
    failed and deletes their versions, and then trains: a half-done job is never taken for
    "up to date"."""
    import signal

    mlruns = tmp_path / "mlruns"
    args = ("--data", str(small_world_dir), "--mlruns", str(mlruns), "--as-of", EARLY)
    code, err = _stopped_in_clv_gate(args, tmp_path / "term", signal.SIGTERM)
    assert code == 143, err
    client = client_of(mlruns)
    assert versions(mlruns, "churn") == [] and versions(mlruns, "clv") == []
    record = jobs(mlruns)[-1]
    assert record["outcome"] == "interrupted" and record["exit_code"] == 143
    assert record["stage"] == "train"
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], max_results=100
    )
    assert runs and {r.info.status for r in runs} == {"FAILED"}, [r.info.status for r in runs]

    code, err = _stopped_in_clv_gate(args, tmp_path / "kill", signal.SIGKILL)
    assert code == -signal.SIGKILL
    (clv,) = client.search_model_versions("name = 'nextbest-clv'")
    clv = client.get_model_version(clv.name, clv.version)
    assert clv.aliases == ["challenger"]  # the debris the next job must clear
    debris = {"churn": versions(mlruns, "churn"), "clv": versions(mlruns, "clv")}
    assert all(len(v) == 1 for v in debris.values()), debris

    again = retrain(*args)
    assert again.returncode == 0, again.stderr
    assert "up to date" not in again.stdout and "promoted" in again.stdout
    for kind in ("churn", "clv"):  # only the new job's versions remain, and they are champion
        assert f"nextbest-{kind} run" in again.stderr
        assert f"deleted v{debris[kind][0]}" in again.stderr
        (now,) = versions(mlruns, kind)
        assert now not in debris[kind] and champions(mlruns)[kind] == now
    statuses = {
        r.info.run_id: r.info.status
        for r in client.search_runs(
            [e.experiment_id for e in client.search_experiments()], max_results=100
        )
    }
    assert list(statuses.values()).count("RUNNING") == 0
    interrupted = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="tags.`nextbest.interrupted` != ''",
    )
    assert len(interrupted) >= 3  # the killed job's run, its churn run and its CLV run

    assert retrain(*args).stdout.count("up to date") >= 1  # now it is complete


def test_json_logs_keep_a_librarys_level():
    """MLflow's WARNING lines and Python warnings stay warnings in the JSON log (a log
    collector alerts on them), with MLflow's logger named; prints are info."""
    import io

    from training.jobs import JobLog, stderr_as

    out = io.StringIO()
    log = JobLog(json_lines=True, stream=out)
    with stderr_as(log):
        print(
            "2026/12/06 07:32:10 WARNING mlflow.models.model: Failed to validate", file=sys.stderr
        )
        print("/x.py:1: UserWarning: Hint: integer columns", file=sys.stderr)
        print("2026/12/06 07:32:11 INFO mlflow.store.db.utils: Creating tables", file=sys.stderr)
        print("Successfully registered model 'nextbest-churn'.", file=sys.stderr)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["level"], r.get("logger")) for r in records] == [
        ("WARNING", "mlflow.models.model"),
        ("WARNING", None),
        ("INFO", "mlflow.store.db.utils"),
        ("INFO", None),
    ]
    assert records[0]["message"] == "Failed to validate" and records[0]["event"] == "library"
