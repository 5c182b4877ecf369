"""The one place the policy reads a file: its YAML business rules (``actions.yaml``,
``drivers.yaml``), parsed safely; an unreadable file is one line naming it."""

from __future__ import annotations

from pathlib import Path

import yaml

from cdp.errors import BadInputError


def read_yaml(path: Path, what: str) -> object:
    """The parsed content of ``path``; ``what`` names it in the error (``the action
    catalog``)."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise BadInputError(f"{path}: cannot read {what}: {error}") from None
