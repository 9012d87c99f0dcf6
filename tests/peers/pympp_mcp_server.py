"""An MCP server built with pympp's MCP extension, for the interop tests (run over stdio).

pympp's MCP extra pins ``mcp<2``, so this script runs in a virtual environment
of its own (``tests/peers/pympp_mcp.py`` makes it) with ``mpp_client`` on
``PYTHONPATH`` for ``verify_voucher``. It is a low-level ``mcp`` 1.x server
whose ``tools/call`` handler is pympp's framework-agnostic path:
``verify_or_challenge(mpp.charge(...), tool=..., meta=params._meta)``, raising
pympp's ``PaymentRequiredError`` (-32042) with the challenges, letting its
``PaymentVerificationError`` (-32043) through, and answering with the
receipt it returns (an ``MCPReceipt``, ``to_meta()``) in ``result._meta``.
(The handler is registered as the raw request handler: mcp 1.x turns
exceptions of a ``@server.call_tool()`` function into ``isError`` results,
which would hide the JSON-RPC codes.)

The ``dev`` method is defined through pympp's public method contract and checks
our Ed25519 voucher against the echo pympp authenticated (its HMAC-bound id and
the JCS base64url of the echoed ``request``); each voucher is accepted once.

Tools: ``forecast`` (0.25), ``tagged`` (0.10, with route ``meta``: pympp sends it
as ``opaque``, a JSON object over MCP), ``rejecting`` (its method refuses every
voucher), ``events`` (free: what the server verified, as JSON).
"""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any, Literal

import anyio
import mcp.types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mpp import MemoryStore, Method, Receipt
from mpp.errors import CredentialReplayedError, VerificationFailedError
from mpp.extensions.mcp import PaymentRequiredError, verify_or_challenge
from mpp.server import Mpp, ServerMethod, VerifyContext
from pydantic import BaseModel, ConfigDict, model_serializer

from mpp_client.methods.dev import verify_voucher

REALM = "pympp-mcp.test"
SECRET = "pympp-mcp-interop-secret-0123456789"
RECIPIENT = "did:web:merchant.pympp-mcp.test"
TAG_META = {"order": "A-1", "channel": "caf\u00e9 \u2615"}

EVENTS: list[dict[str, Any]] = []


class DevChargeRequest(BaseModel):
    """The route input (display amount) and its wire form (base units)."""

    model_config = ConfigDict(extra="forbid")

    amount: str
    currency: str = "usd"
    recipient: str

    @model_serializer
    def _wire(self) -> dict[str, Any]:
        return {
            "amount": str(int(Decimal(self.amount).scaleb(2))),
            "currency": self.currency,
            "recipient": self.recipient,
        }


class DevVoucherPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["voucher"]
    payer: str
    signature: str


DEV = Method(
    name="dev", intent="charge", request_model=DevChargeRequest, payload_model=DevVoucherPayload
)


def dev_method(*, refuse: bool = False) -> ServerMethod:
    store = MemoryStore()

    async def verify(context: VerifyContext) -> Receipt:
        echo = context.credential.challenge
        event: dict[str, Any] = {
            "challengeId": echo.id,
            "request": echo.request,
            "opaque": echo.opaque,
            "source": context.credential.source,
        }
        EVENTS.append(event)
        wire = {
            "id": echo.id,
            "realm": echo.realm,
            "method": echo.method,
            "intent": echo.intent,
            "request": echo.request,
        }
        if refuse:
            event["outcome"] = "refused"
            raise VerificationFailedError("this tool refuses every voucher")
        try:
            payer = verify_voucher(wire, context.credential.payload.model_dump())
        except ValueError as exc:
            event["outcome"] = "bad-voucher"
            raise VerificationFailedError(str(exc)) from None
        if not await store.put_if_absent(f"dev-voucher:{echo.id}", payer):
            event["outcome"] = "replayed"
            raise CredentialReplayedError("dev voucher already redeemed")
        event["outcome"] = "accepted"
        return replace(Receipt.success(reference=f"voucher:{echo.id}", method="dev"), payer=payer)

    return ServerMethod(method=DEV, verify=verify, defaults={"recipient": RECIPIENT})


MPP = Mpp(methods=dev_method(), realm=REALM, secret_key=SECRET)
REFUSING = Mpp(methods=dev_method(refuse=True), realm=REALM, secret_key=SECRET)

PAID = {
    "forecast": lambda: MPP.dev.charge(amount="0.25", description="Forecast"),
    "tagged": lambda: MPP.dev.charge(amount="0.10", meta=TAG_META),
    "rejecting": lambda: REFUSING.dev.charge(amount="0.05"),
}

server: Server[Any, Any] = Server("pympp-paid-tools")


@server.list_tools()
async def list_tools() -> list[types.Tool]:
    return [
        types.Tool(name=name, description=name, inputSchema={"type": "object"})
        for name in [*PAID, "events"]
    ]


async def call_tool(request: types.CallToolRequest) -> types.ServerResult:
    name = request.params.name
    if name == "events":
        text = json.dumps(EVENTS)
        return types.ServerResult(
            types.CallToolResult(content=[types.TextContent(type="text", text=text)])
        )
    meta = request.params.meta.model_dump(exclude_none=True) if request.params.meta else None
    result = await verify_or_challenge(PAID[name](), tool=name, meta=meta)
    if isinstance(result, list):
        raise PaymentRequiredError(challenges=result)
    credential, receipt = result
    text = f"{name} for {credential.source}"
    return types.ServerResult(
        types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], _meta=receipt.to_meta()
        )
    )


server.request_handlers[types.CallToolRequest] = call_tool


async def main() -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
