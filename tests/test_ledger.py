"""The spend ledgers: one behavioural suite over the three stores, then what durable stores add.

``store`` runs a test on every store (memory, SQLite, PostgreSQL); ``durable``
only on the SQL stores, for what the memory store does not keep: persistence,
the signed hash-chained audit log, checkpoints and proofs, and exports. The
tamper tests edit the tables behind the ledger's back, with plain SQL, and
check that ``verify()`` names the place.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
import re
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mpp_client import (
    BudgetExceeded,
    ChallengeReused,
    Client,
    DevWallet,
    PaymentError,
    PolicyDenied,
    SimplePolicy,
    payment_record,
)
from mpp_client.identity import AgentKey, sign_record, verify_record, verify_signature
from mpp_client.ledger import (
    MemoryLedger,
    PaymentRecord,
    PostgresLedger,
    SqliteLedger,
    SqlLedger,
    default_ledger_path,
    open_ledger,
    verify_exported_proof,
)
from mpp_client.ledger._audit import Checkpoint, make_event
from mpp_client.ledger._sql import to_nano
from mpp_client.money import Amount
from mpp_client.policy import Decision, Limit, RuleResult
from mpp_client.protocol import Receipt, b64url_decode, b64url_encode, canonical_json
from mpp_client.testing import LocalServer, PaidServer

from .ledger_fixtures import (
    PG_URL,
    T0,
    Clock,
    Raw,
    Store,
    make_record,
    open_store,
    postgres_unavailable,
)

_NO_PG = postgres_unavailable()
_PG = pytest.param(
    "postgres",
    marks=pytest.mark.skipif(_NO_PG is not None, reason=f"PostgreSQL store: {_NO_PG}"),
)
USD = Amount.parse


@pytest.fixture(params=["memory", "sqlite", _PG])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every store: in memory, one SQLite file, PostgreSQL tables under a fresh prefix."""
    opened = open_store(request.param, tmp_path)
    yield opened
    opened.close()


