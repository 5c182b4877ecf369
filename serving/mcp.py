"""Tools for LLM agents: nextbest as a Model Context Protocol server (``nextbest mcp``).

The tools answer through :mod:`serving.answers`, the code the REST routes use: the same
policy, consent rules, cooldowns, suggestion records and pseudonymous audit lines (route
``mcp``). A refusal the REST API would answer with a 4xx or 503 is a tool error carrying
the same detail; an unknown customer is ``known: false``, not an error.

Over streamable HTTP the tools need the REST service's API keys, sent as
``Authorization: Bearer KEY``, checked by the SDK's bearer-token middleware through
:class:`KeyVerifier`: a key with the ``chatbot`` scope (an ``admin`` key may do everything).
Over stdio the agent runs the server itself, and the audit names the caller ``local``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Annotated

import pydantic
from fastapi import HTTPException
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from cdp import package_version
from serving import answers
from serving.config import ServeConfig
from serving.memory.runtime import Runtime, load_state, open_runtime, release_freed_memory
from serving.schemas import (
    FeedbackIn,
    FeedbackOut,
    Outcome,
    ProfileOut,
    SuggestRequest,
    SuggestResponse,
)
from serving.security import CALLER, key_id, load_keys

logger = logging.getLogger("nextbest.mcp")
ROUTE = "mcp"
INSTRUCTIONS = (
    "nextbest knows each customer of this shop from the customer data platform: orders, "
    "consumables and when they run out, consents, support tickets, churn risk and value. "
    "Before answering a customer, call find_customer with whatever identifier the "
    "conversation gives (customer id, or an identity such as a messenger id), then "
    "get_profile so you do not ask what the shop already knows, and suggest_next_actions "
    "for what to offer or do next, with the customer's last message. Say the suggested "
    "message in your own words; never offer a marketing action the answer does not list. "
    "Report what the customer did with a suggestion through record_feedback."
)

CustomerId = Annotated[
    str | None,
    Field(
        description="The shop's customer id, when the conversation knows it.",
        min_length=1,
        max_length=128,
    ),
]
IdType = Annotated[
    str | None,
    Field(
        description="The kind of identity in id_value, when there is no customer_id: "
        "messenger, line, email_sha256, phone_sha256, crm, cookie or device.",
        min_length=1,
        max_length=64,
    ),
]
IdValue = Annotated[
    str | None,
    Field(
        description="The identity's value (a messenger or LINE user id, a cookie, a device "
        "id, or a SHA-256 hash of an e-mail address or phone number).",
        min_length=1,
        max_length=256,
    ),
]
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


class CustomerFound(BaseModel):
    """Whom a reference names."""

    known: bool = Field(description="false for a visitor nextbest does not know")
    customer_id: str | None
    locale: str | None = Field(description="the customer's language (BCP 47), if known")
    segment: str | None = Field(description="the RFM segment, if known")


class ProfileAnswer(BaseModel):
    """The 360° summary, or ``known: false``."""

    known: bool
    profile: ProfileOut | None


class ConsentAnswer(BaseModel):
    """Whether a purpose's consent is in force now."""

    known: bool
    customer_id: str | None
    purpose: str
    allowed: bool = Field(description="false for an unknown customer or without consent")


class KeyVerifier:
    """The REST service's API keys as MCP bearer tokens (never logged; named by key id)."""

    def __init__(self, keys: dict[str, set[str]] | None = None) -> None:
        self.keys = load_keys() if keys is None else keys

    async def verify_token(self, token: str) -> AccessToken | None:
        import hashlib

        scopes = self.keys.get(hashlib.sha256(token.encode()).hexdigest())
        if scopes is None:
            return None
        granted = scopes | {"chatbot"} if "admin" in scopes else scopes
        return AccessToken(token=token, client_id=key_id(token), scopes=sorted(granted))


def _caller() -> None:
    """Name the caller for the audit: the key id over HTTP, else ``local`` (stdio)."""
    token = get_access_token()
    CALLER.set(token.client_id if token is not None else "local")


def _refused(error: HTTPException | pydantic.ValidationError) -> ToolError:
    """A REST refusal or an argument error as a tool error naming what is wrong."""
    if isinstance(error, pydantic.ValidationError):
        where = [
            f"{'.'.join(str(p) for p in e['loc'] if p != 'context') or 'arguments'}: {e['msg']}"
            for e in error.errors()
        ]
        return ToolError("invalid arguments: " + "; ".join(where))
    detail = error.detail
    if isinstance(detail, list):
        detail = "; ".join(f"{'.'.join(map(str, d['loc'][1:]))}: {d['msg']}" for d in detail)
    return ToolError(f"{detail} (status {error.status_code})")


@contextlib.contextmanager
def _as_tool() -> Iterator[None]:
    """Name the caller for the audit; a REST refusal or an argument error becomes a tool
    error (the server keeps serving)."""
    _caller()
    try:
        yield
    except (HTTPException, pydantic.ValidationError) as error:
        raise _refused(error) from None


def _resolve(rt: Runtime, customer_id, id_type, id_value) -> str | None:
    identity = (id_type, id_value)
    if customer_id is not None and identity != (None, None):
        raise ToolError("give customer_id, or id_type and id_value, not both ways")
    if customer_id is None and None in identity:
        missing = "id_value" if id_type is not None else "id_type" if id_value else "customer_id"
        raise ToolError(f"{missing} is missing: give customer_id, or id_type and id_value")
    return answers.resolve(rt, customer_id, id_type, id_value)


