"""`make eval-uplift` in small (benchmarks.uplift): a real service on a simulated clock, a
simulated chatbot and customers with a known effect, then `nextbest report`. The report
counts exactly what the effect added (against an A/A run on the same customers), CUPED
narrows its intervals, bad settings are refused, and the HTML page renders in headless
Chromium with the numbers of report.json. Whether the intervals cover the truth is a 95%
property: tests/policy/test_uplift.py checks it over hundreds of samples, `make
eval-uplift` prints it for a large world."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pandas as pd
import pytest

from benchmarks.uplift import PERIOD, PSEUDONYM_KEY, Run, T, cut, simulate
from cdp.world.response import Effect
from serving.report.page import number

DAYS = 7
SHARE = 0.3


@pytest.fixture(scope="module")
def simulated(world, small_world, tmp_path_factory):
    """The small world cut at T, served with 30% in control for a week: once with a strong
    effect, once with none (A/A); the same customers, groups and baseline future."""
    root = tmp_path_factory.mktemp("uplift")
    future = cut(small_world.tables, T, root / "history")
    run = Run(root / "history", world / "features", world / "mlruns", future)
    effect = Effect(reminder=0.6, winback=0.4, seed=1)
    report = simulate(run, root / "state", effect, DAYS, SHARE, root / "report.html")
    aa = simulate(run, root / "aa-state", Effect(seed=2), DAYS, SHARE, root / "aa.html")
    return root, run, report, aa


def test_the_report_counts_exactly_what_the_effect_added(simulated):
    """The control group gets no marketing, so its outcomes are the same in both runs, and
    the treated group's differ by exactly the effect: the unadjusted uplift of the effect
    run less the A/A run's is the true uplift, to the cent."""
    _, _, report, aa = simulated
    assert report["responses"] > 0 and report["truth"]["orders"] > 0
    assert aa["responses"] == 0 and aa["truth"] == {"converted": 0.0, "orders": 0.0, "revenue": 0.0}
    for with_, without in zip(report["uplift_unadjusted"], aa["uplift_unadjusted"], strict=True):
        assert with_["control_mean"] == without["control_mean"]
        measured = with_["difference"] - without["difference"]
        assert measured == pytest.approx(report["truth"][with_["outcome"]], abs=1e-9)


def test_cuped_narrows_every_interval_on_the_simulated_customers(simulated):
    _, _, report, aa = simulated
    for r in (report, aa):
        for adjusted, plain in zip(r["uplift"], r["uplift_unadjusted"], strict=True):
            assert adjusted["theta"] > 0
            assert adjusted["high"] - adjusted["low"] < plain["high"] - plain["low"]


def test_the_report_holds_everyone_as_assigned_and_the_services_figures(simulated):
    root, run, report, _ = simulated
    customers = pd.read_parquet(run.data / "customers.parquet")
    sizes = report["customers"]
    assert sizes["treated"] + sizes["control"] == len(customers)
    assert abs(sizes["control"] / len(customers) - SHARE) < 0.03
    service = report["service"]
    assert service["answers"] == DAYS * len(customers)  # the chatbot asked everyone daily
    assert service["answers_by_group"] == {
        "treated": DAYS * sizes["treated"],
        "control": DAYS * sizes["control"],
    }
    assert service["withheld_for_holdout"] > 0 and service["withheld_for_consent"] > 0
    assert {"replenishment_reminder", "winback_offer"} <= set(report["per_action"])
    assert 0 < service["latency_ms"]["p50"] <= service["latency_ms"]["p99"]
    shown = {row["action"]: row for row in service["acceptance"]}
    assert shown["winback_offer"]["converted"] > 0
    assert service["online_order_lines"] > 0
    # pseudonyms only: no raw customer id in what the report wrote
    text = (root / "report.json").read_text() + (root / "report.html").read_text()
    assert not any(c in text for c in customers["customer_id"].head(200))


def _report(root, run, env, *extra):
    return subprocess.run(
        ["nextbest", "report", "--state", str(root / "state"), "--data", str(run.data),
         "--mlruns", str(run.mlruns), *extra],
        env={**os.environ, "NEXTBEST_PSEUDONYM_KEY": PSEUDONYM_KEY, **env},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize(
    "env, extra, named",
    [
        ({"NEXTBEST_HOLDOUT": "0.3", "NEXTBEST_HOLDOUT_PERIOD": "2031H1"}, (), "differ from"),
        ({}, (), "NEXTBEST_HOLDOUT: no control group"),
        (
            {"NEXTBEST_HOLDOUT": "0.3", "NEXTBEST_HOLDOUT_PERIOD": PERIOD},
            ("--since", "2025-07-05", "--until", "2025-07-01"),
            "is not before --until",
        ),
        (
            {"NEXTBEST_HOLDOUT": "0.3", "NEXTBEST_HOLDOUT_PERIOD": PERIOD},
            ("--since", "yesterday", "--until", "2025-07-01"),
            "--since: 'yesterday' is not an ISO-8601 date",
        ),
    ],
    ids=["other-period", "no-holdout", "empty-period", "bad-time"],
)
def test_bad_settings_are_refused_in_one_line_and_write_nothing(
    simulated, tmp_path, env, extra, named
):
    root, run, _, _ = simulated
    period = extra or ("--since", T.isoformat(), "--until", "2025-07-07")
    done = _report(root, run, env, *period, "--out", str(tmp_path / "r.html"))
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("nextbest:")]
    assert len(errors) == 1 and named in errors[0]  # one line (beside the stage lines)
    assert list(tmp_path.iterdir()) == []


def test_the_page_renders_offline_in_chromium_with_the_numbers_of_report_json(simulated, tmp_path):
    from PIL import Image

    root, _, report, _ = simulated
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get)")
    page = (root / "report.html").as_uri()
    offline = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=15000", f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    dom = subprocess.run(
        [*offline, "--dump-dom", page], capture_output=True, text=True, timeout=180
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "Error" in line], console
    figures = 5 if report["service"]["acceptance"] else 4
    assert dom.stdout.count('class="main-svg"') >= figures  # plotly drew every figure
    for u in report["uplift"]:
        for value in (u["difference"], u["low"], u["high"], u["treated_mean"]):
            assert number(value) in dom.stdout
    assert number(report["service"]["answers"]) in dom.stdout
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [*offline, "--window-size=1280,2400", f"--screenshot={shot}", page],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2400)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text and plots, not a blank page
    json.loads((root / "report.json").read_text())  # the numbers' file is valid JSON