@pytest.fixture(params=["sqlite", _PG])
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The SQL stores, checkpointing every 4 events so checkpoints show up early."""
    opened = open_store(request.param, tmp_path, checkpoint_every=4)
    yield opened
    opened.close()


def receipt(reference: str = "tx-1", **extra: Any) -> Receipt:
    """A receipt as the flow gets it: parsed from a header, method extras kept."""
    body = {
        "status": "success",
        "method": "dev",
        "reference": reference,
        "timestamp": "2026-11-21T12:00:05.5Z",
        **extra,
    }
    return Receipt.parse(b64url_encode(canonical_json(body)))


def remains(exc: pytest.ExceptionInfo[BudgetExceeded]) -> Amount:
    match = re.search(r"(\S+ [A-Z]+) remains", str(exc.value))
    assert match, str(exc.value)
    return USD(match.group(1))


def problems_of(store: Store) -> list[str]:
    report = store.sql.verify(trusted_agents=[store.agent.did], require_signatures=True)
    return report.problems


# -- transitions ----------------------------------------------------------------------


def test_reserve_then_commit(store: Store) -> None:
    ledger, clock = store.ledger, store.clock
    record = make_record(clock)
    held = ledger.reserve(record, [])
    assert held == record.with_status("reserved", now=clock())
    assert held.updated_at == clock()
    clock.advance(seconds=3)
    paid = ledger.commit(record.id, receipt())
    assert paid.status == "committed"
    assert paid.receipt == receipt()
    assert paid.updated_at == clock()
    assert paid.reason is None
    assert ledger.records() == [paid]


@pytest.mark.parametrize(
    ("settle", "status", "counted"),
    [("release", "released", False), ("mark_unknown", "unknown", True)],
)
def test_release_and_unknown_keep_the_reason(
    store: Store, settle: str, status: str, counted: bool
) -> None:
    record = store.ledger.reserve(make_record(store.clock, "0.40 USD"), [])
    settled = getattr(store.ledger, settle)(record.id, "the server went away")
    assert (settled.status, settled.reason) == (status, "the server went away")
    assert store.ledger.records() == [settled]
    assert store.ledger.spent("USD") == (USD("0.40 USD") if counted else USD("0 USD"))


@pytest.mark.parametrize("to", ["committed", "released"])
@pytest.mark.parametrize("start", ["unknown", "reserved"])
def test_resolve_settles_unknown_and_leftover_reservations(
    store: Store, start: str, to: str
) -> None:
    record = store.ledger.reserve(make_record(store.clock), [])
    if start == "unknown":
        store.ledger.mark_unknown(record.id, "timeout")
    store.clock.advance(hours=1)
    proof = receipt("tx-late") if to == "committed" else None
    resolved = store.ledger.resolve(record.id, to, "checked with the merchant", receipt=proof)  # type: ignore[arg-type]
    assert (resolved.status, resolved.reason, resolved.receipt) == (
        to,
        "checked with the merchant",
        proof,
    )
    assert resolved.updated_at == store.clock()
    assert store.ledger.records() == [resolved]
    with pytest.raises(PaymentError, match=f"already {to}"):
        store.ledger.resolve(record.id, "released", "again")


def test_settling_twice_or_unknown_ids_is_an_error_and_changes_nothing(store: Store) -> None:
    ledger = store.ledger
    paid = ledger.reserve(make_record(store.clock), [])
    paid = ledger.commit(paid.id, receipt())
    dropped = ledger.reserve(make_record(store.clock), [])
    dropped = ledger.release(dropped.id, "declined")
    before = ledger.records()
    events = len(store.raw.events()) if store.raw else 0
    for attempt in (
        lambda: ledger.commit(paid.id, receipt("tx-2")),
        lambda: ledger.release(paid.id, "oops"),
        lambda: ledger.mark_unknown(paid.id, "oops"),
        lambda: ledger.commit(dropped.id, None),
        lambda: ledger.mark_unknown(dropped.id, "oops"),
        lambda: ledger.resolve(dropped.id, "committed", "oops"),
    ):
        with pytest.raises(PaymentError, match=r"is already (committed|released)"):
            attempt()
    for attempt in (
        lambda: ledger.commit("nope", None),
        lambda: ledger.release("nope", "x"),
        lambda: ledger.mark_unknown("nope", "x"),
        lambda: ledger.resolve("nope", "released", "x"),
    ):
        with pytest.raises(PaymentError, match="no ledger record 'nope'"):
            attempt()
    assert ledger.records() == before
    if store.raw:
        assert len(store.raw.events()) == events  # failed calls log nothing


@pytest.mark.parametrize("status", ["unknown", "reserved", "paid", ""])
def test_resolve_only_to_committed_or_released(store: Store, status: str) -> None:
    record = store.ledger.reserve(make_record(store.clock), [])
    store.ledger.mark_unknown(record.id, "timeout")
    with pytest.raises(ValueError, match="resolve to 'committed' or 'released'"):
        store.ledger.resolve(record.id, status, "x")  # type: ignore[arg-type]
    assert store.ledger.records()[0].status == "unknown"


# -- budgets and rates ------------------------------------------------------------------


def test_budget_exactly_at_the_cap_then_one_unit_over(store: Store) -> None:
    ledger, clock = store.ledger, store.clock
    budget = Limit("daily", cap=USD("1.00 USD"))
    ledger.commit(ledger.reserve(make_record(clock, "0.75 USD"), [budget]).id, None)
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(make_record(clock, "0.26 USD"), [budget])
    message = str(info.value)
    assert "budget 'daily' of 1.00 USD" in message
    assert re.search(r"0\.75\d* USD already spent or held", message), message
    assert remains(info) == USD("0.25 USD")
    ledger.reserve(make_record(clock, "0.25 USD"), [budget])  # exactly at the cap
    assert ledger.spent("USD") == USD("1.00 USD")
    with pytest.raises(BudgetExceeded, match="budget 'daily'") as info:
        ledger.reserve(make_record(clock, "0.01 USD"), [budget])
    assert remains(info) == USD("0 USD")
    assert len(ledger.records()) == 2  # refusals hold nothing


def test_one_base_unit_over_in_six_decimals(store: Store) -> None:
    budget = Limit("b", cap=USD("1.00 USD"))
    store.ledger.reserve(make_record(store.clock, "0.75 USD"), [budget])
    with pytest.raises(BudgetExceeded) as info:
        store.ledger.reserve(make_record(store.clock, "0.250001 USD"), [budget])
    assert remains(info) == USD("0.25 USD")
    store.ledger.reserve(make_record(store.clock, "0.250000 USD"), [budget])


def test_budget_scopes_payee_method_and_since(store: Store) -> None:
    ledger, clock = store.ledger, store.clock
    ledger.reserve(make_record(clock, "0.90 USD", payee="a", method="dev"), [])
    ledger.reserve(make_record(clock, "0.90 USD", payee="b", method="tempo"), [])
    start = clock.advance(minutes=5)
    ledger.reserve(make_record(clock, "0.50 USD", payee="a", method="tempo"), [])
    per_payee = Limit("payee-a", cap=USD("1.50 USD"), payee="a")
    per_method = Limit("tempo", cap=USD("1.50 USD"), method="tempo")
    recent = Limit("recent", cap=USD("1.00 USD"), since=start)
    with pytest.raises(BudgetExceeded, match="'payee-a'") as info:
        ledger.reserve(make_record(clock, "0.11 USD", payee="a", method="x"), [per_payee])
    assert remains(info) == USD("0.10 USD")
    ledger.reserve(make_record(clock, "0.10 USD", payee="a", method="x"), [per_payee])
    # A limit for another payee or method does not apply at all.
    ledger.reserve(make_record(clock, "5.00 USD", payee="c", method="x"), [per_payee, per_method])
    with pytest.raises(BudgetExceeded, match="'tempo'") as info:
        ledger.reserve(make_record(clock, "0.20 USD", payee="c", method="tempo"), [per_method])
    assert remains(info) == USD("0.10 USD")
    # Since `start`: 0.50 + 0.10 + 5.00 (the older 0.90s do not count).
    with pytest.raises(BudgetExceeded, match="'recent'"):
        ledger.reserve(make_record(clock, "0.01 USD", payee="z"), [recent])
    ledger.reserve(
        make_record(clock, "0.01 USD", payee="z"), [Limit("r", USD("5.62 USD"), since=start)]
    )


def test_a_charge_in_another_currency_cannot_use_a_budget(store: Store) -> None:
    with pytest.raises(BudgetExceeded, match="cannot count against budget 'b' kept in USD"):
        store.ledger.reserve(make_record(store.clock, "0.10 EUR"), [Limit("b", USD("5 USD"))])
    assert store.ledger.records() == []


def test_rate_limit_counts_payments(store: Store) -> None:
    ledger, clock = store.ledger, store.clock
    rate = Limit("rate", max_count=2)
    first = ledger.reserve(make_record(clock), [rate])
    ledger.reserve(make_record(clock), [rate])
    with pytest.raises(BudgetExceeded, match=r"rate limit 'rate': at most 2 payments, 2 already"):
        ledger.reserve(make_record(clock), [rate])
    ledger.release(first.id, "declined")  # released payments do not count
    ledger.reserve(make_record(clock), [rate])
    # A window only counts what is inside it.
    since = clock.advance(minutes=1)
    windowed = Limit("per-minute", max_count=1, since=since)
    ledger.reserve(make_record(clock), [windowed])
    with pytest.raises(BudgetExceeded, match="'per-minute'"):
        ledger.reserve(make_record(clock), [windowed])


def test_rate_limit_with_a_cap_counts_payments_in_every_currency(store: Store) -> None:
    """``max_count`` bounds the number of payments, whatever their currency."""
    ledger = store.ledger
    ledger.reserve(make_record(store.clock, "1 EUR"), [])
    both = Limit("both", cap=USD("10 USD"), max_count=2)
    ledger.reserve(make_record(store.clock, "1 USD"), [both])
    with pytest.raises(BudgetExceeded, match="at most 2 payments, 2 already"):
        ledger.reserve(make_record(store.clock, "1 USD"), [both])


def test_reserved_and_unknown_count_released_does_not(store: Store) -> None:
    ledger, clock = store.ledger, store.clock
    budget = Limit("b", cap=USD("1.00 USD"))
    ledger.reserve(make_record(clock, "0.50 USD"), [budget])
    unsure = ledger.reserve(make_record(clock, "0.30 USD"), [budget])
    ledger.mark_unknown(unsure.id, "timeout")
    dropped = ledger.reserve(make_record(clock, "0.20 USD"), [budget])
    ledger.release(dropped.id, "declined")
    assert ledger.spent("USD") == USD("0.80 USD")
    assert ledger.count() == 2
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(make_record(clock, "0.21 USD"), [budget])
    assert remains(info) == USD("0.20 USD")
    ledger.resolve(unsure.id, "released", "it was not paid")
    ledger.reserve(make_record(clock, "0.50 USD"), [budget])
    assert ledger.spent("USD") == USD("1.00 USD")


def test_mixed_decimals_against_one_cap(store: Store) -> None:
    ledger, clock = store.ledger, store.clock
    budget = Limit("b", cap=USD("1.00 USD"))
    for charge in ("0.25 USD", "0.500000 USD", "0.249999 USD"):
        ledger.reserve(make_record(clock, charge), [budget])
    assert ledger.spent("USD") == USD("0.999999 USD")
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(make_record(clock, "0.01 USD"), [budget])
    assert remains(info) == USD("0.000001 USD")
    ledger.reserve(make_record(clock, "0.000001 USD"), [budget])
    assert ledger.spent("USD") == USD("1.00 USD")
    # A cap written with six decimals, charges with two.
    fine = Limit("fine", cap=USD("1.000001 USD"))
    ledger.reserve(make_record(clock, "0.000001 USD"), [fine])
    with pytest.raises(BudgetExceeded, match="'fine'") as info:
        ledger.reserve(make_record(clock, "0.01 USD"), [fine])
    assert remains(info) == USD("0 USD")


def test_eighteen_decimal_charges_are_never_undercounted(store: Store) -> None:
    """SQL stores count billionths, rounding up: a hair high, never low."""
    ledger, clock = store.ledger, store.clock
    tiny = Amount(1, "USD", 18)  # 0.000000000000000001 USD
    one_nano = USD("0.000000001 USD")
    ledger.reserve(make_record(clock, tiny), [Limit("nano", cap=one_nano)])
    spent = ledger.spent("USD")
    assert spent >= tiny
    if store.durable:
        assert spent == one_nano  # rounded up to the next billionth
        assert to_nano(Amount(10**9 + 1, "USD", 18)) == 2
        with pytest.raises(BudgetExceeded, match="'nano'"):
            ledger.reserve(make_record(clock, tiny), [Limit("nano", cap=one_nano)])
    else:
        assert spent == tiny  # exact
        ledger.reserve(make_record(clock, tiny), [Limit("nano", cap=one_nano)])
    # Either way a full cap's worth more never fits.
    with pytest.raises(BudgetExceeded):
        ledger.reserve(make_record(clock, one_nano), [Limit("nano", cap=one_nano)])
    # The record keeps the exact amount; only the budget column is rounded.
    assert ledger.records()[0].charge == tiny
    assert ledger.records()[0].charge.decimals == 18


def test_a_cap_with_more_than_nine_decimals_is_never_overcounted(store: Store) -> None:
    """SQL stores round a cap down to whole billionths: room is never overstated."""
    cap = Limit("c", cap=USD("0.0000000019 USD"))
    store.ledger.reserve(make_record(store.clock, "0.000000001 USD"), [cap])
    more = make_record(store.clock, "0.0000000009 USD")
    if store.durable:  # the cap counts as 0.000000001 USD: no room left
        with pytest.raises(BudgetExceeded, match="'c'"):
            store.ledger.reserve(more, [cap])
    else:  # exact: 0.0000000019 USD is exactly the cap
        store.ledger.reserve(more, [cap])


def test_a_charge_too_large_for_the_sql_column_is_refused_cleanly(store: Store) -> None:
    """Billionths are kept in a 64-bit integer: beyond it, a PaymentError (not a crash)."""
    huge = make_record(store.clock, "10000000000.00 USD")  # 10^19 billionths
    if store.durable:
        with pytest.raises(PaymentError, match="too large for the ledger"):
            store.ledger.reserve(huge, [])
        assert store.ledger.records() == []
    else:
        store.ledger.reserve(huge, [])
    store.ledger.reserve(make_record(store.clock, "9000000000.00 USD"), [])  # fits


# -- spend and history queries ----------------------------------------------------------


def _history(store: Store) -> dict[str, PaymentRecord]:
    """A payee/method/time spread: returns the records by name."""
    ledger, clock = store.ledger, store.clock
    made: dict[str, PaymentRecord] = {}

    def add(name: str, charge: str, payee: str, method: str, end: str | None) -> None:
        record = make_record(clock, charge, payee=payee, method=method, tick=False)
        record = ledger.reserve(record, [])
        if end == "commit":
            record = ledger.commit(record.id, receipt(name))
        elif end == "release":
            record = ledger.release(record.id, "declined")
        elif end == "unknown":
            record = ledger.mark_unknown(record.id, "timeout")
        made[name] = record
        clock.advance(minutes=10)

    add("a1", "0.10 USD", "a", "dev", "commit")
    add("a2", "0.20 USD", "a", "tempo", "commit")
    add("b1", "0.30 USD", "b", "dev", "release")
    add("a3", "0.40 USD", "a", "dev", "unknown")
    add("b2", "1.00 EUR", "b", "dev", "commit")
    add("a4", "0.05 USD", "a", "dev", None)
    add("a5", "0.000001 USD", "a", "tempo", "commit")
    return made


def test_spent_by_window_payee_and_method(store: Store) -> None:
    _history(store)
    spent = store.ledger.spent
    assert spent("USD") == USD("0.750001 USD")  # a1 + a2 + a3 (unknown) + a4 (held) + a5
    assert spent("EUR") == USD("1.00 EUR")
    assert spent("JPY") == USD("0 JPY")
    assert spent("USD", payee="a") == USD("0.750001 USD")
    assert spent("USD", payee="b") == USD("0 USD")  # b1 released
    assert spent("USD", method="tempo") == USD("0.200001 USD")
    assert spent("USD", payee="a", method="dev") == USD("0.55 USD")
    # One record every 10 minutes from T0 (a1) to T0 + 60 (a5); it is now T0 + 70.
    assert spent("USD", window=timedelta(minutes=10)) == USD("0.000001 USD")
    assert spent("USD", window=timedelta(minutes=20)) == USD("0.050001 USD")
    assert spent("USD", window=timedelta(minutes=40)) == USD("0.450001 USD")
    assert spent("USD", window=timedelta(minutes=40), method="dev") == USD("0.45 USD")


def test_history_queries(store: Store) -> None:
    made = _history(store)
    ledger = store.ledger
    assert ledger.count() == 6  # all but the released one
    assert ledger.count(payee="a") == 5
    assert ledger.count(payee="b") == 1
    assert ledger.count(method="tempo") == 2
    assert ledger.count(since=made["a3"].created_at) == 4
    assert ledger.count(since=made["a3"].created_at + timedelta(microseconds=1)) == 3
    assert ledger.count(since=T0, payee="a", method="dev") == 3
    assert ledger.recent_charges("a", 10) == [USD("0.000001 USD"), USD("0.20 USD"), USD("0.10 USD")]
    assert ledger.recent_charges("a", 2) == [USD("0.000001 USD"), USD("0.20 USD")]
    assert ledger.recent_charges("b", 5) == [USD("1.00 EUR")]
    assert ledger.recent_charges("nobody", 5) == []
    assert ledger.has_paid("a") and ledger.has_paid("b")
    assert not ledger.has_paid("nobody")
    # a5 (committed) is the newest for "a": no streak.
    assert ledger.failure_streak("a") == (0, None)


def test_has_paid_counts_committed_and_unknown_only(store: Store) -> None:
    ledger, clock = store.ledger, store.clock
    ledger.reserve(make_record(clock, payee="held"), [])
    ledger.release(ledger.reserve(make_record(clock, payee="dropped"), []).id, "no")
    ledger.mark_unknown(ledger.reserve(make_record(clock, payee="unsure"), []).id, "timeout")
    assert not ledger.has_paid("held")
    assert not ledger.has_paid("dropped")
    assert ledger.has_paid("unsure")


def test_failure_streak_counts_trailing_unknowns(store: Store) -> None:
    ledger, clock = store.ledger, store.clock
    assert ledger.failure_streak("m") == (0, None)
    ledger.commit(ledger.reserve(make_record(clock, payee="m"), []).id, None)
    first = ledger.reserve(make_record(clock, payee="m"), [])
    clock.advance(seconds=7)
    ledger.mark_unknown(first.id, "timeout")
    ledger.release(ledger.reserve(make_record(clock, payee="m"), []).id, "no")  # not a failure
    ledger.reserve(make_record(clock, payee="m"), [])  # held: not an outcome yet
    second = ledger.reserve(make_record(clock, payee="m"), [])
    clock.advance(seconds=7)
    settled = ledger.mark_unknown(second.id, "timeout")
    ledger.mark_unknown(ledger.reserve(make_record(clock, payee="other"), []).id, "x")
    assert ledger.failure_streak("m") == (2, settled.updated_at)
    assert ledger.failure_streak("other")[0] == 1
    ledger.commit(ledger.reserve(make_record(clock, payee="m"), []).id, None)
    assert ledger.failure_streak("m") == (0, None)


# -- records ------------------------------------------------------------------------------


def full_record(store: Store) -> PaymentRecord:
    """A record with every field set, signed by the store's agent as the flow does."""
    decision = Decision(
        outcome="allow",
        rules=(
            RuleResult("per_call", True, "0.25 USD is within the per-call cap 1.00 USD"),
            RuleResult("new_payee", False, "first payment to merchant-a", approval=True),
        ),
        charge=USD("0.25 USD"),
        mode="shadow",
        shadow=Decision("deny", rules=(RuleResult("budget", False, "over the daily budget"),)),
    )
    record = make_record(
        store.clock,
        "0.25 USD",
        amount=Amount(250000, "USDC", 6),
        method="tempo",
        http_method="POST",
        url="https://api.test/v1/search?q=REDACTED&page=REDACTED",
        realm="api.test",
        intent="charge",
        decision=decision,
        purpose="nightly report ✓",
        tags={"job": "report-7", "team": "data"},
        agent=store.agent.did,
    )
    return dataclasses.replace(record, signature=sign_record(store.agent, record.decision_record()))


