"""``client.quote(url)``: every offer quoted, the policy asked, nothing paid or written.

Each test runs the sync and the async client over a real loopback socket
(the session's switchboard server), against the embedded ``PaidServer`` or a
scripted server for offers ``PaidServer`` does not make.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mpp_client import (
    AsyncClient,
    Client,
    DevWallet,
    Policy,
    QuoteResult,
    SimplePolicy,
    payment_record,
)
from mpp_client.ledger import SqliteLedger
from mpp_client.testing import PaidServer

from .apps import Scripted, challenge_402, charge

MODES = pytest.mark.parametrize("mode", ["sync", "async"])

BASE: dict[str, Any] = {
    "currency": "USD",
    "per_call": "0.50 USD",
    "budgets": [{"name": "total", "limit": "1.00 USD"}],
    "allow": {
        "hosts": ["127.0.0.1"],
        "realms": ["*"],
        "payees": ["*"],
        "methods": ["dev"],
        "intents": ["charge"],
        "assets": ["*"],
    },
}


def policy(**extra: Any) -> Policy:
    return Policy.from_mapping({**BASE, **extra})


def quote(mode: str, url: str, path: str = "/paid", **kwargs: Any) -> QuoteResult:
    """Quote ``url + path`` with a fresh client in ``mode`` (sync or async)."""
    options = {k: kwargs.pop(k) for k in ("extensions", "method", "json") if k in kwargs}
    kwargs.setdefault("allow_insecure_localhost", True)
    if "methods" not in kwargs and kwargs.get("no_methods") is None:
        kwargs["methods"] = [DevWallet()]
    kwargs.pop("no_methods", None)
    if mode == "sync":
        with Client(base_url=url, **kwargs) as client:
            return client.quote(path, **options)

    async def run() -> QuoteResult:
        async with AsyncClient(base_url=url, **kwargs) as client:
            return await client.quote(path, **options)

    return asyncio.run(run())


def audit_lines(ledger: SqliteLedger) -> list[str]:
    return list(ledger.export_jsonl())


@MODES
def test_quote_reads_the_offer_and_the_decision_and_pays_nothing(
    mode: str, live: Any, tmp_path: Path
) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    result = quote(mode, live(server), policy=policy(), ledger=ledger)

    assert result.payment_required and result.would_pay and result.reasons == ()
    (offer,) = result.offers
    assert offer is result.chosen and offer.chosen
    assert str(offer.amount) == "0.25 USD" and str(offer.charge) == "0.25 USD"
    assert offer.payee == "merchant-1" and offer.method == "dev" and offer.intent == "charge"
    assert offer.expires is not None and offer.challenge.realm == "mpp-client.test"
    decision = result.decision
    assert decision is not None and decision.allowed
    rules = {r.rule: r for r in decision.rules}
    # Every rule is there, the budget with what is used.
    assert {"allow.hosts", "allow.payees", "asset", "per_call", "budget.total"} <= set(rules)
    assert "0.00 USD of 1.00 USD used" in rules["budget.total"].reason
    # Nothing paid, nothing reserved, nothing in the audit log.
    assert server.payments == []
    assert ledger.records() == [] and audit_lines(ledger) == []
    data = result.to_dict()
    assert data["would_pay"] is True and data["chosen"] == 0
    assert data["offers"][0]["amount"] == "0.25 USD"


@MODES
def test_a_refusal_names_its_rule_and_nothing_is_logged(
    mode: str, live: Any, tmp_path: Path
) -> None:
    server = PaidServer({"/paid": "0.75 USD"})
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    result = quote(mode, live(server), policy=policy(), ledger=ledger)

    assert result.chosen is None and not result.would_pay
    assert any("exceeds the per-call cap 0.50 USD" in reason for reason in result.reasons)
    decision = result.decision
    assert decision is not None and decision.outcome == "deny"
    assert [r.rule for r in decision.rules if not r.passed] == ["per_call"]
    # A real payment logs its refusal in the audit log; a quote does not.
    assert ledger.records() == [] and audit_lines(ledger) == []
    assert server.payments == []


@MODES
def test_the_budget_seen_by_a_quote_is_the_ledger_s(mode: str, live: Any, tmp_path: Path) -> None:
    server = PaidServer({"/paid": "0.40 USD"})
    url = live(server)
    ledger_path = tmp_path / "ledger.sqlite3"
    with Client(
        base_url=url,
        methods=[DevWallet()],
        policy=policy(),
        ledger=ledger_path,
        allow_insecure_localhost=True,
    ) as client:
        for _ in range(2):
            assert payment_record(client.get("/paid")) is not None
    result = quote(mode, url, policy=policy(), ledger=SqliteLedger(ledger_path))
    assert not result.would_pay
    assert any(
        "would exceed budget 'total' of 1.00 USD: 0.80 USD already spent or held, 0.20 USD remains"
        in reason
        for reason in result.reasons
    )
    assert len(server.payments) == 2


@MODES
def test_offers_in_server_order_with_the_preferred_payable_one_chosen(mode: str, live: Any) -> None:
    tempo = charge("100", method="tempo", currency="0x20c0000000000000000000000000000000000000")
    dear = charge("90")
    cheap = charge("30", recipient="merchant-2")
    app = Scripted(lambda seen, i: challenge_402(tempo, dear, cheap))
    result = quote(mode, live(app), policy=policy(allow={**BASE["allow"], "hosts": ["*"]}))

    assert [o.challenge.id for o in result.offers] == [tempo.id, dear.id, cheap.id]
    first, second, third = result.offers
    assert first.method is None and first.decision is None
    assert first.error is not None and "no configured payment method" in first.error
    assert first.terms is not None and first.terms.amount == 100  # raw terms, for display
    assert second.decision is not None and second.decision.outcome == "deny"
    assert not second.chosen and third.chosen and result.chosen is third
    assert str(third.amount) == "0.30 USD" and third.payee == "merchant-2"
    assert result.would_pay
    # A quote is a GET sent once, without a credential.
    assert len(app.seen) == 1 and "authorization" not in app.seen[0].headers


@MODES
def test_the_call_s_own_limits_narrow_the_quote(mode: str, live: Any) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    result = quote(
        mode,
        live(server),
        policy=policy(),
        extensions={"mpp": {"max_amount": "0.10 USD", "purpose": "test"}},
    )
    assert not result.would_pay and result.chosen is None
    decision = result.decision
    assert decision is not None
    assert "call.max_amount" in [r.rule for r in decision.rules if not r.passed]


@MODES
def test_a_dry_run_policy_chooses_but_would_not_pay(mode: str, live: Any) -> None:
    result = quote(mode, live(PaidServer({"/paid": "0.25 USD"})), policy=policy(mode="dry-run"))
    assert result.chosen is not None and not result.would_pay
    assert any("dry-run" in reason for reason in result.reasons)


@MODES
def test_an_approval_is_reported_and_needs_an_approver(mode: str, live: Any) -> None:
    url = live(PaidServer({"/paid": "0.25 USD"}))
    pol = policy(approval={"above": "0.20 USD"})
    without = quote(mode, url, policy=pol)
    assert without.chosen is None and not without.would_pay
    assert any("needs an approval and no approver" in reason for reason in without.reasons)
    asked: list[Any] = []
    with_approver = quote(mode, url, policy=pol, approver=asked.append)
    assert with_approver.would_pay and with_approver.needs_approval
    assert asked == []  # a quote never asks anyone


@MODES
def test_plain_http_without_the_loopback_opt_in_would_not_pay(mode: str, live: Any) -> None:
    url = live(PaidServer({"/paid": "0.25 USD"}))
    result = quote(mode, url, policy=policy(), allow_insecure_localhost=False)
    assert result.chosen is not None and not result.would_pay
    assert any("plain HTTP" in reason for reason in result.reasons)


@MODES
def test_no_policy_denies_by_default(mode: str, live: Any) -> None:
    result = quote(mode, live(PaidServer({"/paid": "0.25 USD"})))
    assert not result.would_pay
    assert any("no spending policy is configured" in reason for reason in result.reasons)


@MODES
def test_a_client_without_methods_still_reads_the_offers(mode: str, live: Any) -> None:
    result = quote(mode, live(PaidServer({"/paid": "0.25 USD"})), no_methods=True)
    (offer,) = result.offers
    assert offer.terms is not None and offer.terms.amount == 25 and offer.payee == "merchant-1"
    assert not result.would_pay and "no payment methods" in result.reasons[0]


@MODES
def test_a_free_route_needs_no_payment(mode: str, live: Any) -> None:
    result = quote(mode, live(PaidServer({"/paid": "0.25 USD"})), "/free", policy=policy())
    assert not result.payment_required and result.offers == () and not result.would_pay
    assert "did not ask for payment" in result.reasons[0]


@MODES
def test_malformed_and_missing_challenges_are_explained(mode: str, live: Any) -> None:
    broken = Scripted(
        lambda seen, i: (402, [("www-authenticate", 'Payment id="x", realm="r"')], b"")
    )
    result = quote(mode, live(broken), policy=policy())
    assert result.offers == () and not result.would_pay
    assert "no usable Payment challenge" in result.reasons[0]
    assert any("malformed challenge" in reason for reason in result.reasons)


@MODES
def test_a_post_is_quoted_against_its_body_digest(mode: str, live: Any) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    result = quote(mode, live(server), policy=policy(), method="POST", json={"q": 1})
    assert result.would_pay and result.http_method == "POST"
    assert result.offers[0].challenge.digest is not None


@MODES
def test_a_quote_leaves_the_challenge_payable(mode: str, live: Any, tmp_path: Path) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    url = live(server)
    wallet = DevWallet()
    with Client(
        base_url=url,
        methods=[wallet],
        policy=SimplePolicy(max_per_call="0.50 USD"),
        ledger=tmp_path / "l.sqlite3",
        allow_insecure_localhost=True,
    ) as client:
        assert client.quote("/paid").would_pay
        record = payment_record(client.get("/paid"))
    assert record is not None and record.status == "committed"
    assert len(server.payments) == 1
