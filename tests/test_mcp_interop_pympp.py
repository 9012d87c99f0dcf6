"""Interop: our MCP client pays an MCP server built with pympp's MCP extension.

The server (``tests/peers/pympp_mcp_server.py``) runs over stdio in a virtual
environment of its own, because pympp's MCP extra pins ``mcp<2`` (ours is
``mcp`` 2): the test setup creates it once under the cache directory
(``tests/peers/pympp_mcp.py``). What must agree is the wire: pympp's -32042
challenges (``request`` and ``opaque`` as JSON objects), the credential echoed
in ``params._meta``, pympp's HMAC check of the JCS-encoded echo, its receipts
with ``challengeId``, and its -32043 refusals.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp.client.stdio import StdioServerParameters

from mpp_client import AsyncClient, DevWallet, PaymentRejected, SimplePolicy
from mpp_client.integrations.mcp import PaidMcpSession, connect_stdio
from mpp_client.protocol._b64 import b64url_decode_json

from .peers.pympp_mcp import ROOT, SERVER, pympp_mcp_python

REALM = "pympp-mcp.test"
RECIPIENT = "did:web:merchant.pympp-mcp.test"


@pytest.fixture(scope="module")
def pympp_python() -> str:
    return pympp_mcp_python()


@contextlib.asynccontextmanager
async def pympp_session(python: str) -> AsyncIterator[tuple[PaidMcpSession, AsyncClient]]:
    """A paying session to the pympp server (entered in the test's own task: the
    stdio transport's cancel scopes must open and close in one task)."""
    payer = AsyncClient(
        methods=[DevWallet()],
        policy=SimplePolicy(max_per_call="0.50 USD", budget="1.00 USD"),
        ledger="memory:",
    )
    params = StdioServerParameters(
        command=python, args=[str(SERVER)], env={"PYTHONPATH": str(ROOT)}
    )
    with open(os.devnull, "w") as errlog:
        async with connect_stdio(payer, params, name="pympp", errlog=errlog) as paid:
            yield paid, payer


async def events(paid: PaidMcpSession) -> list[dict[str, Any]]:
    result = await paid.call_tool("events")
    found: list[dict[str, Any]] = json.loads(result.text)
    return found


async def test_we_pay_a_pympp_mcp_tool(pympp_python: str) -> None:
    async with pympp_session(pympp_python) as (paid, _payer):
        result = await paid.call_tool("forecast", purpose="interop")
        (event,) = await events(paid)
    record = result.record
    assert record is not None and record.status == "committed"
    assert (str(record.amount), record.payee, record.realm) == ("0.25 USD", RECIPIENT, REALM)
    receipt = record.receipt
    assert receipt is not None
    # pympp's credential.source: the payer our wallet names in the credential.
    assert result.text.startswith("forecast for did:key:z6Mk")
    assert receipt.reference == f"voucher:{record.challenge_id}"
    assert receipt.data["challengeId"] == record.challenge_id
    # pympp's receipt also tells what was settled.
    assert receipt.data["settlement"] == {"amount": "25", "currency": "usd"}
    assert event["outcome"] == "accepted" and event["challengeId"] == record.challenge_id
    assert event["source"] == result.text.removeprefix("forecast for ")


async def test_pympps_opaque_object_is_echoed_as_received(pympp_python: str) -> None:
    async with pympp_session(pympp_python) as (paid, _):
        result = await paid.call_tool("tagged")
        (event,) = await events(paid)
    assert result.record is not None and result.record.status == "committed"
    # pympp HMAC-checked the echo; its base64url opaque decodes to the route's meta
    # (next to pympp's own nonce).
    opaque = b64url_decode_json(event["opaque"])
    assert {k: v for k, v in opaque.items() if k != "_mpp_nonce"} == {
        "order": "A-1",
        "channel": "caf\u00e9 \u2615",
    }
    assert opaque["_mpp_nonce"]


async def test_a_pympp_verification_failure_is_a_refused_credential(pympp_python: str) -> None:
    async with pympp_session(pympp_python) as (paid, payer):
        with pytest.raises(PaymentRejected, match="verification-failed") as caught:
            await paid.call_tool("rejecting")
    assert caught.value.problem is not None
    assert "refuses every voucher" in (caught.value.problem.detail or "")
    assert payer.ledger is not None
    assert [r.status for r in payer.ledger.records()] == ["released"]
