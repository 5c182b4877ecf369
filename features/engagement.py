"""Engagement: browsing, email, support and chat over look-back windows, with sentiment.

Anonymous events are attributed to a customer when their ``anonymous_id`` is the value of
one of the customer's ``cookie`` or ``device`` identities (identity stitching). Identities
carry no timestamp, so a link known now also attributes earlier anonymous events (the
browsing before sign-up): only the events themselves are cut at ``as_of``.

Two ways give the same table. The direct one (:func:`exact_engagement`) joins the events to
their owners and groups by ``customer_id``. The fast one, tried first, never groups or
joins on strings: every event gets a 64-bit key, the high bits a hash of its
``customer_id`` (or of its ``anonymous_id``), the low :data:`SLOT_BITS` bits its *slot* (the
kind of event and the window it falls in), and the events are counted per key. Anonymous
keys are then joined to the hashed cookie and device identities and every key to the
hashed customers. A second, independent hash of each identifier travels along; where two
identifiers share the high bits of the first, their second hashes disagree, and the
direct way is used instead (as it is with more windows than the slots can hold).
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from cdp.contract import STITCHABLE_ID_TYPES
from features.exact import exact_mean, on_grid
from features.time import days_between, within

VIEW_SOURCES = ("web", "app")
#: The event columns engagement reads (a partitioned build reads only these).
EVENT_COLUMNS = ("customer_id", "anonymous_id", "occurred_at", "source", "event_type", "sentiment")
#: feature stem -> the events it counts
COUNTED = {
    "views": (pl.col("event_type").is_in(["page_view", "product_view"]))
    & pl.col("source").is_in(VIEW_SOURCES),
    "product_views": pl.col("event_type") == "product_view",
    "email_opens": pl.col("event_type") == "email_open",
    "email_clicks": pl.col("event_type") == "email_click",
    "support_tickets": pl.col("event_type") == "ticket_opened",
    "chat_messages": pl.col("event_type") == "chat_message",
}


def stitched_events(
    events: pl.LazyFrame, identities: pl.LazyFrame, extra: tuple[str, ...] = ()
) -> pl.LazyFrame:
    """Events of known customers: their own, and anonymous ones whose ``anonymous_id`` is a
    cookie or device identity (``stitched`` true), attributed to that identity's customer.
    Anonymous events nobody can claim are left out. ``extra``: more event columns to keep
    (``product_id``)."""
    links = identities.filter(pl.col("id_type").is_in(STITCHABLE_ID_TYPES)).select(
        pl.col("id_value").alias("anonymous_id"), pl.col("customer_id").alias("owner")
    )
    columns = ["occurred_at", "source", "event_type", "sentiment", *extra]
    known = events.filter(pl.col("customer_id").is_not_null()).select(
        "customer_id", *columns, stitched=pl.lit(False)
    )
    anonymous = (
        events.filter(pl.col("customer_id").is_null())
        .join(links, on="anonymous_id", how="inner")  # (id_type, id_value) is unique
        .select(pl.col("owner").alias("customer_id"), *columns, stitched=pl.lit(True))
    )
    return pl.concat([known, anonymous])


def engagement_features(
    events: pl.LazyFrame,
    identities: pl.LazyFrame,
    customers: pl.LazyFrame,
    *,
    as_of: datetime,
    windows: tuple[int, ...],
    negative_sentiment: float,
) -> pl.DataFrame:
    """Per customer of ``customers`` with any attributed event by ``as_of``:

    for each window ``w`` in ``windows`` (events in ``(as_of - w days, as_of]``): counts
    ``views_{w}d`` (web/app page and product views), ``product_views_{w}d``,
    ``email_opens_{w}d``, ``email_clicks_{w}d``, ``support_tickets_{w}d`` (opened),
    ``chat_messages_{w}d``, and ``sentiment_mean_{w}d`` / ``sentiment_min_{w}d`` over
    events with a sentiment; ``stitched_events_{max w}d`` (events attributed through a
    cookie or device). Over all history: ``days_since_last_event`` and
    ``days_since_negative_sentiment`` (days since the last event with sentiment below
    ``negative_sentiment``; null if none).
    """
    args = dict(as_of=as_of, windows=tuple(sorted(windows)), negative_sentiment=negative_sentiment)
    fast = _hashed_engagement(events, identities, customers, **args)
    if fast is not None:
        return fast
    ids = customers.select("customer_id")
    return exact_engagement(events, identities, **args).join(ids, on="customer_id").collect()


def exact_engagement(
    events: pl.LazyFrame,
    identities: pl.LazyFrame,
    *,
    as_of: datetime,
    windows: tuple[int, ...],
    negative_sentiment: float,
) -> pl.LazyFrame:
    """:func:`engagement_features` by joins and group-bys on the identifiers themselves."""
    longest = max(windows)
    seen = stitched_events(events.filter(within("occurred_at", as_of)), identities)
    age = days_between(as_of, pl.col("occurred_at"))
    aggs = []
    for w in sorted(windows):
        in_window = age < w
        aggs += [(cond & in_window).sum().alias(f"{name}_{w}d") for name, cond in COUNTED.items()]
        with_sentiment = pl.col("sentiment").filter(in_window)
        aggs += [
            exact_mean(with_sentiment).alias(f"sentiment_mean_{w}d"),
            with_sentiment.min().alias(f"sentiment_min_{w}d"),
        ]
    aggs.append(pl.col("stitched").sum().alias(f"stitched_events_{longest}d"))
    counts = [f"{name}_{w}d" for w in windows for name in COUNTED] + [f"stitched_events_{longest}d"]
    # Windowed counts read only the recent events; the history needs two maxima of all.
    windowed = (
        seen.filter(within("occurred_at", as_of, longest))
        .group_by("customer_id")
        .agg(aggs)
        .with_columns(pl.col(counts).cast(pl.Int32))
    )
    negative = pl.col("occurred_at").filter(pl.col("sentiment") < negative_sentiment)
    history = seen.group_by("customer_id").agg(
        days_since_last_event=days_between(as_of, pl.col("occurred_at").max()),
        days_since_negative_sentiment=days_between(as_of, negative.max()),
    )
    return history.join(windowed, on="customer_id", how="left").with_columns(
        pl.col(counts).fill_null(0)
    )


#: Event classes, disjoint: each count of :data:`COUNTED` is a sum of some of them.
_CLASSES = (
    (pl.col("event_type") == "page_view") & pl.col("source").is_in(VIEW_SOURCES),
    (pl.col("event_type") == "product_view") & pl.col("source").is_in(VIEW_SOURCES),
    (pl.col("event_type") == "product_view") & ~pl.col("source").is_in(VIEW_SOURCES),
    pl.col("event_type") == "email_open",
    pl.col("event_type") == "email_click",
    pl.col("event_type") == "ticket_opened",
    pl.col("event_type") == "chat_message",
)
_CLASSES_OF = {
    "views": (0, 1),
    "product_views": (1, 2),
    "email_opens": (3,),
    "email_clicks": (4,),
    "support_tickets": (5,),
    "chat_messages": (6,),
}
assert set(_CLASSES_OF) == set(COUNTED)
#: Low bits of the packed key: the slot, (class or "other") x window, or "older" for any
#: event before the longest window (those only count for the last event's time).
SLOT_BITS = 6
_SEEDS = {"customer": (0x6E657874, 0x62657374), "anonymous": (0x636F6F6B, 0x69657321)}


def _hashes(column: str, kind: str) -> tuple[pl.Expr, pl.Expr]:
    """The key hash (high bits only) and the check hash of an identifier column."""
    key_seed, check_seed = _SEEDS[kind]
    return pl.col(column).hash(key_seed) & _high_bits(), pl.col(column).hash(check_seed)


def _high_bits() -> pl.Expr:
    return pl.lit((2**64 - 1) ^ (2**SLOT_BITS - 1), pl.UInt64)


def _hashed_engagement(
    events, identities, customers, *, as_of, windows, negative_sentiment
) -> pl.DataFrame | None:
    """The fast way (see the module doc), or None where it cannot vouch for its answer."""
    n_windows = len(windows)
    older = (len(_CLASSES) + 1) * n_windows  # the slot of every event before the windows
    if older >= 2**SLOT_BITS:
        return None
    age = days_between(as_of, pl.col("occurred_at"))
    bucket = pl.lit(n_windows)
    for i, w in reversed(list(enumerate(windows))):
        bucket = pl.when(age < w).then(i).otherwise(bucket)
    kind = pl.lit(len(_CLASSES))  # other
    for i, cond in reversed(list(enumerate(_CLASSES))):
        kind = pl.when(cond).then(i).otherwise(kind)
    slot = pl.when(bucket < n_windows).then(kind * n_windows + bucket).otherwise(older)
    anonymous = pl.col("customer_id").is_null()
    customer_key, customer_check = _hashes("customer_id", "customer")
    anonymous_key, anonymous_check = _hashes("anonymous_id", "anonymous")
    seen = events.filter(within("occurred_at", as_of)).select(
        key=pl.when(anonymous).then(anonymous_key).otherwise(customer_key),
        check=pl.when(anonymous).then(anonymous_check).otherwise(customer_check),
        anonymous=anonymous,
        occurred_at="occurred_at",
        sentiment="sentiment",
        slot=slot.cast(pl.UInt64),
        bucket=bucket.cast(pl.UInt64),
    )
    identity = [
        pl.col("check").min().alias("lo"),
        pl.col("check").max().alias("hi"),
        pl.col("anonymous").max(),
    ]
    by_slot, by_sentiment = pl.collect_all(
        [
            seen.group_by(pl.col("key") | pl.col("slot")).agg(
                *identity, n=pl.len(), last_at=pl.col("occurred_at").max()
            ),
            seen.filter(pl.col("sentiment").is_not_null())
            .group_by(pl.col("key") | pl.col("bucket"))
            .agg(
                *identity,
                cents=on_grid(pl.col("sentiment")).sum(),
                rated=pl.len(),
                lowest=pl.col("sentiment").min(),
                negative_at=pl.col("occurred_at")
                .filter(pl.col("sentiment") < negative_sentiment)
                .max(),
            ),
        ],
        engine="streaming",
    )
    link_key, link_check = _hashes("id_value", "anonymous")
    owner_key, owner_check = _hashes("customer_id", "customer")
    links = (
        identities.filter(pl.col("id_type").is_in(STITCHABLE_ID_TYPES))
        .select(prefix=link_key, link=link_check, owner=owner_key, owner_check=owner_check)
        .collect()
    )
    people = customers.select("customer_id", owner=owner_key, owner_check=owner_check).collect()
    if (
        people["owner"].is_duplicated().any()
        or links.group_by("prefix").agg(pl.col("link").n_unique() > 1)["link"].any()
    ):
        return None
    owned = []
    for frame in (by_slot, by_sentiment):
        frame = frame.with_columns(
            prefix=pl.col("key") & _high_bits(),
            slot=pl.col("key") & pl.lit(2**SLOT_BITS - 1, pl.UInt64),
        )
        if (frame["lo"] != frame["hi"]).any():
            return None
        known = frame.filter(~pl.col("anonymous")).with_columns(
            owner=pl.col("prefix"), owner_check=pl.col("lo")
        )
        stitched = frame.filter(pl.col("anonymous")).join(links, on="prefix")
        if (stitched["lo"] != stitched["link"]).any():
            return None
        owned.append(pl.concat([known, stitched.drop("link")], how="diagonal_relaxed"))
    by_slot, by_sentiment = owned
    built = _assemble(by_slot, by_sentiment, windows=windows, as_of=as_of, older=older)
    built = built.join(people, on="owner")
    # every key attributed to a customer must carry that customer's check hash
    checks = ["lo", "hi", "rated_lo", "rated_hi"]
    if built.select(pl.any_horizontal(pl.col(checks) != pl.col("owner_check")).any()).item():
        return None
    return built.select("customer_id", pl.exclude("customer_id", "owner", "owner_check", *checks))


def _assemble(by_slot, by_sentiment, *, windows, as_of, older) -> pl.DataFrame:
    """Per customer: the engagement columns from counts per slot and sentiment per window
    (in ``by_sentiment`` the slot is the window alone). Each row's share of every column is
    laid out first, so the group-by only adds and takes minima and maxima."""
    n_windows, longest = len(windows), max(windows)
    slot = pl.col("slot")
    counts, sentiment = {}, {}
    for i, w in enumerate(windows):
        for name, classes in _CLASSES_OF.items():
            slots = [c * n_windows + b for c in classes for b in range(i + 1)]
            counts[f"{name}_{w}d"] = pl.when(slot.is_in(slots)).then(pl.col("n")).otherwise(0)
        sentiment[f"cents_{w}"] = pl.when(slot <= i).then(pl.col("cents"))
        sentiment[f"rated_{w}"] = pl.when(slot <= i).then(pl.col("rated"))
        sentiment[f"sentiment_min_{w}d"] = pl.when(slot <= i).then(pl.col("lowest"))
    stitched = f"stitched_events_{longest}d"
    in_window = pl.col("anonymous") & (slot < older)
    counts[stitched] = pl.when(in_window).then(pl.col("n")).otherwise(0)
    events = (
        by_slot.with_columns(**counts)
        .group_by("owner")
        .agg(
            pl.col("owner_check").min().alias("lo"),
            pl.col("owner_check").max().alias("hi"),
            pl.col("last_at").max(),
            pl.col(list(counts)).sum().cast(pl.Int32),
        )
        .with_columns(days_since_last_event=days_between(as_of, pl.col("last_at")))
    )
    means = {
        f"sentiment_mean_{w}d": pl.col(f"cents_{w}") / 1e6 / pl.col(f"rated_{w}").replace(0, None)
        for w in windows
    }
    minima = [c for c in sentiment if c.startswith("sentiment_min")]
    rated = (
        by_sentiment.with_columns(**sentiment)
        .group_by("owner")
        .agg(
            pl.col("owner_check").min().alias("rated_lo"),
            pl.col("owner_check").max().alias("rated_hi"),
            pl.col("negative_at").max(),
            pl.col([c for c in sentiment if c not in minima]).sum(),
            pl.col(minima).min(),
        )
        .with_columns(
            days_since_negative_sentiment=days_between(as_of, pl.col("negative_at")), **means
        )
    )
    order = [
        "owner",
        "lo",
        "hi",
        "rated_lo",
        "rated_hi",
        "days_since_last_event",
        "days_since_negative_sentiment",
    ]
    for w in windows:
        order += [f"{name}_{w}d" for name in COUNTED]
        order += [f"sentiment_mean_{w}d", f"sentiment_min_{w}d"]
    order.append(stitched)
    return events.join(rated, on="owner", how="left").select(order)
