"""The policy interface: what the flow asks before every payment.

The words of a decision (:class:`Decision`, :class:`Limit`,
:class:`RuleResult`, :class:`SpendHistory`) live in ``mpp_client._decision``,
shared with the ledger; they are re-exported here.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

from .._decision import (
    Decision,
    Limit,
    Mode,
    Outcome,
    RuleResult,
    SpendHistory,
    Usage,
    program_scope,
)
from ..money import Amount
from ..protocol import Challenge, Quote

__all__ = [
    "ApprovalRequest",
    "Approver",
    "Decision",
    "Limit",
    "Mode",
    "Outcome",
    "PaymentContext",
    "RuleResult",
    "SpendHistory",
    "SpendPolicy",
    "Usage",
    "program_scope",
]


@dataclass(frozen=True, slots=True)
class PaymentContext:
    """Everything the policy may look at for one prospective payment.

    ``max_amount``, ``purpose``, ``tags`` and ``expected_payee`` come from the
    caller (``extensions={"mpp": {...}}`` on the request); they can only narrow
    what the policy allows, never widen it. ``history`` reads the ledger.

    ``signer_location`` and ``signer_hardware`` describe the key that will
    authorise this payment (the chosen wallet's signer), as its ``location``
    and ``hardware`` attributes say (``mpp_client.identity.Signer``). The
    defaults mean "unknown", which a ``[signing] hardware_above`` rule treats
    as not hardware: deny by default.
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
    history: SpendHistory | None = None
    signer_location: str | None = None
    signer_hardware: bool = False


class SpendPolicy(abc.ABC):
    """Decides whether a payment may be made. Must be thread- and task-safe.

    ``decide`` reads state (the ledger's history) but never writes it; budgets
    and rates are returned as :class:`Limit` objects for the ledger to hold.
    """

    @abc.abstractmethod
    def decide(self, context: PaymentContext) -> Decision:
        """Return a decision for ``context``. Must not raise for a refusal."""


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """What a human approver is asked about: public terms and the reasons."""

    url: str
    http_method: str
    realm: str
    method: str
    intent: str
    amount: Amount
    charge: Amount | None
    payee: str
    reasons: tuple[str, ...]
    purpose: str | None
    tags: Mapping[str, str]
    decision: Decision


#: Answers an approval request: True approves; False, an error or no answer
#: before the policy's ``approval.timeout`` refuses. May be sync or async.
Approver: TypeAlias = Callable[[ApprovalRequest], "bool | Awaitable[bool]"]
