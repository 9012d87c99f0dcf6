"""Paid MCP tool calls: mpp_client.integrations.mcp against mpp_client.testing.mcp.

The server is the ``mcp`` SDK's own (low-level ``Server``), reached in memory,
over stdio (a subprocess) and over streamable HTTP (uvicorn on loopback). The
flow is the HTTP one: the same policy, ledger and typed errors.
"""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from collections.abc import Mapping
from typing import Any

import anyio
import pytest
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError

import mpp_client
from mpp_client import (
    ApprovalRequired,
    AsyncClient,
    BudgetExceeded,
    DevWallet,
    InsecureTransport,
    NoAcceptableChallenge,
    PaymentOutcomeUnknown,
    PaymentRejected,
    PolicyDenied,
    SimplePolicy,
)
from mpp_client.integrations._tools import paid_mcp_call
from mpp_client.integrations.mcp import (
    PaidMcpSession,
    connect_stdio,
    connect_streamable_http,
)
from mpp_client.protocol import MCP_META_CREDENTIAL, MCP_META_PAYMENT_REQUIRED, MCP_META_RECEIPT
from mpp_client.testing import LocalServer, VerificationFailed
from mpp_client.testing.mcp import McpTool, PaidMcpServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def forecast(args: Mapping[str, Any]) -> str:
    return f"sunny in {args.get('city', '?')}"


def tools() -> dict[str, McpTool]:
    return {
        "forecast": McpTool("0.25 USD", forecast, description="Weather forecast"),
        "report": McpTool("2.00 USD", "the report"),
        "free": McpTool(None, "gratis"),
    }


def client(**kwargs: Any) -> AsyncClient:
    options: dict[str, Any] = {
        "methods": [DevWallet()],
        "policy": SimplePolicy(max_per_call="0.50 USD", budget="1.00 USD"),
        "ledger": "memory:",
    }
    options.update(kwargs)
    return AsyncClient(**options)


async def test_a_paid_tool_call_pays_once_and_records_the_receipt() -> None:
    server = PaidMcpServer(tools())
    payer = client()
    async with server.connect() as session:
        paid = PaidMcpSession(session, payer, name="weather")
        result = await paid.call_tool(
            "forecast", {"city": "Paris"}, purpose="trip", tags={"k": "v"}
        )
    assert result.text == "sunny in Paris" and not result.is_error
    record = result.record
    assert record is not None and record.status == "committed"
    assert (str(record.amount), record.payee, record.method) == ("0.25 USD", "merchant-1", "dev")
    assert (record.url, record.http_method) == ("mcp://weather#forecast", "tools/call")
    assert record.purpose == "trip" and record.tags == {"k": "v"}
    assert record.receipt is not None and record.receipt.data["challengeId"] == record.challenge_id
    assert [p.challenge_id for p in server.payments] == [record.challenge_id]
    # The first call carried no credential, the retry exactly one, echoing the challenge.
    (_, first), (_, second) = server.calls
    assert MCP_META_CREDENTIAL not in first
    echoed = second[MCP_META_CREDENTIAL]["challenge"]
    assert echoed["id"] == record.challenge_id and isinstance(echoed["request"], dict)
    assert payer.ledger is not None
    assert [r.status for r in payer.ledger.records()] == ["committed"]


async def test_free_tools_are_called_once_and_never_paid() -> None:
    server = PaidMcpServer(tools())
    async with server.connect() as session:
        result = await PaidMcpSession(session, client()).call_tool("free")
    assert result.text == "gratis" and result.record is None and not result.paid
    assert len(server.calls) == 1 and server.payments == []


@pytest.mark.parametrize(
    ("kwargs", "error", "reason"),
    [
        ({}, PolicyDenied, "exceeds the per-call cap"),  # report costs 2.00 USD
        ({"max_amount": "0.10 USD", "tool": "forecast"}, PolicyDenied, "call's max_amount"),
        ({"payee": "someone-else", "tool": "forecast"}, PolicyDenied, "not the payee the call"),
    ],
)
async def test_refusals_are_typed_and_nothing_is_paid(
    kwargs: dict[str, Any], error: type[Exception], reason: str
) -> None:
    server = PaidMcpServer(tools())
    tool = kwargs.pop("tool", "report")
    async with server.connect() as session:
        with pytest.raises(error, match=reason):
            await PaidMcpSession(session, client()).call_tool(tool, **kwargs)
    assert server.payments == [] and len(server.calls) == 1


