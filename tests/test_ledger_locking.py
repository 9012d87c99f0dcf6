"""Who waits for whom: PostgreSQL row locks instead of one global lock; bounded retries.

A writer that would wait is made to fail fast instead: its connection gets a
``lock_timeout``, so "would wait" is an error and "does not wait" is a
success, with no timing in the assertions. A transaction is held open at a
known point by a ledger whose log step blocks on an event (as the crash
tests' worker does).
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mpp_client import BudgetExceeded, ChallengeReused, PaymentError
from mpp_client.ledger import PaymentRecord, PostgresLedger, SqliteLedger
from mpp_client.ledger._postgres import PostgresTx
from mpp_client.money import Amount
from mpp_client.policy import Limit

from .ledger_fixtures import PG_URL, Clock, make_record, postgres_unavailable

_NO_PG = postgres_unavailable()
needs_pg = pytest.mark.skipif(_NO_PG is not None, reason=f"PostgreSQL store: {_NO_PG}")
USD = Amount.parse
FAST_FAIL = "options=-c%20lock_timeout%3D1500"  # waiting more than 1.5 s for a lock is an error


class Paused(PostgresLedger):
    """Once ``armed``, stops inside its next reservation's transaction (after logging)
    until ``go`` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Its reservations take the general path, whose transaction can be held open
        # from here; a reservation at once holds its locks inside one statement.
        self.store.at_once = False
        self.armed = False
        self.inside = threading.Event()
        self.go = threading.Event()

    def _append(self, tx: Any, kind: str, record: Any, extra: Mapping[str, Any]) -> Any:
        entry = super()._append(tx, kind, record, extra)
        if kind == "reserve" and self.armed:
            self.armed = False
            self.inside.set()
            assert self.go.wait(30)
        return entry


