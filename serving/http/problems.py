"""One error format for every route: RFC 9457 problem details (``application/problem+json``).

Every 4xx and 5xx the service gives, whoever raises it (the key check, the body limit,
FastAPI's validation, a route, a failing store, an unexpected error), is::

    {"type": "about:blank", "title": "Unprocessable Content", "status": 422,
     "detail": "body.context.sentiment: Input should be a valid number",
     "errors": [{"loc": ["body", "context", "sentiment"], "msg": "...", "type": "float_type"}]}

``detail`` is always one human-readable string; ``errors`` lists each invalid field (422
only). No input value is ever echoed: it may be NaN, not UTF-8, or a customer's data.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response

MEDIA_TYPE = "application/problem+json"
logger = logging.getLogger("nextbest.serving")


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where: body, query or header, then the field path")
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem."""

    type: str = "about:blank"
    title: str = Field(description="the HTTP status phrase")
    status: int
    detail: str = Field(description="what is wrong, for a person")
    errors: list[FieldError] | None = Field(
        default=None, description="each invalid field (422 only)"
    )


def body(status: int, detail: str, errors: list[dict] | None = None) -> bytes:
    """The JSON bytes of a problem."""
    content = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": _printable(detail),
    }
    if errors is not None:
        content["errors"] = errors
    return json.dumps(content).encode()


def response(
    status: int, detail: str, errors: list[dict] | None = None, headers: dict | None = None
) -> Response:
    """A problem response with ``headers`` (``Retry-After`` for a 503, say)."""
    return Response(body(status, detail, errors), status, headers, media_type=MEDIA_TYPE)


def _printable(value):
    """``value`` safe to send as UTF-8 JSON (lone surrogates escaped)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def field_errors(error: RequestValidationError) -> list[dict]:
    """FastAPI's validation errors as ``loc``, ``msg``, ``type`` items, without the input."""
    return [
        {
            "loc": [_printable(part) for part in item.get("loc", ())],
            "msg": _printable(item.get("msg", "")),
            "type": item.get("type", "value_error"),
        }
        for item in error.errors()
    ]


def unprocessable(errors: list[dict], status: int = 422) -> Response:
    """A problem listing field ``errors`` (``loc``, ``msg``, ``type``), summed up in
    ``detail``."""
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
    if len(errors) > 5:
        detail += f" (+{len(errors) - 5} more)"
    return response(status, detail or "invalid request", errors)


def install(app: FastAPI, unavailable: type[Exception]) -> None:
    """Make every error ``app`` answers a problem; ``unavailable``: the store's exception,
    a 503 with ``Retry-After`` (nothing of the request was acknowledged)."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, error: RequestValidationError) -> Response:
        return unprocessable(field_errors(error))

    @app.exception_handler(HTTPException)
    async def _http(request, error: HTTPException) -> Response:
        if isinstance(error.detail, list):  # a route's own field errors
            return unprocessable(error.detail, error.status_code)
        return response(error.status_code, str(error.detail), headers=error.headers)

    @app.exception_handler(unavailable)
    async def _unavailable(request, error: Exception) -> Response:
        logger.warning("store unavailable: %s", error)
        detail = f"the service's store cannot take writes now ({error}); retry"
        return response(503, detail, headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _crash(request, error: Exception) -> Response:
        logger.error("unexpected %s on %s", type(error).__name__, request.url.path)
        return response(500, "internal error; it is logged without the request's data")
