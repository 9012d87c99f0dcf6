"""An in-memory ledger: correct under threads and tasks, gone when the process ends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from .._decision import Limit
from .._exceptions import BudgetExceeded, PaymentError
from ..money import Amount
from ..protocol import Receipt
from ._base import COUNTED, Ledger, PaymentRecord, Status, reused_challenge

__all__ = ["MemoryLedger"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _sum(charges: Iterator[Amount], currency: str, decimals: int) -> Amount:
    # Sum plain integers (at the finest decimals seen), build one Amount at the end.
    units = 0
    for charge in charges:
        if charge.decimals > decimals:
            units *= 10 ** (charge.decimals - decimals)
            decimals = charge.decimals
        units += charge.units * 10 ** (decimals - charge.decimals)
    return Amount(units, currency, decimals)


def check_limits(
    record: PaymentRecord, limits: Sequence[Limit], in_force: Sequence[PaymentRecord]
) -> None:
    """Raise BudgetExceeded if adding ``record`` would break one of ``limits``.

    ``in_force`` are the records that may count (any status; filtered here).
    Shared by ledgers that hold their records in memory or have loaded them.
    """
    for limit in limits:
        if not record.in_scope(limit):
            continue
        counted = [r for r in in_force if r.counts_for(limit)]
        if limit.max_count is not None and len(counted) + 1 > limit.max_count:
            raise BudgetExceeded(limit.rate_refusal(len(counted)))
        cap = limit.cap
        if cap is None:
            continue
        if record.charge.currency != cap.currency:
            raise BudgetExceeded(limit.currency_refusal(record.charge))
        used = _sum(
            (r.charge for r in counted if r.charge.currency == cap.currency),
            cap.currency,
            cap.decimals,
        )
        if used + record.charge > cap:
            raise BudgetExceeded(limit.budget_refusal(record.charge, used))


class MemoryLedger(Ledger):
    """Keeps records in a dict behind a lock.

    The lock is held only for in-memory bookkeeping (never across I/O), so it
    is also safe to call from asyncio code.
    """

    def __init__(self, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, PaymentRecord] = {}
        #: challenge_key -> the record that answered it (challenges are single use).
        self._challenges: dict[str, str] = {}
        self._clock = clock

    def reserve(self, record: PaymentRecord, limits: Sequence[Limit]) -> PaymentRecord:
        if record.charge.units < 0:
            raise PaymentError(f"refusing to record a negative charge ({record.charge})")
        with self._lock:
            if record.id in self._records:
                raise PaymentError(f"ledger record {record.id!r} already exists")
            earlier = self._challenges.get(record.challenge_key)
            if earlier is not None:
                raise reused_challenge(record, earlier)
            check_limits(record, limits, list(self._records.values()))
            held = record.with_status("reserved", now=self._clock())
            self._records[held.id] = held
            self._challenges[held.challenge_key] = held.id
            return held

    def _settle(
        self,
        record_id: str,
        status: Status,
        *,
        receipt: Receipt | None = None,
        reason: str | None = None,
        allowed_from: tuple[str, ...] = ("reserved",),
    ) -> PaymentRecord:
        with self._lock:
            current = self._records.get(record_id)
            if current is None:
                raise PaymentError(f"no ledger record {record_id!r}")
            if current.status not in allowed_from:
                raise PaymentError(f"ledger record {record_id!r} is already {current.status}")
            updated = current.with_status(status, now=self._clock(), receipt=receipt, reason=reason)
            self._records[record_id] = updated
            return updated

    def commit(
        self, record_id: str, receipt: Receipt | None, *, reason: str | None = None
    ) -> PaymentRecord:
        return self._settle(record_id, "committed", receipt=receipt, reason=reason)

    def release(self, record_id: str, reason: str) -> PaymentRecord:
        return self._settle(record_id, "released", reason=reason)

    def mark_unknown(self, record_id: str, reason: str) -> PaymentRecord:
        return self._settle(record_id, "unknown", reason=reason)

    def resolve(
        self, record_id: str, status: Status, reason: str, *, receipt: Receipt | None = None
    ) -> PaymentRecord:
        if status not in ("committed", "released"):
            raise ValueError("resolve to 'committed' or 'released'")
        return self._settle(
            record_id,
            status,
            receipt=receipt,
            reason=reason,
            allowed_from=("reserved", "unknown"),
        )

    def records(self) -> list[PaymentRecord]:
        with self._lock:
            return list(self._records.values())

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
        with self._lock:
            if window is not None:
                since = max(filter(None, (since, self._clock() - window)))
            limit = Limit("query", since=since, payee=payee, method=method, tags=dict(tags or {}))
            charges = (
                r.charge
                for r in self._records.values()
                if r.counts_for(limit) and r.charge.currency == currency
            )
            return _sum(charges, currency, 0)

    def count(
        self, *, since: datetime | None = None, payee: str | None = None, method: str | None = None
    ) -> int:
        limit = Limit("query", since=since, payee=payee, method=method)
        with self._lock:
            return sum(1 for r in self._records.values() if r.counts_for(limit))

    def _newest_first(self, payee: str) -> list[PaymentRecord]:
        with self._lock:
            mine = [r for r in self._records.values() if r.payee == payee]
        # Sort oldest first (stable: ties keep reservation order), then reverse.
        return sorted(mine, key=lambda r: r.created_at)[::-1]

    def recent_charges(self, payee: str, n: int) -> list[Amount]:
        return [r.charge for r in self._newest_first(payee) if r.status == "committed"][:n]

    def has_paid(self, payee: str) -> bool:
        with self._lock:
            return any(
                r.payee == payee and r.status in COUNTED - {"reserved"}
                for r in self._records.values()
            )

    def failure_streak(self, payee: str) -> tuple[int, datetime | None]:
        streak = 0
        latest: datetime | None = None
        for record in self._newest_first(payee):
            if record.status == "committed":
                break
            if record.status == "unknown":
                streak += 1
                latest = latest or record.updated_at or record.created_at
        return streak, latest
