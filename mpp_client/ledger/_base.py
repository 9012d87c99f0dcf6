"""The ledger interface: the only place spend state is written."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from .._decision import Limit, Usage
from ..money import Amount
from ..protocol import Receipt
from ._record import COUNTED, PaymentRecord, Status, challenge_key, reused_challenge

__all__ = [
    "COUNTED",
    "Ledger",
    "PaymentRecord",
    "Status",
    "Usage",
    "challenge_key",
    "reused_challenge",
]


class Ledger(abc.ABC):
    """Two-phase spend records. Implementations must be thread- and task-safe.

    ``reserve`` checks every limit and holds the amount in one atomic step;
    then exactly one of ``commit`` (paid, with the receipt), ``release``
    (nothing was paid) or ``mark_unknown`` (money may have moved; keep it
    counted) settles the reservation.
    """

    #: True when calls do disk or network I/O: async flows then run them in a
    #: worker thread instead of blocking the event loop.
    blocking: bool = False

    @property
    def location(self) -> str:
        """Where the ledger is, for messages: a path, a host and database, "memory"."""
        return type(self).__name__

    @abc.abstractmethod
    def reserve(self, record: PaymentRecord, limits: Sequence[Limit]) -> PaymentRecord:
        """Hold ``record.charge`` against ``limits``; raise BudgetExceeded if one would overflow.

        A limit counts only the payments of its own scope; a record without a
        scope takes the scope of its limits (all of one scope), or ``""``.
        Raises :class:`~mpp_client.ChallengeReused` when a payment was ever
        reserved for the same challenge (realm and id), whatever became of
        it: challenges are single use across processes and restarts, and the
        check is an index lookup, not a scan.
        """

    @abc.abstractmethod
    def commit(
        self, record_id: str, receipt: Receipt | None, *, reason: str | None = None
    ) -> PaymentRecord:
        """The payment succeeded. ``reason`` notes anything odd (a receipt not kept)."""

    @abc.abstractmethod
    def release(self, record_id: str, reason: str) -> PaymentRecord:
        """Nothing was paid: stop counting the reservation."""

    @abc.abstractmethod
    def mark_unknown(self, record_id: str, reason: str) -> PaymentRecord:
        """Money may have moved but the result is unclear: keep counting it."""

    @abc.abstractmethod
    def resolve(
        self, record_id: str, status: Status, reason: str, *, receipt: Receipt | None = None
    ) -> PaymentRecord:
        """Settle an ``unknown`` outcome (or a reservation a crash left behind)
        explicitly, as ``committed`` (it was paid) or ``released`` (it was not)."""

    def log_refusal(self, record: PaymentRecord, reason: str) -> None:
        """Note a refused payment in the audit log, if the ledger keeps one."""
        return None

    @abc.abstractmethod
    def records(self) -> list[PaymentRecord]:
        """Every record, oldest first."""

    # -- history, for policies (read only) ---------------------------------------------

    @abc.abstractmethod
    def usage(self, limit: Limit) -> Usage:
        """What counts against ``limit`` now: the count (every currency) and the sum
        in its cap's currency. This is what budgets and rates are checked with."""

    @abc.abstractmethod
    def spent(
        self,
        currency: str,
        *,
        window: timedelta | None = None,
        since: datetime | None = None,
        payee: str | None = None,
        method: str | None = None,
        tags: Mapping[str, str] | None = None,
        scope: str | None = None,
    ) -> Amount:
        """Reserved + committed + unknown spend in ``currency`` matching the filters.

        ``window`` counts back from now; ``since`` from a given instant;
        ``scope`` None counts every scope. For reports: budgets use :meth:`usage`.
        """

    @abc.abstractmethod
    def count(
        self,
        *,
        since: datetime | None = None,
        payee: str | None = None,
        method: str | None = None,
        scope: str | None = None,
    ) -> int:
        """Payments reserved, committed or unknown since ``since`` (for reports)."""

    @abc.abstractmethod
    def recent_charges(self, payee: str, n: int, *, scope: str | None = None) -> list[Amount]:
        """Charges of the last ``n`` committed payments to ``payee``, newest first."""

    @abc.abstractmethod
    def has_paid(self, payee: str, *, scope: str | None = None) -> bool:
        """True when a payment to ``payee`` was committed or may have been made."""

    @abc.abstractmethod
    def failure_streak(
        self, payee: str, *, scope: str | None = None
    ) -> tuple[int, datetime | None]:
        """Trailing run of ``unknown`` outcomes for ``payee`` and the latest one's time."""
