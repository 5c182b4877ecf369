"""The layers hold (import-linter, configured in pyproject.toml), and the check can fail: the
same check on a copy of the code with one upward import breaks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nextbest", "serving", "policy", "training", "features", "cdp")


def lint_imports(folder: Path) -> subprocess.CompletedProcess:
    linter = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    env = {**os.environ, "PYTHONPATH": str(folder)}
    return subprocess.run(
        [linter, "--no-cache"], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )


def test_imports_go_one_way():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("cdp/contract.py", "import features.build"),
        ("features/build.py", "import training.pipeline"),
        ("serving/memory/state.py", "import training.pipeline"),
        ("policy/ranking.py", "import serving.memory.state"),
        ("policy/learning.py", "import training.scoring"),
        ("training/scoring.py", "import policy.ranking"),
    ],
)
def test_an_upward_import_breaks_the_check(tmp_path, module, upward):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{upward}  # an upward import\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "BROKEN" in result.stdout and upward.split()[-1] in result.stdout
