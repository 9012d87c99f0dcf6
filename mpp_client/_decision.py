"""What a decision says: rules, limits and outcomes, shared by the policy and the ledger.

The policy makes a :class:`Decision` (its :class:`RuleResult` rules and the
:class:`Limit` budgets and rates the ledger must hold); the ledger enforces the
limits inside its reservation and stores the decision with the record; the
flow and the errors carry it. None of them owns these words, so they live
here, below all three: the policy and the ledger never import each other.
:class:`SpendHistory` is the read-only view of the ledger a policy is given.

Budgets have a *scope*: a name shared by the limits of one policy and by the
records it pays, so that unrelated programs sharing one ledger never spend
each other's budgets while a fleet shares one on purpose
(:func:`program_scope` is the default).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

from .money import Amount

__all__ = [
    "Decision",
    "Limit",
    "Mode",
    "Outcome",
    "RuleResult",
    "SpendHistory",
    "Usage",
    "program_scope",
]

Outcome = Literal["allow", "deny", "needs_approval"]
Mode = Literal["enforce", "dry-run", "shadow"]


@cache
def program_scope() -> str:
    """The default budget scope: the running program.

    ``program:`` and the resolved path of ``__main__``'s file (a script, or the
    module run with ``-m``), else of the interpreter (an interactive session,
    ``-c``). So a batch job's budget holds across its runs, while other
    scripts sharing the default ledger have budgets of their own.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if isinstance(path, str) and path:
        return "program:" + str(Path(path).resolve())
    return "program:" + str(Path(sys.executable or "python").resolve())


@dataclass(frozen=True, slots=True)
class Usage:
    """How much of a :class:`Limit` is used: payments counted, and their sum.

    ``count`` counts payments in every currency (as ``max_count`` does);
    ``spent`` sums them in the cap's currency (None when the limit has no cap).
    Unpacks as ``count, spent = history.usage(limit)``.
    """

    count: int
    spent: Amount | None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.count, self.spent))