def test_records_round_trip_every_field(store: Store) -> None:
    record = full_record(store)
    store.ledger.reserve(record, [])
    store.clock.advance(seconds=2)
    proof = receipt("0xabc", txHash="0xabc", extra={"nested": [1, "two", None]})
    paid = store.ledger.commit(record.id, proof)
    expected = record.with_status("committed", now=store.clock(), receipt=proof)
    (stored,) = store.ledger.records()
    assert stored == expected == paid
    assert PaymentRecord.from_dict(json.loads(json.dumps(stored.to_dict()))) == stored
    assert stored.receipt is not None and stored.receipt.data["extra"] == {
        "nested": [1, "two", None]
    }
    assert stored.agent == store.agent.did and stored.signature is not None
    assert verify_record(store.agent.did, stored.decision_record(), stored.signature)
    assert stored.decision_record() == record.decision_record()  # fixed at reservation
    if isinstance(store.ledger, SqlLedger):
        assert store.ledger.get(record.id) == stored
        assert store.ledger.get("nope") is None


def test_records_are_oldest_first(store: Store) -> None:
    ids = [store.ledger.reserve(make_record(store.clock), []).id for _ in range(5)]
    assert [r.id for r in store.ledger.records()] == ids


# -- durable stores: persistence and opening ----------------------------------------------


