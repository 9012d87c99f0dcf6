"""Paid MCP tool calls, on the official ``mcp`` SDK (version 2): ``pip install "mpp-client[mcp]"``.

:class:`PaidMcpSession` wraps an ``mcp.ClientSession``. When a tool call
fails with JSON-RPC error ``-32042`` and payment challenges, it runs the same
pipeline as an HTTP 402 under the user's own client (policy with approval,
reserve, pay, call again with the credential in
``params._meta["org.paymentauth/credential"]``, read the receipt from
``result._meta["org.paymentauth/receipt"]``, record in the ledger)::

    client = mpp_client.AsyncClient(methods=[DevWallet()], policy=policy)
    async with connect_stdio(client, StdioServerParameters(command="weather-mcp"),
                             name="weather") as session:
        paid = await session.call_tool("forecast", {"city": "Paris"}, max_amount="0.30 USD")
        print(paid.text, paid.record.amount)

Over streamable HTTP (:func:`connect_streamable_http`) the server may also
answer 402 at the HTTP layer: the user's :class:`~mpp_client.AsyncClient`
carries the MCP transport's requests and pays it, under the same per-call
limits, and the payment counts toward the call's ``max_payments``. (The
``mcp`` SDK 2 speaks ``httpx2``; a small ``httpx2`` transport hands each of
its requests to the user's httpx client.)

What each outcome becomes:

- paid and answered: :class:`PaidToolResult` with ``record`` (the ledger's);
- a payment request not paid by choice (``pay=False``, a dry-run policy, or
  the call already paid ``max_payments`` times, at the HTTP layer say):
  :class:`PaidToolResult` with ``result`` None, ``payment_required``, and
  ``records`` of what was paid;
- a refusal or failure: the typed :class:`~mpp_client.PaymentError` of the
  HTTP flow (``PolicyDenied``, ``NoAcceptableChallenge``, ``PaymentRejected``
  for a credential the server refused with ``-32043``, ``PaymentOutcomeUnknown``
  when paid and no clear answer came...);
- any other JSON-RPC error: the SDK's ``MCPError``, as a plain session raises it.

Records and policies see the call as ``url`` ``<server>#<tool>`` (``mcp://NAME``
for stdio and in-memory servers, the endpoint URL over HTTP), ``host`` the
server's host or ``NAME``, and ``http_method`` ``tools/call``. Credentials go
only over stdio, in memory, or HTTPS (plain HTTP to loopback with
``allow_insecure_localhost=True``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

import httpx

from ._extras import require

require("mcp", "mcp", "mpp_client.integrations.mcp")

import httpx2  # noqa: E402
import mcp_types as types  # noqa: E402
from mcp import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

from .._exceptions import InsecureTransport, PaymentError  # noqa: E402
from .._flow import (  # noqa: E402
    Call,
    CallOptions,
    CallTool,
    Target,
    ToolAnswer,
    asked_payment,
    drive_mcp,
    is_loopback,
    mcp_payment_loop,
    redact_url,
)
from ..auth import PaymentAuth  # noqa: E402
from ..client import AsyncClient, Client, payment_record  # noqa: E402
from ..ledger import PaymentRecord  # noqa: E402
from ..money import Amount  # noqa: E402
from ..policy import Decision  # noqa: E402
from ..protocol import McpPaymentRequired  # noqa: E402
from ._tools import call_options, engine_of  # noqa: E402

__all__ = [
    "PaidMcpSession",
    "PaidToolResult",
    "call_options",
    "connect_stdio",
    "connect_streamable_http",
    "engine_of",
    "paying_http_client",
]


def _options_dict(options: CallOptions) -> dict[str, Any]:
    """The same options as an ``extensions["mpp"]`` dict, for the HTTP layer."""
    raw: dict[str, Any] = {"pay": options.pay}
    if options.purpose is not None:
        raw["purpose"] = options.purpose
    if options.tags:
        raw["tags"] = dict(options.tags)
    if options.max_amount is not None:
        raw["max_amount"] = options.max_amount
    if options.payee is not None:
        raw["payee"] = options.payee
    return raw


@dataclass(frozen=True, slots=True)
class PaidToolResult:
    """A tool call's answer and what was paid for it.

    ``result`` is the SDK's ``CallToolResult`` (None when a payment request
    was not paid by choice: see ``payment_required``). ``record`` is the
    ledger record of the last payment, ``records`` every payment the call
    made (an HTTP-layer 402 included); ``decision`` the policy's decision in
    dry-run mode.
    """

    result: types.CallToolResult | None
    record: PaymentRecord | None = None
    records: tuple[PaymentRecord, ...] = ()
    decision: Decision | None = None
    payment_required: McpPaymentRequired | None = None

    @property
    def text(self) -> str:
        """The result's text content, joined by newlines."""
        if self.result is None:
            return ""
        return "\n".join(c.text for c in self.result.content if isinstance(c, types.TextContent))

    @property
    def is_error(self) -> bool:
        return self.result is not None and self.result.is_error

    @property
    def paid(self) -> bool:
        return bool(self.records)


