"""Interop: our MCP client pays an MCP server built with mppx's MCP support.

The server (``tests/peers/mppx/mcp_server.mjs``) is mppx 0.11's
``Transport.mcpSdk()`` on ``@modelcontextprotocol/sdk`` (pinned in
package.json), started with ``node`` over stdio. It checks our Ed25519 dev
voucher (``tests/peers/mppx/dev.mjs``) against the echoed challenge after
mppx's own HMAC check of it: ``request`` re-serialized as JCS base64url, and
``opaque`` as the base64url string mppx sent (mppx sends it as a string over
MCP, pympp as an object).

A wire fact these tests pin: ``@modelcontextprotocol/sdk``'s ``McpServer``
passes only ``-32042`` through as a JSON-RPC error (it is also MCP's "URL
elicitation required"); any other error a tool throws, mppx's ``-32043`` and
``-32603`` included, reaches the client as an ``isError`` tool result with no
challenge and no receipt. After a payment that is an unclear answer: the
client keeps the amount counted as unknown, never "not paid".
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp.client.stdio import StdioServerParameters

from mpp_client import AsyncClient, DevWallet, PaymentOutcomeUnknown, SimplePolicy
from mpp_client.integrations.mcp import PaidMcpSession, connect_stdio

from .peers.mppx_peer import PEERS, ROOT, node_tools

REALM = "mppx-mcp.test"
RECIPIENT = "did:web:merchant.mppx-mcp.test"
SDK = "@modelcontextprotocol/sdk"


@pytest.fixture(scope="module")
def node() -> str:
    found = node_tools()
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"][SDK]
    installed = json.loads((ROOT / "node_modules" / SDK / "package.json").read_text())["version"]
    assert installed == pinned, f"node_modules has {SDK} {installed}, package.json pins {pinned}"
    return found


@contextlib.asynccontextmanager
async def mppx_session(node: str) -> AsyncIterator[tuple[PaidMcpSession, AsyncClient]]:
    payer = AsyncClient(
        methods=[DevWallet()],
        policy=SimplePolicy(max_per_call="0.50 USD", budget="1.00 USD"),
        ledger="memory:",
    )
    config = {
        "realm": REALM,
        "secretKey": "mppx-mcp-interop-secret-0123456789",
        "recipient": RECIPIENT,
    }
    params = StdioServerParameters(
        command=node,
        args=[str(PEERS / "mcp_server.mjs")],
        env={"MPPX_PEER_CONFIG": json.dumps(config)},
        cwd=str(ROOT),
    )
    with open(os.devnull, "w") as errlog:
        async with connect_stdio(payer, params, name="mppx", errlog=errlog) as paid:
            yield paid, payer


async def events(paid: PaidMcpSession) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads((await paid.call_tool("events")).text)
    return found


async def test_we_pay_an_mppx_mcp_tool(node: str) -> None:
    async with mppx_session(node) as (paid, payer):
        result = await paid.call_tool("forecast", purpose="interop")
        (event,) = await events(paid)
    record = result.record
    assert record is not None and record.status == "committed"
    assert (str(record.amount), record.payee, record.realm) == ("0.25 USD", RECIPIENT, REALM)
    assert record.url == "mcp://mppx#forecast"
    receipt = record.receipt
    assert receipt is not None and receipt.reference == f"voucher:{record.challenge_id}"
    assert receipt.data["challengeId"] == record.challenge_id
    # mppx verified our voucher, for this challenge, from the payer our credential named.
    assert (event["outcome"], event["challengeId"]) == ("accepted", record.challenge_id)
    assert result.text == f"forecast for {event['payer']}"
    assert payer.ledger is not None and len(payer.ledger.records()) == 1


async def test_mppxs_opaque_string_is_echoed_as_received(node: str) -> None:
    async with mppx_session(node) as (paid, _payer):
        result = await paid.call_tool("tagged")
        (event,) = await events(paid)
    # mppx's HMAC over the echoed opaque string held: the voucher was checked and taken.
    assert result.record is not None and result.record.status == "committed"
    assert event["outcome"] == "accepted" and event["amount"] == "10"


async def test_an_mppx_method_crash_after_payment_stays_counted(node: str) -> None:
    async with mppx_session(node) as (paid, payer):
        with pytest.raises(PaymentOutcomeUnknown, match="tool error and no receipt"):
            await paid.call_tool("broken")
        (event,) = await events(paid)
    assert event["outcome"] == "crashed"
    assert payer.ledger is not None
    (record,) = payer.ledger.records()
    assert record.status == "unknown"