class SpendHistory(Protocol):
    """What a policy may read from the ledger. Read only: policies never write.

    ``usage`` is what budgets and rates are checked with: a ledger answers it
    from running totals, at a cost that does not grow with its history.
    ``scope`` narrows the other reads to one budget scope (None: every scope).
    """

    @property
    def location(self) -> str:
        """Where the ledger is, for messages (a path or host; never a credential)."""
        ...

    def usage(self, limit: Limit) -> Usage:
        """What counts against ``limit`` now (its scope, filters and window)."""
        ...

    def count(
        self,
        *,
        since: datetime | None = None,
        payee: str | None = None,
        method: str | None = None,
        scope: str | None = None,
    ) -> int:
        """Payments held, made or possibly made (reserved, committed, unknown) since ``since``."""
        ...

    def recent_charges(self, payee: str, n: int, *, scope: str | None = None) -> list[Amount]:
        """Charges of the last ``n`` committed payments to ``payee``, newest first."""
        ...

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
        """Reserved + committed + unknown spend in ``currency`` matching the filters."""
        ...

    def has_paid(self, payee: str, *, scope: str | None = None) -> bool:
        """True when a payment to ``payee`` was ever committed or may have been made."""
        ...

    def failure_streak(
        self, payee: str, *, scope: str | None = None
    ) -> tuple[int, datetime | None]:
        """Consecutive paid-then-failed outcomes (``unknown``) for ``payee``, newest
        first, up to the last success; and when the latest of them happened."""
        ...


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule's verdict, kept with the decision for the audit trail.

    ``passed`` False with ``approval`` True means the rule does not refuse but
    asks a human to approve.
    """

    rule: str
    passed: bool
    reason: str
    approval: bool = False


@dataclass(frozen=True, slots=True)
class Limit:
    """A budget or a rate the ledger must check atomically when it reserves.

    The policy cannot check these itself without a race: two payments deciding
    at once would both see room for one. So it names them and the ledger
    enforces them inside its reservation. ``cap`` bounds the summed charges,
    ``max_count`` the number of payments, both counted from ``since`` (None:
    all time) among payments of ``scope`` matching ``payee``, ``method``
    (None: any) and carrying ``tags``. A payment counts only against limits
    of its own scope; ``""`` is the scope of policies that name none of their
    own and of records written before scopes existed.
    """

    name: str
    cap: Amount | None = None
    max_count: int | None = None
    since: datetime | None = None
    payee: str | None = None
    method: str | None = None
    #: Only payments made with all of these tags count (a tag-scoped budget).
    tags: Mapping[str, str] = field(default_factory=dict)
    #: The budget scope (see :func:`program_scope`).
    scope: str = ""

    # One wording for every refusal, whether the policy or a ledger finds it.
    # ``where`` names the ledger (its location), so a refusal says whose budget it is.

    def rate_refusal(self, made: int, where: str | None = None) -> str:
        return (
            f"a payment now would exceed the rate limit {self.name!r}: at most "
            f"{self.max_count} payments, {made} already made or held" + self._place(where)
        )

    def currency_refusal(self, charge: Amount, where: str | None = None) -> str:
        currency = self.cap.currency if self.cap is not None else "?"
        return (
            f"{charge} cannot count against budget {self.name!r} kept in {currency}"
            + self._place(where)
        )

    def budget_refusal(self, charge: Amount, used: Amount, where: str | None = None) -> str:
        assert self.cap is not None
        room = max(self.cap - used, Amount.zero(self.cap.currency, self.cap.decimals))
        return (
            f"paying {charge} would exceed budget {self.name!r} of {self.cap}: "
            f"{used} already spent or held, {room} remains" + self._place(where)
        )

    def _place(self, where: str | None) -> str:
        ledger = f", ledger {where}" if where else ""
        return f" (budget scope {self.scope!r}{ledger})"


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer: the outcome, every rule with its result, and the limits.

    In ``dry-run`` mode the flow never pays and returns the 402 with this
    decision; in ``shadow`` mode ``outcome`` is what a permissive policy
    decided (the payment goes ahead) and ``shadow`` is what the real policy
    would have decided.
    """

    outcome: Outcome
    rules: tuple[RuleResult, ...] = ()
    limits: tuple[Limit, ...] = ()
    #: The amount to hold, in the policy currency.
    charge: Amount | None = None
    mode: Mode = "enforce"
    shadow: Decision | None = None
    #: Seconds to wait for a human approval (``needs_approval`` only).
    approval_timeout: float = 60.0
    #: The budget scope of the payment (that of ``limits``); None: the ledger
    #: takes it from the limits when it reserves.
    scope: str | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome == "allow"

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why it was refused or needs approval, or why it passed when nothing failed."""
        refused = tuple(r.reason for r in self.rules if not r.passed and not r.approval)
        if self.outcome == "deny" and refused:
            return refused
        wanted = tuple(r.reason for r in self.rules if r.approval)
        if self.outcome == "needs_approval" and wanted:
            return wanted
        return refused or wanted or tuple(r.reason for r in self.rules)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for records and logs (public terms only)."""
        data: dict[str, Any] = {
            "outcome": self.outcome,
            "mode": self.mode,
            "charge": str(self.charge) if self.charge is not None else None,
            "rules": [
                {"rule": r.rule, "passed": r.passed, "approval": r.approval, "reason": r.reason}
                for r in self.rules
            ],
        }
        if self.shadow is not None:
            data["shadow"] = self.shadow.to_dict()
        if self.scope:
            data["scope"] = self.scope
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Rebuild a stored decision (its limits are not stored: they were spent)."""
        charge = data.get("charge")
        shadow = data.get("shadow")
        return cls(
            outcome=data["outcome"],
            rules=tuple(
                RuleResult(r["rule"], bool(r["passed"]), r["reason"], bool(r.get("approval")))
                for r in data.get("rules", ())
            ),
            charge=Amount.parse(charge) if charge is not None else None,
            mode=data.get("mode", "enforce"),
            shadow=cls.from_dict(shadow) if shadow is not None else None,
            scope=data.get("scope"),
        )
