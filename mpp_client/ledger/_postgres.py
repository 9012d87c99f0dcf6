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
from typing import TYPE_CHECKING, Any

from .._exceptions import ChallengeReused, PaymentError
from ._heads import HeadSink
from ._sql import _COLUMNS, Cursor, SqlLedger, SqlStore, SqlTx, _filter, _row
from ._store import PaymentRow, Reading, Window

if TYPE_CHECKING:
    from ..identity import AgentKey

__all__ = ["PostgresLedger", "PostgresStore"]


#: Past every bucket index (an open-ended range, as an array element).
_TOP = 2**62


def _array(values: Sequence[Any]) -> str:
    """A PostgreSQL array literal (cast in the query): far cheaper to send than a list."""
    items = []
    for value in values:
        if isinstance(value, int):
            items.append(str(value))
        else:
            text = str(value).replace("\\", "\\\\").replace('"', '\\"')
            items.append(f'"{text}"')
    return "{" + ",".join(items) + "}"


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
    CHARGE = (
        "record::jsonb ->> 'charge_units', record::jsonb ->> 'charge_currency', "
        "record::jsonb ->> 'charge_decimals'"
    )

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
                # Autocommit outside ``transaction()`` blocks: the flush is one statement.
                conn = self._psycopg.connect(self._url, autocommit=True)
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
            if not write:
                with conn.transaction(), conn.cursor() as cur:
                    # One snapshot for the whole read: verify() reads several tables
                    # and must not see another agent's write in only some of them.
                    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    yield SqlTx(self, Cursor(cur, "%s"))
                return
            with conn.transaction(), conn.cursor() as cur:
                tx = PostgresTx(self, Cursor(cur, "%s"), conn)
                yield tx
                tx.send_writes()
            if tx.hot:
                self._flush(conn)
        except errors as exc:
            if self.challenge_violation(exc):
                raise ChallengeReused(
                    "the challenge was answered by another payment a moment ago: "
                    "challenges are single use, refusing to pay it again"
                ) from None
            if self.transient(exc):
                raise
            raise PaymentError(
                f"the PostgreSQL ledger failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _flush(self, conn: Any) -> None:
        """Wait until everything committed so far is on disk.

        A transaction with an id commits synchronously, and a synchronous commit
        waits for the write-ahead log up to its own commit record, which lies
        after every commit before it: the asynchronously committed reservation
        is durable once this returns, before the wallet is called. It locks
        nothing, so writers of one budget flush their commits together.
        """
        conn.execute("SELECT pg_current_xact_id()")  # its own transaction (autocommit)

    def write(self) -> Any:
        return self._transaction(True)

    @contextmanager
    def peek(self) -> Iterator[SqlTx]:
        # No transaction: each statement on its own (one round trip each).
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                yield SqlTx(self, Cursor(cur, "%s"))
        except self._psycopg.Error as exc:
            if self.transient(exc):
                raise
            raise PaymentError(
                f"the PostgreSQL ledger failed: {type(exc).__name__}: {exc}"
            ) from exc

    def read(self) -> Any:
        return self._transaction(False)

    def setup(self) -> None:
        with self.write() as tx:
            # Only while creating tables: two processes opening at once must not
            # both try to create them.
            tx.cur.execute("SELECT pg_advisory_xact_lock(%s)", (_key(self._prefix),))
            self.migrate(tx.cur)

    def upsert_totals(
        self, tx: SqlTx, items: Sequence[tuple[tuple[int, int, int, str], list[int]]]
    ) -> None:
        # Columns as arrays: one statement text (prepared once) whatever the number of cells.
        t = self.names.totals
        columns: list[list[Any]] = [[], [], [], [], [], []]
        for (filter_id, level, bucket, currency), (n, nano) in items:
            values = (filter_id, level, bucket, currency, n, nano)
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        tx._write(
            f"INSERT INTO {t} (filter_id, level, bucket, currency, n, nano) "  # noqa: S608
            "SELECT * FROM unnest(?::bigint[], ?::bigint[], ?::bigint[], ?::text[], ?::bigint[], "
            "?::bigint[]) ON CONFLICT (filter_id, level, bucket, currency) "
            f"DO UPDATE SET n = {t}.n + excluded.n, nano = {t}.nano + excluded.nano",
            [_array(column) for column in columns],
        )

    def bulk_insert(
        self, tx: SqlTx, table: str, columns: str, rows: Sequence[Sequence[Any]]
    ) -> None:
        with tx.cur.raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def scope_key(self, scope: str) -> int:
        return _key(f"{self._prefix}scope:{scope}")

    def lock_scope(self, cur: Cursor, scope: str, *, exclusive: bool) -> None:
        kind = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        cur.execute(f"SELECT {kind}(?)", (self.scope_key(scope),))

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

    def stream_rows(self, tx: SqlTx, sql: str) -> Iterator[tuple[Any, ...]]:
        # Binary results: bytea arrives as it is stored (no hex text to decode), a third
        # of the time for the log; verify() reads every row this way.
        with self._connection().cursor(name=f"mpp_{secrets.token_hex(6)}", binary=True) as cur:
            cur.itersize = 2000
            cur.execute(sql)
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


class PostgresTx(SqlTx):
    """A write transaction in few statements: its reads in batches, its writes in one.

    Writes are kept until the end and sent as one statement of data-modifying
    ``WITH`` parts (each statement costs a round trip and the driver's work,
    which is most of a reservation's cost). Reads of a reservation are three
    statements: the scope lock, the filter rows (locked), then their totals
    and the exact part of each window, read after the locks are held so they
    see every commit before.
    """

    def __init__(self, store: PostgresStore, cur: Cursor, conn: Any) -> None:
        super().__init__(store, cur)
        self.conn = conn
        self.writes: list[tuple[str, Sequence[Any]]] = []

    def _write(self, sql: str, params: Sequence[Any]) -> None:
        self.writes.append((sql, params))

    def send_writes(self) -> None:
        if not self.writes:
            return
        parts = ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(self.writes))
        params = [value for _, values in self.writes for value in values]
        # A transaction holding budget rows lets go of them when it commits, not once
        # the commit reached the disk: the flush after it makes it durable.
        main = "SELECT set_config('synchronous_commit', 'off', true)" if self.hot else "SELECT 1"
        self.writes = []
        self.cur.execute(f"WITH {parts} {main}", params)

    def read_for_reservation(
        self, *, record_id: str, challenge: str, scope: str, payee: str, windows: Sequence[Window]
    ) -> Reading:
        self.hot = True
        store = self.store
        assert isinstance(store, PostgresStore)
        n = self.n
        # Every read below is an index range by design; the planner cannot know the
        # ranges are a second wide, so it is told not to scan tables instead.
        lock_and_check = (
            "SELECT pg_advisory_xact_lock_shared(?), "  # noqa: S608
            "set_config('enable_seqscan', 'off', true), "
            f"ARRAY(SELECT id FROM {n.payments} WHERE id = ?), "
            f"ARRAY(SELECT id FROM {n.payments} WHERE challenge = ?)"
        )
        row = self._one(lock_and_check, (store.scope_key(scope), record_id, challenge))
        assert row is not None
        # A new statement after the lock: it sees the registry as of now.
        filters = [_filter(r) for r in self._all(*self._filters_query(scope, payee, True))]
        sums: list[list[tuple[str, int, int]]] = [[] for _ in windows]
        exact: list[list[PaymentRow]] = [[] for _ in windows]
        if windows:
            # Each window's bucket ranges as rows of arrays: one statement text whatever
            # the windows, read after the filter rows are locked.
            ranges: list[list[Any]] = [[], [], [], [], []]
            for index, w in enumerate(windows):
                for level, first, end in w.ranges:
                    bounds = (index, w.filter_id, level, first, end if end is not None else _TOP)
                    for column, value in zip(ranges, bounds, strict=True):
                        column.append(value)
            # LATERAL: one index range scan per bucket range, whatever the planner
            # would guess about a join with an array.
            sums_sql = (
                "SELECT r.w, c.currency, c.n, c.nano FROM unnest(?::int[], ?::bigint[], "  # noqa: S608
                "?::bigint[], ?::bigint[], ?::bigint[]) AS r(w, f, lvl, lo, hi) "
                "CROSS JOIN LATERAL (SELECT currency, SUM(n) AS n, SUM(nano) AS nano "
                f"FROM {n.totals} t WHERE t.filter_id = r.f AND t.level = r.lvl "
                "AND t.bucket >= r.lo AND t.bucket < r.hi GROUP BY currency) c"
            )
            for index, currency, count, nano in self._all(
                sums_sql, [_array(column) for column in ranges]
            ):
                sums[int(index)].append((str(currency), int(count), int(nano)))
            spans = [(i, w) for i, w in enumerate(windows) if w.end_us > w.start_us]
            if spans:
                exact_sql = (
                    f"SELECT r.w, x.* FROM unnest(?::int[], ?::bigint[], ?::bigint[]) "  # noqa: S608
                    f"AS r(w, lo, hi) CROSS JOIN LATERAL (SELECT {_COLUMNS} FROM {n.payments} p "
                    "WHERE p.scope = ? AND p.created_us >= r.lo AND p.created_us < r.hi) x"
                )
                for r in self._all(
                    exact_sql,
                    (
                        _array([i for i, _ in spans]),
                        _array([w.start_us for _, w in spans]),
                        _array([w.end_us for _, w in spans]),
                        scope,
                    ),
                ):
                    exact[int(r[0])].append(_row(r[1:]))
        return Reading(
            owner=str(row[3][0]) if row[3] else None,
            taken=bool(row[2]),
            filters=filters,
            sums=sums,
            exact=exact,
        )


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
