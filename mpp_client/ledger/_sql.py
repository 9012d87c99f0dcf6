"""Durable stores on SQL: the tables, the queries and the migrations SQLite and PostgreSQL share.

Tables (``<prefix>`` is ``mpp_`` by default):

* ``payments``: one row per payment: its record, status, and the columns
  budgets are counted over; indexed by challenge (unique), by scope and
  creation time, and by payee, scope, status and creation time;
* ``log``, ``log_heads``, ``log_checkpoints``: the entries of every writer's
  chain, each chain's latest signed tree head, and the heads kept as
  checkpoints (:mod:`._chain`);
* ``filters`` and ``totals``: the registered budget filters and their running
  totals per currency and time bucket (:mod:`._totals`);
* ``meta``: the ledger's id, and which agents wrote it;
* ``audit`` and ``checkpoints``: the legacy chain of ledgers written before
  chains per writer, kept as they were (:mod:`._legacy`).

Files and prefixes written by earlier versions are migrated on open: the new
tables and columns are added, their payments keep counting in the scope
``""``, and their audit rows stay readable as the legacy chain.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._exceptions import ChallengeReused
from ._chain import Entry, SignedHead
from ._core import StoreLedger
from ._legacy import AuditEvent, Checkpoint
from ._record import COUNTED, challenge_key
from ._store import PaymentRow, Store, Tx
from ._totals import Cells, Filter, tag_token, tagset

__all__ = ["Cursor", "SqlLedger", "SqlStore"]

_COUNTED = tuple(sorted(COUNTED))
_COLUMNS = (
    "id, created_us, updated_us, status, scope, payee, method, currency, charge_nano, "
    "tagset, challenge, record, rev, log_chain, log_seq"
)
#: Cells per upsert statement (six parameters each).
_CHUNK = 400


class Cursor:
    """A DB-API cursor as the SQL stores use it: ``?`` placeholders, tuple rows.

    ``placeholder`` is the driver's (``"?"`` for sqlite3, ``"%s"`` for
    psycopg); queries are written with ``?`` and translated here.
    """

    __slots__ = ("_cur", "_placeholder")

    def __init__(self, cur: Any, placeholder: str = "?") -> None:
        self._cur = cur
        self._placeholder = placeholder

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        if self._placeholder != "?":
            sql = sql.replace("?", self._placeholder)
        self._cur.execute(sql, tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if self._placeholder != "?":
            sql = sql.replace("?", self._placeholder)
        self._cur.executemany(sql, [tuple(r) for r in rows])

    @property
    def raw(self) -> Any:
        """The driver's own cursor."""
        return self._cur

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._cur.fetchone()
        return tuple(row) if row is not None else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._cur.fetchall()]


@dataclass(frozen=True, slots=True)
class Names:
    payments: str
    log: str
    heads: str
    checkpoints: str
    filters: str
    totals: str
    meta: str
    legacy_audit: str
    legacy_checkpoints: str

    @classmethod
    def of(cls, prefix: str) -> Names:
        if not prefix.replace("_", "").isalnum():
            raise ValueError("table prefix must be letters, digits and underscores")
        return cls(
            *(
                prefix + name
                for name in (
                    "payments",
                    "log",
                    "log_heads",
                    "log_checkpoints",
                    "filters",
                    "totals",
                    "meta",
                    "audit",
                    "checkpoints",
                )
            )
        )


def _row(values: Sequence[Any]) -> PaymentRow:
    return PaymentRow(
        str(values[0]),
        int(values[1]),
        int(values[2]),
        str(values[3]),
        str(values[4]),
        str(values[5]),
        str(values[6]),
        str(values[7]),
        int(values[8]),
        str(values[9]),
        values[10],
        str(values[11]),
        None if values[12] is None else int(values[12]),
        values[13],
        None if values[14] is None else int(values[14]),
    )


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _head(values: Sequence[Any], ledger: str) -> SignedHead:
    # Heads are stored without the ledger id (it is the ledger's own, in meta).
    return SignedHead(ledger, str(values[0]), int(values[1]), str(values[2]), str(values[3]),
                      values[4], values[5])  # fmt: skip


