"""What the flow tells the outside world: event hooks, and OpenTelemetry spans and metrics.

Hooks (``on_payment``, ``on_refusal``, ``on_unknown``) are the user's own
code, sync or async, called when a paid request ends. They run after the
ledger has recorded the outcome and can never change it: an exception in a
hook is logged by type and swallowed, never raised into the payment.

Telemetry is off unless asked for (``telemetry=True``, the ``[otel]`` extra):
then a paid request is a span (``mpp.payment``) with a child per step the
drivers perform (decide and reserve, approval, pay, the paid retry, settle),
and counters and a histogram record spend, refusals by rule, unknown outcomes
and latency. Attributes carry public terms only (amounts, payees, methods,
the redacted URL), never a credential, a payload or a signature.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from .._exceptions import PaymentError, PaymentOutcomeUnknown, PolicyDenied
from .._text import get_logger
from ..ledger import PaymentRecord

__all__ = ["Hooks", "Observer", "PaymentHook", "RefusalHook", "UnknownHook"]

logger = get_logger("mpp_client")

#: Called with the committed record of a payment.
PaymentHook: TypeAlias = Callable[[PaymentRecord], "Awaitable[None] | None"]
#: Called with the error that ended a call without paying (a policy refusal,
#: an unusable challenge, a failed wallet, a refused credential).
RefusalHook: TypeAlias = Callable[[PaymentError], "Awaitable[None] | None"]
#: Called with the error of a payment whose outcome is unknown (still counted).
UnknownHook: TypeAlias = Callable[[PaymentOutcomeUnknown], "Awaitable[None] | None"]


@dataclass(frozen=True, slots=True)
class Hooks:
    """The user's event hooks (any may be None)."""

    on_payment: PaymentHook | None = None
    on_refusal: RefusalHook | None = None
    on_unknown: UnknownHook | None = None

    @property
    def any(self) -> bool:
        return not (self.on_payment is None and self.on_refusal is None and self.on_unknown is None)


def _event(
    hooks: Hooks, record: PaymentRecord | None, error: BaseException | None
) -> tuple[Callable[[Any], Any] | None, Any]:
    """Which hook an ending calls for, and with what."""
    if isinstance(error, PaymentOutcomeUnknown):
        return hooks.on_unknown, error
    if isinstance(error, PaymentError):
        return hooks.on_refusal, error
    if error is None and record is not None and record.status == "committed":
        return hooks.on_payment, record
    return None, None


