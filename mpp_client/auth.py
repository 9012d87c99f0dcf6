"""``PaymentAuth``: the 402 flow as an ``httpx.Auth``.

It works like ``httpx.DigestAuth`` does for 401: send the request, and when the
server answers with a challenge, answer it and send the request again. Here
the challenge is a price, so between the two sends the spending policy decides
and the ledger reserves, and after the second the ledger records the outcome.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from .identity import AgentKey

from ._flow import Engine, drive_async, drive_sync
from ._flow._observe import Hooks, Observer, PaymentHook, RefusalHook, UnknownHook
from .ledger import Ledger, open_ledger
from .methods import PaymentMethod
from .policy import Approver, SpendPolicy
from .protocol import format_accept_payment

__all__ = ["PaymentAuth"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PaymentAuth(httpx.Auth):
    """Pays HTTP 402 ``Payment`` challenges with the configured methods.

    Usable with any httpx client::

        auth = PaymentAuth([DevWallet()], policy=SimplePolicy(max_per_call="0.10 USD"))
        httpx.get(url, auth=auth)

    Parameters:
        methods: payment methods in order of preference.
        policy: decides each payment. ``None`` refuses every payment (deny by default).
        ledger: records spend: a :class:`~mpp_client.ledger.Ledger`, a SQLite
            path, a ``postgresql://`` URL for a fleet, or ``"memory:"``. The
            default is a SQLite file in the user's data directory
            (``$MPP_CLIENT_LEDGER`` overrides), so budgets hold across runs.
        allow_insecure_localhost: let credentials go over plain HTTP to loopback
            hosts (tests and demos only). Other plain-HTTP hosts are always refused.
        max_payments: payments per logical request (default 1). A server that
            refuses a voucher may be paid again up to this many times; a payment
            whose outcome is unknown is never repeated.
        clock_skew: tolerance when checking a challenge's expiry.
        accept_payment: send ``Accept-Payment`` built from ``methods`` (True:
            the first method gets ``q=1``, each later one 0.1 less), a given
            value (str), or nothing (False).
        auth: another ``httpx.Auth`` (Bearer, Basic...) applied to every request,
            including the paid retry.
        approver: asked (sync or async) when the policy wants a human approval;
            without one such payments are refused with ``ApprovalRequired``.
        agent_key: the agent's key; it signs the decision record of every
            payment it makes (``record.signature``), so the owner can later
            prove which agent authorized what.
        on_payment: an event hook, sync or async, called with the committed
            record when a paid request ends. Like the two below, it runs after
            the ledger recorded the outcome; an exception in a hook is logged
            and never reaches the payment.
        on_refusal: called with the error that ended a call without paying.
        on_unknown: called with the ``PaymentOutcomeUnknown`` of a payment that
            stays counted until resolved.
        telemetry: emit OpenTelemetry spans (``mpp.payment`` and a child per
            step) and metrics (``mpp.payments``, ``mpp.spend``,
            ``mpp.refusals``, ``mpp.unknown``, ``mpp.payment.duration``)
            through the global providers; needs ``mpp-client[otel]``.
    """

    requires_request_body = True
    requires_response_body = False

    def __init__(
        self,
        methods: Sequence[PaymentMethod],
        *,
        policy: SpendPolicy | None = None,
        ledger: Ledger | str | os.PathLike[str] | None = None,
        allow_insecure_localhost: bool = False,
        max_payments: int = 1,
        clock_skew: timedelta = timedelta(seconds=5),
        accept_payment: bool | str = True,
        auth: httpx.Auth | None = None,
        approver: Approver | None = None,
        agent_key: AgentKey | None = None,
        on_payment: PaymentHook | None = None,
        on_refusal: RefusalHook | None = None,
        on_unknown: UnknownHook | None = None,
        telemetry: bool = False,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        methods = tuple(methods)
        for method in methods:
            if not isinstance(method, PaymentMethod):
                raise TypeError(f"methods must be PaymentMethod instances, got {method!r}")
        if not isinstance(max_payments, int) or max_payments < 0:
            raise ValueError("max_payments must be a non-negative int")
        if accept_payment is True:
            # Methods earlier in the list are preferred: say so with falling q-values.
            header: str | None = (
                format_accept_payment(
                    (m.name, intent, f"{max(10 - rank, 1) / 10:.1f}")
                    for rank, m in enumerate(methods)
                    for intent in sorted(m.intents)
                )
                or None
            )
        elif accept_payment is False:
            header = None
        else:
            header = accept_payment
        self._engine = Engine(
            methods,
            policy,
            open_ledger(ledger, agent_key=agent_key),
            allow_insecure_localhost=allow_insecure_localhost,
            max_payments=max_payments,
            clock_skew=clock_skew,
            clock=clock,
            accept_payment=header,
            approver=approver,
            agent_key=agent_key,
            observer=Observer(Hooks(on_payment, on_refusal, on_unknown), telemetry=telemetry),
        )
        self._inner = auth

    @property
    def methods(self) -> tuple[PaymentMethod, ...]:
        return self._engine.methods

    @property
    def policy(self) -> SpendPolicy | None:
        return self._engine.policy

    @property
    def ledger(self) -> Ledger:
        return self._engine.ledger

    @property
    def accept_payment(self) -> str | None:
        """The ``Accept-Payment`` value sent with every request, or None."""
        return self._engine.accept_payment

    def with_auth(self, auth: httpx.Auth | None) -> PaymentAuth:
        """The same payment configuration (shared ledger and state) around another auth."""
        clone = object.__new__(PaymentAuth)
        clone._engine = self._engine
        clone._inner = auth
        return clone

    def __repr__(self) -> str:
        names = ", ".join(m.name for m in self._engine.methods)
        return f"<PaymentAuth methods=[{names}] policy={self._engine.policy!r}>"

    # The payment loop is written once (mpp_client._flow._loop); these two
    # methods only pick the driver that performs its effects.

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        return drive_sync(self._engine, self._inner, request)

    def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        return drive_async(self._engine, self._inner, request)