@dataclass(slots=True)
class _HttpSlot:
    """One logical tool call, as the HTTP layer sees it (found through a context variable)."""

    options: dict[str, Any]
    records: list[PaymentRecord] = field(default_factory=list)
    error: PaymentError | None = None


#: The mcp SDK 2 runs each POST in the context of the task that sent the message,
#: so the HTTP layer finds the tool call it carries here.
_CURRENT: ContextVar[_HttpSlot | None] = ContextVar("mpp_client_mcp_call", default=None)


class PaidMcpSession:
    """An ``mcp.ClientSession`` whose tool calls pay under the user's client.

    ``payment`` is the user's :class:`~mpp_client.Client`,
    :class:`~mpp_client.AsyncClient` or :class:`~mpp_client.PaymentAuth`:
    its methods, policy, mandate, ledger and approver decide and record.
    ``name`` names the server in records and policies (``mcp://NAME``);
    ``url`` is the endpoint for streamable HTTP (then its host is the host).
    Every other attribute is the session's.
    """

    def __init__(
        self,
        session: ClientSession,
        payment: Client | AsyncClient | PaymentAuth,
        *,
        name: str = "mcp",
        url: str | None = None,
    ) -> None:
        self.session = session
        self.engine = engine_of(payment)
        self.name = name
        self.url = url
        if url is not None:
            endpoint = httpx.URL(url)
            self._base, self._host = redact_url(endpoint), endpoint.host
            self._scheme = endpoint.scheme
        else:
            self._base, self._host, self._scheme = f"mcp://{name}", name, "stdio"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def __repr__(self) -> str:
        return f"<PaidMcpSession {self._base!r}>"

    def _check_transport(self) -> None:
        if self._scheme in ("stdio", "https"):
            return
        if self._scheme == "http" and is_loopback(self._host):
            if self.engine.allow_insecure_localhost:
                return
            raise InsecureTransport(
                f"refusing to send a payment credential over plain HTTP to {self._host}; "
                "pass allow_insecure_localhost=True to allow loopback hosts in tests"
            )
        raise InsecureTransport(
            f"refusing to send a payment credential over {self._scheme}:// to {self._host}: "
            "credentials only travel over HTTPS"
        )

    async def tools(self) -> list[types.Tool]:
        """Every tool the server offers (all pages of ``list_tools``)."""
        tools: list[types.Tool] = []
        cursor: str | None = None
        while True:
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await self.session.list_tools(params=params)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                return tools

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *,
        purpose: str | None = None,
        tags: Mapping[str, str] | None = None,
        max_amount: Amount | str | None = None,
        payee: str | None = None,
        pay: bool = True,
        read_timeout_seconds: float | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> PaidToolResult:
        """Call ``name``, paying a ``-32042`` challenge if the policy allows.

        ``max_amount``, ``payee``, ``purpose``, ``tags`` and ``pay`` narrow
        this call as ``extensions={"mpp": ...}`` does an HTTP request.
        """
        options = call_options(
            purpose=purpose, tags=tags, max_amount=max_amount, payee=payee, pay=pay
        )
        call = Call(self.engine, options)
        target = Target(f"{self._base}#{name}", self._host, "tools/call")
        slot = _HttpSlot(_options_dict(options))
        session = self.session

        async def perform(effect: CallTool) -> ToolAnswer:
            extra = {**(meta or {}), **(effect.meta or {})}
            # One payment per call: once the call has paid, the HTTP layer may not pay again.
            slot.options["pay"] = options.pay and call.wants_payment
            before = len(slot.records)
            token = _CURRENT.set(slot)
            try:
                result = await session.call_tool(
                    name,
                    arguments,
                    read_timeout_seconds=read_timeout_seconds,
                    meta=cast(types.RequestParamsMeta, extra) if extra else None,
                )
            except MCPError as exc:
                if slot.error is not None:
                    error, slot.error = slot.error, None
                    raise error from None
                return ToolAnswer(
                    error=(exc.code, exc.message, exc.data),
                    http_payments=len(slot.records) - before,
                )
            finally:
                _CURRENT.reset(token)
            return ToolAnswer(
                result=result,
                meta=result.meta,
                is_error=result.is_error,
                http_payments=len(slot.records) - before,
            )

        outcome = await drive_mcp(
            self.engine, mcp_payment_loop(call, target, self._check_transport), perform
        )
        answer = outcome.answer
        records = [*slot.records, *([call.record] if call.record is not None else [])]
        decision = outcome.dry_run.decision if outcome.dry_run else None
        required = asked_payment(answer)
        if required is not None:  # not paid: pay=False, a dry run, max_payments reached
            return PaidToolResult(
                None,
                record=records[-1] if records else None,
                records=tuple(records),
                decision=decision,
                payment_required=required,
            )
        if answer.error is not None:
            raise MCPError(*answer.error)
        return PaidToolResult(
            answer.result,
            record=records[-1] if records else None,
            records=tuple(records),
            decision=decision,
        )


