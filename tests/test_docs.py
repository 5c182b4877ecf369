"""The documentation site builds strictly (mkdocs-material, mkdocstrings, the committed
OpenAPI), its CLI reference is the Typer app's own, and no page holds first-person notes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from test_readme import pages

ROOT = Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly(tmp_path):
    mkdocs = str(Path(sys.executable).with_name("mkdocs"))
    done = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    site = tmp_path / "site"
    rest = (site / "reference" / "rest" / "index.html").read_text()
    assert "/suggest/batch" in rest and "SuggestRequest" in rest  # the OpenAPI, rendered
    python = (site / "reference" / "python" / "index.html").read_text()
    assert "as_of" in python and "uplift" in python  # docstrings, rendered
    actions = (site / "reference" / "actions" / "index.html").read_text()
    assert "replenishment_reminder" in actions  # the catalog, included


def test_the_cli_reference_is_the_typer_apps_own(tmp_path):
    typer = str(Path(sys.executable).with_name("typer"))
    out = tmp_path / "cli.md"
    done = subprocess.run(
        [typer, "nextbest.cli", "utils", "docs", "--name", "nextbest", "--title",
         "Command line reference", "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    committed = (ROOT / "docs" / "reference" / "cli.md").read_text()
    assert out.read_text() == committed, (
        "docs/reference/cli.md is out of date: regenerate it with `typer nextbest.cli utils docs"
        " --name nextbest --title 'Command line reference' --output docs/reference/cli.md`"
    )


FIRST_PERSON = re.compile(r"\b(?:I|I'm|I've|we|We|our|Our)\b(?![-'])")


def test_no_page_holds_first_person_notes():
    for path in pages():
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)  # code is quoted
        found = [line for line in text.splitlines() if FIRST_PERSON.search(line)]
        assert not found, (path.name, found[:5])
