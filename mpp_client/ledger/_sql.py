"""Durable ledgers on SQL: the shared logic of the SQLite and PostgreSQL stores.

Two tables hold the state: ``payments`` (one row per payment, its current
status and the columns budgets are summed over) and ``audit`` (the append-only
hash-chained log). Every change writes both in one transaction, under the
store's write lock (SQLite's ``BEGIN IMMEDIATE``; a PostgreSQL advisory lock),
so a reservation checks every limit and holds the amount atomically even
against other processes and other machines.

Budgets are summed in SQL over an integer column holding each charge in
billionths of its currency (``charge_nano``), rounded *up* when an asset has
more than nine decimals: a budget can be counted a hair high, never low.
"""

from __future__ import annotations

import abc
import csv
import io
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .._decision import Limit
from .._exceptions import BudgetExceeded, PaymentError
from ..identity import AgentKey
from ..money import Amount
from ..protocol import Receipt
from ._audit import (
    GENESIS,
    AuditEvent,
    Checkpoint,
    VerifyReport,
    export_proof,
    make_checkpoint,
    make_event,
    verify_chain,
)
from ._base import COUNTED, Ledger, PaymentRecord, Status, challenge_key, reused_challenge

__all__ = ["Cursor", "SqlLedger", "to_nano"]

_NANO = 9
_MAX_NANO = 2**63 - 1
_COUNTED = tuple(sorted(COUNTED))


def to_nano(amount: Amount) -> int:
    """The amount in billionths of its currency, rounded up (never undercounts)."""
    if amount.decimals <= _NANO:
        return amount.units * _pow10(_NANO - amount.decimals)
    return -((-amount.units) // _pow10(amount.decimals - _NANO))


def _cap_nano(cap: Amount) -> int:
    """A cap in billionths, rounded down (never overcounts the room left)."""
    if cap.decimals <= _NANO:
        return cap.units * _pow10(_NANO - cap.decimals)
    return cap.units // _pow10(cap.decimals - _NANO)


def _tag_token(key: str, value: str) -> str:
    # JSON quoting makes each pair unambiguous inside the tagset string.
    return json.dumps([key, value], ensure_ascii=False)


def _tagset(tags: Mapping[str, str]) -> str:
    """All tags of a payment, one searchable token per pair (see ``_usage``)."""
    return "".join(_tag_token(k, v) for k, v in sorted(tags.items()))


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _pow10(exponent: int) -> int:
    return int(10**exponent)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(moment: datetime) -> int:
    """Exact microseconds since the epoch (no float rounding)."""
    if moment.tzinfo is None:
        raise ValueError("ledger times must be timezone-aware")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _from_nano(nano: int, currency: str) -> Amount:
    amount = Amount(nano, currency, _NANO)
    # Present it with as few decimals as are exact (at least 2 for readability).
    for decimals in range(2, _NANO):
        try:
            return amount.rescale(decimals)
        except ValueError:
            continue
    return amount


class Cursor:
    """A DB-API cursor as the SQL ledger uses it: ``?`` placeholders, tuple rows.

    ``paramstyle`` is the driver's placeholder (``"?"`` for sqlite3, ``"%s"``
    for psycopg); queries are written with ``?`` and translated here.
    """

    __slots__ = ("_cur", "_placeholder")

    def __init__(self, cur: Any, placeholder: str = "?") -> None:
        self._cur = cur
        self._placeholder = placeholder

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        if self._placeholder != "?":
            sql = sql.replace("?", self._placeholder)
        self._cur.execute(sql, tuple(params))

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._cur.fetchone()
        return tuple(row) if row is not None else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._cur.fetchall()]


