"""What a simulated world is made of: :class:`WorldConfig`, checked in one place."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from cdp.errors import BadInputError
from cdp.time import as_utc


@dataclass(frozen=True)
class WorldConfig:
    """What to simulate.

    ``history_days`` of data end at ``as_of``; ``future_days`` follow it, long enough to
    label the churn horizon (``horizon_days``) and the replenishment window (``window_days``).
    """

    customers: int
    seed: int
    as_of: pd.Timestamp
    history_days: int = 730
    future_days: int = 120
    horizon_days: int = 90
    window_days: int = 14

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise BadInputError(f"--customers must be at least 1, got {self.customers}")
        if self.seed < 0:
            raise BadInputError(f"--seed must be >= 0, got {self.seed}")
        if self.future_days < max(self.horizon_days, self.window_days):
            raise BadInputError(
                f"future_days ({self.future_days}) must cover horizon_days ({self.horizon_days})"
                f" and window_days ({self.window_days})"
            )
        object.__setattr__(self, "as_of", pd.Timestamp(as_utc(self.as_of)))

    @property
    def start(self) -> pd.Timestamp:
        """The first moment of the simulated history."""
        return self.as_of - pd.Timedelta(days=self.history_days)