def test_reopened_store_has_the_same_records_and_budgets(durable: Store) -> None:
    ledger, clock = durable.sql, durable.clock
    budget = Limit("b", cap=USD("1.00 USD"))
    record = full_record(durable)
    ledger.reserve(record, [budget])
    ledger.commit(record.id, receipt())
    unsure = ledger.reserve(make_record(clock, "0.50 USD"), [budget])
    ledger.mark_unknown(unsure.id, "timeout")
    assert durable.reopen is not None
    again = durable.reopen()
    try:
        assert again.records() == ledger.records()
        assert [r.to_dict() for r in again.records()] == [r.to_dict() for r in ledger.records()]
        assert again.spent("USD") == USD("0.75 USD")
        with pytest.raises(BudgetExceeded) as info:
            again.reserve(make_record(clock, "0.26 USD"), [budget])
        assert remains(info) == USD("0.25 USD")
        again.reserve(make_record(clock, "0.25 USD"), [budget])
        # Both handles see each other's writes and extend one chain.
        with pytest.raises(BudgetExceeded):
            ledger.reserve(make_record(clock, "0.01 USD"), [budget])
        report = again.verify(trusted_agents=[durable.agent.did], require_signatures=True)
        assert report.ok, report
        assert report.events == 5
    finally:
        again.close()  # type: ignore[attr-defined]


def test_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    ledger.reserve(make_record(Clock()), [])
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        for sidecar in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if sidecar.exists():  # SQLite gives them the database file's mode
                assert stat.S_IMODE(os.stat(sidecar).st_mode) & 0o077 == 0
    finally:
        ledger.close()


def test_sqlite_cannot_open_a_directory(tmp_path: Path) -> None:
    with pytest.raises(PaymentError, match="cannot open the ledger"):
        SqliteLedger(tmp_path)


def test_default_path_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "env" / "ledger.sqlite3"
    monkeypatch.setenv("MPP_CLIENT_LEDGER", str(target))
    assert default_ledger_path() == target
    agent = AgentKey.generate()
    ledger = open_ledger(None, agent_key=agent)
    try:
        assert isinstance(ledger, SqliteLedger) and ledger.path == target
        ledger.reserve(make_record(Clock()), [])
        assert target.exists()
        report = ledger.verify(trusted_agents=[agent.did], require_signatures=True)
        assert report.ok and report.signed == 1
    finally:
        ledger.close()
    monkeypatch.setenv("MPP_CLIENT_LEDGER", "~/ledger.sqlite3")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_ledger_path() == tmp_path / "ledger.sqlite3"
    monkeypatch.delenv("MPP_CLIENT_LEDGER")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_ledger_path() == tmp_path / "xdg" / "mpp-client" / "ledger.sqlite3"


def test_open_ledger_by_description(tmp_path: Path) -> None:
    assert isinstance(open_ledger("memory:"), MemoryLedger)
    mine = MemoryLedger()
    assert open_ledger(mine) is mine
    for target in (f"sqlite:///{tmp_path}/a.sqlite3", tmp_path / "b.sqlite3", str(tmp_path / "c")):
        ledger = open_ledger(target)
        try:
            assert isinstance(ledger, SqliteLedger)
            assert ledger.path.parent == tmp_path
            assert ledger.path.exists()
        finally:
            ledger.close()


@pytest.mark.skipif(_NO_PG is not None, reason=f"PostgreSQL store: {_NO_PG}")
def test_open_ledger_postgres_url() -> None:
    import psycopg

    # open_ledger uses the default prefix: keep its tables in a schema of their own.
    schema = f"s{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        agent = AgentKey.generate()
        for scheme in ("postgresql://", "postgres://"):
            url = PG_URL.replace("postgresql://", scheme, 1)
            ledger = open_ledger(f"{url}?options=-csearch_path%3D{schema}", agent_key=agent)
            try:
                assert isinstance(ledger, PostgresLedger)
                ledger.reserve(make_record(Clock()), [])
                report = ledger.verify(trusted_agents=[agent.did], require_signatures=True)
                assert report.ok, report
            finally:
                ledger.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            ).fetchall()
        assert sorted(t[0] for t in tables) == ["mpp_audit", "mpp_checkpoints", "mpp_payments"]
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_postgres_connection_failure_names_no_password() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(PaymentError) as info:
        PostgresLedger("postgresql://agent:hunter2@127.0.0.1:1/nowhere?connect_timeout=2")
    assert "hunter2" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.skipif(_NO_PG is not None, reason=f"PostgreSQL store: {_NO_PG}")
def test_postgres_verify_is_consistent_while_another_agent_writes() -> None:
    """verify() reads one snapshot: a fleet writing meanwhile is not tampering."""
    agent = AgentKey.generate()
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    reader = PostgresLedger(PG_URL, prefix=prefix, agent_key=agent)
    writer = PostgresLedger(PG_URL, prefix=prefix, agent_key=agent)
    clock = Clock()
    stop = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            while not stop.is_set():
                record = writer.reserve(make_record(clock), [])
                writer.commit(record.id, None)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)
        finally:
            writer.close()

    thread = threading.Thread(target=write)
    thread.start()
    reports = []
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            reports.append(reader.verify(trusted_agents=[agent.did], require_signatures=True))
    finally:
        stop.set()
        thread.join()
        reader.drop()
        reader.close()
    assert not failures
    bad = [str(r) for r in reports if not r.ok]
    assert not bad, bad[:3]
    assert reports[-1].events > 10


# -- the audit log: verify and tamper evidence --------------------------------------------


def activity(store: Store) -> dict[str, str]:
    """Every kind of event, with checkpoints at 4 and 8 and one taken at 11.

    seq 1-2: r1 reserve, commit | 3-4: r2 reserve, release | 5-6: r3 reserve, unknown
    7-8: r4 reserve, unknown | 9: r4 resolve | 10: refusal | 11: r5 reserve (held)
    Counted: r1 0.25 + r3 0.30 + r4 0.05 + r5 0.40 = the 1.00 USD budget.
    """
    ledger, clock = store.sql, store.clock
    budget = [Limit("budget", cap=USD("1.00 USD"))]
    ids: dict[str, str] = {}

    def reserve(name: str, charge: str) -> str:
        ids[name] = ledger.reserve(make_record(clock, charge), budget).id
        return ids[name]

    ledger.commit(reserve("r1", "0.25 USD"), receipt("tx-r1"))
    ledger.release(reserve("r2", "0.10 USD"), "declined")
    ledger.mark_unknown(reserve("r3", "0.30 USD"), "timeout")
    ledger.mark_unknown(reserve("r4", "0.05 USD"), "timeout")
    ledger.resolve(ids["r4"], "committed", "the merchant confirmed", receipt=receipt("tx-r4"))
    ledger.log_refusal(make_record(clock, "5.00 USD"), "5.00 USD exceeds the per-call cap")
    reserve("r5", "0.40 USD")
    ledger.checkpoint()
    return ids


