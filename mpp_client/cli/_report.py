"""Spend reports over a ledger's records: by payee, method and day, and each budget's room.

Computed here from ``Ledger.records()`` and the policy's budgets, not on the
paid path: a report can afford to read every record. The sums use the same
rule the ledger holds budgets to (:meth:`PaymentRecord.counts_for`): reserved,
committed and unknown payments count, released ones do not. Amounts are
exact (integers in base units), summed per currency, never converted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from .._decision import Limit
from ..ledger import COUNTED, PaymentRecord
from ..money import Amount

if TYPE_CHECKING:
    from ..policy import Policy

__all__ = ["BudgetRow", "Report", "SpendRow", "budget_rows", "build_report", "spend_by"]


@dataclass(frozen=True, slots=True)
class SpendRow:
    """Counted spend for one key (a payee, a method, a day) in one currency."""

    key: str
    currency: str
    payments: int
    #: Paid, with the server's acceptance.
    committed: Amount
    #: Reserved or unknown: held against budgets until settled or resolved.
    held: Amount

    @property
    def counted(self) -> Amount:
        return self.committed + self.held

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "currency": self.currency,
            "payments": self.payments,
            "committed": str(self.committed),
            "held": str(self.held),
            "counted": str(self.counted),
        }


@dataclass(frozen=True, slots=True)
class BudgetRow:
    """A budget of the policy: its limit, what counts against it now, what remains."""

    name: str
    limit: Amount
    used: Amount
    #: Where the current window starts (None: a lifetime budget).
    since: datetime | None
    scope: str
    period: str

    @property
    def remaining(self) -> Amount:
        room = self.limit - self.used
        return room if room.units > 0 else Amount.zero(room.currency, room.decimals)

    @property
    def share(self) -> float:
        """How much is used, 0..1 (for drawing only: never for deciding)."""
        if self.limit.units <= 0:
            return 1.0
        used = self.used.rescale(max(self.used.decimals, self.limit.decimals)).units
        cap = self.limit.rescale(max(self.used.decimals, self.limit.decimals)).units
        return min(max(used / cap, 0.0), 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "limit": str(self.limit),
            "used": str(self.used),
            "remaining": str(self.remaining),
            "since": self.since.isoformat() if self.since is not None else None,
            "scope": self.scope,
            "period": self.period,
        }


@dataclass(frozen=True, slots=True)
class Report:
    by_payee: tuple[SpendRow, ...]
    by_method: tuple[SpendRow, ...]
    by_day: tuple[SpendRow, ...]
    budgets: tuple[BudgetRow, ...]
    unknown: tuple[PaymentRecord, ...]
    payments: int
    since: datetime | None
    timezone: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since is not None else None,
            "timezone": self.timezone,
            "payments": self.payments,
            "by_payee": [row.to_dict() for row in self.by_payee],
            "by_method": [row.to_dict() for row in self.by_method],
            "by_day": [row.to_dict() for row in self.by_day],
            "budgets": [row.to_dict() for row in self.budgets],
            "unknown": [
                {
                    "id": r.id,
                    "created_at": r.created_at.isoformat(),
                    "amount": str(r.amount),
                    "payee": r.payee,
                    "url": r.url,
                    "reason": r.reason,
                }
                for r in self.unknown
            ],
        }

    def csv_rows(self) -> list[list[str]]:
        """One table for ``--csv``: every spend row and every budget."""
        header = "group key currency payments committed held counted limit remaining"
        rows = [header.split()]
        for group, spend in (
            ("payee", self.by_payee),
            ("method", self.by_method),
            ("day", self.by_day),
        ):
            rows += [
                [
                    group,
                    r.key,
                    r.currency,
                    str(r.payments),
                    _plain(r.committed),
                    _plain(r.held),
                    _plain(r.counted),
                    "",
                    "",
                ]
                for r in spend
            ]
        rows += [
            [
                "budget",
                b.name,
                b.limit.currency,
                "",
                "",
                "",
                _plain(b.used),
                _plain(b.limit),
                _plain(b.remaining),
            ]
            for b in self.budgets
        ]
        return rows


def _plain(amount: Amount) -> str:
    """``0.25`` (the currency has its own column)."""
    return str(amount).rsplit(" ", 1)[0]


def spend_by(
    records: Iterable[PaymentRecord], key: Callable[[PaymentRecord], str]
) -> tuple[SpendRow, ...]:
    """Counted spend grouped by ``key`` and currency, largest first."""
    groups: dict[tuple[str, str], list[PaymentRecord]] = {}
    for record in records:
        if record.status in COUNTED:
            groups.setdefault((key(record), record.charge.currency), []).append(record)
    rows = []
    for (name, currency), members in groups.items():
        committed = _total(r.charge for r in members if r.status == "committed")
        held = _total(r.charge for r in members if r.status != "committed")
        zero = Amount.zero(currency, max(r.charge.decimals for r in members))
        rows.append(SpendRow(name, currency, len(members), committed or zero, held or zero))
    return tuple(sorted(rows, key=lambda r: (r.currency, -_units(r.counted), r.key)))


def _total(amounts: Iterable[Amount]) -> Amount | None:
    total: Amount | None = None
    for amount in amounts:
        total = amount if total is None else total + amount
    return total


def _units(amount: Amount) -> int:
    return amount.rescale(36).units


def budget_rows(
    policy: Policy, records: Sequence[PaymentRecord], now: datetime
) -> tuple[BudgetRow, ...]:
    """Each budget of ``policy`` with what counts against it now (as the ledger counts)."""
    from ..policy._engine import period_start  # noqa: PLC0415 - the policy's own calendar

    rows = []
    for budget in policy.budgets:
        since: datetime | None = None
        if budget.window is not None:
            since = now - budget.window
            period = f"rolling {_duration(budget.window)}"
        elif budget.calendar is not None:
            since = period_start(now, budget.calendar, policy.zone)
            period = f"this {budget.calendar} ({policy.timezone})"
        else:
            period = "lifetime"
        limit = Limit(
            budget.name,
            budget.limit,
            scope=policy.budget_scope,
            since=since,
            payee=budget.payee,
            method=budget.method,
            tags=dict(budget.when),
        )
        cap = budget.limit
        used = _total(
            r.charge for r in records if r.charge.currency == cap.currency and r.counts_for(limit)
        )
        scope = ", ".join(
            part
            for part in (
                f"payee {budget.payee}" if budget.payee else "",
                f"method {budget.method}" if budget.method else "",
                " ".join(f"{k}={v}" for k, v in budget.when.items()),
            )
            if part
        )
        rows.append(
            BudgetRow(
                budget.name,
                cap,
                used if used is not None else Amount.zero(cap.currency, cap.decimals),
                since,
                scope or "every payment",
                period,
            )
        )
    return tuple(rows)


def _duration(delta: Any) -> str:
    from ._common import duration  # noqa: PLC0415

    return duration(delta)


def build_report(
    records: Sequence[PaymentRecord],
    *,
    policy: Policy | None = None,
    since: datetime | None = None,
    zone: tzinfo | None = None,
    now: datetime | None = None,
) -> Report:
    """Everything ``mpp ledger report`` and the dashboard show, from the records."""
    moment = now or datetime.now(UTC)
    where = zone or (policy.zone if policy is not None else UTC)
    chosen = [r for r in records if since is None or r.created_at >= since]
    return Report(
        by_payee=spend_by(chosen, lambda r: r.payee),
        by_method=spend_by(chosen, lambda r: r.method),
        by_day=tuple(
            sorted(
                spend_by(chosen, lambda r: r.created_at.astimezone(where).date().isoformat()),
                key=lambda row: (row.currency, row.key),
            )
        ),
        budgets=budget_rows(policy, records, moment) if policy is not None else (),
        unknown=tuple(r for r in records if r.status == "unknown"),
        payments=len(chosen),
        since=since,
        timezone=str(getattr(where, "key", where)),
    )
