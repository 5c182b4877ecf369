"""Simulated engagement: browsing (signed-in and anonymous), email, support tickets and chat.

Engagement fades before a lapse: in the 60 days before a customer lapses, sessions, email
opens and chat thin out, support tickets become more frequent and sentiment sours (its
mean falls from +0.35 to -0.5 at the lapse). Anonymous browsing carries a cookie or a
device id in ``anonymous_id``; whether it can be stitched depends on the identities table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nextbest.world.common import ids, random_hex, timestamps, uniform_in_segments
from nextbest.world.population import Population
from nextbest.world.purchases import Lines

FADE_DAYS = 60.0


def _part(owner, t, source, event_type, product=None, sentiment=None, anonymous=None) -> dict:
    n = owner.size
    return {
        "owner": owner,
        "t": t,
        "source": np.broadcast_to(np.asarray(source, dtype=object), (n,)),
        "event_type": np.broadcast_to(np.asarray(event_type, dtype=object), (n,)),
        "product_id": np.full(n, None, dtype=object) if product is None else product,
        "sentiment": np.full(n, np.nan) if sentiment is None else sentiment,
        "anonymous_id": np.full(n, None, dtype=object) if anonymous is None else anonymous,
    }


def _active_poisson(rng, pop: Population, rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s1, e1, s2, e2 = pop.segments()
    active = np.maximum(e1 - s1, 0) + np.maximum(e2 - s2, 0)
    owner = np.repeat(np.arange(pop.size), rng.poisson(rate * active))
    return owner, uniform_in_segments(rng, owner, s1, e1, s2, e2)


def _mood(rng, pop: Population, owner, t, shift: float = 0.0) -> np.ndarray:
    mean = 0.35 - 0.85 * (1 - pop.fade(owner, t, FADE_DAYS)) + shift
    return np.round(np.clip(rng.normal(mean, 0.3), -1, 1), 3)


def sessions(rng, pop: Population, cookie: np.ndarray, device: np.ndarray, products: np.ndarray):
    """Web and app activity; 30% of web and 20% of app events happen logged out."""
    owner, t = _active_poisson(rng, pop, pop.browse_rate)
    keep = rng.random(owner.size) < 0.15 + 0.85 * pop.fade(owner, t, FADE_DAYS)
    owner, t = owner[keep], t[keep]
    app = (device[owner] != "") & (rng.random(owner.size) < 0.5)
    kind = rng.choice(
        np.array(["page_view", "product_view", "add_to_cart"], dtype=object),
        size=owner.size,
        p=[0.6, 0.3, 0.1],
    )
    product = np.where(kind == "page_view", None, rng.choice(products, owner.size))
    logged_out = np.where(
        app, (rng.random(owner.size) < 0.2), (cookie[owner] != "") & (rng.random(owner.size) < 0.3)
    )
    anonymous = np.where(logged_out, np.where(app, device[owner], cookie[owner]), None)
    return _part(owner, t, np.where(app, "app", "web"), kind, product, anonymous=anonymous)


def before_signup(rng, pop: Population, cookie: np.ndarray):
    """Anonymous page views in the 30 days before sign-up, under the customer's cookie."""
    who = np.flatnonzero(cookie != "")
    owner = np.repeat(who, rng.poisson(3.0, who.size))
    t = np.maximum(pop.created[owner] - rng.uniform(0, 30, owner.size), 0.0)
    return _part(owner, t, "web", "page_view", anonymous=cookie[owner])


def visitors(rng, pop: Population):
    """Visitors who never sign up: a few page views under a cookie nobody can stitch."""
    n = int(0.3 * pop.size)
    visitor = np.repeat(np.arange(n), 1 + rng.poisson(1.0, n))
    cookies = random_hex(rng, n, 8)
    t = rng.uniform(0, pop.span, visitor.size)
    return _part(np.full(visitor.size, -1), t, "web", "page_view", anonymous=cookies[visitor])


