"""The policy interface: what the flow asks before every payment."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from ..methods import Quote
from ..money import Amount
from ..protocol import Challenge

__all__ = ["Decision", "Limit", "Outcome", "PaymentContext", "RuleResult", "SpendPolicy"]

Outcome = Literal["allow", "deny", "needs_approval"]


@dataclass(frozen=True, slots=True)
class PaymentContext:
    """Everything the policy may look at for one prospective payment.

    ``max_amount``, ``purpose``, ``tags`` and ``payee`` come from the caller
    (``extensions={"mpp": {...}}`` on the request); they can only narrow
    what the policy allows, never widen it.
    """

    url: str
    http_method: str
    host: str
    challenge: Challenge
    quote: Quote
    now: datetime
    purpose: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    max_amount: Amount | None = None
    expected_payee: str | None = None


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule's verdict, kept with the decision for the audit trail."""

    rule: str
    passed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Limit:
    """A budget the ledger must check atomically when it reserves.

    The policy cannot check budgets itself without a race: two payments
    deciding at once would both see room for one. So it names the budgets and
    the ledger enforces them inside its reservation. ``window`` None is a
    lifetime budget; ``payee``/``method`` None match every payment.
    """

    name: str
    cap: Amount
    window: timedelta | None = None
    payee: str | None = None
    method: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer: the outcome, every rule with its result, and the budgets."""

    outcome: Outcome
    rules: tuple[RuleResult, ...] = ()
    limits: tuple[Limit, ...] = ()
    #: The amount to hold, in the policy currency.
    charge: Amount | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome == "allow"

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why it was refused (failed rules), or why it passed when nothing failed."""
        failed = tuple(r.reason for r in self.rules if not r.passed)
        return failed or tuple(r.reason for r in self.rules)


class SpendPolicy(abc.ABC):
    """Decides whether a payment may be made. Must be thread- and task-safe.

    ``decide`` reads state (for example the ledger's totals) but never writes
    it; budgets are returned as :class:`Limit` objects for the ledger to hold.
    """

    @abc.abstractmethod
    def decide(self, context: PaymentContext) -> Decision:
        """Return a decision for ``context``. Must not raise for a refusal."""
