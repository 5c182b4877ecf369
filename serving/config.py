"""The service's settings, read once from the environment into one frozen object.

``nextbest serve`` sets the environment; ``bentoml serve serving.http.service:NextBest`` reads the
same variables:

- ``NEXTBEST_DATA`` contract folder, ``NEXTBEST_FEATURES`` feature snapshot,
  ``NEXTBEST_MLRUNS`` MLflow folder (or ``MLFLOW_TRACKING_URI``);
- ``NEXTBEST_STATE`` folder for the suggestion / feedback / event store and the audit log;
- ``NEXTBEST_ACTIONS`` an action catalog to use instead of ``policy/actions.yaml``;
- ``NEXTBEST_NOW``: a fixed clock (ISO time) for simulated data, which an admin may move
  forward (:mod:`serving.clock`), else the wall clock;
- ``NEXTBEST_POLL_SECONDS``: check the registry for a new champion this often (0: never);
- ``NEXTBEST_WORKERS``: worker processes;
- ``NEXTBEST_EXPLORATION``: the share of answers whose first action is drawn at random
  among the eligible ones (:func:`policy.learning.explore`), 0 (off) by default;
- ``NEXTBEST_HOLDOUT``: the share of customers in the global control group, who get no
  marketing (:mod:`policy.holdout`; 0 by default, at most 0.5), drawn for
  ``NEXTBEST_HOLDOUT_PERIOD`` (a name such as ``2027H1``). Every door reads the same two.

API keys, the pseudonym key and the body limit stay with the code that uses them
(:mod:`serving.security`, :mod:`cdp.privacy`): they are secrets, never held here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cdp.errors import BadInputError
from cdp.time import as_utc
from policy.holdout import Holdout


@dataclass(frozen=True)
class ServeConfig:
    """Where the service reads and writes, and its clock."""

    data: Path = Path("data/demo")
    features: Path = Path("data/features")
    mlruns: Path = Path("mlruns")
    state: Path = Path("data/serving")
    actions: Path | None = None
    now: datetime | None = None  # a fixed clock; None: the wall clock
    poll_seconds: float = 0.0
    workers: int = 1
    exploration: float = 0.0
    holdout: Holdout = field(default_factory=Holdout)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServeConfig:
        """The settings from ``NEXTBEST_*`` variables (defaults for those unset)."""
        env = os.environ if env is None else env
        default = cls()

        def number(name: str, kind, fallback):
            text = env.get(name)
            try:
                return fallback if not text else kind(text)
            except ValueError:
                raise BadInputError(f"{name}: expected a number, got {text!r}") from None

        now = None
        if fixed := env.get("NEXTBEST_NOW"):
            try:
                now = datetime.fromisoformat(fixed)
            except ValueError:
                raise BadInputError(f"NEXTBEST_NOW: not an ISO time: {fixed!r}") from None
            now = as_utc(now)
        return cls(
            data=Path(env.get("NEXTBEST_DATA") or default.data),
            features=Path(env.get("NEXTBEST_FEATURES") or default.features),
            mlruns=Path(env.get("NEXTBEST_MLRUNS") or default.mlruns),
            state=Path(env.get("NEXTBEST_STATE") or default.state),
            actions=Path(env["NEXTBEST_ACTIONS"]) if env.get("NEXTBEST_ACTIONS") else None,
            now=now,
            poll_seconds=number("NEXTBEST_POLL_SECONDS", float, default.poll_seconds),
            workers=number("NEXTBEST_WORKERS", int, default.workers),
            exploration=_share(number("NEXTBEST_EXPLORATION", float, default.exploration)),
            holdout=holdout_from_env(env),
        )

    def clock(self) -> Callable[[], datetime]:
        """The service's clock: the fixed moment (a :class:`~serving.clock.SimulatedClock`,
        which ``POST /admin/clock`` moves forward), or the wall clock in UTC."""
        from serving.clock import SimulatedClock, wall_clock

        if self.now is not None:
            return SimulatedClock(self.now, self.state / "clock")
        return wall_clock


def holdout_from_env(env: Mapping[str, str] | None = None) -> Holdout:
    """The global control group of ``NEXTBEST_HOLDOUT`` and ``NEXTBEST_HOLDOUT_PERIOD``,
    refused in one line naming the variable."""
    env = os.environ if env is None else env
    text = env.get("NEXTBEST_HOLDOUT") or "0"
    try:
        share = float(text)
    except ValueError:
        raise BadInputError(f"NEXTBEST_HOLDOUT: expected a share, got {text!r}") from None
    period = env.get("NEXTBEST_HOLDOUT_PERIOD", "")
    try:
        return Holdout(share, period)
    except ValueError as error:
        name = "NEXTBEST_HOLDOUT_PERIOD" if "period" in str(error) else "NEXTBEST_HOLDOUT"
        raise BadInputError(f"{name}: {error}") from None


def _share(value: float) -> float:
    if not 0 <= value <= 1:
        raise BadInputError(f"NEXTBEST_EXPLORATION: a share between 0 and 1, got {value}")
    return value