@dataclass(frozen=True, slots=True)
class _Names:
    payments: str
    audit: str
    checkpoints: str


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SqlLedger(Ledger):
    """A ledger stored in SQL tables. Subclasses provide connections and locking.

    ``agent_key`` signs every audit event and checkpoint. ``checkpoint_every``
    events, a signed Merkle tree head is stored.
    """

    blocking = True

    def __init__(
        self,
        *,
        agent_key: AgentKey | None = None,
        prefix: str = "mpp_",
        checkpoint_every: int = 256,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not prefix.replace("_", "").isalnum():
            raise ValueError("table prefix must be letters, digits and underscores")
        self._agent = agent_key
        self._names = _Names(f"{prefix}payments", f"{prefix}audit", f"{prefix}checkpoints")
        self._checkpoint_every = checkpoint_every
        self._clock = clock
        self._lock = threading.RLock()

    # -- what subclasses provide ------------------------------------------------------

    @abc.abstractmethod
    def _write(self) -> AbstractContextManager[Cursor]:
        """A transaction holding the ledger's exclusive write lock."""

    @abc.abstractmethod
    def _read(self) -> AbstractContextManager[Cursor]:
        """A consistent read."""

    @abc.abstractmethod
    def _ddl(self) -> list[str]:
        """Statements creating the tables (idempotent)."""

    @abc.abstractmethod
    def _columns(self, cur: Cursor, table: str) -> set[str]:
        """The column names of ``table``."""

    def _setup(self) -> None:
        with self._write() as cur:
            for statement in self._ddl():
                cur.execute(statement)
            self._migrate(cur)

    def _migrate(self, cur: Cursor) -> None:
        """Bring tables made by an earlier version up to date (idempotent)."""
        n = self._names
        if "challenge" not in self._columns(cur, n.payments):
            # Challenges are single use across restarts: index what each record answered.
            # A ledger written before this may hold a replayed id twice; the first keeps it.
            cur.execute(f"ALTER TABLE {n.payments} ADD COLUMN challenge TEXT")
            cur.execute(f"SELECT id, record FROM {n.payments} ORDER BY created_us, id")  # noqa: S608
            seen: set[str] = set()
            for record_id, stored in cur.fetchall():
                data = json.loads(stored)
                key = challenge_key(data["realm"], data["challenge_id"])
                if key in seen:
                    continue
                seen.add(key)
                cur.execute(
                    f"UPDATE {n.payments} SET challenge = ? WHERE id = ?",  # noqa: S608
                    (key, record_id),
                )
        cur.execute(
            f"CREATE UNIQUE INDEX IF NOT EXISTS {n.payments}_challenge ON {n.payments} (challenge)"
        )
        if "tagset" not in self._columns(cur, n.payments):
            cur.execute(f"ALTER TABLE {n.payments} ADD COLUMN tagset TEXT NOT NULL DEFAULT ''")
            cur.execute(f"SELECT id, record FROM {n.payments}")  # noqa: S608
            for record_id, stored in cur.fetchall():
                tags = json.loads(stored).get("tags") or {}
                if tags:
                    cur.execute(
                        f"UPDATE {n.payments} SET tagset = ? WHERE id = ?",  # noqa: S608
                        (_tagset(tags), record_id),
                    )

    # -- writing ----------------------------------------------------------------------

    def _append(
        self, cur: Cursor, kind: str, record: PaymentRecord | None, extra: Mapping[str, Any]
    ) -> AuditEvent:
        n = self._names
        cur.execute(f"SELECT seq, hash FROM {n.audit} ORDER BY seq DESC LIMIT 1")  # noqa: S608
        last = cur.fetchone()
        seq, prev = (int(last[0]) + 1, str(last[1])) if last else (1, GENESIS)
        body: dict[str, Any] | None = record.to_dict() if record is not None else None
        if extra:
            body = {**(body or {}), **extra}
        event = make_event(
            seq=seq,
            at=self._clock(),
            kind=kind,
            record=body,
            prev=prev,
            agent=self._agent,
            record_id=record.id if record is not None else None,
        )
        cur.execute(
            f"INSERT INTO {n.audit} (seq, at_us, kind, record_id, body, hash, agent, signature) "  # noqa: S608
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.seq,
                _us(self._clock()),
                kind,
                event.record_id,
                event.body.decode("utf-8"),
                event.hash,
                event.agent,
                event.signature,
            ),
        )
        if seq % self._checkpoint_every == 0:
            self._checkpoint(cur)
        return event

    def _checkpoint(self, cur: Cursor) -> Checkpoint:
        n = self._names
        cur.execute(f"SELECT body FROM {n.audit} ORDER BY seq")  # noqa: S608
        bodies = [str(row[0]).encode("utf-8") for row in cur.fetchall()]
        checkpoint = make_checkpoint(bodies, self._clock(), self._agent)
        cur.execute(f"DELETE FROM {n.checkpoints} WHERE tree_size = ?", (checkpoint.tree_size,))  # noqa: S608
        cur.execute(
            f"INSERT INTO {n.checkpoints} (tree_size, root, at, agent, signature) "  # noqa: S608
            "VALUES (?, ?, ?, ?, ?)",
            (
                checkpoint.tree_size,
                checkpoint.root,
                checkpoint.at,
                checkpoint.agent,
                checkpoint.signature,
            ),
        )
        return checkpoint

    def checkpoint(self) -> Checkpoint:
        """Store a signed tree head over every event so far, now."""
        with self._lock, self._write() as cur:
            return self._checkpoint(cur)

    def _usage(self, cur: Cursor, limit: Limit, currency: str | None) -> tuple[int, int]:
        """(count, summed charge_nano) of counted payments matching ``limit``."""
        n = self._names
        where = [f"status IN ({', '.join('?' * len(_COUNTED))})"]
        params: list[Any] = list(_COUNTED)
        if currency is not None:
            where.append("currency = ?")
            params.append(currency)
        if limit.since is not None:
            where.append("created_us >= ?")
            params.append(_us(limit.since))
        if limit.payee is not None:
            where.append("payee = ?")
            params.append(limit.payee)
        if limit.method is not None:
            where.append("method = ?")
            params.append(limit.method)
        for key, value in sorted(limit.tags.items()):
            where.append("tagset LIKE ? ESCAPE '\\'")
            params.append(f"%{_like_escape(_tag_token(key, value))}%")
        cur.execute(
            f"SELECT COUNT(*), COALESCE(SUM(charge_nano), 0) FROM {n.payments} "  # noqa: S608
            f"WHERE {' AND '.join(where)}",
            params,
        )
        row = cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def reserve(self, record: PaymentRecord, limits: Sequence[Limit]) -> PaymentRecord:
        held = record.with_status("reserved", now=self._clock())
        charge = to_nano(held.charge)
        if held.charge.units < 0:
            raise PaymentError(f"refusing to record a negative charge ({held.charge})")
        if charge > _MAX_NANO:  # would not fit the 64-bit column budgets are summed over
            raise PaymentError(f"{held.charge} is too large for the ledger")
        with self._lock, self._write() as cur:
            n = self._names
            key = held.challenge_key
            cur.execute(f"SELECT id FROM {n.payments} WHERE challenge = ?", (key,))  # noqa: S608
            earlier = cur.fetchone()
            if earlier is not None:
                raise reused_challenge(held, str(earlier[0]))
            for limit in limits:
                if not held.in_scope(limit):
                    continue
                if limit.max_count is not None:
                    # A rate counts payments in every currency (a cap, only its own).
                    count, _ = self._usage(cur, limit, None)
                    if count + 1 > limit.max_count:
                        raise BudgetExceeded(limit.rate_refusal(count))
                if limit.cap is None:
                    continue
                if held.charge.currency != limit.cap.currency:
                    raise BudgetExceeded(limit.currency_refusal(held.charge))
                _, used = self._usage(cur, limit, limit.cap.currency)
                cap = _cap_nano(limit.cap)
                if used + charge > cap:
                    spent = _from_nano(used, limit.cap.currency)
                    raise BudgetExceeded(limit.budget_refusal(held.charge, spent))
            cur.execute(
                f"INSERT INTO {n.payments} (id, created_us, updated_us, status, payee, method, "  # noqa: S608
                "currency, charge_nano, tagset, challenge, record) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    held.id,
                    _us(held.created_at),
                    _us(self._clock()),
                    held.status,
                    held.payee,
                    held.method,
                    held.charge.currency,
                    charge,
                    _tagset(held.tags),
                    key,
                    json.dumps(held.to_dict()),
                ),
            )
            self._append(cur, "reserve", held, {})
        return held

    def _settle(
        self,
        record_id: str,
        status: Status,
        *,
        kind: str,
        allowed_from: tuple[str, ...],
        receipt: Receipt | None = None,
        reason: str | None = None,
    ) -> PaymentRecord:
        n = self._names
        with self._lock, self._write() as cur:
            cur.execute(f"SELECT record FROM {n.payments} WHERE id = ?", (record_id,))  # noqa: S608
            row = cur.fetchone()
            if row is None:
                raise PaymentError(f"no ledger record {record_id!r}")
            current = PaymentRecord.from_dict(json.loads(row[0]))
            if current.status not in allowed_from:
                raise PaymentError(f"ledger record {record_id!r} is already {current.status}")
            updated = current.with_status(status, now=self._clock(), receipt=receipt, reason=reason)
            cur.execute(
                f"UPDATE {n.payments} SET status = ?, updated_us = ?, record = ? WHERE id = ?",  # noqa: S608
                (status, _us(self._clock()), json.dumps(updated.to_dict()), record_id),
            )
            self._append(cur, kind, updated, {})
        return updated

    def commit(
        self, record_id: str, receipt: Receipt | None, *, reason: str | None = None
    ) -> PaymentRecord:
        return self._settle(
            record_id,
            "committed",
            kind="commit",
            allowed_from=("reserved",),
            receipt=receipt,
            reason=reason,
        )

    def release(self, record_id: str, reason: str) -> PaymentRecord:
        return self._settle(
            record_id, "released", kind="release", allowed_from=("reserved",), reason=reason
        )

    def mark_unknown(self, record_id: str, reason: str) -> PaymentRecord:
        return self._settle(
            record_id, "unknown", kind="unknown", allowed_from=("reserved",), reason=reason
        )

    def resolve(
        self, record_id: str, status: Status, reason: str, *, receipt: Receipt | None = None
    ) -> PaymentRecord:
        """Settle an ``unknown`` (or a reservation left by a crash) explicitly.

        ``status`` is ``committed`` (it was paid) or ``released`` (it was not).
        """
        if status not in ("committed", "released"):
            raise ValueError("resolve to 'committed' or 'released'")
        return self._settle(
            record_id,
            status,
            kind="resolve",
            allowed_from=("unknown", "reserved"),
            receipt=receipt,
            reason=reason,
        )

    def log_refusal(self, record: PaymentRecord, reason: str) -> None:
        """Append a refusal to the audit log (it holds no money)."""
        with self._lock, self._write() as cur:
            self._append(cur, "refusal", None, {**record.to_dict(), "refusal": reason})

    # -- reading ----------------------------------------------------------------------

    def records(self) -> list[PaymentRecord]:
        with self._lock, self._read() as cur:
            cur.execute(f"SELECT record FROM {self._names.payments} ORDER BY created_us, id")  # noqa: S608
            return [PaymentRecord.from_dict(json.loads(row[0])) for row in cur.fetchall()]

    def get(self, record_id: str) -> PaymentRecord | None:
        with self._lock, self._read() as cur:
            cur.execute(f"SELECT record FROM {self._names.payments} WHERE id = ?", (record_id,))  # noqa: S608
            row = cur.fetchone()
        return PaymentRecord.from_dict(json.loads(row[0])) if row else None

    def spent(
        self,
        currency: str,
        *,
        window: timedelta | None = None,
        since: datetime | None = None,
        payee: str | None = None,
        method: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Amount:
        if window is not None:
            since = max(filter(None, (since, self._clock() - window)))
        limit = Limit("query", since=since, payee=payee, method=method, tags=dict(tags or {}))
        with self._lock, self._read() as cur:
            _, used = self._usage(cur, limit, currency)
        return _from_nano(used, currency)

    def count(
        self, *, since: datetime | None = None, payee: str | None = None, method: str | None = None
    ) -> int:
        with self._lock, self._read() as cur:
            count, _ = self._usage(
                cur, Limit("query", since=since, payee=payee, method=method), None
            )
        return count

    def recent_charges(self, payee: str, n: int) -> list[Amount]:
        with self._lock, self._read() as cur:
            cur.execute(
                f"SELECT record FROM {self._names.payments} WHERE payee = ? AND status = ? "  # noqa: S608
                "ORDER BY created_us DESC LIMIT ?",
                (payee, "committed", n),
            )
            rows = cur.fetchall()
        return [PaymentRecord.from_dict(json.loads(row[0])).charge for row in rows]

    def has_paid(self, payee: str) -> bool:
        with self._lock, self._read() as cur:
            cur.execute(
                f"SELECT 1 FROM {self._names.payments} WHERE payee = ? "  # noqa: S608
                "AND status IN (?, ?) LIMIT 1",
                (payee, "committed", "unknown"),
            )
            return cur.fetchone() is not None

    def failure_streak(self, payee: str) -> tuple[int, datetime | None]:
        with self._lock, self._read() as cur:
            cur.execute(
                f"SELECT status, updated_us FROM {self._names.payments} WHERE payee = ? "  # noqa: S608
                "AND status IN (?, ?) ORDER BY created_us DESC LIMIT 1000",
                (payee, "committed", "unknown"),
            )
            rows = cur.fetchall()
        streak = 0
        latest: datetime | None = None
        for status, updated_us in rows:
            if status == "committed":
                break
            streak += 1
            if latest is None:
                latest = datetime.fromtimestamp(int(updated_us) / 1_000_000, UTC)
        return streak, latest

    # -- audit ------------------------------------------------------------------------

    def _events(self, cur: Cursor) -> list[AuditEvent]:
        cur.execute(
            f"SELECT seq, kind, record_id, body, hash, agent, signature FROM {self._names.audit} "  # noqa: S608
            "ORDER BY seq"
        )
        return [
            AuditEvent(int(r[0]), str(r[1]), r[2], str(r[3]).encode("utf-8"), str(r[4]), r[5], r[6])
            for r in cur.fetchall()
        ]

    def _checkpoints(self, cur: Cursor) -> list[Checkpoint]:
        cur.execute(
            f"SELECT tree_size, root, at, agent, signature FROM {self._names.checkpoints} "  # noqa: S608
            "ORDER BY tree_size"
        )
        return [Checkpoint(int(r[0]), str(r[1]), str(r[2]), r[3], r[4]) for r in cur.fetchall()]

    def verify(
        self, *, trusted_agents: Sequence[str] | None = None, require_signatures: bool = False
    ) -> VerifyReport:
        """Check the audit chain, the checkpoints, and that the spend state matches the log.

        Names every modified, deleted, reordered or inserted event, and every
        payment row whose state is not what the log says.
        """
        with self._lock, self._read() as cur:
            events = self._events(cur)
            checkpoints = self._checkpoints(cur)
            cur.execute(
                "SELECT id, status, charge_nano, record, tagset, challenge, "  # noqa: S608
                f"created_us, payee, method, currency FROM {self._names.payments} "
                "ORDER BY created_us, id"
            )
            rows = cur.fetchall()
        report, latest = verify_chain(
            events,
            checkpoints,
            trusted_agents=trusted_agents,
            require_signatures=require_signatures,
        )
        seen = set()
        answered: set[str] = set()  # challenge keys, each indexed by its first record only
        for record_id, status, charge_nano, stored, tagset, challenge, *columns in rows:
            seen.add(record_id)
            logged = latest.get(record_id)
            if logged is None:
                report.problems.append(f"payment {record_id}: no audit event records it")
                continue
            seq, record = logged
            if record is None:
                continue
            try:
                said = PaymentRecord.from_dict(record)
                key = said.challenge_key
                first = key not in answered
                answered.add(key)
                # The columns budgets are summed over, and the index that keeps
                # challenges single use, must say what the log says too.
                same = (
                    said.id == record_id
                    and json.loads(stored) == record
                    and status == said.status
                    and [int(columns[0]), *columns[1:]]
                    == [_us(said.created_at), said.payee, said.method, said.charge.currency]
                    and tagset == _tagset(said.tags)
                    and challenge == (key if first else None)
                )
                same_charge = int(charge_nano) == to_nano(said.charge)
            except (KeyError, TypeError, ValueError, AttributeError):
                same = same_charge = False  # a malformed record or row
            if not same:
                report.problems.append(
                    f"payment {record_id}: state differs from audit event {seq} (modified)"
                )
            elif not same_charge:
                report.problems.append(f"payment {record_id}: charge differs from the audit log")
        for record_id, (seq, _) in latest.items():
            if record_id not in seen:
                report.problems.append(f"payment {record_id}: in audit event {seq} but deleted")
        return report

    def inclusion_proof(self, record_id: str) -> dict[str, Any]:
        """Prove that the latest event of ``record_id`` is in a signed checkpoint.

        Takes a fresh checkpoint if the event is newer than the last one. The
        result is JSON data, checked offline by
        :func:`mpp_client.ledger.verify_exported_proof`.
        """
        with self._lock, self._write() as cur:
            events = self._events(cur)
            index = max((i for i, e in enumerate(events) if e.record_id == record_id), default=None)
            if index is None:
                raise PaymentError(f"no audit event for payment {record_id!r}")
            checkpoints = self._checkpoints(cur)
            covering = [c for c in checkpoints if c.tree_size > index]
            checkpoint = covering[-1] if covering else self._checkpoint(cur)
        return export_proof([e.body for e in events], index, checkpoint)

    # -- export -----------------------------------------------------------------------

    def export_jsonl(self) -> Iterator[str]:
        """The audit log as JSON Lines: one event per line, with hash and signature."""
        with self._lock, self._read() as cur:
            events = self._events(cur)
        for event in events:
            yield json.dumps(
                {
                    "seq": event.seq,
                    "event": json.loads(event.body),
                    "hash": event.hash,
                    "agent": event.agent,
                    "signature": event.signature,
                },
                separators=(",", ":"),
            )

    _CSV_FIELDS = (
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
    )

    def export_csv(self) -> str:
        """Payments as CSV, one row each (public terms only)."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(self._CSV_FIELDS)
        for r in self.records():
            writer.writerow(
                [
                    r.id,
                    r.created_at.isoformat(),
                    r.status,
                    r.http_method,
                    r.url,
                    r.realm,
                    r.method,
                    r.intent,
                    str(r.amount),
                    str(r.charge),
                    r.payee,
                    r.challenge_id,
                    r.purpose or "",
                    json.dumps(dict(r.tags), sort_keys=True) if r.tags else "",
                    r.receipt.reference if r.receipt else "",
                    r.reason or "",
                ]
            )
        return out.getvalue()

    def totals(self, currency: str, *, by: str, since: datetime | None = None) -> dict[str, Amount]:
        """Counted spend per ``payee``, ``method``, ``status`` or ``tag:<name>``."""
        if by not in ("payee", "method", "status") and not by.startswith("tag:"):
            raise ValueError("group by 'payee', 'method', 'status' or 'tag:<name>'")
        sums: dict[str, Amount] = {}
        for r in self.records():
            if r.status not in COUNTED or r.charge.currency != currency:
                continue
            if since is not None and r.created_at < since:
                continue
            key = r.tags.get(by[4:], "") if by.startswith("tag:") else str(getattr(r, by))
            sums[key] = sums[key] + r.charge if key in sums else r.charge
        return sums
