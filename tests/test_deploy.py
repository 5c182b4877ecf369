"""The scheduling examples in deploy/ all run the same command, with options that exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from test_cli import nextbest

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _commands() -> dict[str, str]:
    cron = next(
        line
        for line in (DEPLOY / "crontab").read_text().splitlines()
        if "retrain" in line and not line.startswith("#")
    )
    unit = (DEPLOY / "nextbest-retrain.service").read_text()
    job = yaml.safe_load((DEPLOY / "retrain-cronjob.yaml").read_text())
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    return {
        "cron": cron,
        "systemd": re.search(r"^ExecStart=(.*)$", unit, re.MULTILINE).group(1),
        "kubernetes": " ".join(container["command"] + container["args"]),
    }


def test_every_scheduler_runs_nextbest_retrain_with_real_options():
    usage = nextbest("retrain", "--help").stdout
    for where, command in _commands().items():
        assert re.search(r"nextbest retrain\b", command), where
        assert "--log-format json" in command, where
        for option in re.findall(r"(--[a-z-]+)", command.split("nextbest retrain", 1)[1]):
            assert option in usage, f"{where}: {option} is not an option of nextbest retrain"


def test_the_kubernetes_job_never_overlaps_and_systemd_accepts_exit_3_and_4():
    job = yaml.safe_load((DEPLOY / "retrain-cronjob.yaml").read_text())
    assert job["kind"] == "CronJob" and job["spec"]["concurrencyPolicy"] == "Forbid"
    unit = (DEPLOY / "nextbest-retrain.service").read_text()
    assert "SuccessExitStatus=3 4" in unit and "Type=oneshot" in unit
    timer = (DEPLOY / "nextbest-retrain.timer").read_text()
    assert "OnCalendar=" in timer and "Persistent=true" in timer