class SqlStore(Store):
    """The queries of both SQL stores; subclasses provide connections and dialect."""

    blocking = True
    #: Dialect words filled into the DDL.
    INT = "INTEGER"
    BLOB = "BLOB"
    NO_ROWID = ""
    CHECK_INT = ""
    FOR_UPDATE = ""

    def __init__(self, prefix: str) -> None:
        self.names = Names.of(prefix)

    # -- what subclasses provide ------------------------------------------------------

    @abc.abstractmethod
    def _columns(self, cur: Cursor, table: str) -> set[str]:
        """The column names of ``table`` (empty when it does not exist)."""

    @abc.abstractmethod
    def stream(self, tx: SqlTx, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows of a big query, read as they are used (inside ``tx``)."""

    def stream_rows(self, tx: SqlTx, sql: str) -> Iterator[tuple[Any, ...]]:
        """Rows of a big read-only query as the driver's tuples, the fastest way it has."""
        return self.stream(tx, sql)

    @abc.abstractmethod
    def challenge_violation(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a unique violation of the challenge index."""

    def lock_scope(self, cur: Cursor, scope: str, *, exclusive: bool) -> None:
        """Nothing to lock where one writer at a time holds the whole database."""

    def upsert_totals(
        self, tx: SqlTx, items: Sequence[tuple[tuple[int, int, int, str], list[int]]]
    ) -> None:
        """Add cells to the totals: one multi-row upsert (per chunk of cells)."""
        tx._upsert_values(items)

    def bulk_insert(
        self, tx: SqlTx, table: str, columns: str, rows: Sequence[Sequence[Any]]
    ) -> None:
        """Insert many rows at once (an import)."""
        marks = ", ".join("?" * len(columns.split(",")))
        tx.cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)  # noqa: S608

    ENTRIES_ORDER = "chain, seq"
    #: The record as the database's JSON (``j``), and the exact charge read out of it.
    RECORD_JSON = "record"
    CHARGE = (
        "json_extract(j, '$.charge_units'), json_extract(j, '$.charge_currency'), "
        "json_extract(j, '$.charge_decimals')"
    )

    # -- schema -------------------------------------------------------------------------

    def ddl(self) -> list[str]:
        n = self.names
        i, blob = self.INT, self.BLOB
        return [
            f"""CREATE TABLE IF NOT EXISTS {n.payments} (
                id TEXT PRIMARY KEY, created_us {i} NOT NULL, updated_us {i} NOT NULL,
                status TEXT NOT NULL, payee TEXT NOT NULL, method TEXT NOT NULL,
                currency TEXT NOT NULL, charge_nano {i} NOT NULL,
                tagset TEXT NOT NULL DEFAULT '', challenge TEXT, record TEXT NOT NULL,
                scope TEXT NOT NULL DEFAULT '', rev {i}, log_chain TEXT, log_seq {i})""",
            f"""CREATE TABLE IF NOT EXISTS {n.log} (
                chain TEXT NOT NULL, seq {i} NOT NULL, record_id TEXT, entry {blob} NOT NULL,
                PRIMARY KEY (chain, seq))""",
            f"""CREATE TABLE IF NOT EXISTS {n.heads} (
                chain TEXT PRIMARY KEY, size {i} NOT NULL, root TEXT NOT NULL, at TEXT NOT NULL,
                agent TEXT, signature TEXT)""",
            f"""CREATE TABLE IF NOT EXISTS {n.checkpoints} (
                chain TEXT NOT NULL, size {i} NOT NULL, root TEXT NOT NULL, at TEXT NOT NULL,
                agent TEXT, signature TEXT, PRIMARY KEY (chain, size))""",
            f"""CREATE TABLE IF NOT EXISTS {n.filters} (
                id {i} PRIMARY KEY, scope TEXT NOT NULL, payee TEXT, method TEXT,
                tags TEXT NOT NULL)""",
            f"CREATE INDEX IF NOT EXISTS {n.filters}_scope ON {n.filters} (scope, payee)",
            f"""CREATE TABLE IF NOT EXISTS {n.totals} (
                filter_id {i} NOT NULL, level {i} NOT NULL, bucket {i} NOT NULL,
                currency TEXT NOT NULL, n {i} NOT NULL, nano {i} NOT NULL {self.CHECK_INT},
                PRIMARY KEY (filter_id, level, bucket, currency)){self.NO_ROWID}""",
            f"""CREATE TABLE IF NOT EXISTS {n.meta} (
                key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
        ]

    def migrate(self, cur: Cursor) -> None:
        """Create what is missing and bring tables of earlier versions up to date."""
        n = self.names
        columns = self._columns(cur, n.payments)
        if columns:
            self._migrate_payments(cur, columns)
        for statement in self.ddl():
            cur.execute(statement)
        p = n.payments
        cur.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {p}_challenge ON {p} (challenge)")
        cur.execute(f"CREATE INDEX IF NOT EXISTS {p}_scope ON {p} (scope, created_us)")
        cur.execute(f"CREATE INDEX IF NOT EXISTS {p}_who ON {p} (payee, scope, status, created_us)")
        # Budgets are no longer summed over the payments: their old indexes go.
        cur.execute(f"DROP INDEX IF EXISTS {p}_budget")
        cur.execute(f"DROP INDEX IF EXISTS {p}_payee")

    def _migrate_payments(self, cur: Cursor, columns: set[str]) -> None:
        p = self.names.payments
        if "challenge" not in columns:
            # Challenges are single use across restarts: index what each record answered.
            # A ledger written before this may hold a replayed id twice; the first keeps it.
            cur.execute(f"ALTER TABLE {p} ADD COLUMN challenge TEXT")
            cur.execute(f"SELECT id, record FROM {p} ORDER BY created_us, id")  # noqa: S608
            seen: set[str] = set()
            for record_id, stored in cur.fetchall():
                data = json.loads(stored)
                key = challenge_key(data["realm"], data["challenge_id"])
                if key in seen:
                    continue
                seen.add(key)
                cur.execute(f"UPDATE {p} SET challenge = ? WHERE id = ?", (key, record_id))  # noqa: S608
        if "tagset" not in columns:
            cur.execute(f"ALTER TABLE {p} ADD COLUMN tagset TEXT NOT NULL DEFAULT ''")
            cur.execute(f"SELECT id, record FROM {p}")  # noqa: S608
            for record_id, stored in cur.fetchall():
                tags = json.loads(stored).get("tags") or {}
                if tags:
                    cur.execute(
                        f"UPDATE {p} SET tagset = ? WHERE id = ?",  # noqa: S608
                        (tagset(tags), record_id),
                    )
        if "scope" not in columns:
            # Payments from before scopes keep counting, in the scope "".
            cur.execute(f"ALTER TABLE {p} ADD COLUMN scope TEXT NOT NULL DEFAULT ''")
        for column, kind in (("rev", self.INT), ("log_chain", "TEXT"), ("log_seq", self.INT)):
            if column not in columns:
                cur.execute(f"ALTER TABLE {p} ADD COLUMN {column} {kind}")


class SqlTx(Tx):
    """The primitive operations as SQL, over one transaction's cursor."""

    def __init__(self, store: SqlStore, cur: Cursor) -> None:
        self.store = store
        self.cur = cur
        self.n = store.names
        #: True once it locked budget rows (PostgreSQL commits those without
        #: holding them through the flush, see :mod:`._postgres`).
        self.hot = False

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self.cur.execute(sql, params)
        return self.cur.fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.cur.execute(sql, params)
        return self.cur.fetchall()

    def _write(self, sql: str, params: Sequence[Any]) -> None:
        """Every write goes through here (run now; a store may send them later, together)."""
        self.cur.execute(sql, params)

    # -- payments ------------------------------------------------------------------

    def payment(self, record_id: str, *, lock: bool = False) -> PaymentRow | None:
        lock_clause = self.store.FOR_UPDATE if lock else ""
        row = self._one(
            f"SELECT {_COLUMNS} FROM {self.n.payments} WHERE id = ?{lock_clause}",  # noqa: S608
            (record_id,),
        )
        return _row(row) if row is not None else None

    def challenge_owner(self, key: str) -> str | None:
        row = self._one(f"SELECT id FROM {self.n.payments} WHERE challenge = ?", (key,))  # noqa: S608
        return str(row[0]) if row is not None else None

    def insert_payment(self, row: PaymentRow) -> None:
        try:
            self._write(
                f"INSERT INTO {self.n.payments} ({_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                _values(row),
            )
        except Exception as exc:
            if self.store.challenge_violation(exc):
                # Another writer answered it between our check and our insert.
                raise ChallengeReused(
                    "the challenge was answered by another payment a moment ago: "
                    "challenges are single use, refusing to pay it again"
                ) from None
            raise

    def insert_payments(self, rows: Sequence[PaymentRow]) -> None:
        self.store.bulk_insert(self, self.n.payments, _COLUMNS, [_values(r) for r in rows])

    def update_payment(self, row: PaymentRow) -> None:
        self._write(
            f"UPDATE {self.n.payments} SET status = ?, updated_us = ?, record = ?, rev = ?, "  # noqa: S608
            "log_chain = ?, log_seq = ? WHERE id = ?",
            (row.status, row.updated_us, row.record, row.rev, row.log_chain, row.log_seq, row.id),
        )

    def payments_created(self, scope: str, start_us: int, end_us: int) -> list[PaymentRow]:
        return [_row(r) for r in self._all(*self._created_query(scope, start_us, end_us))]

    def _created_query(self, scope: str, start_us: int, end_us: int) -> tuple[str, list[Any]]:
        sql = (
            f"SELECT {_COLUMNS} FROM {self.n.payments} "  # noqa: S608
            "WHERE scope = ? AND created_us >= ? AND created_us < ?"
        )
        return sql, [scope, start_us, end_us]

    def counted_payments(self, scope: str, payee: str | None) -> Iterator[PaymentRow]:
        marks = ", ".join("?" * len(_COUNTED))
        if payee is None:
            sql = (
                f"SELECT {_COLUMNS} FROM {self.n.payments} WHERE scope = ? AND status IN ({marks})"  # noqa: S608
            )
            params: tuple[Any, ...] = (scope, *_COUNTED)
        else:
            sql = (
                f"SELECT {_COLUMNS} FROM {self.n.payments} "  # noqa: S608
                f"WHERE payee = ? AND scope = ? AND status IN ({marks})"
            )
            params = (payee, scope, *_COUNTED)
        return (_row(r) for r in self._all(sql, params))

    # -- filters and totals ----------------------------------------------------------

    def lock_scope(self, scope: str, *, exclusive: bool) -> None:
        self.store.lock_scope(self.cur, scope, exclusive=exclusive)

    def filters_for(self, scope: str, payee: str, *, lock: bool = False) -> list[Filter]:
        if lock:
            self.hot = True
        return [_filter(r) for r in self._all(*self._filters_query(scope, payee, lock))]

    def _filters_query(self, scope: str, payee: str, lock: bool) -> tuple[str, list[Any]]:
        lock_clause = self.store.FOR_UPDATE if lock else ""
        sql = (
            f"SELECT scope, payee, method, tags FROM {self.n.filters} "  # noqa: S608
            f"WHERE scope = ? AND (payee IS NULL OR payee = ?) ORDER BY id{lock_clause}"
        )
        return sql, [scope, payee]

    def has_filter(self, filter_id: int) -> bool:
        return self._one(f"SELECT 1 FROM {self.n.filters} WHERE id = ?", (filter_id,)) is not None  # noqa: S608

    def insert_filter(self, flt: Filter) -> None:
        self._write(
            f"INSERT INTO {self.n.filters} (id, scope, payee, method, tags) "  # noqa: S608
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (flt.id, flt.scope, flt.payee, flt.method, json.dumps([list(t) for t in flt.tags])),
        )

    def bucket_sums(
        self, filter_id: int, ranges: Sequence[tuple[int, int, int | None]]
    ) -> list[tuple[str, int, int]]:
        return _sums(self._all(*self._sums_query(filter_id, ranges)))

    def _sums_query(
        self, filter_id: int, ranges: Sequence[tuple[int, int, int | None]]
    ) -> tuple[str, list[Any]]:
        # One range of the primary key per level: each is a seek and a short walk.
        parts: list[str] = []
        params: list[Any] = []
        for level, first, end in ranges:
            bound = "" if end is None else " AND bucket < ?"
            parts.append(
                f"SELECT currency, n, nano FROM {self.n.totals} "  # noqa: S608
                f"WHERE filter_id = ? AND level = ? AND bucket >= ?{bound}"
            )
            params += [filter_id, level, first] + ([] if end is None else [end])
        sql = (
            "SELECT currency, SUM(n), SUM(nano) FROM ("  # noqa: S608
            + " UNION ALL ".join(parts)
            + ") AS cells GROUP BY currency"
        )
        return sql, params

    def add_totals(self, cells: Cells) -> None:
        items = [(k, v) for k, v in cells.items() if v != [0, 0]]
        if items:
            self.store.upsert_totals(self, items)

    def _upsert_values(self, items: Sequence[tuple[tuple[int, int, int, str], list[int]]]) -> None:
        t = self.n.totals
        for start in range(0, len(items), _CHUNK):
            chunk = items[start : start + _CHUNK]
            values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk))
            params: list[Any] = []
            for (filter_id, level, bucket, currency), (n, nano) in chunk:
                params += [filter_id, level, bucket, currency, n, nano]
            self._write(
                f"INSERT INTO {t} (filter_id, level, bucket, currency, n, nano) "  # noqa: S608
                f"VALUES {values} ON CONFLICT (filter_id, level, bucket, currency) "
                f"DO UPDATE SET n = {t}.n + excluded.n, nano = {t}.nano + excluded.nano",
                params,
            )

    # -- the log -------------------------------------------------------------------

    def insert_entries(self, entries: Sequence[Entry]) -> None:
        sql = f"INSERT INTO {self.n.log} (chain, seq, record_id, entry) VALUES (?, ?, ?, ?)"  # noqa: S608
        if len(entries) > 8:
            values = [(e.chain, e.seq, e.record_id, e.entry) for e in entries]
            self.store.bulk_insert(self, self.n.log, "chain, seq, record_id, entry", values)
            return
        for e in entries:
            self._write(sql, (e.chain, e.seq, e.record_id, e.entry))

    def put_head(self, head: SignedHead) -> None:
        self._write(
            f"INSERT INTO {self.n.heads} (chain, size, root, at, agent, signature) "  # noqa: S608
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (chain) DO UPDATE SET size = excluded.size, "
            "root = excluded.root, at = excluded.at, agent = excluded.agent, "
            "signature = excluded.signature",
            (head.chain, head.size, head.root, head.at, head.agent, head.signature),
        )

    def put_checkpoint(self, head: SignedHead) -> None:
        self._write(
            f"INSERT INTO {self.n.checkpoints} (chain, size, root, at, agent, signature) "  # noqa: S608
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (chain, size) DO UPDATE SET "
            "root = excluded.root, at = excluded.at, agent = excluded.agent, "
            "signature = excluded.signature",
            (head.chain, head.size, head.root, head.at, head.agent, head.signature),
        )

    def meta(self, key: str) -> str | None:
        row = self._one(f"SELECT value FROM {self.n.meta} WHERE key = ?", (key,))  # noqa: S608
        return str(row[0]) if row is not None else None

    def set_meta(self, key: str, value: str) -> None:
        self._write(
            f"INSERT INTO {self.n.meta} (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",  # noqa: S608
            (key, value),
        )

    # -- history ---------------------------------------------------------------------

    def _who(self, scope: str | None, payee: str) -> tuple[str, list[Any]]:
        if scope is None:
            return "payee = ?", [payee]
        return "payee = ? AND scope = ?", [payee, scope]

    def has_paid(self, scope: str | None, payee: str) -> bool:
        who, params = self._who(scope, payee)
        for status in ("committed", "unknown"):
            # In the index's order, so the planner walks the index (one probe) even
            # where a table scan looks cheap: for a new payee it would read every row.
            row = self._one(
                f"SELECT created_us FROM {self.n.payments} WHERE {who} AND status = ? "  # noqa: S608
                "ORDER BY created_us DESC LIMIT 1",
                (*params, status),
            )
            if row is not None:
                return True
        return False

    def recent_committed(self, scope: str | None, payee: str, n: int) -> list[tuple[int, str, int]]:
        who, params = self._who(scope, payee)
        # The exact charge, read out of the record by the database: each record is
        # converted to JSON once (in a subquery), not once per field read.
        store = self.store
        rows = self._all(
            f"SELECT {store.CHARGE} FROM (SELECT {store.RECORD_JSON} AS j "  # noqa: S608
            f"FROM {self.n.payments} WHERE {who} AND status = ? "
            "ORDER BY created_us DESC LIMIT ?) AS recent",
            (*params, "committed", n),
        )
        return [(int(units), str(currency), int(decimals)) for units, currency, decimals in rows]

    def failure_streak(self, scope: str | None, payee: str) -> tuple[int, int | None]:
        who, params = self._who(scope, payee)
        last = self._one(
            f"SELECT created_us FROM {self.n.payments} WHERE {who} AND status = ? "  # noqa: S608
            "ORDER BY created_us DESC LIMIT 1",
            (*params, "committed"),
        )
        after = int(last[0]) if last is not None else None
        since = "" if after is None else " AND created_us > ?"
        bound = [] if after is None else [after]
        rows = self._all(
            f"SELECT updated_us FROM {self.n.payments} WHERE {who} AND status = ?{since} "  # noqa: S608
            "ORDER BY created_us DESC",
            (*params, "unknown", *bound),
        )
        return len(rows), (int(rows[0][0]) if rows else None)

    # -- reports ---------------------------------------------------------------------

    def sum_matching(
        self,
        *,
        scope: str | None,
        currency: str | None,
        since_us: int | None,
        payee: str | None,
        method: str | None,
        tags: Mapping[str, str],
    ) -> tuple[int, int]:
        where = [f"status IN ({', '.join('?' * len(_COUNTED))})"]
        params: list[Any] = list(_COUNTED)
        for column, value in (
            ("scope = ?", scope),
            ("currency = ?", currency),
            ("created_us >= ?", since_us),
            ("payee = ?", payee),
            ("method = ?", method),
        ):
            if value is not None:
                where.append(column)
                params.append(value)
        for key, value in sorted(tags.items()):
            where.append("tagset LIKE ? ESCAPE '\\'")
            params.append(f"%{_like_escape(tag_token(key, value))}%")
        row = self._one(
            f"SELECT COUNT(*), COALESCE(SUM(charge_nano), 0) FROM {self.n.payments} "  # noqa: S608
            f"WHERE {' AND '.join(where)}",
            params,
        )
        assert row is not None
        return int(row[0]), int(row[1])

    def all_payments(self) -> Iterator[PaymentRow]:
        sql = f"SELECT {_COLUMNS} FROM {self.n.payments} ORDER BY created_us, id"  # noqa: S608
        return (_row(r) for r in self.store.stream(self, sql))

    def all_entries(self) -> Iterator[Entry]:
        sql = (
            f"SELECT chain, seq, record_id, entry FROM {self.n.log} "  # noqa: S608
            f"ORDER BY {self.store.ENTRIES_ORDER}"
        )
        return (Entry(str(c), int(s), r, bytes(e)) for c, s, r, e in self.store.stream(self, sql))

    # verify() reads every row: plain tuples as the driver gives them (it checks their types).

    def log_rows(self) -> Iterator[tuple[Any, ...]]:
        sql = (
            f"SELECT chain, seq, record_id, entry FROM {self.n.log} "  # noqa: S608
            f"ORDER BY {self.store.ENTRIES_ORDER}"
        )
        return self.store.stream_rows(self, sql)

    def payment_rows(self) -> Iterator[tuple[Any, ...]]:
        return self.store.stream_rows(self, f"SELECT {_COLUMNS} FROM {self.n.payments}")  # noqa: S608

    def total_rows(self) -> Iterator[tuple[Any, ...]]:
        sql = (
            f"SELECT filter_id, level, bucket, currency, n, nano FROM {self.n.totals} "  # noqa: S608
            "WHERE n <> 0 OR nano <> 0 ORDER BY filter_id, level, bucket, currency"
        )
        return self.store.stream_rows(self, sql)

    def chain_entries(self, chain: str, size: int) -> list[Entry]:
        rows = self._all(
            f"SELECT chain, seq, record_id, entry FROM {self.n.log} "  # noqa: S608
            "WHERE chain = ? AND seq < ? ORDER BY seq",
            (chain, size),
        )
        return [Entry(str(c), int(s), r, bytes(e)) for c, s, r, e in rows]

    def chain_size(self, chain: str) -> int:
        if chain == "legacy":  # its events are numbered from 1
            if not self._has_legacy():
                return 0
            row = self._one(f"SELECT MAX(seq) FROM {self.n.legacy_audit}")  # noqa: S608
            return int(row[0]) if row is not None and row[0] is not None else 0
        row = self._one(f"SELECT MAX(seq) FROM {self.n.log} WHERE chain = ?", (chain,))  # noqa: S608
        return int(row[0]) + 1 if row is not None and row[0] is not None else 0

    def heads(self) -> list[SignedHead]:
        rows = self._all(f"SELECT chain, size, root, at, agent, signature FROM {self.n.heads}")  # noqa: S608
        return [_head(r, self.store.ledger_id) for r in rows]

    def checkpoints(self) -> list[SignedHead]:
        rows = self._all(
            f"SELECT chain, size, root, at, agent, signature FROM {self.n.checkpoints} "  # noqa: S608
            "ORDER BY chain, size"
        )
        return [_head(r, self.store.ledger_id) for r in rows]

    def all_filters(self) -> list[Filter]:
        rows = self._all(f"SELECT scope, payee, method, tags, id FROM {self.n.filters}")  # noqa: S608
        return [_filter(r) for r in rows]

    def all_totals(self) -> Iterator[tuple[tuple[int, int, int, str], tuple[int, int]]]:
        sql = f"SELECT filter_id, level, bucket, currency, n, nano FROM {self.n.totals}"  # noqa: S608
        return (
            ((int(f), int(lv), int(b), str(c)), (int(n), int(nano)))
            for f, lv, b, c, n, nano in self.store.stream(self, sql)
        )

    def all_meta(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self._all(f"SELECT key, value FROM {self.n.meta}")}  # noqa: S608

    # -- the legacy chain ------------------------------------------------------------

    def _has_legacy(self) -> bool:
        return bool(self.store._columns(self.cur, self.n.legacy_audit))

    def legacy_events(self) -> list[AuditEvent]:
        if not self._has_legacy():
            return []
        rows = self._all(
            f"SELECT seq, kind, record_id, body, hash, agent, signature "  # noqa: S608
            f"FROM {self.n.legacy_audit} ORDER BY seq"
        )
        return [
            AuditEvent(int(r[0]), str(r[1]), r[2], str(r[3]).encode("utf-8"), str(r[4]), r[5], r[6])
            for r in rows
        ]

    def legacy_checkpoints(self) -> list[Checkpoint]:
        if not self.store._columns(self.cur, self.n.legacy_checkpoints):
            return []
        rows = self._all(
            f"SELECT tree_size, root, at, agent, signature FROM {self.n.legacy_checkpoints} "  # noqa: S608
            "ORDER BY tree_size"
        )
        return [Checkpoint(int(r[0]), str(r[1]), str(r[2]), r[3], r[4]) for r in rows]

    def put_legacy_checkpoint(self, checkpoint: Checkpoint) -> None:
        t = self.n.legacy_checkpoints
        self.cur.execute(f"DELETE FROM {t} WHERE tree_size = ?", (checkpoint.tree_size,))  # noqa: S608
        self.cur.execute(
            f"INSERT INTO {t} (tree_size, root, at, agent, signature) VALUES (?, ?, ?, ?, ?)",  # noqa: S608
            (checkpoint.tree_size, checkpoint.root, checkpoint.at, checkpoint.agent,
             checkpoint.signature),
        )  # fmt: skip


def _values(row: PaymentRow) -> tuple[Any, ...]:
    return (
        row.id,
        row.created_us,
        row.updated_us,
        row.status,
        row.scope,
        row.payee,
        row.method,
        row.currency,
        row.charge_nano,
        row.tagset,
        row.challenge,
        row.record,
        row.rev,
        row.log_chain,
        row.log_seq,
    )


def _sums(rows: Sequence[Sequence[Any]]) -> list[tuple[str, int, int]]:
    return [(str(c), int(n), int(nano)) for c, n, nano in rows]


def _filter(values: Sequence[Any]) -> Filter:
    tags = tuple((str(k), str(v)) for k, v in json.loads(values[3]))
    return Filter(str(values[0]), values[1], values[2], tags)


class SqlLedger(StoreLedger):
    """A ledger in SQL tables: the base of :class:`SqliteLedger` and :class:`PostgresLedger`."""

    store: SqlStore
