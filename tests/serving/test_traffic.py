"""The request timeout: same answers as BentoML's, a 504 when late, no timer left behind."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from serving.http.traffic import TimeoutMiddleware, install


async def _quick(request):
    return JSONResponse({"ok": True})


async def _slow(request):
    await asyncio.sleep(1.0)
    return JSONResponse({"ok": True})


async def _broken(request):
    raise RuntimeError("boom")


def _app(timeout: float) -> TimeoutMiddleware:
    routes = [Route("/quick", _quick), Route("/slow", _slow), Route("/broken", _broken)]
    return TimeoutMiddleware(Starlette(routes=routes), timeout=timeout)


async def _call(app, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path)


def test_answers_pass_through_and_leave_no_live_timer():
    async def scenario():
        app = _app(timeout=60)
        loop = asyncio.get_running_loop()
        answers = [await _call(app, "/quick") for _ in range(300)]
        live = [h for h in loop._scheduled if not h.cancelled() and h.when() > loop.time() + 30]
        return answers, live

    answers, live = asyncio.run(scenario())
    assert {r.status_code for r in answers} == {200}
    assert live == []  # BentoML's own middleware leaves 300 timers of 60 s here


def test_late_answer_is_504():
    response = asyncio.run(_call(_app(timeout=0.05), "/slow"))
    assert response.status_code == 504
    problem = response.json()
    assert problem["status"] == 504 and "0.05 seconds" in problem["detail"]
    assert response.headers["content-type"] == "application/problem+json"


def test_app_error_is_not_held_until_the_timeout():
    async def scenario():
        loop = asyncio.get_running_loop()
        start = loop.time()
        response = await _call(_app(timeout=30), "/broken")
        return response, loop.time() - start

    response, seconds = asyncio.run(scenario())
    assert response.status_code == 500
    assert seconds < 5


def test_install_replaces_bentomls_middleware(monkeypatch):
    from bentoml._internal.server.http import traffic

    monkeypatch.setattr(traffic, "TimeoutMiddleware", traffic.TimeoutMiddleware)
    install()
    assert traffic.TimeoutMiddleware is TimeoutMiddleware


def test_install_refuses_a_bentoml_without_the_class(monkeypatch):
    from bentoml._internal.server.http import traffic

    monkeypatch.delattr(traffic, "TimeoutMiddleware")
    with pytest.raises(RuntimeError, match="TimeoutMiddleware"):
        install()
