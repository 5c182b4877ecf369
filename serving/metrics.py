"""The service's own Prometheus metrics, beside BentoML's on ``/metrics``.

- ``nextbest_reloads_total{outcome}``: loads and reloads (loaded, reloaded, failed);
- ``nextbest_snapshot_as_of_timestamp_seconds``: the as-of of the feature snapshot being
  served (Unix time; its age is ``time() - value``, an alert rule away);
- ``nextbest_online_rows_applied_total{table, via}``: contract rows applied online, by
  ``POST /events`` (``via="events"``) or again on top of a new snapshot (``via="replay"``).
"""

from __future__ import annotations

import bentoml

RELOADS = bentoml.metrics.Counter(
    name="nextbest_reloads_total",
    documentation="Model and feature reloads, by outcome",
    labelnames=["outcome"],
)
SNAPSHOT_AS_OF = bentoml.metrics.Gauge(
    name="nextbest_snapshot_as_of_timestamp_seconds",
    documentation="The as-of of the feature snapshot being served, as Unix time",
    multiprocess_mode="mostrecent",
)
ONLINE_ROWS = bentoml.metrics.Counter(
    name="nextbest_online_rows_applied_total",
    documentation="Contract rows applied online, by table and by how (events or replay)",
    labelnames=["table", "via"],
)


def count_applied(counts: dict[str, int], via: str) -> None:
    """Add the counts of one :func:`~serving.memory.updates.apply` to ``ONLINE_ROWS``."""
    for table in ("customers", "orders", "events", "consents", "identities"):
        if counts.get(table):
            ONLINE_ROWS.labels(table=table, via=via).inc(counts[table])
