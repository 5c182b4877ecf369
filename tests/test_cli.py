"""The command line, run as a user runs it: a real subprocess, exit codes and stderr."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import tiny_tables, write_folder


def nextbest(*args: str, cwd=None, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("nextbest") or "nextbest"
    env = {**os.environ, **env} if env else None
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, cwd=cwd, timeout=300, env=env
    )


def features_cli(data, out, *more: str, as_of: str = "2025-06-30", env: dict | None = None):
    """``nextbest features --data DATA --as-of AS_OF --out OUT [MORE...]``."""
    return nextbest(
        "features", "--data", str(data), "--as-of", as_of, "--out", str(out), *more, env=env
    )


def test_help_on_every_subcommand():
    """Every command and group answers --help (in process; `nextbest --help` as installed)."""
    from typer.testing import CliRunner

    from nextbest.cli import app

    installed = nextbest("--help")
    assert installed.returncode == 0 and "Usage" in installed.stdout, installed.stderr
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    groups = {g.name: g.typer_instance for g in app.registered_groups}
    assert {"generate", "features", "train", "retrain", "serve", "mcp", "demo"} <= commands
    nested = [
        [g, c.name or c.callback.__name__]
        for g, sub in groups.items()
        for c in sub.registered_commands
    ]
    assert ["import", "cdnow"] in nested and ["subject", "erase"] in nested
    runner = CliRunner()
    for args in ([], *([c] for c in sorted(commands | set(groups))), *nested):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.output, args


def test_validate_reports_every_violation_and_exits_2(tmp_path):
    tables = tiny_tables()
    tables["products"].loc[0, "price"] = -3.0
    tables["orders"].loc[3, "customer_id"] = "99999"
    folder = write_folder(tables, tmp_path / "bad", "csv")

    result = nextbest("validate", str(folder))

    assert result.returncode == 2
    assert "products.price: negative price" in result.stderr
    assert "orders.customer_id: not found in customers.customer_id (1 row); e.g. '99999'" in (
        result.stderr
    )
    assert "2 contract violations" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_valid_folder_prints_one_line(tmp_path):
    folder = write_folder(tiny_tables(), tmp_path / "ok")
    result = nextbest("validate", str(folder))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "valid" in lines[0] and "4 orders" in lines[0]


def test_validate_json(tmp_path):
    tables = tiny_tables()
    tables["orders"].loc[0, "quantity"] = 0
    result = nextbest("validate", "--json", str(write_folder(tables, tmp_path / "bad")))
    report = json.loads(result.stdout)
    assert result.returncode == 2
    assert report["valid"] is False
    assert report["violations"][0]["table"] == "orders"
    assert report["violations"][0]["column"] == "quantity"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["validate", "/no/such/folder"], "not a folder"),
        (["generate", "--customers", "0", "--out", "{tmp}/w"], "--customers must be at least 1"),
        (["generate", "--as-of", "last tuesday", "--out", "{tmp}/w"], "--as-of"),
        (["generate", "--customers", "10", "--format", "xlsx", "--out", "{tmp}/w"], "--format"),
        (["generate", "--customers", "ten"], "valid integer"),
        (
            ["serve", "--data", "{tmp}", "--features", "{tmp}", "--workers", "2"],
            "--workers 2: each worker",
        ),
    ],
    ids=["missing folder", "no customers", "bad date", "bad format", "not a number", "workers"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = nextbest(*[a.format(tmp=tmp_path) for a in args])
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "w").exists()


def test_generate_writes_a_valid_world_and_refuses_to_clobber(tmp_path):
    out = tmp_path / "world"
    first = nextbest(
        "generate", "--customers", "300", "--seed", "2", "--out", str(out), "--format", "csv"
    )
    assert first.returncode == 0, first.stderr
    assert (out / "orders.csv").is_file() and (out / "truth" / "customers.parquet").is_file()
    assert json.loads((out / "truth" / "meta.json").read_text())["seed"] == 2
    assert nextbest("validate", str(out)).returncode == 0

    before = (out / "orders.csv").read_bytes()
    again = nextbest("generate", "--customers", "300", "--seed", "3", "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert (out / "orders.csv").read_bytes() == before


def test_import_cdnow(tmp_path):
    result = nextbest("import", "cdnow", "--out", str(tmp_path / "cdnow"))
    assert result.returncode == 0, result.stderr
    assert "69,659 orders" in result.stdout
    assert nextbest("validate", str(tmp_path / "cdnow")).returncode == 0


def test_demo_runs_end_to_end(demo_run):
    _, _, result = demo_run
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "validated" in out and "truth: customers who buy in the next 90 days" in out
    assert "promoted" in out and "serving on http://127.0.0.1:" in out
    assert "replenishment_reminder" in out.split("2. the same customer")[0]
    assert "escalate_to_human" in out.split("2. the same customer")[1].split("3a.")[0]
    assert "unknown visitor (en)" in out
    assert "6. stopped the service" in out


def test_demo_without_serving(tmp_path):
    result = nextbest("demo", "--customers", "500", "--out", str(tmp_path / "d"), "--no-serve")
    assert result.returncode == 0, result.stderr
    assert "validated" in result.stdout and "serving on http" not in result.stdout


def test_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "nextbest.cli", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "generate" in result.stdout


def test_stages_draw_a_bar_on_a_terminal_and_plain_lines_elsewhere():
    import io

    from rich.console import Console

    from nextbest.cli.base import Stages

    def run(terminal: bool) -> str:
        sink = io.StringIO()
        console = Console(file=sink, force_terminal=terminal, width=100)
        with Stages("train", 2, console) as stage:
            stage("churn model")
            stage("CLV model")
        return sink.getvalue()

    plain = run(terminal=False)
    assert plain.splitlines()[0] == "train: churn model…"
    assert "train: CLV model… (previous stage" in plain and "train: done in" in plain
    drawn = run(terminal=True)
    assert "\x1b[" in drawn and "train: CLV model" in drawn and "2/2" not in plain


def test_erase_without_state_says_the_service_state_was_not_searched(tmp_path):
    import os

    folder = write_folder(tiny_tables(), tmp_path / "data")
    env = {
        **os.environ,
        "NEXTBEST_PSEUDONYM_KEY": "erase-test-pseudonym-key-01",
        "NEXTBEST_SUPPRESSION": str(tmp_path / "suppression.json"),
    }
    args = ["subject", "erase", "--customer-id", "00001", "--data", str(folder)]
    result = subprocess.run(
        [shutil.which("nextbest") or "nextbest", *args, "--mlruns", str(tmp_path / "mlruns")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "no trace left in the data and the MLflow store" in result.stdout
    assert "the service's state was not searched" in result.stdout


def test_version_and_options_that_are_choices():
    """`--version` prints the installed version; --engine, --format and --log-format take
    their choices only, a usage error (exit 2) naming them otherwise."""
    from cdp import package_version

    shown = nextbest("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"nextbest {package_version()}"
    for args, named in (
        (("features", "--data", "d", "--as-of", "2025-06-30", "--out", "o", "--engine", "hive"),
         "'polars', 'spark'"),
        (("generate", "--customers", "10", "--out", "o", "--format", "xlsx"), "'parquet', 'csv'"),
        (("retrain", "--data", "d", "--log-format", "yaml"), "'text', 'json'"),
    ):  # fmt: skip
        done = nextbest(*args)
        assert done.returncode == 2 and named in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_mlflow_speaks_only_when_asked_with_verbose(tmp_path):
    """MLflow's own INFO lines (here: creating a new store) stay out of the command's output
    unless `nextbest --verbose` asks for them."""
    data = write_folder(tiny_tables(), tmp_path / "data")
    env = {"NEXTBEST_PSEUDONYM_KEY": "pseudonym-key-for-verbose-01"}
    outputs = {}
    for flag in ("", "--verbose"):
        store = tmp_path / f"mlruns{flag}"
        args = ("score", "--features", str(tmp_path / "none"), "--data", str(data))
        out = ("--mlruns", str(store), "--out", str(tmp_path / "scores"))
        done = nextbest(*filter(None, [flag]), *args, *out, env=env)
        assert done.returncode != 0 and "no champion for nextbest-churn" in done.stderr
        outputs[flag] = done.stderr
    assert "INFO mlflow" not in outputs[""]
    assert (
        "INFO mlflow.store.db.utils: Creating initial MLflow database tables"
        in outputs["--verbose"]
    )