async def test_the_budget_holds_across_calls() -> None:
    server = PaidMcpServer(tools())
    payer = client(policy=SimplePolicy(max_per_call="0.50 USD", budget="0.60 USD"))
    async with server.connect() as session:
        paid = PaidMcpSession(session, payer)
        await paid.call_tool("forecast")
        await paid.call_tool("forecast")
        with pytest.raises(BudgetExceeded, match=r"0\.10 USD remains"):
            await paid.call_tool("forecast")
    assert len(server.payments) == 2


async def test_pay_false_returns_the_payment_request_unpaid() -> None:
    server = PaidMcpServer(tools())
    async with server.connect() as session:
        result = await PaidMcpSession(session, client()).call_tool("forecast", pay=False)
    assert result.result is None and not result.paid
    assert result.payment_required is not None
    assert result.payment_required.offers[0].challenge.request["amount"] == "25"
    assert server.payments == []


@pytest.mark.parametrize("answer", [True, False])
async def test_the_approver_decides(answer: bool) -> None:
    asked: list[Any] = []

    async def approver(request: Any) -> bool:
        asked.append(request)
        return answer

    policy = mpp_client.Policy.from_mapping(
        {
            "currency": "USD",
            "per_call": "1.00 USD",
            "allow": {
                "hosts": ["tools"],
                "realms": ["*"],
                "payees": ["*"],
                "methods": ["dev"],
                "intents": ["charge"],
                "assets": ["USD"],
            },
            "approval": {"above": "0.10 USD"},
        }
    )
    server = PaidMcpServer(tools())
    async with server.connect() as session:
        paid = PaidMcpSession(session, client(policy=policy, approver=approver), name="tools")
        if answer:
            result = await paid.call_tool("forecast", purpose="weather")
            assert result.record is not None and result.record.status == "committed"
        else:
            with pytest.raises(ApprovalRequired, match="declined"):
                await paid.call_tool("forecast")
    assert len(asked) == 1
    assert (asked[0].url, asked[0].http_method, str(asked[0].amount)) == (
        "mcp://tools#forecast",
        "tools/call",
        "0.25 USD",
    )
    assert len(server.payments) == (1 if answer else 0)


async def test_no_matching_method_names_the_offers() -> None:
    class Other(DevWallet):
        name = "other"

    server = PaidMcpServer(tools())
    async with server.connect() as session:
        with pytest.raises(NoAcceptableChallenge, match="offered: dev/charge"):
            await PaidMcpSession(session, client(methods=[Other()])).call_tool("forecast")


class Refusing:
    """A verifier that refuses every voucher: the server answers -32043 with a fresh challenge."""

    method = "dev"
    blocking = False

    def request_fields(self) -> Mapping[str, Any]:
        return {}

    def redeem(self, echo: Any, request: Any, credential: Any, claim: Any) -> Any:
        raise VerificationFailed("verification-failed", "voucher rejected by the test")


async def test_a_refused_credential_is_released_and_not_paid_again() -> None:
    server = PaidMcpServer(tools(), verifier=Refusing())
    payer = client()
    async with server.connect() as session:
        with pytest.raises(PaymentRejected, match="verification-failed") as caught:
            await PaidMcpSession(session, payer).call_tool("forecast")
    assert caught.value.problem is not None
    assert caught.value.problem.detail == "voucher rejected by the test"
    assert payer.ledger is not None
    assert [r.status for r in payer.ledger.records()] == ["released"]
    assert len(server.calls) == 2  # one payment per call by default


async def test_with_max_payments_two_a_refused_voucher_is_paid_once_more() -> None:
    server = PaidMcpServer(tools(), verifier=Refusing())
    payer = client(max_payments=2)
    async with server.connect() as session:
        with pytest.raises(PaymentRejected):
            await PaidMcpSession(session, payer).call_tool("forecast")
    assert payer.ledger is not None
    assert [r.status for r in payer.ledger.records()] == ["released", "released"]
    assert len(server.calls) == 3


class Hostile(PaidMcpServer):
    """Answers a paid call in a way a client must not take at face value."""

    def __init__(self, mode: str) -> None:
        super().__init__(tools())
        self.mode = mode

    async def answer(
        self, name: str, arguments: Mapping[str, Any], meta: Mapping[str, Any] | None
    ) -> tuple[str, dict[str, Any] | None, bool]:
        text, out, failed = await super().answer(name, arguments, meta)
        if out is None:
            return text, out, failed
        receipt = out[MCP_META_RECEIPT]
        if self.mode == "other-challenge":
            receipt["challengeId"] = "someone-elses"
        elif self.mode == "failed-receipt":
            receipt["status"] = "failed"
        elif self.mode == "tool-error-no-receipt":
            return "boom", None, True
        elif self.mode == "crash":
            raise MCPError(-32603, "internal error after settling")
        elif self.mode == "denied":
            raise MCPError(
                -32043,
                "Payment Verification Failed",
                {"httpStatus": 403, "challenges": [], "failure": {"reason": "verification-failed"}},
            )
        return text, out, failed


