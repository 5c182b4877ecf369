"""Simulated engagement: browsing (signed-in and anonymous), email, support tickets and chat.

Engagement fades before a lapse: in the 60 days before a customer lapses, sessions, email
opens and chat thin out, support tickets become more frequent and sentiment sours (its
mean falls from +0.35 to -0.5 at the lapse). Anonymous browsing carries a cookie or a
device id in ``anonymous_id``; whether it can be stitched depends on the identities table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cdp.world.common import ids, random_hex, take_text, timestamps, uniform_in_segments
from cdp.world.population import Population
from cdp.world.purchases import Lines

FADE_DAYS = 60.0
SOURCES = np.array(["web", "app", "email", "support", "chatbot"])
TYPES = np.array(
    [
        "page_view",
        "product_view",
        "add_to_cart",
        "email_open",
        "email_click",
        "ticket_opened",
        "ticket_resolved",
        "chat_message",
    ]
)
WEB, APP, EMAIL, SUPPORT, CHATBOT = range(5)
PAGE, PRODUCT, CART, OPEN, CLICK, TICKET, RESOLVED, CHAT = range(8)


def _part(owner, t, source, event_type, product=None, sentiment=None, anonymous=None) -> dict:
    """Events as integer codes: sources and types index SOURCES and TYPES, products the
    catalog, anonymous ids the anonymous vocabulary (see :func:`events_table`); -1 is null."""
    n = owner.size
    return {
        "owner": owner,
        "t": t,
        "source": np.broadcast_to(np.asarray(source, dtype="int8"), (n,)),
        "event_type": np.broadcast_to(np.asarray(event_type, dtype="int8"), (n,)),
        "product": np.full(n, -1, dtype="int64") if product is None else product,
        "sentiment": np.full(n, np.nan) if sentiment is None else sentiment,
        "anonymous": np.full(n, -1, dtype="int64") if anonymous is None else anonymous,
    }


def _active_poisson(rng, pop: Population, rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s1, e1, s2, e2 = pop.segments()
    active = np.maximum(e1 - s1, 0) + np.maximum(e2 - s2, 0)
    owner = np.repeat(np.arange(pop.size), rng.poisson(rate * active))
    return owner, uniform_in_segments(rng, owner, s1, e1, s2, e2)


def _mood(rng, pop: Population, owner, t, shift: float = 0.0) -> np.ndarray:
    mean = 0.35 - 0.85 * (1 - pop.fade(owner, t, FADE_DAYS)) + shift
    return np.round(np.clip(rng.normal(mean, 0.3), -1, 1), 3)


def sessions(
    rng: np.random.Generator,
    pop: Population,
    has_cookie: np.ndarray,
    has_device: np.ndarray,
    n_products: int,
) -> dict:
    """Web and app activity; 30% of web and 20% of app events happen logged out.

    A logged-out event carries the cookie (anonymous code = customer number) or the device
    (code = customers + customer number) instead of the customer id.
    """
    owner, t = _active_poisson(rng, pop, pop.browse_rate)
    keep = rng.random(owner.size) < 0.15 + 0.85 * pop.fade(owner, t, FADE_DAYS)
    owner, t = owner[keep], t[keep]
    app = has_device[owner] & (rng.random(owner.size) < 0.5)
    kind = rng.choice(np.array([PAGE, PRODUCT, CART]), size=owner.size, p=[0.6, 0.3, 0.1])
    product = np.where(kind == PAGE, -1, rng.integers(0, n_products, owner.size))
    logged_out = np.where(
        app,
        rng.random(owner.size) < 0.2,
        has_cookie[owner] & (rng.random(owner.size) < 0.3),
    )
    anonymous = np.where(logged_out, np.where(app, pop.size + owner, owner), -1)
    return _part(owner, t, np.where(app, APP, WEB), kind, product, anonymous=anonymous)


def before_signup(rng: np.random.Generator, pop: Population, has_cookie: np.ndarray) -> dict:
    """Anonymous page views in the 30 days before sign-up, under the customer's cookie."""
    who = np.flatnonzero(has_cookie)
    owner = np.repeat(who, rng.poisson(3.0, who.size))
    t = np.maximum(pop.created[owner] - rng.uniform(0, 30, owner.size), 0.0)
    return _part(owner, t, WEB, PAGE, anonymous=owner)


