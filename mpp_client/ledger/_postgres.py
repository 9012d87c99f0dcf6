"""The PostgreSQL ledger: one budget shared by a fleet of agents on many machines.

Needs the ``postgres`` extra (``pip install "mpp-client[postgres]"``, psycopg 3).
Every write transaction takes a transaction-level advisory lock keyed by the
table prefix, so reservations from any number of processes and hosts are
serialized: checking the limits and holding the amount is one atomic step.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from .._exceptions import PaymentError
from ..identity import AgentKey
from ._sql import Cursor, SqlLedger

__all__ = ["PostgresLedger"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PostgresLedger(SqlLedger):
    """A ledger in PostgreSQL tables (``<prefix>payments``, ``<prefix>audit``...)."""

    def __init__(
        self,
        url: str,
        *,
        agent_key: AgentKey | None = None,
        prefix: str = "mpp_",
        checkpoint_every: int = 256,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__(
            agent_key=agent_key, prefix=prefix, checkpoint_every=checkpoint_every, clock=clock
        )
        try:
            import psycopg  # noqa: PLC0415 - optional extra
        except ImportError:
            raise PaymentError(
                'a PostgreSQL ledger needs psycopg: pip install "mpp-client[postgres]"'
            ) from None
        self._psycopg = psycopg
        self._url = url
        self._lock_key = zlib.crc32(prefix.encode()) & 0x7FFFFFFF
        self._conn: Any = None
        self._setup()

    def _connection(self) -> Any:
        # One connection per ledger, shared by all threads: every operation runs
        # under ``self._lock``, so they never overlap. (A connection per thread
        # opened one for each worker thread an async client runs ledger calls
        # in: a few processes then exhausted the server's max_connections.)
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            try:
                conn = self._psycopg.connect(self._url, autocommit=False)
            except self._psycopg.Error as exc:
                # The URL may hold a password: name the failure, not the URL.
                raise PaymentError(
                    f"cannot connect to the PostgreSQL ledger: {type(exc).__name__}"
                ) from None
            self._conn = conn
        return conn

    def _ddl(self) -> list[str]:
        n = self._names
        return [
            f"""CREATE TABLE IF NOT EXISTS {n.payments} (
                id TEXT PRIMARY KEY,
                created_us BIGINT NOT NULL,
                updated_us BIGINT NOT NULL,
                status TEXT NOT NULL,
                payee TEXT NOT NULL,
                method TEXT NOT NULL,
                currency TEXT NOT NULL,
                charge_nano BIGINT NOT NULL,
                tagset TEXT NOT NULL DEFAULT '',
                challenge TEXT,
                record TEXT NOT NULL)""",
            f"CREATE INDEX IF NOT EXISTS {n.payments}_budget "
            f"ON {n.payments} (currency, status, created_us, charge_nano)",
            f"CREATE INDEX IF NOT EXISTS {n.payments}_payee ON {n.payments} (payee, created_us)",
            f"""CREATE TABLE IF NOT EXISTS {n.audit} (
                seq BIGINT PRIMARY KEY,
                at_us BIGINT NOT NULL,
                kind TEXT NOT NULL,
                record_id TEXT,
                body TEXT NOT NULL,
                hash TEXT NOT NULL,
                agent TEXT,
                signature TEXT)""",
            f"""CREATE TABLE IF NOT EXISTS {n.checkpoints} (
                tree_size BIGINT PRIMARY KEY,
                root TEXT NOT NULL,
                at TEXT NOT NULL,
                agent TEXT,
                signature TEXT)""",
        ]

    def _columns(self, cur: Cursor, table: str) -> set[str]:
        cur.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = ? AND table_schema = current_schema()",
            (table,),
        )
        return {str(row[0]) for row in cur.fetchall()}

    @contextmanager
    def _transaction(self, lock: bool) -> Iterator[Cursor]:
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    if lock:
                        cur.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                    else:
                        # One snapshot for the whole read: verify() reads three tables
                        # and must not see another agent's write in only some of them.
                        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    yield Cursor(cur, "%s")
            except self._psycopg.Error as exc:
                raise PaymentError(
                    f"the PostgreSQL ledger failed: {type(exc).__name__}: {exc}"
                ) from exc

    def _write(self) -> Any:
        return self._transaction(lock=True)

    def _read(self) -> Any:
        return self._transaction(lock=False)

    def drop(self) -> None:
        """Delete this ledger's tables (for tests)."""
        n = self._names
        with self._write() as cur:
            for table in (n.checkpoints, n.audit, n.payments):
                cur.execute(f"DROP TABLE IF EXISTS {table}")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    def __repr__(self) -> str:
        return f"<PostgresLedger prefix={self._names.payments.removesuffix('payments')!r}>"