@pytest.mark.parametrize(
    ("mode", "status", "note"),
    [
        ("other-challenge", "committed", "is for challenge 'someone-elses'"),
        ("failed-receipt", "unknown", "says status 'failed'"),
        ("tool-error-no-receipt", "unknown", "tool error and no receipt"),
        ("crash", "unknown", "JSON-RPC error -32603"),
        ("denied", "unknown", "HTTP status 403"),
    ],
)
async def test_unclear_answers_after_paying_are_never_reported_as_not_paid(
    mode: str, status: str, note: str
) -> None:
    server = Hostile(mode)
    payer = client()
    async with server.connect() as session:
        paid = PaidMcpSession(session, payer)
        if status == "committed":
            result = await paid.call_tool("forecast")
            assert result.record is not None and result.record.receipt is None
        else:
            with pytest.raises(PaymentOutcomeUnknown, match="stays counted"):
                await paid.call_tool("forecast")
    assert payer.ledger is not None
    (record,) = payer.ledger.records()
    assert record.status == status
    assert note in (record.reason or "")


async def test_a_tool_that_fails_after_payment_keeps_the_payment() -> None:
    def broken(args: Mapping[str, Any]) -> str:
        raise RuntimeError("backend down")

    server = PaidMcpServer({"flaky": McpTool("0.10 USD", broken)})
    async with server.connect() as session:
        result = await PaidMcpSession(session, client()).call_tool("flaky")
    assert result.is_error and "backend down" in result.text
    assert result.record is not None and result.record.status == "committed"


async def test_other_json_rpc_errors_are_the_sdks() -> None:
    server = PaidMcpServer(tools())
    async with server.connect() as session:
        with pytest.raises(MCPError, match="unknown tool"):
            await PaidMcpSession(session, client()).call_tool("nope")


async def test_no_credential_or_signature_reaches_the_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = PaidMcpServer(tools())
    async with server.connect() as session:
        await PaidMcpSession(session, client()).call_tool("forecast")
        (_, retried) = server.calls[1]
    signature = retried[MCP_META_CREDENTIAL]["payload"]["signature"]
    assert signature not in caplog.text


STDIO_SERVER = textwrap.dedent(
    """
    from mpp_client.testing.mcp import McpTool, PaidMcpServer
    PaidMcpServer({"forecast": McpTool("0.25 USD", lambda a: "sunny over stdio")}).run_stdio()
    """
)


async def test_over_stdio() -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-c", STDIO_SERVER], env={"PYTHONPATH": ROOT}
    )
    with open(os.devnull, "w") as errlog:
        async with connect_stdio(client(), params, name="weather", errlog=errlog) as session:
            result = await session.call_tool("forecast")
            tools_ = await session.tools()
    assert [t.name for t in tools_] == ["forecast"]
    assert result.text == "sunny over stdio"
    assert result.record is not None and result.record.status == "committed"
    assert result.record.url == "mcp://weather#forecast"


@pytest.fixture
def http_server() -> Any:
    server = PaidMcpServer(tools())
    local = LocalServer(server.streamable_http_app(http_price="0.05 USD")).start()
    try:
        yield server, local.url + "/mcp"
    finally:
        local.stop()


async def test_over_streamable_http_both_layers_pay_through_the_users_client(
    http_server: Any,
) -> None:
    server, url = http_server
    payer = client(allow_insecure_localhost=True, max_payments=3)
    async with connect_streamable_http(payer, url) as session:
        result = await session.call_tool("forecast", {"city": "Lyon"}, purpose="p")
    assert result.text == "sunny in Lyon"
    # Each tools/call POST pays the HTTP layer's 402 (0.05 USD), and the tool its
    # -32042 (0.25 USD): three payments, which this client allows per call.
    assert [str(r.amount) for r in result.records] == ["0.05 USD", "0.05 USD", "0.25 USD"]
    assert all(r.status == "committed" and r.purpose == "p" for r in result.records)
    assert result.records[0].receipt is not None  # from the HTTP Payment-Receipt
    assert result.record is result.records[-1]
    assert result.record.url == url + "#forecast"
    assert len(server.payments) == 1 and len(server.http_gate.payments) == 2


