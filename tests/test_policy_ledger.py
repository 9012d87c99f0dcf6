"""The placeholder policy and ledger: the interfaces the flow calls."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mpp_client import Amount, BudgetExceeded, Limit, MemoryLedger, PaymentError, SimplePolicy
from mpp_client.ledger import PaymentRecord
from mpp_client.methods import Quote
from mpp_client.policy import PaymentContext, program_scope
from mpp_client.protocol import Challenge

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
CHALLENGE = Challenge.create(id="c", realm="r", method="dev", intent="charge", request={})


def context(amount: str, **kwargs: object) -> PaymentContext:
    value = Amount.parse(amount)
    quote = Quote(amount=value, payee="merchant", method="dev", intent="charge")
    return PaymentContext(
        url="https://a.test/x",
        http_method="GET",
        host="a.test",
        challenge=CHALLENGE,
        quote=quote,
        now=NOW,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("amount", "allowed"),
    [("0.50 USD", True), ("0.49 USD", True), ("0.500001 USD", False), ("0.51 USD", False)],
)
def test_per_call_cap_boundaries(amount: str, allowed: bool) -> None:
    decision = SimplePolicy(max_per_call="0.50 USD").decide(context(amount))
    assert decision.allowed is allowed
    if not allowed:
        assert any("exceeds the per-call cap 0.50 USD" in r for r in decision.reasons)


def test_budget_is_handed_to_the_ledger() -> None:
    decision = SimplePolicy(max_per_call="1 USD", budget="5 USD").decide(context("1 USD"))
    scope = program_scope()
    assert decision.limits == (Limit("budget", Amount.parse("5.00 USD"), scope=scope),)
    assert decision.charge == Amount.parse("1 USD")
    assert decision.scope == scope
    named = SimplePolicy(max_per_call="1 USD", budget="5 USD", scope="nightly-report")
    decision = named.decide(context("1 USD"))
    assert decision.limits == (Limit("budget", Amount.parse("5.00 USD"), scope="nightly-report"),)
    assert decision.scope == "nightly-report"


def test_the_default_scope_is_the_running_program() -> None:
    main = sys.modules["__main__"]
    path = getattr(main, "__file__", None)
    assert path is not None  # pytest runs from a file
    assert program_scope() == "program:" + str(Path(path).resolve())


def test_unknown_asset_and_method_are_denied() -> None:
    assert not SimplePolicy(max_per_call="1 USD").decide(context("1 EUR")).allowed
    decision = SimplePolicy(max_per_call="1 USD", methods=["tempo"]).decide(context("0.1 USD"))
    assert not decision.allowed
    assert "not in the allowed methods" in decision.reasons[0]


def test_mismatched_currencies_in_config_are_refused() -> None:
    with pytest.raises(ValueError, match="same currency"):
        SimplePolicy(max_per_call="1 USD", budget="5 EUR")


def record(charge: str, *, payee: str = "merchant", created: datetime = NOW) -> PaymentRecord:
    amount = Amount.parse(charge)
    return PaymentRecord(
        id=f"r-{charge}-{payee}-{created.timestamp()}",
        created_at=created,
        status="reserved",
        http_method="GET",
        url="https://a.test/x",
        realm="r",
        method="dev",
        intent="charge",
        amount=amount,
        charge=amount,
        payee=payee,
        challenge_id=f"c-{charge}-{payee}-{created.timestamp()}",
    )


def test_two_phase_lifecycle_and_counting() -> None:
    ledger = MemoryLedger(clock=lambda: NOW)
    budget = [Limit("budget", Amount.parse("1.00 USD"))]
    a = ledger.reserve(record("0.40 USD"), budget)
    b = ledger.reserve(record("0.40 USD", payee="other"), budget)
    with pytest.raises(BudgetExceeded, match=r"0\.20 USD remains"):
        ledger.reserve(record("0.30 USD", payee="third"), budget)
    ledger.release(b.id, "nothing paid")
    assert ledger.spent("USD") == Amount.parse("0.40 USD")
    ledger.reserve(record("0.30 USD", payee="third"), budget)
    ledger.mark_unknown(a.id, "retry failed")
    # Unknown spend still counts.
    assert ledger.spent("USD") == Amount.parse("0.70 USD")
    with pytest.raises(PaymentError, match="already unknown"):
        ledger.commit(a.id, None)  # an unknown is not silently committed...
    ledger.resolve(a.id, "committed", "checked with the merchant")  # ...but resolved explicitly
    assert [r.status for r in ledger.records()] == ["committed", "released", "reserved"]
    with pytest.raises(PaymentError, match="already committed"):
        ledger.release(a.id, "too late")
    with pytest.raises(PaymentError, match="no ledger record"):
        ledger.commit("nope", None)


def test_exactly_at_the_budget_is_allowed_one_unit_over_is_not() -> None:
    ledger = MemoryLedger(clock=lambda: NOW)
    budget = [Limit("budget", Amount.parse("1.00 USD"))]
    ledger.reserve(record("0.99 USD"), budget)
    with pytest.raises(BudgetExceeded):
        ledger.reserve(record("0.02 USD"), budget)
    ledger.reserve(record("0.01 USD"), budget)


def test_windowed_and_scoped_limits() -> None:
    ledger = MemoryLedger(clock=lambda: NOW)
    old = record("0.90 USD", created=NOW - timedelta(hours=2))
    ledger.reserve(old, [])
    hourly = [Limit("hourly", Amount.parse("1.00 USD"), since=NOW - timedelta(hours=1))]
    ledger.reserve(record("0.90 USD"), hourly)
    per_payee = [Limit("merchant", Amount.parse("2.00 USD"), payee="merchant")]
    with pytest.raises(BudgetExceeded):
        ledger.reserve(record("0.30 USD"), per_payee)
    ledger.reserve(record("0.30 USD", payee="other"), per_payee)
    assert ledger.spent("USD", window=timedelta(hours=1)) == Amount.parse("1.20 USD")
    assert ledger.spent("USD", payee="merchant") == Amount.parse("1.80 USD")


def test_count_limits_and_history_queries() -> None:
    ledger = MemoryLedger(clock=lambda: NOW)
    rate = [Limit("rate", max_count=2, since=NOW - timedelta(minutes=1))]
    first = ledger.reserve(record("0.10 USD"), rate)
    ledger.reserve(record("0.20 USD", payee="other"), rate)
    with pytest.raises(BudgetExceeded, match="at most 2 payments, 2 already made or held"):
        ledger.reserve(record("0.30 USD", payee="third"), rate)
    ledger.release(first.id, "nothing paid")
    ledger.reserve(record("0.30 USD", payee="third"), rate)
    assert ledger.count(since=NOW - timedelta(minutes=1)) == 2
    assert ledger.count(payee="other") == 1
    assert not ledger.has_paid("merchant")  # released
    assert not ledger.has_paid("other")  # only reserved so far


def test_recent_charges_and_failure_streak() -> None:
    ledger = MemoryLedger(clock=lambda: NOW)
    ids = []
    for minutes, charge in enumerate(["0.10 USD", "0.20 USD", "0.30 USD", "0.40 USD"]):
        r = ledger.reserve(record(charge, created=NOW + timedelta(minutes=minutes)), [])
        ids.append(r.id)
    ledger.commit(ids[0], None)
    ledger.commit(ids[1], None)
    ledger.mark_unknown(ids[2], "500")
    ledger.mark_unknown(ids[3], "timeout")
    assert ledger.recent_charges("merchant", 5) == [
        Amount.parse("0.20 USD"),
        Amount.parse("0.10 USD"),
    ]
    assert ledger.recent_charges("merchant", 1) == [Amount.parse("0.20 USD")]
    assert ledger.failure_streak("merchant") == (2, NOW)
    assert ledger.failure_streak("nobody") == (0, None)
    assert ledger.has_paid("merchant")