def test_verify_accepts_an_untouched_log(durable: Store) -> None:
    activity(durable)
    report = durable.sql.verify(trusted_agents=[durable.agent.did], require_signatures=True)
    assert report.ok, report
    assert (report.events, report.signed, report.checkpoints) == (11, 11, 3)
    assert str(report) == "ledger verified: 11 events (11 signed), 3 checkpoints"
    assert durable.raw is not None
    kinds = [e[1] for e in durable.raw.events()]
    assert kinds == [
        "reserve",
        "commit",
        "reserve",
        "release",
        "reserve",
        "unknown",
        "reserve",
        "unknown",
        "resolve",
        "refusal",
        "reserve",
    ]
    assert durable.ledger.spent("USD") == USD("1.00 USD")


def test_verify_without_an_agent_key(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "unsigned.sqlite3")
    try:
        ledger.commit(ledger.reserve(make_record(Clock()), []).id, None)
        assert ledger.verify().ok
        report = ledger.verify(require_signatures=True)
        assert report.problems == ["event 1: unsigned", "event 2: unsigned"]
        proof = ledger.inclusion_proof(ledger.records()[0].id)
        assert proof["checkpoint"]["signature"] is None
        assert not verify_exported_proof(proof, trusted_agents=[AgentKey.generate().did])
    finally:
        ledger.close()


Tamper = Callable[[Store, Raw, dict[str, str]], list[str]]


def _body(raw: Raw, seq: int) -> dict[str, Any]:
    (row,) = raw.execute(f"SELECT body FROM {raw.audit} WHERE seq = ?", (seq,))
    return json.loads(row[0])  # type: ignore[no-any-return]


def _set_body(raw: Raw, seq: int, body: dict[str, Any], *, rehash: bool) -> None:
    text = canonical_json(body).decode()
    if rehash:
        raw.execute(
            f"UPDATE {raw.audit} SET body = ?, hash = ? WHERE seq = ?",
            (text, hashlib.sha256(text.encode()).hexdigest(), seq),
        )
    else:
        raw.execute(f"UPDATE {raw.audit} SET body = ? WHERE seq = ?", (text, seq))


def _hash(raw: Raw, seq: int) -> str:
    (row,) = raw.execute(f"SELECT hash FROM {raw.audit} WHERE seq = ?", (seq,))
    return str(row[0])


def _append_forged(
    raw: Raw, seq: int, prev: str, agent: AgentKey | None, kind: str, record: dict[str, Any]
) -> None:
    event = make_event(
        seq=seq,
        at=datetime(2026, 11, 21, 13, tzinfo=UTC),
        kind=kind,
        record=record,
        prev=prev,
        agent=agent,
        record_id=record["id"],
    )
    raw.execute(
        f"INSERT INTO {raw.audit} (seq, at_us, kind, record_id, body, hash, agent, signature) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            seq,
            0,
            kind,
            event.record_id,
            event.body.decode(),
            event.hash,
            event.agent,
            event.signature,
        ),
    )


def _set_payment(raw: Raw, record: dict[str, Any], **columns: Any) -> None:
    """Rewrite one payments row to match ``record`` (what a careful forger would do)."""
    raw.execute(
        f"UPDATE {raw.payments} SET status = ?, record = ?, charge_nano = ? WHERE id = ?",
        (
            record["status"],
            json.dumps(record),
            to_nano(PaymentRecord.from_dict(record).charge),
            columns.get("id", record["id"]),
        ),
    )