async def test_over_http_one_payment_per_call_by_default(http_server: Any) -> None:
    server, url = http_server
    payer = client(allow_insecure_localhost=True)
    async with connect_streamable_http(payer, url) as session:
        free = await session.call_tool("free")  # pays the HTTP layer only
        assert [str(r.amount) for r in free.records] == ["0.05 USD"]
        # The HTTP layer took this call's one payment: the tool's -32042 comes back unpaid.
        priced = await session.call_tool("forecast")
    assert priced.result is None and priced.payment_required is not None
    assert [(str(r.amount), r.status) for r in priced.records] == [("0.05 USD", "committed")]
    assert priced.paid
    assert server.payments == []
    async with connect_streamable_http(payer, url) as session:
        report = await paid_mcp_call(session, "forecast")
    assert report.status == "refused" and report.paid
    assert report.text.startswith("Paid 0.05 USD to 'merchant-1' via dev")
    assert "asks for another payment, which this call may not make" in report.text


async def test_over_http_the_calls_limits_bind_the_http_layer_too(http_server: Any) -> None:
    server, url = http_server
    payer = client(allow_insecure_localhost=True)
    async with connect_streamable_http(payer, url) as session:
        with pytest.raises(PolicyDenied, match="call's max_amount"):
            await session.call_tool("free", max_amount="0.01 USD")
    assert server.http_gate.payments == []


async def test_plain_http_needs_the_loopback_opt_in() -> None:
    server = PaidMcpServer(tools())
    local = LocalServer(server.streamable_http_app()).start()
    try:
        async with connect_streamable_http(client(), local.url + "/mcp") as session:
            with pytest.raises(InsecureTransport, match="allow_insecure_localhost"):
                await session.call_tool("forecast")
    finally:
        local.stop()
    assert server.payments == []


class InResult(PaidMcpServer):
    """Asks for payment in a tool result's ``_meta`` (the form mppx's client also reads)."""

    async def answer(
        self, name: str, arguments: Mapping[str, Any], meta: Mapping[str, Any] | None
    ) -> tuple[str, dict[str, Any] | None, bool]:
        try:
            return await super().answer(name, arguments, meta)
        except MCPError as asked:
            if asked.code != -32042:
                raise
            return "payment required", {MCP_META_PAYMENT_REQUIRED: asked.data}, True


async def test_challenges_in_a_tool_results_meta_are_paid_too() -> None:
    server = InResult(tools())
    async with server.connect() as session:
        result = await PaidMcpSession(session, client()).call_tool("forecast", {"city": "Oslo"})
    assert result.text == "sunny in Oslo"
    assert result.record is not None and result.record.status == "committed"
    assert len(server.payments) == 1


async def test_a_dry_run_policy_decides_and_never_pays() -> None:
    policy = mpp_client.Policy.from_mapping(
        {
            "currency": "USD",
            "mode": "dry-run",
            "per_call": "1.00 USD",
            "allow": {
                "hosts": ["*"],
                "realms": ["*"],
                "payees": ["*"],
                "methods": ["dev"],
                "intents": ["charge"],
                "assets": ["USD"],
            },
        }
    )
    server = PaidMcpServer(tools())
    async with server.connect() as session:
        result = await PaidMcpSession(session, client(policy=policy)).call_tool("forecast")
    assert result.result is None and result.payment_required is not None
    assert result.decision is not None and result.decision.outcome == "allow"
    assert server.payments == [] and not result.paid


class Stalls(PaidMcpServer):
    """Takes the payment, then never answers."""

    async def answer(
        self, name: str, arguments: Mapping[str, Any], meta: Mapping[str, Any] | None
    ) -> tuple[str, dict[str, Any] | None, bool]:
        answered = await super().answer(name, arguments, meta)
        await anyio.sleep_forever()
        return answered  # pragma: no cover


async def test_a_paid_call_that_times_out_stays_counted() -> None:
    server = Stalls(tools())
    payer = client()
    async with server.connect() as session:
        with pytest.raises(PaymentOutcomeUnknown, match="JSON-RPC error"):
            await PaidMcpSession(session, payer).call_tool("forecast", read_timeout_seconds=0.5)
    assert payer.ledger is not None
    assert [r.status for r in payer.ledger.records()] == ["unknown"]
    assert len(server.payments) == 1  # the server did take it


async def test_a_paid_call_cancelled_in_flight_stays_counted_and_the_cancellation_goes_on() -> None:
    server = Stalls(tools())
    payer = client()
    async with server.connect() as session:
        paid = PaidMcpSession(session, payer)
        with anyio.move_on_after(0.5) as scope:
            await paid.call_tool("forecast")
    assert scope.cancelled_caught
    assert payer.ledger is not None
    (record,) = payer.ledger.records()
    assert record.status == "unknown" and "before a response arrived" in (record.reason or "")
