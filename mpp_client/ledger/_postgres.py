"""The PostgreSQL ledger: one budget shared by a fleet of agents on many machines.

Needs the ``postgres`` extra (``pip install "mpp-client[postgres]"``, psycopg 3).

Locking, so that writers to different budgets never wait for each other and
writers to one budget wait only for the rows they both change:

* a reservation locks the rows of the budget filters it checks and updates
  (``SELECT ... FOR UPDATE``, in id order, so two reservations never
  deadlock), reads their totals, and writes; a settlement that stops a
  payment counting locks the same rows. Reservations are atomic across
  machines: two that share a budget run one after the other on its rows;
* writers hold a *shared* advisory lock on their scope; registering a new
  filter (rare: the first time a limit is seen) holds it *exclusive* while it
  backfills, so no write of the scope can slip past the backfill;
* the log needs no lock: each ledger object writes a chain of its own;
* every transaction commits before the call that made it returns, so a
  reservation is durable before the wallet is called.

A serialization failure or a deadlock rolls the whole transaction back; the
ledger then runs it again (a few times, see :mod:`._core`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from .._exceptions import PaymentError
from ..identity import AgentKey
from ._heads import HeadSink
from ._sql import Cursor, SqlLedger, SqlStore, SqlTx

__all__ = ["PostgresLedger", "PostgresStore"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _key(text: str) -> int:
    """A signed 64-bit advisory lock key for ``text``."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big", signed=True)


def describe(url: str, prefix: str) -> str:
    """Host, port and database of ``url``, never its user or password."""
    try:
        from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415 - optional extra

        info = conninfo_to_dict(url)
    except Exception:
        return f"PostgreSQL (tables {prefix}*)"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"postgresql://{host}:{port}/{info.get('dbname') or ''} (tables {prefix}*)"


class PostgresStore(SqlStore):
    """Tables under a prefix in one PostgreSQL database, through one connection."""

    INT = "BIGINT"
    BLOB = "BYTEA"
    FOR_UPDATE = " FOR UPDATE"

    def __init__(self, url: str, *, prefix: str) -> None:
        super().__init__(prefix)
        try:
            import psycopg  # noqa: PLC0415 - optional extra
        except ImportError:
            raise PaymentError(
                'a PostgreSQL ledger needs psycopg: pip install "mpp-client[postgres]"'
            ) from None
        self._psycopg = psycopg
        self._url = url
        self._prefix = prefix
        self.location = describe(url, prefix)
        self._conn: Any = None

    def _connection(self) -> Any:
        # One connection per ledger, shared by all threads: the ledger runs its
        # transactions under its lock, so they never overlap.
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

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[SqlTx]:
        conn = self._connection()
        errors = self._psycopg.Error
        try:
            with conn.transaction(), conn.cursor() as cur:
                if not write:
                    # One snapshot for the whole read: verify() reads several tables
                    # and must not see another agent's write in only some of them.
                    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                yield SqlTx(self, Cursor(cur, "%s"))
        except errors as exc:
            if self.transient(exc):
                raise
            raise PaymentError(
                f"the PostgreSQL ledger failed: {type(exc).__name__}: {exc}"
            ) from exc

    def write(self) -> Any:
        return self._transaction(True)

    def read(self) -> Any:
        return self._transaction(False)

    def setup(self) -> None:
        with self.write() as tx:
            # Only while creating tables: two processes opening at once must not
            # both try to create them.
            tx.cur.execute("SELECT pg_advisory_xact_lock(%s)", (_key(self._prefix),))
            self.migrate(tx.cur)

    def lock_scope(self, cur: Cursor, scope: str, *, exclusive: bool) -> None:
        kind = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        cur.execute(f"SELECT {kind}(?)", (_key(f"{self._prefix}scope:{scope}"),))

    def _columns(self, cur: Cursor, table: str) -> set[str]:
        cur.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = ? AND table_schema = current_schema()",
            (table,),
        )
        return {str(row[0]) for row in cur.fetchall()}

    def transient(self, exc: BaseException) -> bool:
        errors = self._psycopg.errors
        return isinstance(exc, errors.SerializationFailure | errors.DeadlockDetected)

    def challenge_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, self._psycopg.errors.UniqueViolation) and (
            getattr(exc.diag, "constraint_name", None) == f"{self.names.payments}_challenge"
        )

    def stream(self, tx: SqlTx, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        # A server-side cursor in the same transaction: rows arrive as they are used.
        with self._connection().cursor(name=f"mpp_{secrets.token_hex(6)}") as cur:
            cur.itersize = 2000
            cur.execute(sql.replace("?", "%s"), tuple(params))
            yield from cur

    def drop(self) -> None:
        n = self.names
        with self.write() as tx:
            for table in (
                n.legacy_checkpoints,
                n.legacy_audit,
                n.totals,
                n.filters,
                n.checkpoints,
                n.heads,
                n.log,
                n.meta,
                n.payments,
            ):
                tx.cur.execute(f"DROP TABLE IF EXISTS {table}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class PostgresLedger(SqlLedger):
    """A ledger in PostgreSQL tables (``<prefix>payments``, ``<prefix>log``...)."""

    store: PostgresStore

    def __init__(
        self,
        url: str,
        *,
        agent_key: AgentKey | None = None,
        trusted_agents: Sequence[str] = (),
        heads: HeadSink | None = None,
        prefix: str = "mpp_",
        checkpoint_every: int = 256,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = PostgresStore(url, prefix=prefix)
        super().__init__(
            self.store,
            agent_key=agent_key,
            trusted_agents=trusted_agents,
            heads=heads,
            checkpoint_every=checkpoint_every,
            clock=clock,
        )
        try:
            self.store.setup()
            self._open()
        except BaseException:
            self.store.close()
            raise

    def drop(self) -> None:
        """Delete this ledger's tables (for tests)."""
        with self._lock:
            self.store.drop()

    def __repr__(self) -> str:
        return f"<PostgresLedger {self.store.location}>"