def t_body_modified(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    (row,) = raw.execute(f"SELECT body FROM {raw.audit} WHERE seq = 1")
    text = row[0].replace('"amount":"0.25 USD"', '"amount":"0.01 USD"', 1)
    assert text != row[0]
    raw.execute(f"UPDATE {raw.audit} SET body = ? WHERE seq = 1", (text,))
    return [
        "event 1: content does not match its hash (modified)",
        "checkpoint at 4: tree head does not match the events (history rewritten)",
    ]


def t_body_and_hash_rewritten(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    body = _body(raw, 1)
    body["record"]["amount"] = body["record"]["charge"] = "0.01 USD"
    body["record"]["charge_units"] = "1"
    _set_body(raw, 1, body, rehash=True)
    return ["event 1: bad signature", "event 2: does not follow the previous event"]


def t_event_deleted(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    raw.execute(f"DELETE FROM {raw.audit} WHERE seq = 5")
    return ["event 6: expected event 5, missing (deleted?)", "event 6: does not follow"]


def t_events_swapped(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    raw.execute(f"UPDATE {raw.audit} SET seq = -5 WHERE seq = 5")
    raw.execute(f"UPDATE {raw.audit} SET seq = 5 WHERE seq = 6")
    raw.execute(f"UPDATE {raw.audit} SET seq = 6 WHERE seq = -5")
    return ["event 5: body says seq 6 (moved)", "event 5: does not follow", "reordered"]


def t_event_inserted(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    # Make room after event 5, then slip in an event that says r3 was released.
    raw.execute(f"UPDATE {raw.audit} SET seq = -seq WHERE seq >= 6")
    raw.execute(f"UPDATE {raw.audit} SET seq = 1 - seq WHERE seq < 0")
    record = dict(_body(raw, 5)["record"], status="released", reason="forged")
    _append_forged(raw, 6, _hash(raw, 5), None, "release", record)
    return [
        "event 6: unsigned",
        "event 7: body says seq 6 (moved)",
        "event 7: does not follow the previous event",
    ]


def t_event_inserted_signed_by_stranger(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    # A well-formed release of r5 appended at the end, with its payments row to
    # match: only the signer gives it away.
    stranger = AgentKey.generate()
    record = dict(_body(raw, 11)["record"], status="released", reason="forged")
    _append_forged(raw, 12, _hash(raw, 11), stranger, "release", record)
    _set_payment(raw, record)
    assert store.ledger.spent("USD") == USD("0.60 USD")  # budget freed
    # Only the list of trusted agents catches it.
    assert store.sql.verify().ok
    return [f"event 12: signed by untrusted agent {stranger.did}"]


def t_bad_signature(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    (row,) = raw.execute(f"SELECT signature FROM {raw.audit} WHERE seq = 4")
    raw.execute(f"UPDATE {raw.audit} SET signature = ? WHERE seq = 3", (row[0],))
    return ["event 3: bad signature"]


def t_signature_stripped(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    raw.execute(f"UPDATE {raw.audit} SET agent = NULL, signature = NULL WHERE seq = 3")
    return ["event 3: unsigned"]


def t_log_truncated(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    raw.execute(f"DELETE FROM {raw.audit} WHERE seq >= 10")
    return ["checkpoint at 11: the log is shorter than this checkpoint (truncated)"]


def t_checkpoint_root_changed(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    raw.execute(f"UPDATE {raw.checkpoints} SET root = ? WHERE tree_size = 8", ("ab" * 32,))
    return [
        "checkpoint at 8: tree head does not match the events",
        "checkpoint at 8: bad signature",
    ]


def t_body_not_an_object(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    raw.execute(f"UPDATE {raw.audit} SET body = ? WHERE seq = 3", ("[1, 2]",))
    return ["event 3: content does not match its hash", "event 3: body is not a JSON object"]


def t_status_freed(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    raw.execute(f"UPDATE {raw.payments} SET status = 'released' WHERE id = ?", (ids["r1"],))
    assert store.ledger.spent("USD") == USD("0.75 USD")  # the budget is freed...
    return [f"payment {ids['r1']}: state differs from audit event 2 (modified)"]


def t_status_and_record_freed(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    record = dict(_body(raw, 2)["record"], status="released")
    _set_payment(raw, record)
    return [f"payment {ids['r1']}: state differs from audit event 2 (modified)"]


def t_charge_lowered(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    raw.execute(f"UPDATE {raw.payments} SET charge_nano = 1 WHERE id = ?", (ids["r1"],))
    assert store.ledger.spent("USD") < USD("1.00 USD")
    return [f"payment {ids['r1']}: charge differs from the audit log"]


def _budget_column(column: str, value: Any) -> Tamper:
    def tamper(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
        raw.execute(f"UPDATE {raw.payments} SET {column} = ? WHERE id = ?", (value, ids["r1"]))
        return [f"payment {ids['r1']}: state differs from audit event 2 (modified)"]

    return tamper


def t_payment_record_garbled(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    raw.execute(f"UPDATE {raw.payments} SET record = 'not json' WHERE id = ?", (ids["r3"],))
    return [f"payment {ids['r3']}: state differs from audit event 6 (modified)"]


def t_payment_deleted(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    raw.execute(f"DELETE FROM {raw.payments} WHERE id = ?", (ids["r1"],))
    return [f"payment {ids['r1']}: in audit event 2 but deleted"]


def t_payment_inserted(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    raw.execute(
        f"INSERT INTO {raw.payments} (id, created_us, updated_us, status, payee, method, "
        "currency, charge_nano, record) SELECT ?, created_us, updated_us, status, payee, method, "
        f"currency, charge_nano, record FROM {raw.payments} WHERE id = ?",
        ("ghost", ids["r5"]),
    )
    return ["payment ghost: no audit event records it"]


def t_audit_record_id_repointed(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    # Point r2's release event at r1, and make both payments rows agree with
    # what the log then says about them: r1 "released", r2 back to "reserved".
    released_r2 = _body(raw, 4)["record"]
    reserved_r2 = _body(raw, 3)["record"]
    raw.execute(f"UPDATE {raw.audit} SET record_id = ? WHERE seq = 4", (ids["r1"],))
    _set_payment(raw, released_r2, id=ids["r1"])
    _set_payment(raw, reserved_r2)
    assert store.ledger.spent("USD") == USD("0.85 USD")  # 0.25 freed, 0.10 held
    return [f"payment {ids['r1']}: state differs from audit event 4 (modified)"]


def t_malformed_record_rewritten(store: Store, raw: Raw, ids: dict[str, str]) -> list[str]:
    # A forger rewrites event 2 (and its hash) and the payments row to a stub:
    # verify must report it, not crash on it.
    body = _body(raw, 2)
    body["record"] = {"id": ids["r1"], "status": "released"}
    _set_body(raw, 2, body, rehash=True)
    raw.execute(
        f"UPDATE {raw.payments} SET status = 'released', record = ? WHERE id = ?",
        (json.dumps(body["record"]), ids["r1"]),
    )
    return ["event 2: bad signature", "event 3: does not follow", f"payment {ids['r1']}:"]


TAMPERS: dict[str, Tamper] = {
    "body-modified": t_body_modified,
    "body-and-hash-rewritten": t_body_and_hash_rewritten,
    "event-deleted": t_event_deleted,
    "events-swapped": t_events_swapped,
    "event-inserted": t_event_inserted,
    "event-signed-by-stranger": t_event_inserted_signed_by_stranger,
    "bad-signature": t_bad_signature,
    "signature-stripped": t_signature_stripped,
    "log-truncated": t_log_truncated,
    "checkpoint-root-changed": t_checkpoint_root_changed,
    "body-not-an-object": t_body_not_an_object,
    "payment-status-freed": t_status_freed,
    "payment-status-and-record-freed": t_status_and_record_freed,
    "payment-charge-lowered": t_charge_lowered,
    "payment-created-moved": _budget_column("created_us", 0),
    "payment-currency-changed": _budget_column("currency", "EUR"),
    "payment-payee-changed": _budget_column("payee", "elsewhere"),
    "payment-method-changed": _budget_column("method", "other"),
    "payment-record-garbled": t_payment_record_garbled,
    "payment-deleted": t_payment_deleted,
    "payment-inserted": t_payment_inserted,
    "audit-record-id-repointed": t_audit_record_id_repointed,
    "malformed-record-rewritten": t_malformed_record_rewritten,
}


@pytest.mark.parametrize("case", list(TAMPERS))
def test_tampering_is_named(durable: Store, case: str) -> None:
    ids = activity(durable)
    assert problems_of(durable) == []
    assert durable.raw is not None
    expected = TAMPERS[case](durable, durable.raw, ids)
    problems = problems_of(durable)
    assert problems, f"{case} went unnoticed"
    for text in expected:
        assert any(text in p for p in problems), f"{text!r} not in {problems}"


# -- inclusion proofs ---------------------------------------------------------------------


def test_inclusion_proof_verifies_offline(durable: Store) -> None:
    ids = activity(durable)
    ledger, agent = durable.sql, durable.agent
    proof = ledger.inclusion_proof(ids["r1"])
    assert verify_exported_proof(proof, trusted_agents=[agent.did])
    assert verify_exported_proof(json.loads(json.dumps(proof)), trusted_agents=[agent.did])
    event = json.loads(proof["event"])
    assert (event["seq"], event["kind"], event["record"]["id"]) == (2, "commit", ids["r1"])
    assert event["record"]["status"] == "committed"
    assert proof["checkpoint"]["tree_size"] == 11  # the newest covering checkpoint
    assert proof["proof"]["index"] == 1
    # Each record's latest event.
    for name, seq in (("r2", 4), ("r3", 6), ("r4", 9), ("r5", 11)):
        other = ledger.inclusion_proof(ids[name])
        assert json.loads(other["event"])["seq"] == seq
        assert verify_exported_proof(other, trusted_agents=[agent.did])
    with pytest.raises(PaymentError, match="no audit event for payment 'nope'"):
        ledger.inclusion_proof("nope")


def test_inclusion_proof_takes_a_checkpoint_when_needed(durable: Store) -> None:
    ledger, raw = durable.sql, durable.raw
    assert raw is not None
    record = ledger.reserve(make_record(durable.clock), [])
    assert raw.execute(f"SELECT COUNT(*) FROM {raw.checkpoints}") == [(0,)]
    proof = ledger.inclusion_proof(record.id)
    assert raw.execute(f"SELECT COUNT(*) FROM {raw.checkpoints}") == [(1,)]
    assert proof["checkpoint"]["tree_size"] == 1 and proof["proof"]["path"] == []
    assert verify_exported_proof(proof, trusted_agents=[durable.agent.did])
    ledger.inclusion_proof(record.id)  # covered now: no new checkpoint
    assert raw.execute(f"SELECT COUNT(*) FROM {raw.checkpoints}") == [(1,)]
    assert ledger.verify(trusted_agents=[durable.agent.did], require_signatures=True).ok


def _flip(hex_text: str) -> str:
    return ("1" if hex_text[0] == "0" else "0") + hex_text[1:]


def _altered(proof: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    copy = json.loads(json.dumps(proof))
    change(copy)
    return copy


PROOF_CHANGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "event-text": lambda p: p.update(event=p["event"].replace("committed", "released")),
    "event-whitespace": lambda p: p.update(event=p["event"] + " "),
    "path-hash": lambda p: p["proof"]["path"].__setitem__(0, _flip(p["proof"]["path"][0])),
    "path-shortened": lambda p: p["proof"]["path"].pop(),
    "path-lengthened": lambda p: p["proof"]["path"].append("00" * 32),
    "proof-root": lambda p: p["proof"].update(root=_flip(p["proof"]["root"])),
    "both-roots": lambda p: (
        p["proof"].update(root=_flip(p["proof"]["root"])),
        p["checkpoint"].update(root=p["proof"]["root"]),
    ),
    "proof-tree-size": lambda p: p["proof"].update(tree_size=p["proof"]["tree_size"] + 1),
    "both-tree-sizes": lambda p: (
        p["proof"].update(tree_size=12),
        p["checkpoint"].update(tree_size=12),
    ),
    "index": lambda p: p["proof"].update(index=p["proof"]["index"] + 1),
    "leaf-hash": lambda p: p["proof"].update(leaf_hash=_flip(p["proof"]["leaf_hash"])),
    "checkpoint-signature": lambda p: p["checkpoint"].update(signature=b64url_encode(bytes(64))),
    "checkpoint-time": lambda p: p["checkpoint"].update(at="2030-01-01T00:00:00Z"),
    "checkpoint-unsigned": lambda p: p["checkpoint"].update(signature=None),
    "checkpoint-agent": lambda p: p["checkpoint"].update(agent=AgentKey.generate().did),
    "no-proof": lambda p: p.pop("proof"),
    "path-not-a-list": lambda p: p["proof"].update(path="00" * 32),
    "tree-size-not-int": lambda p: p["proof"].update(tree_size="11"),
}


@pytest.mark.parametrize("change", list(PROOF_CHANGES))
def test_altered_proofs_fail(durable: Store, change: str) -> None:
    ids = activity(durable)
    proof = durable.sql.inclusion_proof(ids["r1"])
    assert verify_exported_proof(proof, trusted_agents=[durable.agent.did])
    bad = _altered(proof, PROOF_CHANGES[change])
    assert not verify_exported_proof(bad, trusted_agents=[durable.agent.did])


def test_proofs_from_untrusted_agents_fail(durable: Store) -> None:
    ids = activity(durable)
    proof = durable.sql.inclusion_proof(ids["r3"])
    assert not verify_exported_proof(proof, trusted_agents=[AgentKey.generate().did])
    assert not verify_exported_proof(proof, trusted_agents=[])
    # A stranger re-signing the head does not help either.
    stranger = AgentKey.generate()
    cp = proof["checkpoint"]
    head = Checkpoint(cp["tree_size"], cp["root"], cp["at"]).signed_body()
    forged = _altered(
        proof,
        lambda p: p["checkpoint"].update(
            agent=stranger.did, signature=b64url_encode(stranger.sign(head))
        ),
    )
    assert verify_exported_proof(forged, trusted_agents=[stranger.did])  # well-formed...
    assert not verify_exported_proof(forged, trusted_agents=[durable.agent.did])  # ...untrusted


# -- exports and totals -------------------------------------------------------------------


def test_export_jsonl_is_the_log(durable: Store) -> None:
    activity(durable)
    assert durable.raw is not None
    stored = durable.raw.events()
    lines = list(durable.sql.export_jsonl())
    assert len(lines) == len(stored) == 11
    parsed = [json.loads(line) for line in lines]
    assert [p["seq"] for p in parsed] == list(range(1, 12))
    for line, entry, row in zip(lines, parsed, stored, strict=True):
        assert "\n" not in line
        assert set(entry) == {"seq", "event", "hash", "agent", "signature"}
        body = canonical_json(entry["event"])
        assert body.decode() == row[3]
        assert entry["hash"] == hashlib.sha256(body).hexdigest() == row[4]
        assert entry["agent"] == durable.agent.did
        assert verify_signature(durable.agent.did, body, b64url_decode(entry["signature"]))
        assert entry["event"]["kind"] == row[1]
    assert parsed[0]["event"]["prev"] == "0" * 64
    assert all(b["event"]["prev"] == a["hash"] for a, b in itertools.pairwise(parsed))
    assert parsed[9]["event"]["record"]["refusal"] == "5.00 USD exceeds the per-call cap"


def test_export_csv_has_one_row_per_payment(durable: Store) -> None:
    ids = activity(durable)
    record = full_record(durable)
    durable.sql.reserve(record, [])
    durable.sql.commit(record.id, receipt("0xfeed"))
    rows = list(csv.reader(io.StringIO(durable.sql.export_csv())))
    assert rows[0] == [
        "id",
        "created_at",
        "status",
        "http_method",
        "url",
        "realm",
        "method",
        "intent",
        "amount",
        "charge",
        "payee",
        "challenge_id",
        "purpose",
        "tags",
        "receipt_reference",
        "reason",
    ]
    by_id = {row[0]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert len(rows) == 7 and set(by_id) == {*ids.values(), record.id}
    full = by_id[record.id]
    assert full == {
        "id": record.id,
        "created_at": record.created_at.isoformat(),
        "status": "committed",
        "http_method": "POST",
        "url": "https://api.test/v1/search?q=REDACTED&page=REDACTED",
        "realm": "api.test",
        "method": "tempo",
        "intent": "charge",
        "amount": "0.250000 USDC",
        "charge": "0.25 USD",
        "payee": "merchant-a",
        "challenge_id": record.challenge_id,
        "purpose": "nightly report ✓",
        "tags": '{"job": "report-7", "team": "data"}',
        "receipt_reference": "0xfeed",
        "reason": "",
    }
    assert by_id[ids["r1"]]["receipt_reference"] == "tx-r1"
    assert by_id[ids["r2"]]["status"] == "released"
    assert by_id[ids["r2"]]["reason"] == "declined"
    assert by_id[ids["r3"]]["status"] == "unknown"
    assert by_id[ids["r5"]]["purpose"] == by_id[ids["r5"]]["tags"] == ""


def test_totals(durable: Store) -> None:
    ledger, clock = durable.sql, durable.clock

    def pay(charge: str, payee: str, method: str, job: str | None, end: str = "commit") -> None:
        tags = {"job": job} if job else {}
        record = ledger.reserve(
            make_record(clock, charge, payee=payee, method=method, tags=tags), []
        )
        if end == "commit":
            ledger.commit(record.id, None)
        elif end == "release":
            ledger.release(record.id, "no")
        elif end == "unknown":
            ledger.mark_unknown(record.id, "timeout")

    pay("0.10 USD", "a", "dev", "j1")
    pay("0.20 USD", "a", "tempo", "j2")
    pay("0.30 USD", "b", "dev", "j1", "release")
    midway = clock()
    pay("0.000001 USD", "b", "dev", "j1", "unknown")
    pay("1.00 EUR", "b", "dev", "j1")
    pay("0.05 USD", "c", "dev", None, "held")
    assert ledger.totals("USD", by="payee") == {
        "a": USD("0.30 USD"),
        "b": USD("0.000001 USD"),
        "c": USD("0.05 USD"),
    }
    assert ledger.totals("USD", by="method") == {
        "dev": USD("0.150001 USD"),
        "tempo": USD("0.20 USD"),
    }
    assert ledger.totals("USD", by="status") == {
        "committed": USD("0.30 USD"),
        "unknown": USD("0.000001 USD"),
        "reserved": USD("0.05 USD"),
    }
    assert ledger.totals("USD", by="tag:job") == {
        "j1": USD("0.100001 USD"),
        "j2": USD("0.20 USD"),
        "": USD("0.05 USD"),
    }
    assert ledger.totals("EUR", by="payee") == {"b": USD("1.00 EUR")}
    assert ledger.totals("USD", by="payee", since=midway) == {
        "b": USD("0.000001 USD"),
        "c": USD("0.05 USD"),
    }
    assert ledger.totals("JPY", by="payee") == {}
    with pytest.raises(ValueError, match="group by"):
        ledger.totals("USD", by="url")


# -- the flow writes a durable, verifiable ledger -----------------------------------------


def test_the_flow_writes_a_verifiable_private_ledger(tmp_path: Path) -> None:
    agent = AgentKey.generate()
    path = tmp_path / "flow.sqlite3"
    ledger = SqliteLedger(path, agent_key=agent)
    server = PaidServer({"/paid": "0.25 USD", "/expensive": "5.00 USD"})
    credentials: list[str] = []

    def capture(request: httpx.Request) -> None:
        if "authorization" in request.headers:
            credentials.append(request.headers["authorization"])

    with (
        LocalServer(server) as local,
        Client(
            methods=[DevWallet()],
            policy=SimplePolicy(max_per_call="1.00 USD"),
            ledger=ledger,
            allow_insecure_localhost=True,
            agent_key=agent,
            event_hooks={"request": [capture]},
        ) as client,
    ):
        response = client.get(
            local.url + "/paid?token=secret123&page=2",
            extensions={"mpp": {"purpose": "flow test", "tags": {"job": "j-9"}}},
        )
        assert response.status_code == 200
        with pytest.raises(PolicyDenied, match="exceeds the per-call cap"):
            client.get(local.url + "/expensive?token=secret123")
    assert len(server.payments) == 1
    (credential,) = credentials
    assert credential.startswith("Payment ")
    secret_value = credential.removeprefix("Payment ").strip()

    (record,) = ledger.records()
    in_response = payment_record(response)
    assert in_response is not None and in_response.id == record.id
    assert record.status == "committed" and record.receipt is not None
    assert record.url == f"{local.url}/paid?token=REDACTED&page=REDACTED"
    assert (record.purpose, dict(record.tags)) == ("flow test", {"job": "j-9"})
    assert record.agent == agent.did and record.signature is not None
    assert verify_record(agent.did, record.decision_record(), record.signature)
    assert record.decision is not None and record.decision.allowed
    assert record.to_dict() == in_response.to_dict()

    kinds = [json.loads(line)["event"]["kind"] for line in ledger.export_jsonl()]
    assert kinds == ["reserve", "commit", "refusal"]
    refusal = json.loads(list(ledger.export_jsonl())[2])["event"]["record"]
    assert "exceeds the per-call cap" in refusal["refusal"]
    assert refusal["url"].endswith("/expensive?token=REDACTED")
    report = ledger.verify(trusted_agents=[agent.did], require_signatures=True)
    assert report.ok, report
    assert report.signed == 3
    assert verify_exported_proof(ledger.inclusion_proof(record.id), trusted_agents=[agent.did])

    exported = "\n".join(ledger.export_jsonl()) + ledger.export_csv()
    ledger.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    stored = b"".join(
        p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("flow.sqlite3")
    )
    for secret in ("secret123", secret_value, secret_value[:40]):
        assert secret.encode() not in stored
        assert secret not in exported
    assert b"Payment " not in stored
    assert "Payment " not in exported


def test_tag_scoped_limits_count_only_tagged_payments(store: Store) -> None:
    """Tags with LIKE wildcards in them (``%``, ``_``) must match literally."""
    ledger, clock = store.ledger, store.clock
    odd = {"env": "50%_off", "team": 'a"b'}
    ledger.reserve(make_record(clock, "0.30 USD", tags=odd), [])
    ledger.reserve(make_record(clock, "0.20 USD", tags={"env": "5"}), [])
    ledger.reserve(make_record(clock, "0.10 USD"), [])
    assert ledger.spent("USD", tags={"env": "50%_off"}) == USD("0.30 USD")
    assert ledger.spent("USD", tags=odd) == USD("0.30 USD")
    assert ledger.spent("USD", tags={"env": "5"}) == USD("0.20 USD")
    assert ledger.spent("USD", tags={"env": "50"}) == USD("0 USD")
    assert ledger.spent("USD") == USD("0.60 USD")
    peak = [Limit("peak", USD("0.35 USD"), tags={"env": "50%_off"})]
    with pytest.raises(BudgetExceeded, match="budget 'peak'"):
        ledger.reserve(make_record(clock, "0.10 USD", tags=odd), peak)
    ledger.reserve(make_record(clock, "0.10 USD", tags={"env": "other"}), peak)
    ledger.reserve(make_record(clock, "0.05 USD", tags=odd), peak)


def test_sqlite_file_from_an_earlier_version_is_migrated(tmp_path: Path) -> None:
    """Files made before tag-scoped budgets lack the ``tagset`` column: it is added and filled."""
    import sqlite3

    path = tmp_path / "old.sqlite3"
    clock = Clock()
    first = SqliteLedger(path, clock=clock)
    first.reserve(make_record(clock, "0.30 USD", tags={"env": "peak"}), [])
    first.close()
    with sqlite3.connect(path) as conn:  # back to the old shape
        conn.execute("ALTER TABLE mpp_payments DROP COLUMN tagset")
    reopened = SqliteLedger(path, clock=clock)
    assert reopened.spent("USD", tags={"env": "peak"}) == USD("0.30 USD")
    reopened.reserve(make_record(clock, "0.10 USD", tags={"env": "peak"}), [])
    assert reopened.spent("USD", tags={"env": "peak"}) == USD("0.40 USD")
    assert reopened.verify().ok


def test_old_file_gets_the_challenge_index_and_keeps_refusing_replays(tmp_path: Path) -> None:
    """Files made before challenges were indexed: the column is added and filled on open.

    A file written by the old client may already hold a replayed challenge twice
    (the fault the index closes): the first record keeps the id, and the file
    still verifies.
    """
    import sqlite3

    path = tmp_path / "old.sqlite3"
    clock = Clock()
    first = SqliteLedger(path, clock=clock)
    paid = first.reserve(make_record(clock, "0.30 USD", challenge_id="seen-once"), [])
    first.close()
    with sqlite3.connect(path) as conn:  # back to the old shape, with the old fault's trace
        conn.execute("DROP INDEX mpp_payments_challenge")
        conn.execute("ALTER TABLE mpp_payments DROP COLUMN challenge")
    with sqlite3.connect(path) as conn:
        (stored,) = conn.execute("SELECT record FROM mpp_payments").fetchone()
        twin = json.loads(stored)
        twin["id"] = "replayed-twin"
        conn.execute(
            "INSERT INTO mpp_payments (id, created_us, updated_us, status, payee, method, "
            "currency, charge_nano, tagset, record) SELECT ?, created_us + 1, updated_us, status, "
            "payee, method, currency, charge_nano, tagset, ? FROM mpp_payments WHERE id = ?",
            ("replayed-twin", json.dumps(twin), paid.id),
        )
    reopened = SqliteLedger(path, clock=clock)
    with sqlite3.connect(path) as conn:
        keys = dict(conn.execute("SELECT id, challenge FROM mpp_payments").fetchall())
    assert keys[paid.id] is not None and keys["replayed-twin"] is None
    with pytest.raises(ChallengeReused, match=f"ledger record {paid.id}"):
        reopened.reserve(make_record(clock, "0.10 USD", challenge_id="seen-once"), [])
    reopened.reserve(make_record(clock, "0.10 USD", challenge_id="new-one"), [])
    report = reopened.verify()
    # The hand-inserted twin has no audit event: that is the only problem reported.
    assert [p for p in report.problems if "replayed-twin" not in p] == []


@pytest.mark.parametrize("column", ["tagset", "challenge"])
def test_verify_covers_the_columns_budgets_and_replays_depend_on(
    durable: Store, column: str
) -> None:
    """Clearing ``tagset`` frees tag-scoped budgets; clearing ``challenge`` allows a replay."""
    durable.ledger.reserve(
        make_record(durable.clock, "0.30 USD", tags={"job": "nightly"}, challenge_id="c-1"), []
    )
    assert durable.ledger.verify().ok  # type: ignore[attr-defined]
    raw = durable.raw
    assert raw is not None
    value = "''" if column == "tagset" else "NULL"
    raw.execute(f"UPDATE {raw.payments} SET {column} = {value}")
    report = durable.ledger.verify()  # type: ignore[attr-defined]
    assert not report.ok
    assert any("modified" in p for p in report.problems), report.problems