@contextlib.asynccontextmanager
async def connect_stdio(
    payment: Client | AsyncClient | PaymentAuth,
    server: StdioServerParameters,
    *,
    name: str | None = None,
    errlog: TextIO | None = None,
) -> AsyncIterator[PaidMcpSession]:
    """Start an MCP server subprocess and yield an initialized, paying session to it.

    ``name`` (default: the command's file name) names the server in records
    and policies: ``mcp://NAME``, host ``NAME``.
    """
    stdio = stdio_client(server) if errlog is None else stdio_client(server, errlog=errlog)
    async with stdio as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield PaidMcpSession(session, payment, name=name or Path(server.command).name)


class _ResponseStream(httpx2.AsyncByteStream):
    """An httpx response's raw bytes as an httpx2 stream (SSE streams stay streams)."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.aiter_raw():
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()


class _PayingTransport(httpx2.AsyncBaseTransport):
    """Sends the MCP transport's requests through the user's AsyncClient, which pays 402s."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        slot = _CURRENT.get()
        extensions: dict[str, Any] = {}
        timeout = request.extensions.get("timeout")
        if isinstance(timeout, dict):
            extensions["timeout"] = timeout
        if slot is not None:
            extensions["mpp"] = dict(slot.options)
        outgoing = httpx.Request(
            request.method,
            str(request.url),
            headers=list(request.headers.raw),
            content=await request.aread(),
            extensions=extensions,
        )
        try:
            response = await self._client.send(outgoing, stream=True)
        except PaymentError as exc:
            if slot is None:
                raise
            # Raised in the transport's task: hand it to the tool call, fail this request.
            slot.error = exc
            return httpx2.Response(402, request=request)
        except httpx.TimeoutException as exc:
            raise httpx2.ReadTimeout(str(exc), request=request) from exc
        except httpx.TransportError as exc:
            raise httpx2.ConnectError(str(exc), request=request) from exc
        record = payment_record(response)
        if record is not None and slot is not None:
            slot.records.append(record)
        return httpx2.Response(
            response.status_code,
            headers=list(response.headers.raw),
            stream=_ResponseStream(response),
            request=request,
        )


def paying_http_client(client: AsyncClient, **kwargs: Any) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` for the MCP SDK whose requests go through ``client``.

    Use it as ``streamable_http_client(url, http_client=...)`` to have an
    HTTP-layer 402 paid by the user's AsyncClient. Defaults to the MCP
    transport's timeouts (30 s, 300 s to read a stream).
    """
    if not isinstance(client, AsyncClient):
        raise TypeError("the streamable HTTP transport is async: pass an mpp_client.AsyncClient")
    kwargs.setdefault("timeout", httpx2.Timeout(30.0, read=300.0))
    return httpx2.AsyncClient(transport=_PayingTransport(client), **kwargs)


@contextlib.asynccontextmanager
async def connect_streamable_http(
    client: AsyncClient, url: str, *, name: str | None = None
) -> AsyncIterator[PaidMcpSession]:
    """Connect to an MCP endpoint over streamable HTTP; yield an initialized, paying session.

    Both layers pay through ``client``: a ``-32042`` tool-call challenge and
    an HTTP 402 on the endpoint itself.
    """
    http = paying_http_client(client)
    async with (
        http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield PaidMcpSession(session, client, name=name or httpx.URL(url).host, url=url)
