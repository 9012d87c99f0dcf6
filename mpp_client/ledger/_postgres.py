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

The common case runs *at once*, one round trip each: a reservation whose
scope and payee this ledger object has seen is one call of a PL/pgSQL
function (``<prefix>reserve_v4``) taking the same locks and making the same
checks, writing what does not depend on the budget before it locks the
budget's rows, and committing asynchronously so they are let go at once; a
flush sent in the same pipeline returns once it is on disk. Settling a
reservation the same object made, when the payment keeps counting (commit,
unknown), is one conditional ``UPDATE`` with its log entry and head. The
ledger checks what the function returns again (:mod:`._core`).

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
from ._chain import Entry, SignedHead
from ._heads import HeadSink
from ._record import COUNTED
from ._sql import _COLUMNS, Cursor, SqlLedger, SqlStore, SqlTx, _filter, _row
from ._store import AtOnce, PaymentRow, Reading, Settled, Window

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


#: The errors the reservation function raises to undo its writes, and catches (a class
#: of SQLSTATEs of our own).
_REFUSED = "MPP01"
_REGISTRY_CHANGED = "MPP02"

#: A transaction that waits for the disk: a transactional logical message gives it an
#: id and a log record. (An id alone is not enough: a transaction that wrote nothing
#: else to the log commits *asynchronously*, whatever ``synchronous_commit`` says.)
_FLUSH = "SELECT pg_logical_emit_message(true, 'mpp-client/flush', '')"


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
    RECORD_JSON = "record::jsonb"
    CHARGE = "j ->> 'charge_units', j ->> 'charge_currency', j ->> 'charge_decimals'"

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

        A transaction that has an id *and* wrote to the write-ahead log commits
        synchronously, and a synchronous commit waits for the log up to its own
        commit record, which lies after every commit before it: the
        asynchronously committed reservation is durable once this returns,
        before the wallet is called. It locks nothing, so writers of one budget
        flush their commits together (PostgreSQL's group commit).
        """
        conn.execute(_FLUSH)  # its own transaction (autocommit)

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
            names = [r[0] for r in tx._all("SELECT proname FROM pg_proc WHERE proname = ?",
                                            (self._reserve_fn,))]  # fmt: skip
            if not names:
                tx.cur.execute(self._reserve_ddl())

    # -- a reservation in one statement -------------------------------------------------

    at_once = True

    @property
    def _reserve_fn(self) -> str:
        # Versioned: a change of the function's text is a new name, never a replacement
        # under writers calling the old one.
        return f"{self._prefix}reserve_v4"

    def _reserve_ddl(self) -> str:
        """The reservation as a PL/pgSQL function: one round trip, locks held only in it.

        It does what :meth:`PostgresTx.read_for_reservation` and the ledger's
        check and writes do over several statements: the scope lock (shared),
        the challenge and id, the filter rows locked in id order (and compared
        with the ones the caller computed its cells for), then, in a statement
        of its own (a fresh snapshot, taken after the locks: it sees every
        reservation before), each window's totals and exact first second; then
        every check; then, only if all pass, the writes. Its commit is
        asynchronous (the caller's flush makes it durable before it returns),
        so a budget's rows are held for the function's run alone.
        """
        n = self.names
        counted = ", ".join(f"'{status}'" for status in sorted(COUNTED))
        return f"""
CREATE FUNCTION {self._reserve_fn}(
    a_lock bigint, a_id text, a_challenge text, a_scope text, a_payee text, a_fids bigint[],
    a_xw int[], a_xpayee text[], a_xmethod text[], a_xtokens text[], a_xlo bigint[],
    a_xhi bigint[],
    a_rw int[], a_rf bigint[], a_rlevel bigint[], a_rlo bigint[], a_rhi bigint[],
    a_cw int[], a_cmax bigint[], a_ccap numeric[], a_ccur text[], a_charge numeric,
    a_created bigint, a_updated bigint, a_status text, a_method text, a_currency text,
    a_nano bigint, a_tagset text, a_record text, a_rev bigint, a_chain text, a_seq bigint,
    a_tf bigint[], a_tl bigint[], a_tb bigint[], a_tc text[], a_tn bigint[], a_tnano bigint[],
    a_entry bytea, a_size bigint, a_root text, a_at text, a_agent text, a_signature text,
    OUT o_outcome text, OUT o_owner text, OUT o_w int[], OUT o_cur text[], OUT o_n bigint[],
    OUT o_nano numeric[])
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
DECLARE
    v_ids bigint[];
    v_bad boolean;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(a_lock);
    -- Every read below is an index range by design; the planner cannot know the
    -- ranges are a second wide, so it is told not to scan tables instead, and not
    -- to compile plans (JIT costs tens of ms, more than any of these reads). The
    -- OFFSET 0 below keeps each LATERAL range a subquery of its own: flattened into
    -- a join, an analyzed large table was read whole (a bitmap scan of the scope).
    PERFORM set_config('enable_seqscan', 'off', true);
    PERFORM set_config('jit', 'off', true);
    SELECT id INTO o_owner FROM {n.payments} WHERE challenge = a_challenge;
    IF o_owner IS NOT NULL THEN
        o_outcome := 'owner';
        RETURN;
    END IF;
    PERFORM 1 FROM {n.payments} WHERE id = a_id;
    IF FOUND THEN
        o_outcome := 'taken';
        RETURN;
    END IF;
    -- What does not depend on the budget is written before its rows are locked: the
    -- lock is held for the totals' read, the check and their update alone. A refusal
    -- raises, which undoes these writes too (the block is a subtransaction).
    BEGIN
    INSERT INTO {n.payments} ({_COLUMNS}) VALUES (a_id, a_created, a_updated, a_status,
        a_scope, a_payee, a_method, a_currency, a_nano, a_tagset, a_challenge, a_record, a_rev,
        a_chain, a_seq);
    INSERT INTO {n.log} (chain, seq, record_id, entry) VALUES (a_chain, a_seq, a_id, a_entry);
    INSERT INTO {n.heads} (chain, size, root, at, agent, signature)
    VALUES (a_chain, a_size, a_root, a_at, a_agent, a_signature)
    ON CONFLICT (chain) DO UPDATE SET size = excluded.size, root = excluded.root,
        at = excluded.at, agent = excluded.agent, signature = excluded.signature;
    SELECT coalesce(array_agg(id ORDER BY id), '{{}}') INTO v_ids FROM (
        SELECT id FROM {n.filters} WHERE scope = a_scope AND (payee IS NULL OR payee = a_payee)
        ORDER BY id FOR UPDATE) AS f;
    IF v_ids IS DISTINCT FROM a_fids THEN
        RAISE EXCEPTION 'filters' USING ERRCODE = '{_REGISTRY_CHANGED}';
    END IF;
    SELECT array_agg(g.w), array_agg(g.currency), array_agg(g.n), array_agg(g.nano)
    INTO o_w, o_cur, o_n, o_nano FROM (
        SELECT u.w, u.currency, sum(u.n)::bigint AS n, sum(u.nano) AS nano FROM (
            SELECT r.w, t.currency, t.n, t.nano
            FROM unnest(a_rw, a_rf, a_rlevel, a_rlo, a_rhi) AS r(w, f, lvl, lo, hi)
            CROSS JOIN LATERAL (
                SELECT currency, n, nano FROM {n.totals} t WHERE t.filter_id = r.f
                AND t.level = r.lvl AND t.bucket >= r.lo AND t.bucket < r.hi OFFSET 0) AS t
            UNION ALL
            SELECT x.w, p.currency, 1, p.charge_nano
            FROM unnest(a_xw, a_xpayee, a_xmethod, a_xtokens, a_xlo, a_xhi)
                AS x(w, payee, method, tokens, lo, hi)
            CROSS JOIN LATERAL (
                SELECT id, currency, charge_nano, payee, method, tagset, status
                FROM {n.payments} p
                WHERE p.scope = a_scope AND p.created_us >= x.lo AND p.created_us < x.hi
                OFFSET 0) AS p
            WHERE p.id <> a_id AND p.status IN ({counted})
            AND (x.payee IS NULL OR p.payee = x.payee)
            AND (x.method IS NULL OR p.method = x.method)
            AND NOT EXISTS (
                SELECT 1 FROM unnest(string_to_array(x.tokens, chr(1))) AS k(token)
                WHERE x.tokens <> '' AND strpos(p.tagset, k.token) = 0)
        ) AS u GROUP BY u.w, u.currency) AS g;
    SELECT EXISTS (
        SELECT 1 FROM unnest(a_cw, a_cmax, a_ccap, a_ccur) AS c(w, mx, cap, cur)
        WHERE (c.mx IS NOT NULL AND (
                SELECT coalesce(sum(z.n), 0) FROM unnest(o_w, o_n) AS z(w, n) WHERE z.w = c.w
              ) + 1 > c.mx)
        OR (c.cap IS NOT NULL AND (c.cur <> a_currency OR (
                SELECT coalesce(sum(z.nano), 0) FROM unnest(o_w, o_cur, o_nano) AS z(w, cur, nano)
                WHERE z.w = c.w AND z.cur = c.cur
              ) + a_charge > c.cap))
    ) INTO v_bad;
    IF v_bad THEN
        RAISE EXCEPTION 'refused' USING ERRCODE = '{_REFUSED}';
    END IF;
    INSERT INTO {n.totals} (filter_id, level, bucket, currency, n, nano)
    SELECT * FROM unnest(a_tf, a_tl, a_tb, a_tc, a_tn, a_tnano)
    ON CONFLICT (filter_id, level, bucket, currency)
    DO UPDATE SET n = {n.totals}.n + excluded.n, nano = {n.totals}.nano + excluded.nano;
    EXCEPTION
        WHEN SQLSTATE '{_REFUSED}' THEN
            o_outcome := 'refused';
            RETURN;
        WHEN SQLSTATE '{_REGISTRY_CHANGED}' THEN
            o_outcome := 'filters';
            RETURN;
    END;
    -- Committed without waiting for the disk (the caller's flush waits, after the
    -- locks are gone): writers of one budget queue for this function's run only.
    PERFORM set_config('synchronous_commit', 'off', true);
    o_outcome := 'ok';
END
$fn$"""  # noqa: S608 - names from Names.of (checked), no values

    def reserve_at_once(self, plan: AtOnce) -> Settled:
        row, head = plan.row, plan.head
        xw: list[int] = []
        xpayee: list[str | None] = []
        xmethod: list[str | None] = []
        xtokens: list[str] = []
        xlo: list[int] = []
        xhi: list[int] = []
        ranges: list[list[Any]] = [[], [], [], [], []]
        for index, (w, flt) in enumerate(plan.windows):
            for level, first, end in w.ranges:
                bounds = (index, w.filter_id, level, first, end if end is not None else _TOP)
                for column, value in zip(ranges, bounds, strict=True):
                    column.append(value)
            if w.end_us > w.start_us:
                xw.append(index)
                xpayee.append(flt.payee)
                xmethod.append(flt.method)
                # JSON tokens never hold a control character: chr(1) separates them.
                xtokens.append("\x01".join(flt.tokens))
                xlo.append(w.start_us)
                xhi.append(w.end_us)
        cells: list[list[Any]] = [[], [], [], [], [], []]
        for (filter_id, level, bucket, currency), (count, nano) in plan.cells.items():
            cell: tuple[Any, ...] = (filter_id, level, bucket, currency, count, nano)
            for column, value in zip(cells, cell, strict=True):
                column.append(value)
        checks = plan.checks
        params: list[Any] = [
            self.scope_key(row.scope), row.id, row.challenge, row.scope, row.payee,
            list(plan.filter_ids),
            xw, xpayee, xmethod, xtokens, xlo, xhi,
            *ranges,
            [c.window for c in checks], [c.max_count for c in checks],
            [c.cap_nano for c in checks], [c.cap_currency for c in checks], plan.charge_nano,
            row.created_us, row.updated_us, row.status, row.method, row.currency,
            row.charge_nano, row.tagset, row.record, row.rev, row.log_chain, row.log_seq,
            *cells,
            plan.entry.entry, head.size, head.root, head.at, head.agent, head.signature,
        ]  # fmt: skip
        sql = self._reserve_call
        conn = self._connection()
        errors = self._psycopg.Error
        try:
            with conn.pipeline():
                cur = conn.execute(sql, params)
                # Its own transaction, sent with the call (one round trip for both): it
                # returns once the reservation's commit is on disk (see _flush).
                conn.execute(_FLUSH)
                result = cur.fetchone()
        except errors as exc:
            self._raise(exc)
        assert result is not None
        outcome, owner, ws, currencies, counts, nanos = result
        sums: list[list[tuple[str, int, int]]] = [[] for _ in plan.windows]
        for w, currency, count, nano in zip(ws or (), currencies or (), counts or (), nanos or (),
                                             strict=True):  # fmt: skip
            sums[int(w)].append((str(currency), int(count), int(nano)))
        return Settled(str(outcome), owner, sums)

    @property
    def _reserve_call(self) -> str:
        call = self.__dict__.get("_call")
        if call is None:
            marks = ", ".join(["%s"] * 45)
            call = self.__dict__["_call"] = f"SELECT * FROM {self._reserve_fn}({marks})"  # noqa: S608
        return str(call)

    def settle_at_once(
        self, row: PaymentRow, old: PaymentRow, entry: Entry, head: SignedHead
    ) -> bool:
        n = self.names
        # One statement: the update only if the payment is as this writer left it, and
        # the log entry and head only with it. A synchronous commit (it holds no budget
        # rows): durable once it returns.
        sql = (
            f"WITH u AS (UPDATE {n.payments} SET status = %s, updated_us = %s, record = %s, "  # noqa: S608
            "rev = %s, log_chain = %s, log_seq = %s WHERE id = %s AND status = %s AND rev = %s "
            "AND log_chain = %s AND log_seq = %s RETURNING id), "
            f"l AS (INSERT INTO {n.log} (chain, seq, record_id, entry) "
            "SELECT %s, %s, id, %s FROM u), "
            f"h AS (INSERT INTO {n.heads} (chain, size, root, at, agent, signature) "
            "SELECT %s, %s, %s, %s, %s, %s FROM u ON CONFLICT (chain) DO UPDATE SET "
            "size = excluded.size, root = excluded.root, at = excluded.at, "
            "agent = excluded.agent, signature = excluded.signature) "
            "SELECT count(*) FROM u"
        )
        params = (
            row.status, row.updated_us, row.record, row.rev, row.log_chain, row.log_seq,
            old.id, old.status, old.rev, old.log_chain, old.log_seq,
            entry.chain, entry.seq, entry.entry,
            head.chain, head.size, head.root, head.at, head.agent, head.signature,
        )  # fmt: skip
        conn = self._connection()
        try:
            result = conn.execute(sql, params).fetchone()
        except self._psycopg.Error as exc:
            self._raise(exc)
        return bool(result and result[0] == 1)

    def _raise(self, exc: BaseException) -> Any:
        if self.challenge_violation(exc):
            raise ChallengeReused(
                "the challenge was answered by another payment a moment ago: "
                "challenges are single use, refusing to pay it again"
            ) from None
        if self.transient(exc):
            raise exc
        raise PaymentError(f"the PostgreSQL ledger failed: {type(exc).__name__}: {exc}") from exc

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

    def settle_bulk(self) -> None:
        # Autovacuum analyzes an imported table only when its turn comes; until
        # then the planner costs the ledger's reads for the table as it was
        # (a sequential scan of the imported rows, say). Analyzed now instead.
        n = self.names
        with self.write() as tx:
            for table in (n.payments, n.totals, n.log):
                tx.cur.execute(f"ANALYZE {table}")

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
            f"ARRAY(SELECT id FROM {n.payments} WHERE challenge = ?), "
            "set_config('jit', 'off', true)"  # no plan here is worth compiling
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
            # would guess about a join with an array (OFFSET 0 below: as in the
            # reservation function, it keeps the range from being flattened into a
            # join that reads the whole scope once the table is analyzed).
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
                    "WHERE p.scope = ? AND p.created_us >= r.lo AND p.created_us < r.hi OFFSET 0) x"
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