def views_before_purchases(rng, lines: Lines):
    """35% of purchases are preceded (0-2 days) by a view of the product."""
    pick = np.flatnonzero((lines.quantity > 0) & (rng.random(lines.owner.size) < 0.35))
    t = np.maximum(lines.t[pick] - rng.uniform(0, 2, pick.size), 0)
    return _part(lines.owner[pick], t, "web", "product_view", lines.product_id[pick].astype(object))


def email(rng, pop: Population):
    """Email opens (and clicks on a quarter of them), rarer when disengaging or lapsed."""
    created = pop.created
    owner = np.repeat(np.arange(pop.size), rng.poisson(0.02 * (pop.span - created)))
    t = created[owner] + rng.uniform(0, 1, owner.size) * (pop.span - created[owner])
    s1, e1, s2, e2 = pop.segments()
    active = ((t >= s1[owner]) & (t < e1[owner])) | ((t >= s2[owner]) & (t < e2[owner]))
    weight = np.where(active, 0.2 + 0.8 * pop.fade(owner, t, FADE_DAYS), 0.2)
    keep = rng.random(owner.size) < weight
    owner, t = owner[keep], t[keep]
    click = rng.random(owner.size) < 0.25
    return [
        _part(owner, t, "email", "email_open"),
        _part(owner[click], t[click] + rng.uniform(0, 0.01, click.sum()), "email", "email_click"),
    ]


def support_and_chat(rng, pop: Population):
    """Support tickets (4x as frequent just before a lapse) and chatbot messages with sentiment."""
    owner, t = _active_poisson(rng, pop, np.full(pop.size, 0.012))
    near = 1 - pop.fade(owner, t, FADE_DAYS)
    keep = rng.random(owner.size) < 0.25 + 0.75 * near
    owner, t = owner[keep], t[keep]
    resolved = rng.random(owner.size) < 0.7
    r_owner, r_t = owner[resolved], t[resolved] + rng.uniform(0.5, 5, resolved.sum())
    c_owner, c_t = _active_poisson(rng, pop, np.full(pop.size, 0.01))
    keep = rng.random(c_owner.size) < 0.3 + 0.7 * pop.fade(c_owner, c_t, FADE_DAYS)
    c_owner, c_t = c_owner[keep], c_t[keep]
    return [
        _part(owner, t, "support", "ticket_opened", sentiment=_mood(rng, pop, owner, t, -0.3)),
        _part(
            r_owner, r_t, "support", "ticket_resolved", sentiment=_mood(rng, pop, r_owner, r_t, 0.1)
        ),
        _part(c_owner, c_t, "chatbot", "chat_message", sentiment=_mood(rng, pop, c_owner, c_t)),
    ]


def events_table(
    rng: np.random.Generator,
    pop: Population,
    cookie: np.ndarray,
    device: np.ndarray,
    lines: Lines,
    products: np.ndarray,
    start: pd.Timestamp,
) -> pd.DataFrame:
    """The contract ``events`` table, sorted by time, ids ``E`` + 10 digits."""
    parts = [
        sessions(rng, pop, cookie, device, products),
        before_signup(rng, pop, cookie),
        visitors(rng, pop),
        views_before_purchases(rng, lines),
        *email(rng, pop),
        *support_and_chat(rng, pop),
    ]
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    keep = cols["t"] < pop.span
    cols = {k: v[keep] for k, v in cols.items()}
    order = np.argsort(cols["t"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    owner = cols["owner"]
    signed_in = (owner >= 0) & pd.isna(cols["anonymous_id"])
    customer = np.where(signed_in, pop.customer_id.to_numpy()[np.maximum(owner, 0)], None)
    return pd.DataFrame(
        {
            "event_id": ids("E", np.arange(1, owner.size + 1), 10),
            "customer_id": pd.array(customer, dtype="str"),
            "anonymous_id": pd.array(cols["anonymous_id"], dtype="str"),
            "occurred_at": timestamps(start, cols["t"]),
            "source": pd.array(cols["source"], dtype="str"),
            "event_type": pd.array(cols["event_type"], dtype="str"),
            "product_id": pd.array(cols["product_id"], dtype="str"),
            "sentiment": cols["sentiment"],
        }
    )
