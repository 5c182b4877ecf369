"""The documentation's commands run as written: every shell block marked ``<!-- runnable -->``
in the README and the documentation site's pages (in the order of its navigation) is run in
order, in a fresh folder, after ``nextbest demo`` (what ``make demo`` runs after the
install), with the environment active as the documentation says."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- runnable -->\n```bash\n(.*?)```", re.DOTALL)


def runnable_blocks(text: str) -> list[str]:
    return BLOCK.findall(text)


def pages() -> list[Path]:
    """The README, then every page of the site in the order of its navigation."""

    def walk(entries) -> list[str]:
        out = []
        for entry in entries:
            for value in entry.values() if isinstance(entry, dict) else [entry]:
                out += walk(value) if isinstance(value, list) else [value]
        return out

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    return [README] + [ROOT / "docs" / page for page in walk(nav)]


def documented() -> str:
    return "\n".join(path.read_text() for path in pages())


def test_the_readme_marks_its_runnable_blocks_and_never_assumes_uv_on_the_path():
    text = documented()
    blocks = runnable_blocks(text)
    assert len(blocks) >= 4
    assert "uv run" not in "".join(blocks)
    # uv may not be on the PATH (the Makefile installs it into .tools/): no bare `uv run`
    assert not re.search(r"(?<![/\w])uv run", text), "write .tools/bin/uv or activate .venv"


def test_every_runnable_block_runs_as_written_after_the_demo(demo_run):
    folder, env, demo = demo_run
    assert demo.returncode == 0, demo.stderr[-3000:]
    for block in runnable_blocks(documented()):
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{block}\n{done.stderr[-3000:]}"