def visitors(rng: np.random.Generator, pop: Population) -> tuple[dict, np.ndarray]:
    """Visitors who never sign up: a few page views under a cookie nobody can stitch."""
    n = int(0.3 * pop.size)
    visitor = np.repeat(np.arange(n), 1 + rng.poisson(1.0, n))
    t = rng.uniform(0, pop.span, visitor.size)
    anonymous = 2 * pop.size + visitor
    return _part(np.full(visitor.size, -1), t, WEB, PAGE, anonymous=anonymous), random_hex(
        rng, n, 8
    )


def views_before_purchases(rng: np.random.Generator, lines: Lines, products: pd.Index) -> dict:
    """35% of purchases are preceded (0-2 days) by a view of the product."""
    pick = np.flatnonzero((lines.quantity > 0) & (rng.random(lines.owner.size) < 0.35))
    t = np.maximum(lines.t[pick] - rng.uniform(0, 2, pick.size), 0)
    product = products.get_indexer(lines.product_id[pick])
    return _part(lines.owner[pick], t, WEB, PRODUCT, product)


def email(rng: np.random.Generator, pop: Population) -> list[dict]:
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
        _part(owner, t, EMAIL, OPEN),
        _part(owner[click], t[click] + rng.uniform(0, 0.01, click.sum()), EMAIL, CLICK),
    ]


def support_and_chat(rng: np.random.Generator, pop: Population) -> list[dict]:
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
        _part(owner, t, SUPPORT, TICKET, sentiment=_mood(rng, pop, owner, t, -0.3)),
        _part(r_owner, r_t, SUPPORT, RESOLVED, sentiment=_mood(rng, pop, r_owner, r_t, 0.1)),
        _part(c_owner, c_t, CHATBOT, CHAT, sentiment=_mood(rng, pop, c_owner, c_t)),
    ]


def events_table(
    rng: np.random.Generator,
    pop: Population,
    cookie: np.ndarray,
    device: np.ndarray,
    lines: Lines,
    products: np.ndarray,
    start: pd.Timestamp,
    first: int = 1,
) -> pd.DataFrame:
    """The contract ``events`` table, sorted by time, ids ``E`` + 10 digits."""
    has_cookie, has_device = cookie != "", device != ""
    strangers, stranger_cookies = visitors(rng, pop)
    parts = [
        sessions(rng, pop, has_cookie, has_device, products.size),
        before_signup(rng, pop, has_cookie),
        strangers,
        views_before_purchases(rng, lines, pd.Index(products)),
        *email(rng, pop),
        *support_and_chat(rng, pop),
    ]
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    keep = np.flatnonzero(cols["t"] < pop.span)
    order = keep[np.argsort(cols["t"][keep], kind="stable")]
    cols = {k: v[order] for k, v in cols.items()}
    owner, anonymous = cols["owner"], cols["anonymous"]
    signed_in = np.where((owner >= 0) & (anonymous < 0), owner, -1)
    anonymous_ids = np.concatenate([cookie, device, stranger_cookies])
    return pd.DataFrame(
        {
            "event_id": ids("E", np.arange(first, first + owner.size), 10),
            "customer_id": take_text(pop.customer_id, signed_in),
            "anonymous_id": take_text(anonymous_ids, anonymous),
            "occurred_at": timestamps(start, cols["t"]),
            "source": take_text(SOURCES, cols["source"]),
            "event_type": take_text(TYPES, cols["event_type"]),
            "product_id": take_text(products, cols["product"]),
            "sentiment": cols["sentiment"],
        }
    )
