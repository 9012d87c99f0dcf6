"""A paid MCP server, on the official ``mcp`` SDK's server side, for users' tests and ours.

Tools are priced like :class:`~mpp_client.testing.PaidServer` routes, and the
same engine does the work: challenges HMAC-bound to their terms and to the
tool (``opaque`` route ``tools/call <name>``), expiry, amount, single use,
and any :class:`~mpp_client.testing.Verifier` (``dev`` vouchers by default).
Only the wire differs (draft-payment-transport-mcp-00):

- an unpaid call fails with JSON-RPC error ``-32042``, ``data.challenges``
  holding challenge objects (``request`` and ``opaque`` as JSON objects);
- the credential is read from ``params._meta["org.paymentauth/credential"]``;
  a refused one gets ``-32043`` with a fresh challenge and the problem
  (``problem``, and ``failure`` with ``reason``/``detail``), a malformed one
  ``-32602``, a verifier failure that is not a refusal ``-32603``;
- a paid result carries ``_meta["org.paymentauth/receipt"]`` with ``challengeId``.

::

    server = PaidMcpServer({"forecast": McpTool("0.25 USD", lambda args: "sunny")})
    async with server.connect() as session:        # in memory, for tests
        ...
    app = server.streamable_http_app()             # ASGI, for LocalServer
    server.run_stdio()                             # as a subprocess

``streamable_http_app(http_price=...)`` also puts the endpoint behind an
HTTP-layer paywall (402 on each ``tools/call`` POST), as a server may do.
Needs the ``mcp`` extra (``pip install "mpp-client[mcp]"``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from .._exceptions import PaymentError, ProtocolError
from ..money import Amount
from ..protocol import (
    MCP_META_CREDENTIAL,
    MCP_META_RECEIPT,
    MCP_PAYMENT_REQUIRED,
    MCP_VERIFICATION_FAILED,
    Problem,
    Receipt,
    mcp_challenge_object,
    mcp_receipt,
    parse_challenges,
    parse_mcp_credential,
)
from ._server import PaidServer, Payment, Route, Verifier

if TYPE_CHECKING:
    from mcp import ClientSession
    from mcp.server import Server

__all__ = ["McpTool", "PaidMcpServer"]

_INVALID_PARAMS = -32602
_INTERNAL_ERROR = -32603
_VERB = "tools/call"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _require_mcp() -> None:
    try:
        import mcp  # noqa: F401, PLC0415 - optional extra
    except ImportError:
        raise PaymentError(
            'the paid MCP server needs the mcp SDK: pip install "mpp-client[mcp]"'
        ) from None


@dataclass(frozen=True, slots=True)
class McpTool:
    """A tool for sale: its ``price`` (None: free) and what it answers.

    ``result`` is the text the tool returns, or a function of its arguments
    returning it. ``input_schema`` is the JSON schema the tool advertises.
    """

    price: Amount | str | None
    result: str | Callable[[Mapping[str, Any]], str] = "ok"
    description: str = "A paid tool"
    input_schema: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    def answer(self, arguments: Mapping[str, Any]) -> tuple[str, bool]:
        """The text, and whether the tool failed (a function that raised: ``isError``)."""
        if isinstance(self.result, str):
            return self.result, False
        try:
            return self.result(arguments), False
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}", True


class PaidMcpServer:
    """An MCP server whose tools cost money, paid per call over the MCP payment transport.

    ``realm``, ``recipient``, ``currency``, ``asset``, ``decimals``, ``ttl``,
    ``secret``, ``clock`` and ``verifier`` are those of
    :class:`~mpp_client.testing.PaidServer`, which does the issuing and the
    checking; ``payments`` lists what was accepted.
    """

    def __init__(
        self,
        tools: Mapping[str, McpTool | Amount | str] | None = None,
        *,
        name: str = "mpp-client-paid-tools",
        realm: str = "mcp.mpp-client.test",
        recipient: str = "merchant-1",
        currency: str = "usd",
        asset: str = "USD",
        decimals: int = 2,
        ttl: timedelta = timedelta(minutes=5),
        secret: bytes | None = None,
        clock: Callable[[], datetime] = _utcnow,
        verifier: Verifier | None = None,
    ) -> None:
        self.name = name
        self.engine = PaidServer(
            realm=realm,
            recipient=recipient,
            currency=currency,
            asset=asset,
            decimals=decimals,
            ttl=ttl,
            secret=secret,
            clock=clock,
            verifier=verifier,
        )
        self.tools: dict[str, McpTool] = {}
        #: Every (tool, meta) the server was called with, for assertions.
        self.calls: list[tuple[str, Mapping[str, Any]]] = []
        for tool_name, tool in (tools or {}).items():
            self.add_tool(tool_name, tool)

    def add_tool(self, name: str, tool: McpTool | Amount | str) -> None:
        if not isinstance(tool, McpTool):
            tool = McpTool(tool)
        self.tools[name] = tool
        if tool.price is not None:
            self.engine.price(name, Route(Amount.coerce(tool.price), description=tool.description))

    @property
    def payments(self) -> list[Payment]:
        return self.engine.payments

    @property
    def issued(self) -> list[str]:
        return self.engine.issued

    def __repr__(self) -> str:
        return f"<PaidMcpServer name={self.name!r} tools={sorted(self.tools)}>"

    # -- answering a tool call (no MCP types: testable and reusable) --------------------

    async def answer(
        self, name: str, arguments: Mapping[str, Any], meta: Mapping[str, Any] | None
    ) -> tuple[str, dict[str, Any] | None, bool]:
        """The text, ``_meta`` and ``isError`` of a call; raises ``MCPError`` for payment errors.

        A tool whose function raises after it was paid for answers ``isError``
        with the receipt: the payment stands, the tool failed.
        """
        from mcp.shared.exceptions import MCPError  # noqa: PLC0415 - optional extra

        self.calls.append((name, dict(meta or {})))
        tool = self.tools.get(name)
        if tool is None:
            raise MCPError(_INVALID_PARAMS, f"unknown tool {name!r}")
        if tool.price is None:
            text, failed = tool.answer(arguments)
            return text, None, failed
        route = Route(Amount.coerce(tool.price), description=tool.description)
        value = (meta or {}).get(MCP_META_CREDENTIAL)
        if value is None:
            challenge = self.engine.issue(_VERB, name, b"", route)
            problem = Problem.build(
                "payment-required", title="Payment Required", detail=f"{name} costs {route.price}"
            )
            raise MCPError(
                MCP_PAYMENT_REQUIRED,
                "Payment Required",
                {
                    "httpStatus": 402,
                    "challenges": [mcp_challenge_object(challenge)],
                    "problem": dict(problem.data),
                },
            )
        try:
            credential = parse_mcp_credential(value)
        except ProtocolError as exc:
            raise MCPError(
                _INVALID_PARAMS, "Invalid params", {"httpStatus": 402, "detail": exc.message}
            ) from None
        headers = {"authorization": credential.to_header()}
        if self.engine.verifier.blocking:
            outcome = await anyio.to_thread.run_sync(self.engine.handle, _VERB, name, headers, b"")
        else:
            outcome = self.engine.handle(_VERB, name, headers, b"")
        found = dict(outcome.headers)
        problem_or_none = Problem.parse(outcome.body)
        if outcome.status == 200:
            receipt = Receipt.parse(found["payment-receipt"])
            meta = {MCP_META_RECEIPT: mcp_receipt(receipt, credential.challenge_id)}
            text, failed = tool.answer(arguments)
            return text, meta, failed
        problem_data = dict(problem_or_none.data) if problem_or_none is not None else {}
        if outcome.status == 402:
            fresh = parse_challenges(found["www-authenticate"])
            failure = {
                "reason": problem_or_none.code if problem_or_none else None,
                "detail": problem_or_none.detail if problem_or_none else None,
            }
            raise MCPError(
                MCP_VERIFICATION_FAILED,
                "Payment Verification Failed",
                {
                    "httpStatus": 402,
                    "challenges": [mcp_challenge_object(c) for c in fresh],
                    "problem": problem_data,
                    "failure": {k: v for k, v in failure.items() if v is not None},
                },
            )
        raise MCPError(
            _INTERNAL_ERROR,
            "Internal payment error",
            {"httpStatus": outcome.status, "problem": problem_data},
        )

    # -- the MCP server -----------------------------------------------------------------

    @property
    def server(self) -> Server[Any]:
        """The ``mcp`` SDK's low-level server answering for these tools."""
        _require_mcp()
        import mcp_types as types  # noqa: PLC0415 - optional extra
        from mcp.server import Server  # noqa: PLC0415

        async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
            return types.ListToolsResult(
                tools=[
                    types.Tool(
                        name=tool_name,
                        description=tool.description,
                        input_schema=dict(tool.input_schema),
                    )
                    for tool_name, tool in self.tools.items()
                ]
            )

        async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
            text, meta, failed = await self.answer(params.name, params.arguments or {}, params.meta)
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=text)],
                is_error=failed,
                _meta=meta,
            )

        return Server(self.name, on_list_tools=list_tools, on_call_tool=call_tool)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[ClientSession]:
        """An initialized ``mcp.ClientSession`` to this server, in memory (tests)."""
        _require_mcp()
        from mcp import ClientSession  # noqa: PLC0415 - optional extra
        from mcp.client._memory import InMemoryTransport  # noqa: PLC0415

        async with (
            InMemoryTransport(self.server) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session

    def streamable_http_app(
        self, *, path: str = "/mcp", http_price: Amount | str | None = None
    ) -> Any:
        """An ASGI app serving the tools over streamable HTTP at ``path``.

        With ``http_price``, each ``tools/call`` POST also needs an HTTP
        ``Payment`` credential (402 first, as :class:`PaidServer` answers),
        so a client must pay at the HTTP layer before the tool sees the call.
        """
        _require_mcp()
        app = self.server.streamable_http_app(streamable_http_path=path, stateless_http=True)
        if http_price is None:
            return app
        gate = PaidServer(
            {path: Amount.coerce(http_price)},
            realm=self.engine.realm + "/http",
            recipient=self.engine.recipient,
            currency=self.engine.currency,
            asset=self.engine.asset,
            decimals=self.engine.decimals,
            ttl=self.engine.ttl,
            clock=self.engine.clock,
            verifier=self.engine.verifier,
        )
        self.http_gate = gate
        return _HttpPaywall(app, gate, path)

    def run_stdio(self) -> None:
        """Serve over stdin/stdout until the client closes them (a subprocess server)."""
        _require_mcp()
        from mcp.server.stdio import stdio_server  # noqa: PLC0415 - optional extra

        server = self.server

        async def main() -> None:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())

        anyio.run(main)