def build_server(
    runtime: Runtime, *, http: tuple[str, int] | None = None, keys: dict | None = None
) -> MCPServer:
    """The MCP server over ``runtime``; with ``http`` (host, port), API keys are required."""
    auth = verifier = None
    if http is not None:
        base = f"http://{http[0]}:{http[1]}"
        verifier = KeyVerifier(keys)
        auth = AuthSettings(
            issuer_url=base, resource_server_url=f"{base}/mcp", required_scopes=["chatbot"]
        )
    server = MCPServer(
        name="nextbest",
        title="nextbest: next best actions for customer conversations",
        instructions=INSTRUCTIONS,
        version=package_version(),
        token_verifier=verifier,
        auth=auth,
    )

    @server.tool(annotations=READ_ONLY)
    def find_customer(
        customer_id: CustomerId = None, id_type: IdType = None, id_value: IdValue = None
    ) -> CustomerFound:
        """Find the customer a conversation is with, by customer id or by any identity
        (email or phone hash, messenger, LINE, crm id, cookie, device). Returns known:
        false for a visitor the shop does not know. Call this first."""
        with _as_tool():
            found = _resolve(runtime, customer_id, id_type, id_value)
            if found is None:
                return CustomerFound(known=False, customer_id=None, locale=None, segment=None)
            c = runtime.state.customers[found]
            answers.audit(runtime, ROUTE, runtime.pseudonym(found), runtime.clock(), [], [])
            return CustomerFound(known=True, customer_id=found, locale=c.locale, segment=c.segment)

    @server.tool(annotations=READ_ONLY)
    def get_profile(
        customer_id: CustomerId = None, id_type: IdType = None, id_value: IdValue = None
    ) -> ProfileAnswer:
        """The customer's 360° summary so you never ask what the shop already knows: recent
        orders, consumables and when they run out, open support tickets, preferred channel,
        segment, consents in force. Churn risk, lifetime value and repurchase chances are
        present only when the customer's marketing consent is in force."""

        with _as_tool():
            found = _resolve(runtime, customer_id, id_type, id_value)
            if found is None:
                return ProfileAnswer(known=False, profile=None)
            return ProfileAnswer(known=True, profile=answers.profile_of(runtime, found, ROUTE))

    @server.tool()
    def suggest_next_actions(
        customer_id: CustomerId = None,
        id_type: IdType = None,
        id_value: IdValue = None,
        message: Annotated[
            str | None, Field(description="The customer's latest message, verbatim.")
        ] = None,
        locale: Annotated[
            str | None,
            Field(description="The conversation's language (BCP 47: zh-TW, zh-CN, en)."),
        ] = None,
        channel: Annotated[str, Field(description="Where the conversation happens.")] = "chat",
        intent: Annotated[
            str | None, Field(description="The intent your NLU found, if any (order_status).")
        ] = None,
        sentiment: Annotated[
            float | None, Field(description="The message's sentiment in [-1, 1], if known.")
        ] = None,
        max_actions: Annotated[int, Field(description="At most this many actions.")] = 3,
    ) -> SuggestResponse:
        """The next best actions for this customer now, best first: each with the message to
        say in the customer's language, why (reason and reason codes), its purpose (service
        or marketing), probability and expected value. Marketing actions appear only with
        the customer's consent, and cooldowns and caps apply. Keep request_id to report
        feedback. An unknown visitor gets known: false and service actions only."""

        with _as_tool():
            identity = {"id_type": id_type, "id_value": id_value}
            if id_type is None and id_value is None:
                identity = None
            request = SuggestRequest.model_validate(
                {
                    **({"customer_id": customer_id} if customer_id is not None else {}),
                    **({"identity": identity} if identity is not None else {}),
                    "context": {
                        "channel": channel,
                        "locale": locale,
                        "intent": intent,
                        "message": message,
                        "sentiment": sentiment,
                    },
                    "max_actions": max_actions,
                }
            )
            return answers.suggest_one(runtime, request, ROUTE)

    @server.tool(annotations=READ_ONLY)
    def check_consent(
        purpose: Annotated[
            str,
            Field(description="The purpose: marketing, or another the shop records.", min_length=1),
        ],
        customer_id: CustomerId = None,
        id_type: IdType = None,
        id_value: IdValue = None,
    ) -> ConsentAnswer:
        """Whether the customer's consent for a purpose (marketing, ...) is in force now.
        Check before you propose anything that serves that purpose."""

        with _as_tool():
            found = _resolve(runtime, customer_id, id_type, id_value)
            allowed = found is not None and answers.consent_of(runtime, found, purpose, ROUTE)
            return ConsentAnswer(
                known=found is not None, customer_id=found, purpose=purpose, allowed=allowed
            )

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
    def record_feedback(
        request_id: Annotated[str, Field(description="From suggest_next_actions.")],
        action: Annotated[str, Field(description="The action the customer reacted to.")],
        outcome: Annotated[Outcome, Field(description="What happened.")],
        product_id: Annotated[
            str | None, Field(description="The action's product_id, when it had one.")
        ] = None,
    ) -> FeedbackOut:
        """Report what the customer did with a suggested action: shown, accepted, dismissed
        or converted. This feeds cooldowns and the shop's measurement of suggestions."""

        with _as_tool():
            item = FeedbackIn.model_validate(
                {
                    "request_id": request_id,
                    "action": action,
                    "product_id": product_id,
                    "outcome": outcome,
                }
            )
            return answers.record_feedback(runtime, item)

    return server


def load_runtime(config: ServeConfig) -> Runtime:
    """The live parts for ``config`` with the state loaded (the champions and the snapshot)."""

    def reload() -> dict:
        runtime.state = load_state(runtime, config)
        release_freed_memory()  # the state it replaced
        versions = runtime.state.versions
        return {"reloaded": True, "model_versions": versions, "detail": "switched"}

    runtime = open_runtime(config, reload=reload)
    reload()
    return runtime