class Observer:
    """One client's hooks and telemetry. Shared by every call of a ``PaymentAuth``."""

    def __init__(self, hooks: Hooks, *, telemetry: bool) -> None:
        self.hooks = hooks
        self._telemetry: _Telemetry | None = _Telemetry() if telemetry else None

    @property
    def active(self) -> bool:
        return self.hooks.any or self._telemetry is not None

    # -- hooks ------------------------------------------------------------------------

    def notify_sync(self, record: PaymentRecord | None, error: BaseException | None) -> None:
        hook, argument = _event(self.hooks, record, error)
        if hook is None:
            return
        try:
            result = hook(argument)
            if inspect.isawaitable(result):
                import asyncio  # noqa: PLC0415 - only for an async hook in sync code

                asyncio.run(_awaited(result))
        except Exception as exc:  # a hook can never break a payment
            logger.warning("an mpp event hook failed: %s", type(exc).__name__)

    async def notify_async(self, record: PaymentRecord | None, error: BaseException | None) -> None:
        hook, argument = _event(self.hooks, record, error)
        if hook is None:
            return
        try:
            result = hook(argument)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # a hook can never break a payment
            logger.warning("an mpp event hook failed: %s", type(exc).__name__)

    # -- telemetry ----------------------------------------------------------------------

    def begin(self, url: str) -> Any:
        """Start the span of one paid request (None when telemetry is off)."""
        if self._telemetry is None:
            return None
        return self._telemetry.begin(url)

    def step(self, payment: Any, name: str | None) -> Any:
        if self._telemetry is None or payment is None or name is None:
            return None
        return self._telemetry.step(payment, name)

    def end_step(self, step: Any, error: BaseException | None = None) -> None:
        if step is not None and self._telemetry is not None:
            self._telemetry.end_step(step, error)

    def end(self, payment: Any, record: PaymentRecord | None, error: BaseException | None) -> None:
        if payment is not None and self._telemetry is not None:
            self._telemetry.end(payment, record, error)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class _Telemetry:
    """OpenTelemetry instruments, made once per client (the API is a no-op until configured)."""

    def __init__(self) -> None:
        try:
            from opentelemetry import metrics, trace  # noqa: PLC0415 - an optional extra
        except ImportError as exc:
            raise ImportError(
                'telemetry=True needs the OpenTelemetry API: pip install "mpp-client[otel]"'
            ) from exc
        from .._version import __version__  # noqa: PLC0415

        self._trace = trace
        self.tracer = trace.get_tracer("mpp_client", __version__)
        meter = metrics.get_meter("mpp_client", __version__)
        self.payments = meter.create_counter(
            "mpp.payments", unit="{payment}", description="payments committed"
        )
        self.spend = meter.create_counter(
            "mpp.spend",
            unit="{base unit}",
            description="amount committed, in base units of mpp.currency (mpp.decimals digits)",
        )
        self.refusals = meter.create_counter(
            "mpp.refusals", unit="{call}", description="calls that ended without paying, by rule"
        )
        self.unknown = meter.create_counter(
            "mpp.unknown", unit="{payment}", description="payments whose outcome is unknown"
        )
        self.duration = meter.create_histogram(
            "mpp.payment.duration", unit="s", description="from the first 402 to the outcome"
        )

    def begin(self, url: str) -> tuple[Any, float]:
        span = self.tracer.start_span("mpp.payment", attributes={"url.full": url})
        return span, time.perf_counter()

    def step(self, payment: tuple[Any, float], name: str) -> Any:
        parent = self._trace.set_span_in_context(payment[0])
        return self.tracer.start_span(f"mpp.{name}", context=parent)

    def end_step(self, step: Any, error: BaseException | None) -> None:
        if error is not None:
            step.set_attribute("error.type", type(error).__name__)
            step.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        step.end()

    def end(
        self,
        payment: tuple[Any, float],
        record: PaymentRecord | None,
        error: BaseException | None,
    ) -> None:
        span, started = payment
        attributes: dict[str, str | int] = {}
        if record is not None:
            attributes = {
                "mpp.method": record.method,
                "mpp.intent": record.intent,
                "mpp.payee": record.payee,
                "mpp.realm": record.realm,
                "mpp.currency": record.amount.currency,
            }
            span.set_attributes(
                {
                    **attributes,
                    "mpp.amount": str(record.amount),
                    "mpp.status": record.status,
                    "mpp.record_id": record.id,
                }
            )
        outcome = "paid" if error is None and record is not None else "not paid"
        if isinstance(error, PaymentOutcomeUnknown):
            outcome = "unknown"
            self.unknown.add(1, attributes)
        elif isinstance(error, PaymentError):
            rule = _refusing_rule(error)
            self.refusals.add(1, {"mpp.rule": rule, "error.type": type(error).__name__})
            span.set_attribute("mpp.rule", rule)
        elif record is not None and record.status == "committed":
            self.payments.add(1, attributes)
            self.spend.add(
                record.amount.units, {**attributes, "mpp.decimals": record.amount.decimals}
            )
        span.set_attribute("mpp.outcome", outcome)
        if error is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
        self.duration.record(time.perf_counter() - started, {"mpp.outcome": outcome})
        span.end()


def _refusing_rule(error: PaymentError) -> str:
    """The first rule that refused, or the kind of error when no policy was involved."""
    if isinstance(error, PolicyDenied) and error.decision is not None:
        for rule in error.decision.rules:
            if not rule.passed and not rule.approval:
                return rule.rule
        for rule in error.decision.rules:
            if rule.approval:
                return rule.rule
    return type(error).__name__
