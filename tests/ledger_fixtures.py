"""Helpers for the ledger tests: a settable clock, records, the three stores, raw SQL access.

The PostgreSQL store uses ``$MPP_TEST_POSTGRES_URL`` (default: the local
server at 127.0.0.1:5432, database ``test``); each test gets its own table
prefix and drops its tables afterwards.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from mpp_client.identity import AgentKey
from mpp_client.ledger import (
    Ledger,
    MemoryLedger,
    PaymentRecord,
    PostgresLedger,
    SqliteLedger,
    SqlLedger,
)
from mpp_client.money import Amount

PG_URL = os.environ.get("MPP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: Has microseconds, so any lossy time round trip shows.
T0 = datetime(2026, 11, 21, 12, 0, 0, 123457, tzinfo=UTC)


@cache
def postgres_unavailable() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL at {PG_URL}: {type(exc).__name__}"
    return None


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def make_record(
    clock: Clock,
    charge: str | Amount = "0.25 USD",
    *,
    payee: str = "merchant-a",
    method: str = "dev",
    amount: Amount | None = None,
    tick: bool = True,
    **fields: Any,
) -> PaymentRecord:
    """A fresh record created now; the clock then moves one second (so order is clear)."""
    value = Amount.coerce(charge)
    record = PaymentRecord(
        id=fields.pop("id", uuid.uuid4().hex),
        created_at=clock(),
        status="reserved",
        http_method=fields.pop("http_method", "GET"),
        url=fields.pop("url", "https://api.test/paid?token=REDACTED"),
        realm=fields.pop("realm", "api.test"),
        method=method,
        intent=fields.pop("intent", "charge"),
        amount=amount if amount is not None else value,
        charge=value,
        payee=payee,
        challenge_id=fields.pop("challenge_id", uuid.uuid4().hex[:16]),
        **fields,
    )
    if tick:
        clock.advance(seconds=1)
    return record


class Raw:
    """Direct SQL on a durable store's tables, bypassing the ledger (for tampering)."""

    def __init__(self, kind: str, target: str, prefix: str) -> None:
        self.kind = kind
        self.payments = f"{prefix}payments"
        self.audit = f"{prefix}audit"
        self.checkpoints = f"{prefix}checkpoints"
        self._conn: Any
        if kind == "sqlite":
            self._conn = sqlite3.connect(target, isolation_level=None)
        else:
            import psycopg

            self._conn = psycopg.connect(target, autocommit=True)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.kind == "postgres":
            sql = sql.replace("?", "%s")
        cur = self._conn.execute(sql, tuple(params))
        try:
            return [tuple(row) for row in cur.fetchall()] if cur.description else []
        finally:
            cur.close()

    def events(self) -> list[tuple[int, str, str | None, str, str, str | None, str | None]]:
        """(seq, kind, record_id, body, hash, agent, signature) in seq order."""
        rows = self.execute(
            f"SELECT seq, kind, record_id, body, hash, agent, signature FROM {self.audit} "
            "ORDER BY seq"
        )
        return [(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    def close(self) -> None:
        self._conn.close()


@dataclass
class Store:
    """One ledger under test, with what a test needs around it."""

    kind: str
    ledger: Ledger
    clock: Clock
    agent: AgentKey
    #: Open another ledger on the same storage (None for memory).
    reopen: Callable[[], SqlLedger] | None = None
    #: Raw SQL access to the same storage (None for memory).
    raw: Raw | None = None
    path: Path | None = None
    prefix: str | None = None
    _cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def durable(self) -> bool:
        return self.kind != "memory"

    @property
    def sql(self) -> SqlLedger:
        assert isinstance(self.ledger, SqlLedger)
        return self.ledger

    def close(self) -> None:
        for step in reversed(self._cleanup):
            step()


def open_store(kind: str, tmp_path: Path, *, checkpoint_every: int = 256) -> Store:
    clock = Clock()
    agent = AgentKey.generate()
    if kind == "memory":
        return Store(kind, MemoryLedger(clock=clock), clock, agent)
    if kind == "sqlite":
        path = tmp_path / "l.sqlite3"

        def reopen_sqlite() -> SqlLedger:
            return SqliteLedger(
                path, agent_key=agent, clock=clock, checkpoint_every=checkpoint_every
            )

        sqlite_ledger = reopen_sqlite()
        store = Store(kind, sqlite_ledger, clock, agent, reopen_sqlite, path=path, prefix="mpp_")
        store._cleanup.append(sqlite_ledger.close)
        store.raw = Raw("sqlite", str(path), "mpp_")
        store._cleanup.append(store.raw.close)
        return store
    assert kind == "postgres"
    prefix = f"t{uuid.uuid4().hex[:10]}_"

    def reopen_pg() -> SqlLedger:
        return PostgresLedger(
            PG_URL, prefix=prefix, agent_key=agent, clock=clock, checkpoint_every=checkpoint_every
        )

    pg_ledger = reopen_pg()
    assert isinstance(pg_ledger, PostgresLedger)
    store = Store(kind, pg_ledger, clock, agent, reopen_pg, prefix=prefix)

    def drop() -> None:
        pg_ledger.drop()
        pg_ledger.close()

    store._cleanup.append(drop)
    store.raw = Raw("postgres", PG_URL, prefix)
    store._cleanup.append(store.raw.close)
    return store