Scope = MutableMapping[str, Any]


class _HttpPaywall:
    """ASGI middleware: a ``tools/call`` POST to ``path`` pays at the HTTP layer first.

    The body is read, priced by ``gate`` (a :class:`PaidServer` with one
    route), and either answered with the gate's 402 or replayed to the MCP
    app with the receipt added to its response headers.
    """

    def __init__(self, app: Any, gate: PaidServer, path: str) -> None:
        self.app = app
        self.gate = gate
        self.path = path

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            is_call = json.loads(body).get("method") == _VERB
        except (ValueError, AttributeError):
            is_call = False
        receipt: str | None = None
        if is_call:
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            outcome = self.gate.handle("POST", self.path, headers, body)
            if outcome.status != 200:
                raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in outcome.headers]
                raw.append((b"content-length", str(len(outcome.body)).encode()))
                start = {"type": "http.response.start", "status": outcome.status, "headers": raw}
                await send(start)
                await send({"type": "http.response.body", "body": outcome.body})
                return
            receipt = dict(outcome.headers).get("payment-receipt")
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if sent:  # the body was replayed: what comes next is the client's (a disconnect)
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send_with_receipt(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and receipt is not None:
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (b"payment-receipt", receipt.encode()),
                    ],
                }
            await send(message)

        await self.app(scope, replay, send_with_receipt)
