"""What one ``PaymentAuth`` shares across calls, and the shapes a payment takes on its way.

:class:`Engine` is the configuration (methods, policy, ledger, approver, keys,
hooks) and the in-process memory of answered challenges. A payment is first
an :class:`Offer` (quoted, decided), then a :class:`Pending` approval, a
:class:`DryRun` or a reserved :class:`Plan`. :class:`Target` is what it pays
for, whatever carries it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import httpx

from ..ledger import Ledger, PaymentRecord
from ..methods import PaymentMethod
from ..policy import Approver, Decision, SpendPolicy
from ..protocol import Challenge, Quote
from ._observe import Hooks, Observer
from ._transport import redact_url

if TYPE_CHECKING:
    from ..identity import AgentKey

__all__ = ["ApproverFailed", "DryRun", "Engine", "Offer", "Pending", "Plan", "Target"]


@dataclass(frozen=True, slots=True)
class ApproverFailed:
    """The approver raised instead of answering: not an approval (only its type is kept)."""

    kind: str

    def __init__(self, error: BaseException) -> None:
        object.__setattr__(self, "kind", type(error).__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """What a payment is for, whatever carries it: an HTTP request, an MCP tool call.

    ``url`` is what records and policies see (query values redacted);
    ``method`` the HTTP method or the transport's verb (``tools/call``);
    ``body`` what a challenge ``digest`` must match. ``request`` is the HTTP
    request to send again with the credential (None for other transports).
    """

    url: str
    host: str
    method: str
    body: bytes | None = None
    request: httpx.Request | None = None

    @classmethod
    def of(cls, request: httpx.Request) -> Target:
        url = redact_url(request.url)
        return cls(url, request.url.host, request.method, request.content, request)


@dataclass(frozen=True, slots=True)
class Offer:
    """An offer that quoted well, with where and when it was considered."""

    challenge: Challenge
    method: PaymentMethod
    quote: Quote
    target: Target
    now: datetime


@dataclass(frozen=True, slots=True)
class Pending:
    """A payment the policy allows only with a human approval."""

    offer: Offer
    decision: Decision


@dataclass(frozen=True, slots=True)
class DryRun:
    """The policy's decision in dry-run mode: reported, never paid."""

    offer: Offer
    decision: Decision


@dataclass(slots=True)
class Plan:
    """A payment that has been decided and reserved, waiting to be made."""

    challenge: Challenge
    method: PaymentMethod
    quote: Quote
    decision: Decision
    record: PaymentRecord
    target: Target
    #: Whether money moved when the method paid (set once it has).
    moved: bool | None = None


class Engine:
    """Configuration and shared state behind one :class:`~mpp_client.PaymentAuth`."""

    def __init__(
        self,
        methods: Sequence[PaymentMethod],
        policy: SpendPolicy | None,
        ledger: Ledger,
        *,
        allow_insecure_localhost: bool,
        max_payments: int,
        clock_skew: timedelta,
        clock: Callable[[], datetime],
        accept_payment: str | None,
        approver: Approver | None = None,
        agent_key: AgentKey | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.methods = tuple(methods)
        #: Event hooks and telemetry (inactive by default).
        self.observer = observer or Observer(Hooks(), telemetry=False)
        self.policy = policy
        self.ledger = ledger
        self.allow_insecure_localhost = allow_insecure_localhost
        self.max_payments = max_payments
        self.clock_skew = clock_skew
        self.clock = clock
        self.accept_payment = accept_payment
        self.approver = approver
        self.agent_key = agent_key
        self._used_lock = threading.Lock()
        self._used: OrderedDict[tuple[str, str], None] = OrderedDict()

    # Challenge ids are single use: remember the ones we answered.
    _USED_MAX = 10_000

    def claim(self, challenge: Challenge) -> bool:
        """Mark a challenge as answered; False if it already was."""
        key = (challenge.realm, challenge.id)
        with self._used_lock:
            if key in self._used:
                return False
            self._used[key] = None
            if len(self._used) > self._USED_MAX:
                self._used.popitem(last=False)
            return True

    def was_used(self, challenge: Challenge) -> bool:
        with self._used_lock:
            return (challenge.realm, challenge.id) in self._used
