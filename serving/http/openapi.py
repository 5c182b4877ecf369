"""The service's OpenAPI document at ``/docs.json``: the product's own title, version and
security, on top of what BentoML generates.

BentoML builds ``/docs.json`` from the service and the mounted FastAPI app but names it
after the service, with BentoML's contact, ``version: None`` and no security scheme (the
keys are checked by :class:`serving.security.SecurityMiddleware`, outside FastAPI).
:class:`OpenAPIMiddleware` finishes that document on its way out (:func:`finish`): title,
description and the package's version; two security schemes (``Authorization: Bearer KEY``
or ``x-api-key: KEY``) required on every protected operation, with the scope it needs and
its 401 / 403 / 413 answers.
"""

from __future__ import annotations

import json

from cdp import package_version
from serving.http.problems import MEDIA_TYPE, Problem
from serving.security import OPEN

TITLE = "nextbest"
DESCRIPTION = (
    "Proactive, explained, consent-aware next best actions for chatbots, from unified"
    " customer profiles. Every route but the health checks, /metrics and this document needs"
    " an API key (`Authorization: Bearer KEY` or `x-api-key: KEY`) with the route's scope:"
    " `chatbot` (suggest, profile, feedback, score) or `admin` (events, reload, data-subject"
    " rights; an admin key may call everything)."
)
SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "an API key as bearer token"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
}
RETRY_AFTER = {
    "description": "seconds to wait before retrying",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
}
AUTH_ERRORS = {
    "401": "missing or unknown API key",
    "403": "the key lacks the route's scope",
    "413": "request body over the limit",
}


def finish(spec: dict) -> dict:
    """The document BentoML generated, with the product's info and security."""
    spec = {
        **spec,
        "info": {"title": TITLE, "description": DESCRIPTION, "version": package_version()},
    }
    components = spec.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SCHEMES)
    schemas = components.setdefault("schemas", {})
    for name, schema in _problem_schemas().items():
        schemas.setdefault(name, schema)
    schemas.pop("HTTPValidationError", None)  # FastAPI's 422: every error is a Problem
    schemas.pop("ValidationError", None)
    problem = {"content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and "operationId" not in operation:  # BentoML's own
                operation["operationId"] = f"{method}_{path.strip('/').replace('/', '_')}"
        if path.rstrip("/") in OPEN or path in OPEN:
            continue
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            operation["security"] = [{"bearer": []}, {"apiKey": []}]
            scope = operation.setdefault("x-nextbest-scope", "chatbot")  # as the route says
            note = f"Needs a key with the `{scope}` scope."
            text = operation.get("description") or operation.get("summary") or ""
            operation["description"] = f"{text}\n\n{note}".strip()
            for status, why in AUTH_ERRORS.items():
                operation["responses"].setdefault(status, {"description": why, **problem})
            for status, answer in operation["responses"].items():
                if str(status)[0] in "45":  # one problem format for every error
                    answer.update(problem)
                if str(status) == "503":
                    answer["headers"] = {"Retry-After": RETRY_AFTER}
    return spec


def _problem_schemas() -> dict:
    """The JSON Schemas of :class:`serving.http.problems.Problem` and what it refers to."""
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    return {**schema.pop("$defs", {}), "Problem": schema}


class OpenAPIMiddleware:
    """Rewrites the body of ``GET /docs.json`` with :func:`finish`."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/docs.json":
            return await self.app(scope, receive, send)
        start, chunks = {}, []

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    await _send_finished(send, start, b"".join(chunks))

        return await self.app(scope, receive, capture)


async def _send_finished(send, start: dict, body: bytes) -> None:
    if start.get("status") == 200:
        body = json.dumps(finish(json.loads(body))).encode()
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body})
