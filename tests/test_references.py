"""Every cross-reference in the code's docstrings and comments (``:mod:``, ``:func:``,
``:class:``, ``:meth:``, ``:data:``, ``:attr:``) names something that exists, so a move
that leaves one behind fails here."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nextbest", "serving", "policy", "training", "features", "cdp", "benchmarks")
REFERENCE = re.compile(r":(mod|func|class|meth|data|attr):`~?([A-Za-z_][\w.]*)`")


def references() -> list[tuple[str, str, str]]:
    """``(file, role, target)`` for every fully qualified reference (into our packages)."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for role, target in REFERENCE.findall(path.read_text(encoding="utf-8")):
                if target.split(".")[0] in PACKAGES:
                    found.append((str(path.relative_to(ROOT)), role, target))
    return found


def resolves(target: str) -> bool:
    """Whether ``target`` is a module, or an attribute (chain) of the longest module prefix."""
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            thing = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(thing, name):
                return False
            thing = getattr(thing, name)
        return True
    return False


def test_there_are_references_to_check():
    assert len(references()) > 50


@pytest.mark.parametrize("where", [pytest.param(r, id=f"{r[0]}:{r[2]}") for r in references()])
def test_a_reference_resolves(where):
    path, role, target = where
    assert resolves(target), f"{path}: :{role}:`{target}` names nothing"


def test_a_stale_reference_is_caught():
    assert not resolves("serving.policy.rank")
    assert not resolves("policy.ranking.no_such_function")
    assert resolves("policy.ranking.rank")
