"""What deploy/ ships: the scheduling examples run the same command with options that exist;
the Kubernetes manifests pass the Kubernetes schemas and fit together; the CronJob counts
"no challenger" and "locked" as a good night; the image, the Bento and the alert rules
build and check with the real tools (bentoml, promtool)."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_cli import nextbest

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
K8S_VERSION = "1.32"


def _manifests() -> dict[str, dict]:
    """Every Kubernetes object of deploy/kubernetes/, by kind and name."""
    return {
        f"{doc['kind']}/{doc['metadata']['name']}": doc
        for path in sorted(KUBERNETES.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
    }


def _commands() -> dict[str, str]:
    cron = next(
        line
        for line in (DEPLOY / "crontab").read_text().splitlines()
        if "retrain" in line and not line.startswith("#")
    )
    unit = (DEPLOY / "nextbest-retrain.service").read_text()
    job = yaml.safe_load((KUBERNETES / "retrain-cronjob.yaml").read_text())
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    return {
        "cron": cron,
        "systemd": re.search(r"^ExecStart=(.*)$", unit, re.MULTILINE).group(1),
        "kubernetes": container["args"][0].split(";")[0],
    }


def test_every_scheduler_runs_nextbest_retrain_with_real_options():
    usage = nextbest("retrain", "--help").stdout
    for where, command in _commands().items():
        assert re.search(r"nextbest retrain\b", command), where
        assert "--log-format json" in command, where
        for option in re.findall(r"(--[a-z-]+)", command.split("nextbest retrain", 1)[1]):
            assert option in usage, f"{where}: {option} is not an option of nextbest retrain"


def test_the_kubernetes_job_never_overlaps_and_systemd_accepts_exit_3_and_4():
    job = yaml.safe_load((KUBERNETES / "retrain-cronjob.yaml").read_text())
    assert job["kind"] == "CronJob" and job["spec"]["concurrencyPolicy"] == "Forbid"
    unit = (DEPLOY / "nextbest-retrain.service").read_text()
    assert "SuccessExitStatus=3 4" in unit and "Type=oneshot" in unit
    timer = (DEPLOY / "nextbest-retrain.timer").read_text()
    assert "OnCalendar=" in timer and "Persistent=true" in timer


@pytest.mark.parametrize("code, ends", [(0, 0), (3, 0), (4, 0), (1, 1), (2, 2)])
def test_the_cronjob_counts_up_to_date_no_challenger_and_locked_as_success(tmp_path, code, ends):
    job = yaml.safe_load((KUBERNETES / "retrain-cronjob.yaml").read_text())
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "-c"]
    fake = tmp_path / "nextbest"  # a nextbest that ends with the code under test
    fake.write_text(f"#!/bin/sh\nexit {code}\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["/bin/sh", "-c", container["args"][0]], env=env, timeout=30)
    assert done.returncode == ends


def test_the_manifests_pass_the_kubernetes_schemas_strictly():
    import kubernetes_validate

    objects = _manifests()
    assert {"Deployment/nextbest", "Service/nextbest", "PersistentVolumeClaim/nextbest-data",
            "Secret/nextbest-keys", "CronJob/nextbest-retrain", "StatefulSet/nextbest-redis",
            "Service/nextbest-redis"} <= set(objects)  # fmt: skip
    for name, doc in objects.items():
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) is not None, name
    broken = copy.deepcopy(objects["Deployment/nextbest"])
    broken["spec"]["replicaz"] = 2  # the validator does refuse a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_the_manifests_fit_together_and_run_real_options():
    objects = _manifests()
    deployment = objects["Deployment/nextbest"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    probes = {k: container[k]["httpGet"]["path"] for k in container if k.endswith("Probe")}
    assert probes == {
        "startupProbe": "/readyz",
        "readinessProbe": "/readyz",
        "livenessProbe": "/livez",
    }
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert objects["Service/nextbest"]["spec"]["selector"].items() <= labels.items()
    job = objects["CronJob/nextbest-retrain"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    for spec in (pod, job):
        claims = {v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]}
        assert claims == {"nextbest-data"}
        for env in spec["containers"][0].get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:  # every key a pod reads is in the Secret
                assert ref["name"] == "nextbest-keys"
                assert ref["key"] in objects["Secret/nextbest-keys"]["stringData"]
    # one image, the one the Dockerfile documents; the service runs real `serve` options
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert container["image"] == job["containers"][0]["image"]
    assert f"docker build -t {container['image']} ." in dockerfile
    usage = nextbest("serve", "--help").stdout
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE).group(1)
    for args in (container["args"], yaml.safe_load(cmd)):
        assert args[0] == "serve"
        for option in (a for a in args if a.startswith("--")):
            assert option in usage, option
    for source in re.findall(r"^COPY (?!--)(\S+) ", dockerfile, re.MULTILINE):
        assert (ROOT / source).exists(), source


def test_the_bento_builds_with_the_locked_requirements(tmp_path):
    """`bentoml build` on bentofile.yaml, offline; deploy/requirements.txt is uv.lock's."""
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    exported = subprocess.run(
        [uv, "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "--no-header"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == (DEPLOY / "requirements.txt").read_text()
    env = {
        **os.environ,
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "PATH": os.pathsep.join([str(Path(uv).parent), str(Path(sys.executable).parent),
                                 os.environ["PATH"]]),
    }  # fmt: skip
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    built = subprocess.run(
        [bentoml, "build", "--output", "tag"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    bento = next((tmp_path / "bentoml" / "bentos" / "nextbest").glob("*/bento.yaml"))
    meta = yaml.safe_load(bento.read_text())
    assert meta["service"] == "serving.http.service:NextBest"
    assert "/suggest" in meta["schema"]["paths"]
    src = bento.parent / "src"
    for needed in ("policy/actions.yaml", "policy/drivers.yaml", "serving/http/service.py",
                   "cdp/contract.py", "training/scoring.py"):  # fmt: skip
        assert (src / needed).is_file(), needed
    assert not (src / "tests").exists()


def test_the_alert_rules_check_and_pass_their_unit_tests():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: `make test` installs it (apt-get prometheus)")
    folder = DEPLOY / "prometheus"
    checked = subprocess.run(
        [promtool, "check", "rules", "alerts.yaml"], cwd=folder, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yaml"], cwd=folder, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    rules = yaml.safe_load((folder / "alerts.yaml").read_text())["groups"][0]["rules"]
    tests = yaml.safe_load((folder / "alerts.test.yaml").read_text())["tests"][0]
    alerted = {case["alertname"] for case in tests["alert_rule_test"] if case["exp_alerts"]}
    assert alerted == {r["alert"] for r in rules}  # every rule fires in a unit test
