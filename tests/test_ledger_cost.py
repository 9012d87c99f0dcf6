"""The paid path costs the same whatever the history: counted, not timed.

A paid request's ledger work (the policy's decision with every history-reading
rule, the reservation, the commit) is measured in work the store does, at 1k
and at 20k past payments: SQLite virtual-machine steps (its progress handler,
called at every instruction), the memory store's count of rows and cells it
touched, and on PostgreSQL the plans of the statements a reservation sends
(index scans only). The same measures grow with the history for a report that
does scan (``spent()``), which shows they would notice.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mpp_client.ledger import MemoryLedger, PaymentRecord, PostgresLedger, SqliteLedger, StoreLedger
from mpp_client.ledger._sql import Cursor
from mpp_client.methods import Quote
from mpp_client.money import Amount
from mpp_client.policy import PaymentContext, Policy
from mpp_client.protocol import Challenge

from .ledger_fixtures import PG_URL, postgres_unavailable

NOW = datetime(2026, 11, 21, 12, 0, 0, 250000, tzinfo=UTC)
PAYEES = [f"merchant-{n:02d}" for n in range(20)]
POLICY = Policy.from_mapping(
    {
        "currency": "USD",
        "scope": "cost",
        "per_call": "2.00 USD",
        "allow": {k: ["*"] for k in ("hosts", "realms", "payees", "methods", "intents", "assets")},
        "budgets": [
            {"name": "lifetime", "limit": "1000000 USD"},
            {"name": "rolling", "limit": "50000 USD", "window": "24h"},
            {"name": "daily", "limit": "50000 USD", "calendar": "day"},
        ],
        "velocity": [
            {"name": "burst", "max": 100000, "window": "1m"},
            {"name": "per-payee", "max": 100000, "window": "10m", "per_payee": True},
        ],
        "approval": {"new_payee": True},
        "anomaly": {"factor": "10", "history": 10, "min_history": 3},
        "circuit_breaker": {"failures": 5, "cooldown": "10m"},
    }
)
_NO_PG = postgres_unavailable()


def history(size: int) -> Iterator[PaymentRecord]:
    """``size`` settled payments, one every 2 minutes up to a minute ago, oldest first.

    The same rate for every size: a longer history, not a denser one (a window's
    totals are a bounded number of buckets, and at one rate the same number).
    """
    step = timedelta(minutes=2)
    for n in range(size):
        at = NOW - timedelta(minutes=1) - (size - n) * step
        amount = Amount(1 + n % 97, "USD", 2)
        status = "committed" if n % 10 else ("released" if n % 20 else "unknown")
        yield PaymentRecord(
            id=uuid.uuid4().hex,
            created_at=at,
            status=status,  # type: ignore[arg-type]
            http_method="GET",
            url="https://api.test/paid",
            realm="api.test",
            method="dev",
            intent="charge",
            amount=amount,
            charge=amount,
            payee=PAYEES[n % len(PAYEES)],
            challenge_id=uuid.uuid4().hex,
            scope="cost",
            updated_at=at,
        )


def paid_request(ledger: StoreLedger, payee: str = "merchant-07") -> None:
    """What the flow asks of the ledger for one paid request."""
    challenge = Challenge.create(
        id=uuid.uuid4().hex, realm="api.test", method="dev", intent="charge", request={}
    )
    quote = Quote(Amount(25, "USD", 2), payee, "dev", "charge", currency="usd")
    context = PaymentContext(
        url="https://api.test/paid",
        http_method="GET",
        host="api.test",
        challenge=challenge,
        quote=quote,
        now=NOW,
        history=ledger,
    )
    decision = POLICY.decide(context)
    assert decision.allowed, decision.reasons
    record = PaymentRecord(
        id=uuid.uuid4().hex,
        created_at=NOW,
        status="reserved",
        http_method="GET",
        url="https://api.test/paid",
        realm="api.test",
        method="dev",
        intent="charge",
        amount=quote.amount,
        charge=Amount(25, "USD", 2),
        payee=payee,
        challenge_id=challenge.id,
        decision=decision,
        scope=decision.scope,
    )
    held = ledger.reserve(record, decision.limits)
    ledger.commit(held.id, None)


def _ledger(kind: str, tmp: Path, size: int) -> StoreLedger:
    ledger: StoreLedger
    if kind == "memory":
        ledger = MemoryLedger(clock=lambda: NOW)
    else:
        ledger = SqliteLedger(tmp / f"cost-{size}.sqlite3", clock=lambda: NOW)
    ledger.import_records(history(size))
    paid_request(ledger)  # registers the policy's filters (each backfilled once)
    return ledger


def _sqlite_steps(ledger: StoreLedger, action: Callable[[], Any]) -> int:
    assert isinstance(ledger, SqliteLedger)
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    conn = ledger.store._conn
    conn.set_progress_handler(tick, 1)
    try:
        action()
    finally:
        conn.set_progress_handler(None, 1)
    return steps[0]


def _memory_visits(ledger: StoreLedger, action: Callable[[], Any]) -> int:
    assert isinstance(ledger, MemoryLedger)
    before = ledger.store.visited
    action()
    return ledger.store.visited - before


MEASURES = {"sqlite": _sqlite_steps, "memory": _memory_visits}


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_paid_path_does_not_grow_with_history(kind: str, tmp_path: Path) -> None:
    measure = MEASURES[kind]
    small, large = _ledger(kind, tmp_path, 1_000), _ledger(kind, tmp_path, 20_000)
    try:
        assert len(large.records()) == 20_001
        costs = [
            measure(ledger, lambda ledger=ledger: paid_request(ledger)) for ledger in (small, large)
        ]
        # The same work at 20x the history (a few steps of slack for the log's frontier).
        assert costs[1] <= costs[0] * 1.05 + 50, costs
        # A report that reads every record grows with it: the measure would notice.
        reports = [
            measure(ledger, lambda ledger=ledger: ledger.spent("USD")) for ledger in (small, large)
        ]
        assert reports[1] > 10 * reports[0], reports
        # Another payee: the same again (its filter is registered on first sight, once).
        paid_request(large, "merchant-11")
        assert measure(large, lambda: paid_request(large, "merchant-11")) <= costs[0] * 1.05 + 50
    finally:
        small.close()
        large.close()


def test_a_new_payee_filter_is_backfilled_once(tmp_path: Path) -> None:
    """Registering a filter is the one pass over history, and it is done once."""
    ledger = _ledger("memory", tmp_path, 5_000)
    first = _memory_visits(ledger, lambda: paid_request(ledger, "merchant-13"))
    second = _memory_visits(ledger, lambda: paid_request(ledger, "merchant-13"))
    assert first > 5 * second  # the first paid the backfill
    assert ledger.verify().ok


def _plans(ledger: PostgresLedger, action: Callable[[], Any]) -> list[tuple[str, list[str]]]:
    """Every SELECT the action sends, with the scans its plan uses."""
    import psycopg

    sent: list[tuple[str, tuple[Any, ...], bool]] = []
    original = Cursor.execute
    reserving = False

    def spy(self: Cursor, sql: str, params: Any = ()) -> None:
        nonlocal reserving
        if "enable_seqscan" in sql:
            reserving = True  # the reservation's transaction turned table scans off
        elif "mpp-client/flush" in sql:
            reserving = False  # its flush: the transaction is over
        if sql.lstrip().upper().startswith("SELECT"):
            sent.append((sql, tuple(params), reserving))
        original(self, sql, params)

    Cursor.execute = spy  # type: ignore[method-assign]
    try:
        action()
    finally:
        Cursor.execute = original  # type: ignore[method-assign]
    plans: list[tuple[str, list[str]]] = []
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for sql, params, reserving in sent:
            # As the statement's own transaction had it (see PostgresTx.read_for_reservation).
            conn.execute(f"SET enable_seqscan = {'off' if reserving else 'on'}")
            # Reads are run (ANALYZE), so each scan says how many rows it really read;
            # the reservation function writes, so it is only planned.
            analyze = "ANALYZE, " if "reserve_v" not in sql else ""
            plan = conn.execute(
                f"EXPLAIN ({analyze}FORMAT JSON) " + sql.replace("?", "%s"), params
            ).fetchone()
            assert plan is not None
            scans: list[str] = []

            def walk(node: dict[str, Any]) -> None:
                if "Scan" in node["Node Type"] and "Relation Name" in node:
                    read = node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
                    read += node.get("Rows Removed by Filter", 0)
                    scans.append(f"{node['Node Type']} on {node['Relation Name']} reads {read}")
                for child in node.get("Plans", ()):
                    walk(child)

            walk(plan[0][0]["Plan"])
            plans.append((sql, scans))
    return plans


def _rows_read(scan: str) -> int:
    return int(scan.rsplit(" reads ", 1)[1])


@pytest.mark.skipif(_NO_PG is not None, reason=f"PostgreSQL store: {_NO_PG}")
def test_postgres_reads_by_index_on_the_paid_path(tmp_path: Path) -> None:
    import psycopg

    prefix = f"t{uuid.uuid4().hex[:10]}_"
    ledger = PostgresLedger(PG_URL, prefix=prefix, clock=lambda: NOW)
    try:
        ledger.import_records(history(20_000))
        paid_request(ledger)
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for table in ("payments", "totals", "filters", "log"):
                conn.execute(f"ANALYZE {prefix}{table}")
        # A payee paid before (the one-statement reservation), and one not yet (the
        # general path, whose window reads are planned as they stand).
        # Another writer registers the second payee's limits first (a new limit's totals
        # are filled from its history once, when it is first used: not a paid path).
        other = PostgresLedger(PG_URL, prefix=prefix, clock=lambda: NOW)
        paid_request(other, payee=PAYEES[1])
        other.close()
        plans = _plans(ledger, lambda: paid_request(ledger))
        plans += _plans(ledger, lambda: paid_request(ledger, payee=PAYEES[1]))
        assert len(plans) >= 20
        assert any("CROSS JOIN LATERAL" in sql for sql, _ in plans)
        big = (f"{prefix}payments ", f"{prefix}totals ", f"{prefix}log ")
        for sql, scans in plans:
            on_big = [s for s in scans if any(f" on {table}" in s for table in big)]
            assert not [s for s in on_big if s.startswith("Seq Scan")], (sql, scans)
            # An analyzed table must not tempt the planner into reading a whole
            # scope (a join flattened out of a LATERAL range did, 20,000 rows).
            assert all(_rows_read(s) < 1_000 for s in on_big), (sql, scans)
    finally:
        ledger.drop()
        ledger.close()


def test_records_keep_every_field_through_an_import(tmp_path: Path) -> None:
    ledger = MemoryLedger(clock=lambda: NOW)
    records = list(history(30))
    ledger.import_records(records)
    assert ledger.records() == [dataclasses.replace(r) for r in records]
    assert ledger.verify().ok


def test_an_import_leaves_no_write_ahead_log_for_paid_requests_to_wait_on(tmp_path: Path) -> None:
    """The WAL a bulk import writes is copied in before it returns, not by later commits."""
    path = tmp_path / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    try:
        assert ledger.import_records(history(600), batch=50) == 600
        wal = path.with_name(path.name + "-wal")
        assert wal.exists()  # the ledger is still open, in WAL mode
        assert wal.stat().st_size == 0
        assert len(ledger.records()) == 600
        assert ledger.verify().ok
    finally:
        ledger.close()


@pytest.mark.skipif(postgres_unavailable(), reason="PostgreSQL is not running")
def test_an_import_into_postgresql_leaves_the_tables_analyzed() -> None:
    """The planner knows the imported rows at once, not when autovacuum gets to them."""
    ledger = PostgresLedger(PG_URL, prefix=f"mpp_import_{uuid.uuid4().hex[:8]}_")
    try:
        ledger.import_records(history(300), batch=100)

        def analyzed(tx: Any) -> list[Any]:
            tx.cur.execute("SELECT pg_stat_clear_snapshot()")
            tx.cur.execute(
                "SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables "
                "WHERE relname = ANY(%s) ORDER BY relname",
                ([tx.n.payments, tx.n.totals],),
            )
            return list(tx.cur.fetchall())

        names = ledger.store.names
        rows = ledger._transact(analyzed, write=False)
        assert rows == sorted([(names.payments, True), (names.totals, True)])
    finally:
        ledger.drop()
        ledger.close()
