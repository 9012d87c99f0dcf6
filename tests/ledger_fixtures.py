"""Helpers for the ledger tests: a settable clock, records, the three stores, raw SQL access.

The PostgreSQL store uses ``$MPP_TEST_POSTGRES_URL`` (default: the local
server at 127.0.0.1:5432, database ``test``); each test gets its own table
prefix and drops its tables afterwards. Every store is opened with an agent
key, so ``verify()`` is strict (signed heads by that agent) by default.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from mpp_client.identity import AgentKey
from mpp_client.ledger import (
    Ledger,
    MemoryLedger,
    PaymentRecord,
    PostgresLedger,
    SignedHead,
    SqliteLedger,
    StoreLedger,
)
from mpp_client.money import Amount
from mpp_client.policy import Limit
from mpp_client.protocol import Receipt, b64url_encode, canonical_json

from . import helpers

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


class Clock(helpers.Clock):
    """The shared hand-moved clock, starting at this module's ``T0``."""

    def __init__(self, start: datetime = T0) -> None:
        super().__init__(start)


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
    """A fresh record created now; the clock then moves one second (so order is clear).

    Its scope is ``""`` unless given (``scope=None``: the ledger's choice).
    """
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
        scope=fields.pop("scope", ""),
        **fields,
    )
    if tick:
        clock.advance(seconds=1)
    return record


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


def activity(ledger: StoreLedger, clock: Clock) -> dict[str, str]:
    """Every kind of event, with checkpoints at 4 and 8 (every 4) and one taken at 11.

    seq 0-1: r1 reserve, commit | 2-3: r2 reserve, release | 4-5: r3 reserve, unknown
    6-7: r4 reserve, unknown | 8: r4 resolve | 9: refusal | 10: r5 reserve (held)
    Counted: r1 0.25 + r3 0.30 + r4 0.05 + r5 0.40 = the 1.00 USD budget.
    """
    budget = [Limit("budget", cap=Amount.parse("1.00 USD"))]
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


class Raw:
    """Direct SQL on a durable store's tables, bypassing the ledger (for tampering)."""

    def __init__(self, kind: str, target: str, prefix: str) -> None:
        self.kind = kind
        self.payments = f"{prefix}payments"
        self.log = f"{prefix}log"
        self.heads = f"{prefix}log_heads"
        self.checkpoints = f"{prefix}log_checkpoints"
        self.filters = f"{prefix}filters"
        self.totals = f"{prefix}totals"
        self.meta = f"{prefix}meta"
        self.audit = f"{prefix}audit"  # the legacy chain, in migrated ledgers
        self.legacy_checkpoints = f"{prefix}checkpoints"
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

    def events(self) -> list[tuple[str, int, str | None, bytes]]:
        """(chain, seq, record_id, entry) of every log entry, by chain and seq."""
        rows = self.execute(
            f"SELECT chain, seq, record_id, entry FROM {self.log} ORDER BY chain, seq"
        )
        return [(str(r[0]), int(r[1]), r[2], bytes(r[3])) for r in rows]

    def stored_heads(self) -> list[SignedHead]:
        """The stored heads (with the ledger id from meta)."""
        (ledger,) = self.execute(f"SELECT value FROM {self.meta} WHERE key = 'ledger'")[0]
        rows = self.execute(f"SELECT chain, size, root, at, agent, signature FROM {self.heads}")
        return [SignedHead(ledger, r[0], int(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

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
    reopen: Callable[[], StoreLedger] | None = None
    #: Raw SQL access to the same storage (None for memory).
    raw: Raw | None = None
    path: Path | None = None
    prefix: str | None = None
    _cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def durable(self) -> bool:
        return self.kind != "memory"

    @property
    def sql(self) -> StoreLedger:
        """The ledger with its log, checks and exports (every store has them)."""
        assert isinstance(self.ledger, StoreLedger)
        return self.ledger

    def close(self) -> None:
        for step in reversed(self._cleanup):
            step()


def open_store(kind: str, tmp_path: Path, *, checkpoint_every: int = 256) -> Store:
    clock = Clock()
    agent = AgentKey.generate()
    if kind == "memory":
        memory = MemoryLedger(clock=clock, agent_key=agent, checkpoint_every=checkpoint_every)
        return Store(kind, memory, clock, agent)
    if kind == "sqlite":
        path = tmp_path / "l.sqlite3"

        def reopen_sqlite() -> StoreLedger:
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

    def reopen_pg() -> StoreLedger:
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


# -- the stores as fixtures (tests/conftest.py registers them) -------------------------

#: The PostgreSQL store as a test parameter, skipped with its reason when none runs here.
POSTGRES = pytest.param(
    "postgres",
    marks=pytest.mark.skipif(
        postgres_unavailable() is not None, reason=f"PostgreSQL store: {postgres_unavailable()}"
    ),
)


@pytest.fixture(params=["memory", "sqlite", POSTGRES])
def logged(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every store, checkpointing every 4 events so checkpoints show up early."""
    opened = open_store(request.param, tmp_path, checkpoint_every=4)
    yield opened
    opened.close()


@pytest.fixture(params=["sqlite", POSTGRES])
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The SQL stores (their tables can be edited behind the ledger's back), checkpointing
    every 4 events."""
    opened = open_store(request.param, tmp_path, checkpoint_every=4)
    yield opened
    opened.close()
