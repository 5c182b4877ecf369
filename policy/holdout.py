"""The global control group: a small, stable share of customers who get no marketing at all,
so that what the suggestions bring can be measured against them (a global holdout, as
Optimizely and MoEngage keep one).

Assignment is deterministic: a keyed hash (HMAC-SHA256 under the pseudonym key) of the
period's name and the customer's pseudonym, read as a number in [0, 1), below ``share`` is
control. Every worker, replica, ``nextbest suggest`` run and MCP server holding the same key
and settings agrees without shared state, and the group survives restarts and retrains; a
new period (``2027H2``) draws the groups afresh. Control customers get service actions
exactly as everyone else; the policy withholds every marketing action from them
(:func:`policy.ranking.rank`, reason :data:`CONTROL`).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

#: The reason a marketing action is withheld from a control customer.
CONTROL = "global control group (holdout)"
#: The largest share that may be held out.
MAX_SHARE = 0.5


@dataclass(frozen=True)
class Holdout:
    """``share`` of customers in control, drawn for ``period``; no holdout with share 0."""

    share: float = 0.0
    period: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= MAX_SHARE:
            raise ValueError(f"a share in [0, {MAX_SHARE}], got {self.share}")
        if self.share > 0 and not self.period.strip():
            raise ValueError("a named period (e.g. 2027H1) when a share is held out")

    def group(self, pseudonym: str, key: bytes) -> str:
        """``control`` or ``treated``, for the customer with this pseudonym."""
        return "control" if self.in_control(pseudonym, key) else "treated"

    def in_control(self, pseudonym: str, key: bytes) -> bool:
        """Whether the customer with this pseudonym is held out in this period."""
        if self.share <= 0:
            return False
        message = f"holdout\x1f{self.period}\x1f{pseudonym}".encode()
        digest = hmac.new(key, message, hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.share
