"""Simulated customers: who they are, how they live (sign-up, lapse, return), how they are known.

Time is in days since the simulation start (a float); ``span`` is the simulated length.
Customer *i* is active on ``[created, min(lapse, span))`` and, if they return, on
``[return_at, span)``. Purchase rates follow a gamma distribution (heterogeneous, as in
BG/NBD); lifetimes are exponential with gamma-distributed means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cdp.world.common import choose, ids, random_hex, timestamps

LOCALES = np.array(["zh-TW", "zh-CN", "en"])
LOCALE_SHARE = np.array([0.5, 0.2, 0.3])
EN_COUNTRIES = np.array(["US", "SG", "GB", "AU", "TW"])


@dataclass(frozen=True)
class Population:
    """Latent state of every simulated customer (arrays indexed by customer number)."""

    customer_id: pd.Series
    created: np.ndarray  # days
    lapse: np.ndarray  # days; inf if the customer never lapses
    return_at: np.ndarray  # days; inf if they do not come back
    rate: np.ndarray  # ordinary orders per active day
    browse_rate: np.ndarray  # web/app sessions per active day
    span: float

    @property
    def size(self) -> int:
        """The number of customers."""
        return self.created.size

    def segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(start1, end1, start2, end2) of each customer's active time; empty if end <= start."""
        end1 = np.minimum(self.lapse, self.span)
        start2 = np.minimum(self.return_at, self.span)
        return self.created, end1, start2, np.full(self.size, self.span)

    def fade(self, owner: np.ndarray, t: np.ndarray, days: float) -> np.ndarray:
        """How far before a lapse a moment is: 1 when far, falling to 0 at the lapse.

        Only the ``days`` before a lapse that happens within the simulation count.
        """
        lapse = self.lapse[owner]
        before = (lapse < self.span) & (t < lapse)
        return np.where(before, np.clip((lapse - t) / days, 0.0, 1.0), 1.0)


def simulate_population(
    rng: np.random.Generator, n: int, span: float, as_of: float, first: int = 1
) -> Population:
    """Sign-up dates up to 60 days past ``as_of``, rates, lapses and returns for ``n`` customers
    (numbered from ``first``)."""
    created = rng.uniform(0, min(as_of + 60, span), n)
    rate = rng.gamma(0.5, 1 / 60 / 0.5, n)  # mean: one ordinary order every 60 active days
    mean_life = rng.gamma(1.5, 420 / 1.5, n)  # days
    lapse = created + rng.exponential(mean_life)
    lapse = np.where(lapse < span, lapse, np.inf)
    returns = np.isfinite(lapse) & (rng.random(n) < 0.4)
    return_at = np.where(returns, lapse + 20 + rng.exponential(120, n), np.inf)
    browse_rate = rate * rng.gamma(2.0, 1.0, n) + rng.gamma(1.0, 0.015, n)
    return Population(
        customer_id=ids("C", np.arange(first, first + n), 7),
        created=created,
        lapse=lapse,
        return_at=return_at,
        rate=rate,
        browse_rate=browse_rate,
        span=span,
    )


def customers_table(rng: np.random.Generator, pop: Population, start: pd.Timestamp) -> pd.DataFrame:
    """The contract ``customers`` table: id, sign-up time, country and locale."""
    locale = choose(rng, LOCALES, LOCALE_SHARE, pop.size)
    country = np.where(
        locale == "zh-TW",
        "TW",
        np.where(locale == "zh-CN", "CN", choose(rng, EN_COUNTRIES, np.ones(5), pop.size)),
    )
    return pd.DataFrame(
        {
            "customer_id": pop.customer_id,
            "created_at": timestamps(start, pop.created),
            "country": pd.array(country, dtype="str"),
            "locale": pd.array(locale, dtype="str"),
        }
    )


