"""The spend ledgers: one behavioural suite over the three stores, then what durable stores add.

``store`` runs a test on every store (memory, SQLite, PostgreSQL): the same
algorithm runs on all three, the log, exports and totals included; ``durable``
only on the SQL stores, for persistence and opening. The audit log's checks
and tamper cases are in ``test_ledger_audit.py``, migrations of files and
prefixes written by earlier versions in ``test_ledger_migration.py``.
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
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mpp_client import (
    BudgetExceeded,
    Client,
    DevWallet,
    PaymentError,
    PolicyDenied,
    SimplePolicy,
    payment_record,
)
from mpp_client.identity import AgentKey, sign_record, verify_record
from mpp_client.ledger import (
    MemoryLedger,
    PaymentRecord,
    PostgresLedger,
    SqliteLedger,
    StoreLedger,
    default_ledger_path,
    open_ledger,
    verify_exported_proof,
)
from mpp_client.ledger._chain import parse_entry
from mpp_client.ledger._totals import to_nano
from mpp_client.money import Amount
from mpp_client.policy import Decision, Limit, RuleResult, program_scope
from mpp_client.testing import LocalServer, PaidServer

from .ledger_fixtures import (
    PG_URL,
    T0,
    Clock,
    Store,
    activity,
    make_record,
    open_store,
    postgres_unavailable,
    receipt,
)
from .ledger_fixtures import POSTGRES as _PG

_NO_PG = postgres_unavailable()
USD = Amount.parse


@pytest.fixture(params=["memory", "sqlite", _PG])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every store: in memory, one SQLite file, PostgreSQL tables under a fresh prefix."""
    opened = open_store(request.param, tmp_path)
    yield opened
    opened.close()


def remains(exc: pytest.ExceptionInfo[BudgetExceeded]) -> Amount:
    match = re.search(r"(\S+ [A-Z]+) remains", str(exc.value))
    assert match, str(exc.value)
    return USD(match.group(1))


def events_of(store: Store) -> list[dict[str, Any]]:
    return [json.loads(line) for line in store.sql.export_jsonl()]


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
    events = len(events_of(store))
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
    assert len(events_of(store)) == events  # failed calls log nothing


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
    """Budgets count billionths, rounding up: a hair high, never low (every store)."""
    ledger, clock = store.ledger, store.clock
    tiny = Amount(1, "USD", 18)  # 0.000000000000000001 USD
    one_nano = USD("0.000000001 USD")
    ledger.reserve(make_record(clock, tiny), [Limit("nano", cap=one_nano)])
    spent = ledger.spent("USD")
    assert spent >= tiny
    assert spent == one_nano  # rounded up to the next billionth
    assert ledger.usage(Limit("nano", cap=one_nano)).spent == one_nano
    assert to_nano(Amount(10**9 + 1, "USD", 18)) == 2
    with pytest.raises(BudgetExceeded, match="'nano'"):
        ledger.reserve(make_record(clock, tiny), [Limit("nano", cap=one_nano)])
    # A full cap's worth more never fits.
    with pytest.raises(BudgetExceeded):
        ledger.reserve(make_record(clock, one_nano), [Limit("nano", cap=one_nano)])
    # The record keeps the exact amount; only the budget column is rounded.
    assert ledger.records()[0].charge == tiny
    assert ledger.records()[0].charge.decimals == 18


def test_a_cap_with_more_than_nine_decimals_is_never_overcounted(store: Store) -> None:
    """A cap is rounded down to whole billionths: room is never overstated."""
    cap = Limit("c", cap=USD("0.0000000019 USD"))
    store.ledger.reserve(make_record(store.clock, "0.000000001 USD"), [cap])
    more = make_record(store.clock, "0.0000000009 USD")
    # The cap counts as 0.000000001 USD: no room left.
    with pytest.raises(BudgetExceeded, match="'c'"):
        store.ledger.reserve(more, [cap])


