"""BentoML's per-request timeout, without keeping every request alive for the timeout.

BentoML 1.4 wraps each HTTP request in ``TimeoutMiddleware``, which schedules
``loop.call_later(timeout, ...)`` and never cancels the timer. The timer handle holds the
request's contextvars ``Context`` (its OpenTelemetry span, futures, locks), so with the
default 60 s timeout every request of the last minute stays reachable: ~40k requests
and 0.2-0.7 million objects at 700 req/s. The garbage collector traversed them in full
collections of 140-480 ms about once a second, a pause every request in flight waited
through.

:class:`TimeoutMiddleware` keeps BentoML's behaviour (a 504 when no response has started
within the timeout) and cancels its timer as soon as the response starts; asyncio drops
cancelled timers from its heap once they are the majority, so at most a few hundred are
held. :func:`install` puts it in place of BentoML's; the service module calls it before
BentoML builds its application.
"""

from __future__ import annotations

import asyncio
from typing import Any

from serving.http import problems


class TimeoutMiddleware:
    """ASGI middleware: 504 if the wrapped app has not started a response in ``timeout`` s."""

    def __init__(self, app: Any, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        started = loop.create_future()
        timer = loop.call_later(self.timeout, _expire, started)

        async def _send(message: dict) -> None:
            if not started.done():
                started.set_result(None)
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, _send))
        task.add_done_callback(lambda _: started.done() or started.set_result(None))
        try:
            await started
        except TimeoutError:
            if task.cancel():
                detail = f"not able to process the request in {self.timeout} seconds"
                await problems.response(504, detail)(scope, receive, send)
                return
        finally:
            timer.cancel()
        await task


def _expire(started: asyncio.Future) -> None:
    if not started.done():
        started.set_exception(TimeoutError())


#: The BentoML minor series this replacement was written against (pyproject.toml pins it).
WRITTEN_FOR = "1.4."


def install() -> None:
    """Make BentoML build its HTTP app with :class:`TimeoutMiddleware` (it looks the class
    up in ``bentoml._internal.server.http.traffic`` when it assembles the middlewares).
    Refuses any BentoML outside :data:`WRITTEN_FOR`: the class it replaces is internal."""
    import bentoml
    from bentoml._internal.server.http import traffic

    if not bentoml.__version__.startswith(WRITTEN_FOR):
        raise RuntimeError(
            f"serving/http/traffic.py replaces a class inside BentoML {WRITTEN_FOR}x, not"
            f" {bentoml.__version__}: check it against this version, then move WRITTEN_FOR"
            " and the bound in pyproject.toml"
        )

    if not hasattr(traffic, "TimeoutMiddleware"):  # a BentoML that no longer has it
        raise RuntimeError(
            "bentoml._internal.server.http.traffic has no TimeoutMiddleware to replace: "
            "check serving/http/traffic.py against this BentoML version"
        )
    traffic.TimeoutMiddleware = TimeoutMiddleware
