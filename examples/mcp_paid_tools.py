"""Paid MCP tool calls: an agent's MCP client pays per call under the owner's policy.

A paid MCP server (``mpp_client.testing.mcp.PaidMcpServer``, on the ``mcp``
SDK) serves two tools over streamable HTTP on a loopback port. The client is
an ordinary ``mpp_client.AsyncClient``: its policy decides, its ledger
records. A tool call that fails with JSON-RPC ``-32042`` is paid and called
again with the credential; one the policy refuses raises a typed error.

    pip install "mpp-client[mcp,testing]"
    python examples/mcp_paid_tools.py
"""

from __future__ import annotations

import asyncio

import mpp_client
from mpp_client.integrations.mcp import connect_streamable_http
from mpp_client.testing import LocalServer
from mpp_client.testing.mcp import McpTool, PaidMcpServer


async def main() -> None:
    server = PaidMcpServer(
        {
            "forecast": McpTool("0.25 USD", lambda args: f"sunny in {args.get('city', 'Paris')}"),
            "deep_report": McpTool("2.00 USD", "a long report"),
        }
    )
    client = mpp_client.AsyncClient(
        methods=[mpp_client.DevWallet()],
        policy=mpp_client.SimplePolicy(max_per_call="0.50 USD", budget="1.00 USD"),
        ledger="memory:",
        allow_insecure_localhost=True,  # the demo server is plain HTTP on loopback
    )
    with LocalServer(server.streamable_http_app()) as local:
        async with connect_streamable_http(client, local.url + "/mcp") as session:
            paid = await session.call_tool("forecast", {"city": "Lyon"}, purpose="trip planning")
            record = paid.record
            assert record is not None
            print(f"PAID     forecast: {record.amount} to {record.payee} -> {paid.text!r}")
            print(f"         receipt {record.receipt.reference if record.receipt else None}")
            try:
                await session.call_tool("deep_report")
            except mpp_client.PolicyDenied as refusal:
                print(f"REFUSED  deep_report: {refusal}")
            try:
                await session.call_tool("forecast", max_amount="0.10 USD")
            except mpp_client.PolicyDenied as refusal:
                print(f"REFUSED  forecast with max_amount 0.10 USD: {refusal}")
    assert client.ledger is not None
    spent = client.ledger.spent("USD")
    print(f"\nspent {spent} of 1.00 USD")


if __name__ == "__main__":
    asyncio.run(main())
