"""The BentoML service: ``bentoml serve serving.http.service:NextBest`` (or ``nextbest serve``).

Settings: :class:`serving.config.ServeConfig`, read once from the environment when this
module is imported. The live parts (:class:`serving.memory.runtime.Runtime`) are put on the FastAPI
app's state when the service starts; the routes reach them there.

Loading runs in a background thread: ``/readyz`` answers 503 until the models and
features are in memory. A reload (``POST /admin/reload``, answered 202 at once, or the
poll) builds a new state beside the old one in the background and swaps a single
reference; if it fails the old one keeps serving, the failure is logged, counted in
``nextbest_reloads_total{outcome="failed"}`` and shown by ``GET /admin/reload``.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time

import bentoml

from cdp import package_version
from cdp.errors import BadInputError
from serving.config import ServeConfig
from serving.http import api, endpoints, traffic
from serving.http.openapi import OpenAPIMiddleware
from serving.memory import online, runtime
from serving.memory.reloads import Reloads
from serving.metrics import RELOADS, SNAPSHOT_AS_OF, serving_models
from serving.security import SecurityMiddleware

# The one thing done at import: BentoML assembles its middlewares after importing this
# module; its request timeout keeps every request of the last minute alive (see
# serving.http.traffic) and its request metrics label every path seen (serving.http.endpoints).
traffic.install()
endpoints.install({route.path for route in api.app.routes}, package_version())

logger = logging.getLogger("nextbest.serving")


CONFIG = ServeConfig.from_env()
if CONFIG.workers != 1 and not online.configured():  # see `nextbest serve --workers`
    raise BadInputError(online.ONE_WORKER.format(what=f"NEXTBEST_WORKERS={CONFIG.workers}"))


@bentoml.service(name="nextbest", workers=CONFIG.workers, traffic={"timeout": 60})
@bentoml.asgi_app(api.app, path="/")
class NextBest:
    """Next best actions for chatbots: suggest, profile, events, feedback, reload."""

    def __init__(self) -> None:
        self.config = CONFIG
        # refuses to start without NEXTBEST_PSEUDONYM_KEY
        self.reloads = Reloads(self._swap)
        self.runtime = runtime.open_runtime(CONFIG, reload=self.reloads.run)
        self.runtime.reloads = self.reloads
        api.app.state.runtime = self.runtime
        threading.Thread(target=self._first_load, daemon=True, name="nextbest-load").start()
        if CONFIG.poll_seconds > 0:
            threading.Thread(target=self._poll, args=(CONFIG.poll_seconds,), daemon=True).start()

    def __is_ready__(self) -> bool:
        return self.runtime.state is not None

    def _load(self):
        state = runtime.load_state(self.runtime, self.config)
        SNAPSHOT_AS_OF.set(state.as_of.timestamp())
        serving_models(state.versions)
        return state

    @staticmethod
    def _freeze() -> None:
        """Move the loaded state out of the garbage collector's sight: its millions of
        long-lived objects would otherwise be traversed by every full collection, a pause
        of ~100 ms that surfaced as the p99 of /suggest. A reload unfreezes first, so the
        old state can be collected."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        runtime.release_freed_memory()

    def _first_load(self) -> None:
        try:
            self.runtime.state = self._load()
            self._freeze()
            RELOADS.labels(outcome="loaded").inc()
            logger.info("serving models %s", self.runtime.state.versions)
        except Exception:  # the service stays unready; the log says why
            RELOADS.labels(outcome="failed").inc()
            logger.exception("loading models and features failed; /readyz stays 503")

    def _swap(self) -> dict:
        """Build a new state beside the current one and swap it in; keep the old on failure
        (one at a time: :class:`serving.memory.reloads.Reloads` runs it)."""
        old = self.runtime.state
        try:
            new = self._load()
        except Exception as error:
            RELOADS.labels(outcome="failed").inc()
            logger.exception("reload failed; still serving %s", old and old.versions)
            versions = old.versions if old else {}
            return {
                "reloaded": False,
                "model_versions": versions,
                "detail": f"kept the current models: {type(error).__name__}: {error}",
            }
        self.runtime.state = new  # one reference: requests see the old or the new, whole
        del old
        self._freeze()
        RELOADS.labels(outcome="reloaded").inc()
        logger.info("reloaded: serving models %s", new.versions)
        return {"reloaded": True, "model_versions": new.versions, "detail": "switched"}

    def _poll(self, seconds: float) -> None:
        from mlflow import MlflowClient

        from training.registry import REGISTERED

        while True:
            time.sleep(seconds)
            state = self.runtime.state
            if state is None:
                continue
            try:
                client = MlflowClient()
                current = {
                    kind: str(client.get_model_version_by_alias(name, "champion").version)
                    for kind, name in REGISTERED.items()
                    if kind in state.versions
                }
            except Exception:
                logger.exception("polling the registry failed")
                continue
            if current != state.versions:
                self.reloads.run()


class ServedBy:
    """An ``X-Served-By: <pid>`` header on every answer: which worker process answered (with
    ``--workers N``, to follow a request in the logs, and for the tests that prove workers
    answer alike)."""

    def __init__(self, app) -> None:
        self.app = app
        self.header = (b"x-served-by", str(os.getpid()).encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def sending(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), self.header]
            await send(message)

        return await self.app(scope, receive, sending)


NextBest.add_asgi_middleware(ServedBy)
NextBest.add_asgi_middleware(SecurityMiddleware, scopes=api.scopes())
NextBest.add_asgi_middleware(OpenAPIMiddleware)
