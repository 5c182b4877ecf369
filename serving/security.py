"""API keys and request limits, as one ASGI middleware in front of every route.

Keys come from ``NEXTBEST_API_KEYS`` (``key:scope[+scope],…``) and/or the file named by
``NEXTBEST_API_KEYS_FILE`` (one ``key scope[,scope]`` per line, ``#`` comments). A request
sends its key as ``Authorization: Bearer KEY`` or ``x-api-key: KEY``. Scopes: ``chatbot``
(suggest, profile, feedback) and ``admin`` (events, reload; an admin key may do everything),
declared by each route where it is defined (:mod:`serving.http.api`). The Segment-spec routes
(``/v1/...``) take a valid ``X-Signature`` instead when ``NEXTBEST_SEGMENT_SECRET`` is set.
``/livez``, ``/readyz``, ``/metrics`` and the OpenAPI are open. Keys are kept only as
SHA-256 digests and never logged; logs name a key by the first 8 hex digits of its digest.
A body over ``NEXTBEST_MAX_BODY_BYTES`` (default 1 MB) gets 413 before it is read.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import os
from pathlib import Path

from cdp.errors import BadInputError
from serving.http import problems

OPEN = {"/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/docs", "/"}
SCOPES = {"chatbot", "admin"}
#: The scope of the Segment-spec routes: a valid ``X-Signature`` (HMAC-SHA1 of the body with
#: ``NEXTBEST_SEGMENT_SECRET``) when the secret is set, else an admin key.
SEGMENT = "segment"
SEGMENT_SECRET = "NEXTBEST_SEGMENT_SECRET"
MAX_BODY = 1_000_000


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def load_keys(env: dict | None = None) -> dict[str, set[str]]:
    """Key digest -> scopes, from the environment and the key file."""
    env = os.environ if env is None else env
    entries: list[tuple[str, str, str]] = []  # (key, scopes, where)
    for i, item in enumerate(filter(None, env.get("NEXTBEST_API_KEYS", "").split(","))):
        key, _, scopes = item.strip().partition(":")
        entries.append((key, scopes.replace("+", ","), f"NEXTBEST_API_KEYS entry {i + 1}"))
    if path := env.get("NEXTBEST_API_KEYS_FILE"):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as error:
            raise BadInputError(f"NEXTBEST_API_KEYS_FILE: cannot read {path}: {error}") from None
        for n, line in enumerate(lines, 1):
            line = line.split("#", 1)[0].strip()
            if line:
                key, _, scopes = line.partition(" ")
                entries.append((key, scopes.strip(), f"{path} line {n}"))
    keys: dict[str, set[str]] = {}
    for key, scopes, where in entries:
        wanted = {s.strip() for s in scopes.split(",") if s.strip()}
        if len(key) < 16:
            raise BadInputError(f"{where}: an API key needs at least 16 characters")
        if not wanted or not wanted <= SCOPES:
            raise BadInputError(f"{where}: scopes must be among {sorted(SCOPES)}, got {scopes!r}")
        keys[_digest(key)] = wanted
    return keys


def key_id(key: str) -> str:
    """How logs and the audit name a key: the first 8 hex digits of its SHA-256."""
    return _digest(key)[:8]


#: The id of the key that authorised the current request (for the audit log).
CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("caller", default=None)


class SecurityMiddleware:
    """401 without a known key, 403 without the scope, 413 over the body limit.

    ``scopes``: the scope each path needs, as the routes declare it
    (:func:`serving.http.api.scopes`); any other path needs a key of any scope."""

    def __init__(
        self,
        app,
        scopes: dict[str, str] | None = None,
        keys: dict[str, set[str]] | None = None,
        max_body: int | None = None,
    ):
        self.app = app
        self.scopes = scopes or {}
        self.keys = load_keys() if keys is None else keys
        self.max_body = max_body or int(os.environ.get("NEXTBEST_MAX_BODY_BYTES", MAX_BODY))
        self.segment_secret = os.environ.get(SEGMENT_SECRET, "").encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/") or "/"
        if path in OPEN:
            return await self.app(scope, receive, send)
        # HTTP header values are bytes; latin-1 maps every byte (a stray non-UTF-8 byte in a
        # header is then just an unknown key, not a crash)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        needed = self.scopes.get(path, "chatbot")
        signed = needed == SEGMENT and bool(self.segment_secret)
        if not signed:
            refusal = self._check_key(headers, "admin" if needed == SEGMENT else needed)
            if refusal is not None:
                return await _problem(send, *refusal)
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return await _problem(send, 413, f"request body over {self.max_body} bytes")
        body = await self._body(receive)
        if body is None:
            return await _problem(send, 413, f"request body over {self.max_body} bytes")
        if signed:
            expected = hmac.new(self.segment_secret, body, hashlib.sha1).hexdigest()
            if not hmac.compare_digest(expected, headers.get("x-signature", "").strip().lower()):
                return await _problem(send, 401, "missing or bad X-Signature", auth=False)
            CALLER.set(SEGMENT)
        return await self.app(scope, _replay(body, receive), send)

    def _check_key(self, headers: dict[str, str], needed: str) -> tuple | None:
        """``None`` when the request's key has the scope ``needed``, else the refusal."""
        key = headers.get("x-api-key")
        auth = headers.get("authorization", "")
        if key is None and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        digest = _digest(key) if key else None
        scopes = self._scopes(digest)
        if scopes is None:
            return 401, "missing or unknown API key", True
        if needed not in scopes and "admin" not in scopes:
            return 403, f"this key lacks the {needed!r} scope"
        CALLER.set(digest[:8])  # key_id: the digest's first 8 hex digits
        return None

    def _scopes(self, digest: str | None) -> set[str] | None:
        if not digest:
            return None
        for known, scopes in self.keys.items():
            if hmac.compare_digest(known, digest):
                return scopes
        return None

    async def _body(self, receive) -> bytes | None:
        """The whole request body, read before any route sees it (so the limit holds for
        chunked bodies on every route alike); ``None`` once it passes the limit."""
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return b"".join(chunks)
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


def _replay(body: bytes, receive):
    """A ``receive`` that hands the app the buffered body once, then waits as the server's
    would (for the disconnect)."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _problem(send, status: int, detail: str, auth: bool = False) -> None:
    body = problems.body(status, detail)
    headers = [
        (b"content-type", problems.MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if auth:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
