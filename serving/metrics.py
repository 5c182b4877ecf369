"""The service's own Prometheus metrics, beside BentoML's on ``/metrics``.

- ``nextbest_reloads_total{outcome}``: loads and reloads (loaded, reloaded, failed);
- ``nextbest_reload_running``: 1 while a reload is loading beside the serving state (summed
  over the live workers), and ``nextbest_reload_duration_seconds``, how long each took;
- ``nextbest_snapshot_as_of_timestamp_seconds``: the as-of of the feature snapshot being
  served (Unix time; its age is ``time() - value``, an alert rule away);
- ``nextbest_online_rows_applied_total{table, via}``: contract rows applied online, by
  ``POST /events`` (``via="events"``) or again on top of a new snapshot (``via="replay"``);
- ``nextbest_online_log_compacted_total``: log entries dropped at a load because the new
  snapshot holds them (:mod:`serving.memory.compaction`);
- ``nextbest_online_rows_refused_total{route}``: contract rows refused (422) by the
  service's rules (dated in the future, an unknown product, ...), by route;
- ``nextbest_actions_served_total{action, purpose}``: actions in answers;
- ``nextbest_marketing_withheld_total{reason}``: marketing actions withheld from an answer,
  for want of consent (``consent``) or for the global control group (``holdout``);
- ``nextbest_feedback_total{outcome, result}``: feedback items by outcome and what became
  of them (``stored``, ``unknown_request``, ``not_offered``);
- ``nextbest_model_info{model, version}``: 1 for each champion version serving, 0 for
  versions served before in this process (an info metric: join on it, alert on changes).

Every label takes a bounded set of values (the catalog's actions, the routes, the model
kinds and their versions): none grows with customers or requests.
"""

from __future__ import annotations

import bentoml

RELOADS = bentoml.metrics.Counter(
    name="nextbest_reloads_total",
    documentation="Model and feature reloads, by outcome",
    labelnames=["outcome"],
)
RELOAD_RUNNING = bentoml.metrics.Gauge(
    name="nextbest_reload_running",
    documentation="1 while a reload loads beside the serving state, summed over workers",
    multiprocess_mode="livesum",
)
RELOAD_SECONDS = bentoml.metrics.Histogram(
    name="nextbest_reload_duration_seconds",
    documentation="How long each reload took, from start to switch (or failure)",
    buckets=(1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 300, 600),
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


COMPACTED = bentoml.metrics.Counter(
    name="nextbest_online_log_compacted_total",
    documentation="Online log entries dropped at a load because the snapshot holds them",
)
ONLINE_REFUSED = bentoml.metrics.Counter(
    name="nextbest_online_rows_refused_total",
    documentation="Contract rows refused online by the service's rules, by route",
    labelnames=["route"],
)
ACTIONS = bentoml.metrics.Counter(
    name="nextbest_actions_served_total",
    documentation="Actions in answers, by action and purpose",
    labelnames=["action", "purpose"],
)
WITHHELD = bentoml.metrics.Counter(
    name="nextbest_marketing_withheld_total",
    documentation="Marketing actions withheld from answers, by reason (consent, holdout)",
    labelnames=["reason"],
)
FEEDBACK = bentoml.metrics.Counter(
    name="nextbest_feedback_total",
    documentation="Feedback items by outcome and what became of them",
    labelnames=["outcome", "result"],
)
MODELS = bentoml.metrics.Gauge(
    name="nextbest_model_info",
    documentation="1 for each champion version serving, 0 for versions served before",
    labelnames=["model", "version"],
    multiprocess_mode="mostrecent",
)
_serving: dict[str, str] = {}  # model -> the version this process last marked serving


def serving_models(versions: dict[str, str]) -> None:
    """Mark ``versions`` (model -> version) as serving in ``MODELS``, and the versions they
    replace as no longer serving."""
    for model, version in _serving.items():
        if versions.get(model) != version:
            MODELS.labels(model=model, version=version).set(0)
    for model, version in versions.items():
        MODELS.labels(model=model, version=str(version)).set(1)
    _serving.clear()
    _serving.update({m: str(v) for m, v in versions.items()})


def count_applied(counts: dict[str, int], via: str) -> None:
    """Add the counts of one :func:`~serving.memory.updates.apply` to ``ONLINE_ROWS``."""
    for table in ("customers", "orders", "events", "consents", "identities"):
        if counts.get(table):
            ONLINE_ROWS.labels(table=table, via=via).inc(counts[table])