def _count_attempts(store: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record how each write transaction of ``store`` ended."""
    endings: list[str] = []
    write = store.write

    @contextmanager
    def counted() -> Iterator[Any]:
        try:
            with write() as tx:
                yield tx
        except BaseException as exc:
            endings.append(type(exc).__name__)
            raise
        endings.append("committed")

    monkeypatch.setattr(store, "write", counted)
    if store.at_once:  # a reservation in one statement is an attempt too
        at_once = store.reserve_at_once

        def counted_at_once(plan: Any) -> Any:
            try:
                settled = at_once(plan)
            except BaseException as exc:
                endings.append(type(exc).__name__)
                raise
            endings.append("committed" if settled.outcome == "ok" else settled.outcome)
            return settled

        monkeypatch.setattr(store, "reserve_at_once", counted_at_once)
    return endings


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:10]}_"
    yield name
    ledger = PostgresLedger(PG_URL, prefix=name)
    ledger.drop()
    ledger.close()


def _fast(prefix: str) -> PostgresLedger:
    separator = "&" if "?" in PG_URL else "?"
    return PostgresLedger(PG_URL + separator + FAST_FAIL, prefix=prefix)


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(work())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def _record(clock: Clock, payee: str, scope: str, **fields: Any) -> PaymentRecord:
    return make_record(clock, "0.10 USD", payee=payee, scope=scope, **fields)


def _wait_for_lock(pid: int) -> None:
    """Until the backend ``pid`` waits for a lock."""
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for _ in range(600):
            row = conn.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            if row is not None and row[0] == "Lock":
                return
            time.sleep(0.05)
    raise AssertionError(f"backend {pid} never waited for a lock")


@needs_pg
def test_writers_to_different_budgets_never_wait_for_each_other(prefix: str) -> None:
    clock = Clock()
    a_budget = [Limit("a", cap=USD("5 USD"), scope="a")]
    b_budget = [Limit("b", cap=USD("5 USD"), scope="b")]
    holder = Paused(PG_URL, prefix=prefix, clock=clock)
    other = _fast(prefix)
    try:
        # Register both budgets first (the one time a scope's writers wait, briefly).
        holder.reserve(_record(clock, "m", "a"), a_budget)
        other.reserve(_record(clock, "m", "b"), b_budget)
        pending = other.reserve(_record(clock, "m", "a"), [])
        holder.armed = True
        thread, out = _in_thread(lambda: holder.reserve(_record(clock, "m", "a"), a_budget))
        assert holder.inside.wait(30)  # it holds budget a's row, inside its transaction
        # Another budget: no wait at all.
        other.reserve(_record(clock, "m", "b"), b_budget)
        # A settlement that does not change what counts touches only its own row.
        other.commit(pending.id, None)
        other.log_refusal(_record(clock, "m", "a"), "too dear")
        # The same budget: it would wait (and fails fast here instead).
        with pytest.raises(PaymentError, match="LockNotAvailable"):
            other.reserve(_record(clock, "m", "a"), a_budget)
        holder.go.set()
        thread.join(30)
        assert isinstance(out[0], PaymentRecord)
        assert other.usage(a_budget[0]).spent == USD("0.30 USD")  # 3 in scope a
        assert other.verify().ok
    finally:
        holder.go.set()
        holder.close()
        other.close()


@needs_pg
def test_writers_to_one_budget_lock_only_the_rows_they_change(prefix: str) -> None:
    """Per-payee budgets of one scope: each reservation locks its payee's row only."""
    clock = Clock()

    def budget(payee: str) -> list[Limit]:
        return [Limit(f"each-{payee}", cap=USD("5 USD"), payee=payee, scope="s")]

    holder = Paused(PG_URL, prefix=prefix, clock=clock)
    other = _fast(prefix)
    try:
        for payee in ("x", "y"):
            other.reserve(_record(clock, payee, "s"), budget(payee))
        holder.armed = True
        thread, out = _in_thread(lambda: holder.reserve(_record(clock, "x", "s"), budget("x")))
        assert holder.inside.wait(30)
        other.reserve(_record(clock, "y", "s"), budget("y"))  # another row: no wait
        with pytest.raises(PaymentError, match="LockNotAvailable"):
            other.reserve(_record(clock, "x", "s"), budget("x"))  # the held row
        holder.go.set()
        thread.join(30)
        assert isinstance(out[0], PaymentRecord)
        assert other.verify().ok
    finally:
        holder.go.set()
        holder.close()
        other.close()


@needs_pg
def test_a_challenge_answered_concurrently_is_refused_by_the_unique_index(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers pass the challenge check at once; the index refuses the second."""
    clock = Clock()
    first, second = PostgresLedger(PG_URL, prefix=prefix), PostgresLedger(PG_URL, prefix=prefix)
    sent, go = threading.Event(), threading.Event()
    original = PostgresTx.send_writes

    def hold(self: PostgresTx) -> None:
        original(self)
        if threading.current_thread().name == "first":
            sent.set()  # the row is written, not committed: the index entry is taken
            assert go.wait(30)

    monkeypatch.setattr(PostgresTx, "send_writes", hold)
    try:
        record = _record(clock, "m", "", challenge_id="once")
        thread = threading.Thread(target=lambda: first.reserve(record, []), name="first")
        thread.start()
        assert sent.wait(30)
        twin = _record(clock, "m", "", challenge_id="once")
        racer, out = _in_thread(lambda: second.reserve(twin, []))
        # It passed the check (nothing committed yet) and waits on the index entry.
        _wait_for_lock(second.store._connection().info.backend_pid)
        go.set()
        thread.join(30)
        racer.join(30)
        assert isinstance(out[0], ChallengeReused), out
        assert [r.challenge_id for r in second.records()] == ["once"]
        assert second.verify().ok
    finally:
        go.set()
        first.close()
        second.close()


def test_a_busy_sqlite_file_is_retried_then_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "busy.sqlite3"
    ledger = SqliteLedger(path, busy_timeout=0.01, clock=Clock())
    blocker = sqlite3.connect(path, isolation_level=None)
    endings = _count_attempts(ledger.store, monkeypatch)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(PaymentError, match="stayed busy") as info:
            ledger.reserve(make_record(Clock()), [])
        assert "nothing was written" in info.value.message
        assert endings == ["OperationalError"] * 8  # bounded: every attempt, then a typed error
        blocker.execute("ROLLBACK")
        assert ledger.records() == []
        # Busy for a moment only: the retry gets through, and it is written once.
        endings.clear()
        blocker.execute("BEGIN IMMEDIATE")
        transient = ledger.store.transient

        def release(exc: BaseException) -> bool:
            if blocker.in_transaction:
                blocker.execute("ROLLBACK")
            return transient(exc)

        monkeypatch.setattr(ledger.store, "transient", release)
        held = ledger.reserve(make_record(Clock()), [])
        assert endings == ["OperationalError", "committed"]
        assert [r.id for r in ledger.records()] == [held.id]
        assert ledger.verify().ok
    finally:
        blocker.close()
        ledger.close()


@needs_pg
def test_a_postgres_deadlock_is_retried_not_raised(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real deadlock with another session: PostgreSQL aborts the ledger's transaction
    (it waited first), and the ledger runs it again."""
    import psycopg

    clock = Clock()
    ledger = PostgresLedger(PG_URL, prefix=prefix, clock=clock)
    budget = [Limit("b", cap=USD("5 USD"), scope="d")]
    ledger.reserve(_record(clock, "m", "d"), budget)  # registers the budget's filter
    endings = _count_attempts(ledger.store, monkeypatch)
    other = psycopg.connect(PG_URL, autocommit=True)
    try:
        pid = ledger.store._connection().info.backend_pid
        other.execute("BEGIN")
        other.execute("SET LOCAL deadlock_timeout = '60s'")  # so the ledger's side detects it
        other.execute(f"SELECT id FROM {prefix}filters WHERE scope = 'd' FOR UPDATE")
        thread, out = _in_thread(lambda: ledger.reserve(_record(clock, "m", "d"), budget))
        _wait_for_lock(pid)  # the ledger waits for the filter row
        # Now wait for the scope lock the ledger holds shared: a cycle.
        other.execute("SELECT pg_advisory_xact_lock(%s)", (ledger.store.scope_key("d"),))
        other.execute("COMMIT")
        thread.join(60)
        assert isinstance(out[0], PaymentRecord), out
        assert endings == ["DeadlockDetected", "committed"]
        assert ledger.usage(budget[0]).spent == USD("0.20 USD")
        assert ledger.verify().ok
    finally:
        other.close()
        ledger.close()


def test_a_refused_reservation_writes_nothing(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "r.sqlite3", clock=Clock())
    try:
        limit = [Limit("b", cap=USD("0.05 USD"))]
        with pytest.raises(BudgetExceeded):
            ledger.reserve(make_record(Clock()), limit)
        assert ledger.records() == [] and list(ledger.export_jsonl()) == []
    finally:
        ledger.close()


@needs_pg
def test_the_flush_after_an_asynchronous_commit_waits_for_the_disk(prefix: str) -> None:
    """A reservation commits without waiting for the disk (its budget rows are let go at
    once), then flushes: the flush must reach past the reservation's commit record.
    (A transaction that only takes an id commits asynchronously too: it would not.)"""
    ledger = PostgresLedger(PG_URL, prefix=prefix)
    try:
        conn = ledger.store._connection()
        conn.execute(f"CREATE TABLE {prefix}scratch (v int)")
        with conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = off")
            conn.execute(f"INSERT INTO {prefix}scratch VALUES (1)")
        row = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
        assert row is not None
        ledger.store._flush(conn)
        flushed = conn.execute(
            "SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (row[0],)
        ).fetchone()
        assert flushed == (True,)
        conn.execute(f"DROP TABLE {prefix}scratch")
    finally:
        ledger.close()


@needs_pg
def test_a_reservation_at_once_is_durable_when_it_returns(prefix: str) -> None:
    clock = Clock()
    ledger = PostgresLedger(PG_URL, prefix=prefix, clock=clock)
    budget = [Limit("b", cap=USD("5 USD"), scope="d")]
    try:
        ledger.reserve(_record(clock, "m", "d"), budget)  # reads the filters: the next is at once
        conn = ledger.store._connection()
        calls: list[str] = []
        original = ledger.store.reserve_at_once

        def spy(plan: Any) -> Any:
            settled = original(plan)
            row = conn.execute(
                "SELECT pg_current_wal_flush_lsn() >= pg_current_wal_insert_lsn()"
            ).fetchone()
            calls.append(f"{settled.outcome} flushed={row[0] if row else None}")
            return settled

        ledger.store.reserve_at_once = spy  # type: ignore[method-assign]
        ledger.reserve(_record(clock, "m", "d"), budget)
        # Nothing else writes these tables; another session may write elsewhere, so the
        # insert position can move past the flush: then only "ok" is asserted.
        assert calls and calls[0].startswith("ok"), calls
        assert ledger.usage(budget[0]).spent == USD("0.20 USD")
        with pytest.raises(BudgetExceeded):
            ledger.reserve(make_record(clock, "4.90 USD", payee="m", scope="d"), budget)
        assert calls[-1].startswith("refused"), calls
        assert ledger.usage(budget[0]).spent == USD("0.20 USD")  # the refusal wrote nothing
        assert len(ledger.records()) == 2
        assert ledger.verify().ok
    finally:
        ledger.close()
