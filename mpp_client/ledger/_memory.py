"""An in-memory ledger: correct under threads and tasks, gone when the process ends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from .._exceptions import BudgetExceeded, PaymentError
from ..money import Amount
from ..policy import Limit
from ..protocol import Receipt
from ._base import Ledger, PaymentRecord, Status

__all__ = ["MemoryLedger"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MemoryLedger(Ledger):
    """Keeps records in a list behind a lock.

    The lock is held only for in-memory bookkeeping (never across I/O), so it
    is also safe to call from asyncio code.
    """

    def __init__(self, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, PaymentRecord] = {}
        self._clock = clock

    def _usage(self, limit: Limit, now: datetime) -> Amount:
        # Sum plain integers (at the finest decimals seen), build one Amount at the end.
        units, decimals = 0, limit.cap.decimals
        for record in self._records.values():
            if record.matches(limit, now):
                charge = record.charge
                if charge.decimals > decimals:
                    units *= 10 ** (charge.decimals - decimals)
                    decimals = charge.decimals
                units += charge.units * 10 ** (decimals - charge.decimals)
        return Amount(units, limit.cap.currency, decimals)

    def reserve(self, record: PaymentRecord, limits: Sequence[Limit]) -> PaymentRecord:
        with self._lock:
            now = self._clock()
            for limit in limits:
                if not record.in_scope(limit):
                    continue
                if record.charge.currency != limit.cap.currency:
                    raise BudgetExceeded(
                        f"{record.charge} cannot count against budget {limit.name!r} "
                        f"kept in {limit.cap.currency}"
                    )
                used = self._usage(limit, now)
                if used + record.charge > limit.cap:
                    remaining = limit.cap - used
                    raise BudgetExceeded(
                        f"paying {record.charge} would exceed budget {limit.name!r} "
                        f"of {limit.cap}: {used} already spent or held, {remaining} remains"
                    )
            held = record.with_status("reserved", now=now)
            self._records[held.id] = held
            return held

    def _settle(
        self,
        record_id: str,
        status: Status,
        *,
        receipt: Receipt | None = None,
        reason: str | None = None,
    ) -> PaymentRecord:
        with self._lock:
            current = self._records.get(record_id)
            if current is None:
                raise PaymentError(f"no ledger record {record_id!r}")
            if current.status not in ("reserved", "unknown"):
                raise PaymentError(f"ledger record {record_id!r} is already {current.status}")
            updated = current.with_status(status, now=self._clock(), receipt=receipt, reason=reason)
            self._records[record_id] = updated
            return updated

    def commit(self, record_id: str, receipt: Receipt | None) -> PaymentRecord:
        return self._settle(record_id, "committed", receipt=receipt)

    def release(self, record_id: str, reason: str) -> PaymentRecord:
        return self._settle(record_id, "released", reason=reason)

    def mark_unknown(self, record_id: str, reason: str) -> PaymentRecord:
        return self._settle(record_id, "unknown", reason=reason)

    def records(self) -> list[PaymentRecord]:
        with self._lock:
            return list(self._records.values())

    def spent(
        self,
        currency: str,
        *,
        window: timedelta | None = None,
        payee: str | None = None,
        method: str | None = None,
    ) -> Amount:
        with self._lock:
            limit = Limit("query", Amount.zero(currency), window=window, payee=payee, method=method)
            return self._usage(limit, self._clock())