def identities_table(
    rng: np.random.Generator, pop: Population
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The contract ``identities`` table, plus each customer's cookie and device (or "").

    Every customer has a hashed email; phones, CRM ids, messenger PSIDs and LINE ids are
    partial. 70% browsed with a cookie before signing up; 85% of those cookies were later
    stitched to the customer (an identity row), the rest stay anonymous forever. 40% use
    the app (a device id, always stitched).
    """
    n = pop.size
    owner = np.arange(n)
    cookie = np.where(rng.random(n) < 0.7, random_hex(rng, n, 8), "")
    device = np.where(rng.random(n) < 0.4, random_hex(rng, n, 12), "")
    stitched_cookie = (cookie != "") & (rng.random(n) < 0.85)
    parts = [
        ("email_sha256", owner, random_hex(rng, n, 32)),
        ("phone_sha256", owner[rng.random(n) < 0.6], None),
        ("crm", owner[rng.random(n) < 0.5], None),
        ("messenger", owner[rng.random(n) < 0.3], None),
        ("line", owner[rng.random(n) < 0.25], None),
        ("cookie", owner[stitched_cookie], cookie[stitched_cookie]),
        ("device", owner[device != ""], device[device != ""]),
    ]
    frames = []
    for id_type, who, values in parts:
        if values is None:
            if id_type == "phone_sha256":
                values = random_hex(rng, who.size, 32)
            elif id_type == "crm":
                values = pop.customer_id.str.replace("C", "CRM-0", n=1).to_numpy()[who]
            elif id_type == "messenger":
                values = (rng.integers(10**15, 10**16, who.size)).astype(str)
            else:
                values = np.char.add("U", random_hex(rng, who.size, 16))
        frames.append(
            pd.DataFrame(
                {
                    "customer_id": pop.customer_id.to_numpy()[who],
                    "id_type": id_type,
                    "id_value": pd.array(np.asarray(values, dtype=str), dtype="str"),
                }
            )
        )
    table = pd.concat(frames, ignore_index=True).astype("str")
    return table, cookie, device


def consents_table(rng: np.random.Generator, pop: Population, start: pd.Timestamp) -> pd.DataFrame:
    """The contract ``consents`` table.

    At sign-up 60% grant marketing and 70% personalization; later 10% of the rest grant
    marketing, and marketing is withdrawn by 10% of those who granted it, more often by
    customers who go on to lapse (withdrawal then falls in the 60 days before the lapse).
    """
    n = pop.size
    owner = np.arange(n)
    rows = []

    def add(who: np.ndarray, purpose: str, granted: bool, at: np.ndarray, source: str) -> None:
        rows.append(
            pd.DataFrame(
                {
                    "customer_id": pop.customer_id.to_numpy()[who],
                    "purpose": purpose,
                    "granted": granted,
                    "recorded_at": timestamps(start, at).to_numpy(),
                    "source": source,
                }
            )
        )

    marketing = rng.random(n) < 0.6
    personalization = rng.random(n) < 0.7
    add(owner, "marketing", True, pop.created, "signup")
    rows[-1]["granted"] = marketing
    add(owner, "personalization", True, pop.created, "signup")
    rows[-1]["granted"] = personalization

    later = owner[~marketing & (rng.random(n) < 0.1)]
    add(later, "marketing", True, pop.created[later] + rng.uniform(1, 365, later.size), "chatbot")

    lapsing = np.isfinite(pop.lapse)
    p_withdraw = np.where(lapsing, 0.18, 0.05)
    withdraw = owner[marketing & (rng.random(n) < p_withdraw)]
    when = np.where(
        np.isfinite(pop.lapse[withdraw]),
        pop.lapse[withdraw] - rng.uniform(0, 60, withdraw.size),
        pop.created[withdraw] + rng.uniform(1, 500, withdraw.size),
    )
    when = np.clip(when, pop.created[withdraw] + 1, pop.span - 1e-3)
    add(withdraw, "marketing", False, when, "preference_center")

    table = pd.concat(rows, ignore_index=True)
    table = table[table["recorded_at"] <= start + pd.Timedelta(days=pop.span)]
    return table.astype(
        {"customer_id": "str", "purpose": "str", "granted": "bool", "source": "str"}
    )
