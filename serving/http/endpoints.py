"""The ``endpoint`` label of BentoML's request metrics, bounded, and a real service version.

BentoML 1.4 labels every request's counters and histograms with the raw request path, so a
scanner asking for ``/scan-1722``, ``/scan-1723``... adds series without end. The class
:func:`install` puts in BentoML's place labels a path the service has no route for as
:data:`OTHER` (the request itself is untouched: it still gets its 404), and BentoML's
``service_version`` (``not available`` outside a built Bento) becomes the package version.
"""

from __future__ import annotations

from typing import Any

#: The label of every path the service has no route for.
OTHER = "other"
#: BentoML's own routes beside the service's.
BENTOML_ROUTES = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/docs", "/docs.json"})
#: The request's own path, kept in the scope while the metrics see the label.
PATH = "nextbest.path"


def bounded(known: frozenset[str], version: str):
    """BentoML's metrics middleware with the endpoint label taken from ``known`` paths (else
    :data:`OTHER`), and ``version`` as the service version when BentoML has none."""
    from bentoml._internal.context import server_context
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    class BoundedMetrics(RunnerTrafficMetricsMiddleware):
        def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(_with_path(app), *args, **kwargs)
            # built after the worker set it: "not available" outside a built Bento
            if server_context.bento_version == "not available":
                server_context.bento_version = version

        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            if scope["type"].startswith("http") and scope["path"] not in known:
                scope = {**scope, "path": OTHER, PATH: scope["path"]}
            await super().__call__(scope, receive, send)

    return BoundedMetrics


def _with_path(app: Any):
    """``app`` called with the request's own path back in its scope."""

    async def call(scope: dict, receive: Any, send: Any) -> None:
        if PATH in scope:
            scope = {**scope, "path": scope[PATH]}
        await app(scope, receive, send)

    return call


def install(routes: set[str], version: str) -> None:
    """Make BentoML build its HTTP app with bounded endpoint labels and ``version`` (it
    looks the class up in ``bentoml._internal.server.http.instruments`` when it assembles
    the middlewares, after importing the service). Call before BentoML builds the app."""
    from bentoml._internal.server.http import instruments

    if not hasattr(instruments, "RunnerTrafficMetricsMiddleware"):
        raise RuntimeError(
            "bentoml._internal.server.http.instruments has no RunnerTrafficMetricsMiddleware"
            " to replace: check serving/http/endpoints.py against this BentoML version"
        )
    instruments.RunnerTrafficMetricsMiddleware = bounded(
        frozenset(routes) | BENTOML_ROUTES, version
    )
