"""The policy engine inside the payment flow: approvals, modes, signed records, mandates."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import mpp_client
from mpp_client import (
    AgentKey,
    ApprovalRequest,
    ApprovalRequired,
    AsyncClient,
    Client,
    DevWallet,
    Mandate,
    MandateAgentMismatch,
    MandateExpired,
    MandateRevoked,
    MandateSignatureInvalid,
    OwnerKey,
    PaymentOutcomeUnknown,
    Policy,
    PolicyDenied,
    Revocations,
    payment_decision,
    payment_record,
    verify_record,
)
from mpp_client.testing import PaidServer

from .apps import Recorder

BASE = {
    "currency": "USD",
    "per_call": "1.00 USD",
    "allow": {
        "hosts": ["*.test"],
        "realms": ["*"],
        "payees": ["*"],
        "methods": ["dev"],
        "intents": ["charge"],
        "assets": ["*"],
    },
}


def policy(**extra: Any) -> Policy:
    return Policy.from_mapping({**BASE, **extra})


def async_client(app: Any, pol: Policy, **kwargs: Any) -> AsyncClient:
    return AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="https://shop.test",
        methods=[kwargs.pop("wallet", DevWallet())],
        policy=pol,
        **kwargs,
    )


def sync_client(url: str, pol: Policy, **kwargs: Any) -> Client:
    return Client(
        base_url=url,
        methods=[DevWallet()],
        policy=pol,
        allow_insecure_localhost=True,
        **kwargs,
    )


LOOPBACK = {**BASE, "allow": {**BASE["allow"], "hosts": ["127.0.0.1"]}}


# -- approvals --------------------------------------------------------------------------


async def test_async_approver_approves() -> None:
    asked: list[ApprovalRequest] = []

    async def approver(request: ApprovalRequest) -> bool:
        asked.append(request)
        return True

    server = PaidServer({"/paid": "0.60 USD"})
    pol = policy(approval={"above": "0.50 USD"})
    async with async_client(server, pol, approver=approver) as client:
        response = await client.get("/paid", extensions={"mpp": {"purpose": "report"}})
    assert response.status_code == 200
    (request,) = asked
    assert request.charge == mpp_client.Amount.parse("0.60 USD")
    assert request.payee == "merchant-1" and request.purpose == "report"
    assert request.reasons == ("0.60 USD is above the approval threshold 0.50 USD",)
    record = payment_record(response)
    assert record is not None and record.decision is not None
    assert record.decision.rules[-1].rule == "approval" and record.decision.rules[-1].passed


async def test_sync_approver_in_async_client_declines() -> None:
    server = PaidServer({"/paid": "0.60 USD"})
    pol = policy(approval={"above": "0.50 USD"})
    async with async_client(server, pol, approver=lambda request: False) as client:
        with pytest.raises(ApprovalRequired, match="the approver declined"):
            await client.get("/paid")
    assert server.payments == []


async def test_approval_timeout_refuses() -> None:
    answered = asyncio.Event()

    async def never(request: ApprovalRequest) -> bool:
        await asyncio.Event().wait()  # a human who never answers
        answered.set()
        return True

    server = PaidServer({"/paid": "0.60 USD"})
    pol = policy(approval={"above": "0.50 USD", "timeout": "1s"})
    async with async_client(server, pol, approver=never) as client:
        with pytest.raises(ApprovalRequired, match="no answer from the approver in time"):
            await client.get("/paid")
    # Refused by the timeout, not by an answer (the approver never returns).
    assert not answered.is_set()
    assert server.payments == []


async def test_failing_approver_refuses() -> None:
    def broken(request: ApprovalRequest) -> bool:
        raise RuntimeError("pager offline")

    server = PaidServer({"/paid": "0.60 USD"})
    async with async_client(server, policy(approval={"above": "0 USD"}), approver=broken) as client:
        with pytest.raises(ApprovalRequired):
            await client.get("/paid")


async def test_no_approver_means_refusal_that_says_approval_was_required() -> None:
    server = PaidServer({"/paid": "0.60 USD"})
    async with async_client(server, policy(approval={"above": "0.50 USD"})) as client:
        with pytest.raises(
            ApprovalRequired, match=r"approval required .* no approver is configured"
        ):
            await client.get("/paid")


def test_sync_client_with_async_and_sync_approvers(live: Any) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    url = live(server)
    pol = Policy.from_mapping({**LOOPBACK, "approval": {"new_payee": True}})
    asked: list[str] = []

    async def approver(request: ApprovalRequest) -> bool:
        asked.append(request.payee)
        return True

    with sync_client(url, pol, approver=approver) as client:
        client.get("/paid")
        # Paid once: the payee is no longer new, no second question.
        client.get("/paid")
    assert asked == ["merchant-1"]
    # A fresh ledger: the payee is new again (the default ledger remembers it).
    fresh = sync_client(url, pol, approver=lambda r: False, ledger="memory:")
    with fresh as client, pytest.raises(ApprovalRequired):
        client.get("/paid")


# -- modes ------------------------------------------------------------------------------


async def test_dry_run_returns_the_402_and_the_decision() -> None:
    server = PaidServer({"/paid": "0.25 USD", "/big": "5.00 USD"})
    recorder = Recorder(server)
    async with async_client(recorder, policy(mode="dry-run")) as client:
        ok = await client.get("/paid")
        big = await client.get("/big")
    assert ok.status_code == big.status_code == 402
    yes, no = payment_decision(ok), payment_decision(big)
    assert yes is not None and yes.allowed and yes.mode == "dry-run"
    assert no is not None and no.outcome == "deny"
    assert any("exceeds the per-call cap" in r for r in no.reasons)
    assert payment_record(ok) is None
    assert server.payments == []
    assert all("authorization" not in seen.headers for seen in recorder.seen)
    assert client.ledger is not None and client.ledger.records() == []


async def test_shadow_pays_and_records_what_the_real_policy_would_do(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = PaidServer({"/big": "5.00 USD"})
    async with async_client(server, policy(mode="shadow")) as client:
        response = await client.get("/big")
    assert response.status_code == 200
    record = payment_record(response)
    assert record is not None and record.decision is not None
    assert record.decision.mode == "shadow" and record.decision.allowed
    shadow = record.decision.shadow
    assert shadow is not None and shadow.outcome == "deny"
    assert "shadow policy would have refused paying 5.00 USD" in caplog.text


# -- history-driven rules end to end ----------------------------------------------------


async def test_circuit_breaker_stops_paying_a_failing_payee() -> None:
    server = PaidServer({"/paid": "0.10 USD"})

    async def flaky(scope: Any, receive: Any, send: Any) -> None:
        headers = dict(scope["headers"])
        if b"authorization" in headers:
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b"down"})
            return
        await server(scope, receive, send)

    pol = policy(circuit_breaker={"failures": 2, "cooldown": "10m"})
    async with async_client(flaky, pol) as client:
        for _ in range(2):
            with pytest.raises(PaymentOutcomeUnknown):
                await client.get("/paid")
        with pytest.raises(PolicyDenied, match="failed 2 times in a row after being paid"):
            await client.get("/paid")
        assert client.ledger is not None
        assert [r.status for r in client.ledger.records()] == ["unknown", "unknown"]


async def test_velocity_limit_end_to_end() -> None:
    server = PaidServer({"/paid": "0.10 USD"})
    pol = policy(velocity=[{"max": 3, "window": "1m"}])
    async with async_client(server, pol) as client:
        for _ in range(3):
            await client.get("/paid")
        with pytest.raises(PolicyDenied, match="already 3 payments in the last"):
            await client.get("/paid")
    assert len(server.payments) == 3


async def test_budget_end_to_end_with_remaining_in_the_reason() -> None:
    server = PaidServer({"/paid": "0.40 USD"})
    pol = policy(budgets=[{"name": "daily", "limit": "1.00 USD", "calendar": "day"}])
    async with async_client(server, pol) as client:
        await client.get("/paid")
        await client.get("/paid")
        with pytest.raises(mpp_client.BudgetExceeded, match=r"budget .daily.*0\.20 USD remains"):
            await client.get("/paid")


async def test_host_not_allowed() -> None:
    server = PaidServer({"/paid": "0.10 USD"})
    async with AsyncClient(
        transport=httpx.ASGITransport(app=server),
        base_url="https://evil.example",
        methods=[DevWallet()],
        policy=policy(),
    ) as client:
        with pytest.raises(PolicyDenied, match=r"host .evil\.example. is not in allow\.hosts"):
            await client.get("/paid")


# -- signed decisions and mandates ------------------------------------------------------


async def test_agent_signs_every_decision_record() -> None:
    agent = AgentKey.generate()
    server = PaidServer({"/paid": "0.25 USD"})
    async with async_client(server, policy(), agent_key=agent) as client:
        record = payment_record(await client.get("/paid"))
    assert record is not None and record.agent == agent.did and record.signature
    assert verify_record(agent.did, record.decision_record(), record.signature)
    forged = record.decision_record() | {"payee": "attacker"}
    assert not verify_record(agent.did, forged, record.signature)
    assert not verify_record(AgentKey.generate().did, record.decision_record(), record.signature)


def mandate_for(owner: OwnerKey, agent: AgentKey, **kwargs: Any) -> Mandate:
    kwargs.setdefault("expires_at", datetime.now(UTC) + timedelta(days=1))
    return Mandate.issue(owner, agent.did, BASE, **kwargs)


async def test_mandate_delegates_a_policy_to_an_agent() -> None:
    owner, agent = OwnerKey.generate(), AgentKey.generate()
    mandate = mandate_for(owner, agent)
    pol = Policy.from_mandate(
        Mandate.from_json(mandate.to_json()), owner_keys=[owner.did], agent=agent
    )
    assert pol.expires == mandate.expires_at
    server = PaidServer({"/paid": "0.25 USD"})
    async with async_client(server, pol, agent_key=agent) as client:
        record = payment_record(await client.get("/paid"))
    assert record is not None and record.decision is not None
    assert record.decision.rules[0].rule == "mandate"
    assert mandate.id in record.decision.rules[0].reason


def test_mandate_refusals() -> None:
    owner, agent = OwnerKey.generate(), AgentKey.generate()
    good = mandate_for(owner, agent)
    data = good.to_dict()
    data["policy"] = {**data["policy"], "per_call": "100.00 USD"}
    tampered = Mandate.from_dict(data)
    with pytest.raises(MandateSignatureInvalid):
        Policy.from_mandate(tampered, owner_keys=[owner.did], agent=agent)
    with pytest.raises(MandateSignatureInvalid):
        Policy.from_mandate(good, owner_keys=[OwnerKey.generate().did], agent=agent)
    with pytest.raises(MandateAgentMismatch):
        Policy.from_mandate(good, owner_keys=[owner.did], agent=AgentKey.generate())
    with pytest.raises(MandateExpired):
        Policy.from_mandate(
            good, owner_keys=[owner.did], agent=agent, now=datetime.now(UTC) + timedelta(days=2)
        )
    revoked = Revocations.issue(owner, [good.id])
    with pytest.raises(MandateRevoked):
        Policy.from_mandate(good, owner_keys=[owner.did], agent=agent, revoked=revoked)


async def test_mandate_expiry_stops_payments_even_in_a_long_run() -> None:
    owner, agent = OwnerKey.generate(), AgentKey.generate()
    soon = datetime.now(UTC) + timedelta(hours=1)
    pol = Policy.from_mandate(
        mandate_for(owner, agent, expires_at=soon), owner_keys=[owner.did], agent=agent
    )
    later = soon + timedelta(seconds=1)
    server = PaidServer({"/paid": "0.25 USD"}, clock=lambda: later)
    auth = mpp_client.PaymentAuth([DevWallet()], policy=pol, clock=lambda: later)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=server), base_url="https://shop.test", auth=auth
    ) as client:
        with pytest.raises(PolicyDenied, match="policy expired at"):
            await client.get("/paid")
    assert server.payments == []


def test_hex_payees_have_one_spelling(live: Any) -> None:
    """A server cannot dodge a per-payee budget by changing an address's letter case."""
    from .apps import Scripted, challenge_402, charge, receipt_header_value

    address = "0xAbCdEf0123456789aBcDeF0123456789AbCdEf01"
    spellings = iter([address, address.lower(), address.upper().replace("0X", "0x")])

    def handler(seen: Any, index: int) -> Any:
        if "authorization" not in seen.headers:
            return challenge_402(charge(amount="40", recipient=next(spellings)))
        return 200, [("payment-receipt", receipt_header_value())], b"ok"

    pol = Policy.from_mapping(
        {
            **LOOPBACK,
            "budgets": [{"name": "per-payee", "limit": "0.50 USD", "payee": address.lower()}],
        }
    )
    url = live(Scripted(handler))
    with sync_client(url, pol, ledger="memory:") as client:
        record = payment_record(client.get("/x"))
        assert record is not None and record.payee == address.lower()
        with pytest.raises(mpp_client.BudgetExceeded, match="per-payee"):
            client.get("/x")
