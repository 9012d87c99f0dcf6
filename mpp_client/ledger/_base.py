"""The ledger interface: the only place spend state is written."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from ..money import Amount
from ..policy import Decision, Limit
from ..protocol import Receipt

__all__ = ["COUNTED", "Ledger", "PaymentRecord", "Status"]

Status = Literal["reserved", "committed", "released", "unknown"]
#: Statuses that count against budgets: money held, spent, or possibly spent.
COUNTED: frozenset[str] = frozenset({"reserved", "committed", "unknown"})


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """One payment attempt and what became of it.

    Returned in ``response.extensions["mpp"]`` after a paid request. It holds
    public terms only: never the credential, a key or a signature.
    """

    id: str
    created_at: datetime
    status: Status
    http_method: str
    url: str
    realm: str
    method: str
    intent: str
    #: What was paid, in the method's asset.
    amount: Amount
    #: What it counts for against budgets, in the policy currency.
    charge: Amount
    payee: str
    challenge_id: str
    decision: Decision | None = None
    purpose: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    receipt: Receipt | None = None
    #: Why it was released or left unknown.
    reason: str | None = None
    updated_at: datetime | None = None

    @property
    def asset(self) -> str:
        return self.amount.currency

    def with_status(
        self,
        status: Status,
        *,
        now: datetime,
        receipt: Receipt | None = None,
        reason: str | None = None,
    ) -> PaymentRecord:
        return dataclasses.replace(
            self,
            status=status,
            receipt=receipt if receipt is not None else self.receipt,
            reason=reason,
            updated_at=now,
        )

    def in_scope(self, limit: Limit) -> bool:
        """True when ``limit`` covers this payment (its payee and method filters)."""
        return (limit.payee is None or self.payee == limit.payee) and (
            limit.method is None or self.method == limit.method
        )

    def matches(self, limit: Limit, now: datetime) -> bool:
        """True when this record counts against ``limit`` at ``now``."""
        if self.status not in COUNTED or self.charge.currency != limit.cap.currency:
            return False
        if not self.in_scope(limit):
            return False
        return limit.window is None or self.created_at > now - limit.window


class Ledger(abc.ABC):
    """Two-phase spend records. Implementations must be thread- and task-safe.

    ``reserve`` checks every limit and holds the amount in one atomic step;
    then exactly one of ``commit`` (paid, with the receipt), ``release``
    (nothing was paid) or ``mark_unknown`` (money may have moved; keep it
    counted) settles the reservation.
    """

    @abc.abstractmethod
    def reserve(self, record: PaymentRecord, limits: Sequence[Limit]) -> PaymentRecord:
        """Hold ``record.charge`` against ``limits``; raise BudgetExceeded if one would overflow."""

    @abc.abstractmethod
    def commit(self, record_id: str, receipt: Receipt | None) -> PaymentRecord:
        """The payment succeeded."""

    @abc.abstractmethod
    def release(self, record_id: str, reason: str) -> PaymentRecord:
        """Nothing was paid: stop counting the reservation."""

    @abc.abstractmethod
    def mark_unknown(self, record_id: str, reason: str) -> PaymentRecord:
        """Money may have moved but the result is unclear: keep counting it."""

    @abc.abstractmethod
    def records(self) -> list[PaymentRecord]:
        """Every record, oldest first."""

    @abc.abstractmethod
    def spent(
        self,
        currency: str,
        *,
        window: timedelta | None = None,
        payee: str | None = None,
        method: str | None = None,
    ) -> Amount:
        """Reserved + committed + unknown spend in ``currency`` matching the filters."""