def test_a_charge_too_large_for_the_totals_is_refused_cleanly(store: Store) -> None:
    """Billionths are kept in 64-bit integers: beyond them, a PaymentError (not a crash)."""
    huge = make_record(store.clock, "10000000000.00 USD")  # 10^19 billionths
    with pytest.raises(PaymentError, match="too large for the ledger"):
        store.ledger.reserve(huge, [])
    assert store.ledger.records() == []
    budget = [Limit("b", cap=USD("20000000000 USD"))]
    store.ledger.reserve(make_record(store.clock, "9000000000.00 USD"), budget)  # fits
    # Two of them would overflow the running total: refused, and nothing is written.
    with pytest.raises(PaymentError):
        store.ledger.reserve(make_record(store.clock, "9000000000.00 USD"), budget)
    assert len(store.ledger.records()) == 1


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
    assert isinstance(store.ledger, StoreLedger)
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
        # Both handles see each other's writes; each writes a chain of its own.
        with pytest.raises(BudgetExceeded):
            ledger.reserve(make_record(clock, "0.01 USD"), [budget])
        report = again.verify()
        assert report.ok, report
        assert (report.events, report.chains, report.signed) == (5, 2, 5)
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
        assert sorted(t[0] for t in tables) == [
            "mpp_filters",
            "mpp_log",
            "mpp_log_checkpoints",
            "mpp_log_heads",
            "mpp_meta",
            "mpp_payments",
            "mpp_totals",
        ]
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


# -- exports and totals -------------------------------------------------------------------


def test_export_jsonl_is_the_log(store: Store) -> None:
    """One line per entry, with its exact bytes: every store keeps the log."""
    activity(store.sql, store.clock)
    lines = list(store.sql.export_jsonl())
    assert len(lines) == 11
    parsed = [json.loads(line) for line in lines]
    assert [p["seq"] for p in parsed] == list(range(11))
    assert len({p["chain"] for p in parsed}) == 1
    kinds = ["reserve", "commit", "reserve", "release", "reserve", "unknown"]
    kinds += ["reserve", "unknown", "resolve", "refusal", "reserve"]
    assert [p["event"]["kind"] for p in parsed] == kinds
    stored = store.raw.events() if store.raw is not None else None
    for n, (line, entry) in enumerate(zip(lines, parsed, strict=True)):
        assert "\n" not in line
        assert set(entry) == {"chain", "seq", "event", "entry", "leaf"}
        raw = entry["entry"].encode()
        assert entry["leaf"] == hashlib.sha256(b"\x00" + raw).hexdigest()
        fields, body = parse_entry(raw) or ([], b"")
        assert fields[1:3] == [entry["chain"], entry["seq"]]
        assert entry["event"]["record"] == json.loads(body)
        if stored is not None:
            assert stored[n][3] == raw  # exactly what the database holds
    assert parsed[0]["event"]["prev"] == "0" * 64
    assert all(b["event"]["prev"] == a["leaf"] for a, b in itertools.pairwise(parsed))
    assert parsed[9]["event"]["record"]["refusal"] == "5.00 USD exceeds the per-call cap"
    assert parsed[1]["event"]["record"]["receipt"]["reference"] == "tx-r1"


def test_export_csv_has_one_row_per_payment(store: Store) -> None:
    ids = activity(store.sql, store.clock)
    record = dataclasses.replace(full_record(store), scope="reports")
    store.sql.reserve(record, [])
    store.sql.commit(record.id, receipt("0xfeed"))
    rows = list(csv.reader(io.StringIO(store.sql.export_csv())))
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
        "scope",
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
        "scope": "reports",
    }
    assert by_id[ids["r1"]]["receipt_reference"] == "tx-r1"
    assert by_id[ids["r2"]]["status"] == "released"
    assert by_id[ids["r2"]]["reason"] == "declined"
    assert by_id[ids["r3"]]["status"] == "unknown"
    assert by_id[ids["r5"]]["purpose"] == by_id[ids["r5"]]["tags"] == ""


def test_totals(store: Store) -> None:
    ledger, clock = store.sql, store.clock

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
    assert ledger.totals("USD", by="scope") == {"": USD("0.350001 USD")}
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
    report = ledger.verify()  # strict: the ledger has the agent key
    assert report.ok, report
    assert (report.signed, report.published) == (3, 1)
    assert verify_exported_proof(ledger.inclusion_proof(record.id), trusted_agents=[agent.did])
    assert record.scope == program_scope()  # the policy's default scope, stamped by the flow

    exported = "\n".join(ledger.export_jsonl()) + ledger.export_csv()
    ledger.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # The database, its WAL and the published heads: no secret anywhere.
    files = [p for p in tmp_path.rglob("*") if p.is_file() and "flow.sqlite3" in str(p)]
    assert any(".heads" in str(p) for p in files)
    stored = b"".join(p.read_bytes() for p in files)
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
