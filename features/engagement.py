"""Engagement: browsing, email, support and chat over look-back windows, with sentiment.

Anonymous events are attributed to a customer when their ``anonymous_id`` is the value of
one of the customer's ``cookie`` or ``device`` identities (identity stitching). Identities
carry no timestamp, so a link known now also attributes earlier anonymous events (the
browsing before sign-up): only the events themselves are cut at ``as_of``.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from features.exact import exact_mean
from features.time import days_between, within
from nextbest.contract import STITCHABLE_ID_TYPES

VIEW_SOURCES = ("web", "app")
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


def stitched_events(events: pl.LazyFrame, identities: pl.LazyFrame) -> pl.LazyFrame:
    """Events of known customers: their own, and anonymous ones whose ``anonymous_id`` is a
    cookie or device identity (``stitched`` true), attributed to that identity's customer.
    Anonymous events nobody can claim are left out."""
    links = identities.filter(pl.col("id_type").is_in(STITCHABLE_ID_TYPES)).select(
        pl.col("id_value").alias("anonymous_id"), pl.col("customer_id").alias("owner")
    )
    columns = ["occurred_at", "source", "event_type", "sentiment"]
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
    *,
    as_of: datetime,
    windows: tuple[int, ...],
    negative_sentiment: float,
) -> pl.LazyFrame:
    """Per customer with any attributed event by ``as_of``:

    for each window ``w`` in ``windows`` (events in ``(as_of - w days, as_of]``): counts
    ``views_{w}d`` (web/app page and product views), ``product_views_{w}d``,
    ``email_opens_{w}d``, ``email_clicks_{w}d``, ``support_tickets_{w}d`` (opened),
    ``chat_messages_{w}d``, and ``sentiment_mean_{w}d`` / ``sentiment_min_{w}d`` over
    events with a sentiment; ``stitched_events_{max w}d`` (events attributed through a
    cookie or device). Over all history: ``days_since_last_event`` and
    ``days_since_negative_sentiment`` (days since the last event with sentiment below
    ``negative_sentiment``; null if none).
    """
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
