"""The payment loop, written once: a generator of effects that a sync and an async driver run.

``httpx.DigestAuth`` writes its 401 flow once as a generator and lets httpx
drive it from sync and async clients. The 402 flow needs more than "send
this request": between two sends it reads a bounded body, may ask a human,
pays through a wallet, and writes the ledger, and each of those is a blocking
call in sync code and an await in async code. So :func:`payment_loop` never
does any of them. It *yields an effect* saying what it needs and receives the
result (or has the failure thrown into it at the same ``yield``), and a
driver in :mod:`mpp_client.auth` performs the effect its own way:

================  =================================  =================================
effect            sync driver                         async driver
================  =================================  =================================
:class:`Send`     yields the request to httpx         yields the request to httpx
:class:`Read402`  reads the body, bounded             reads the body, bounded
:class:`Ask`      asks the approver in a thread,      awaits the approver (a sync one
                  with the decision's timeout         in a thread), with the timeout
:class:`Pay`      ``method.pay(challenge)``           ``await method.apay(challenge)``
:class:`Record`   calls the ledger                    calls it in a worker thread,
                                                      shielded from cancellation, when
                                                      the ledger does I/O
================  =================================  =================================

Every decision, every ledger write and every error lives here and in
:class:`~._call.Call`; the drivers only perform I/O. Both run the same code
for the same outcome, which the test suite checks by running one
parametrized suite over both.

Interruptions. Whatever interrupts an effect (a transport error, an
exception from the wallet, a cancellation) is thrown into the loop at the
``yield`` that asked for it, so the loop settles the reservation before the
interruption goes on: released when nothing can have moved, *unknown* when
money may have. When httpx closes the flow because the paid retry failed to
send, the driver throws :class:`SendLost`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import httpx

from .._exceptions import PaymentError
from ..policy import ApprovalRequest, Decision
from ._call import Call
from ._engine import DryRun, Pending, Plan

__all__ = [
    "Ask",
    "Effect",
    "Loop",
    "Pay",
    "Read402",
    "Record",
    "Send",
    "SendLost",
    "payment_loop",
]


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``request`` (through the inner auth, if any) and return the final response.

    ``credential`` is the ``(header, value)`` to put on every request sent
    for it; ``paid`` is True for the retry that carries a payment, whose loss
    must be recorded (the driver throws :class:`SendLost` when it is lost).
    """

    request: httpx.Request
    credential: tuple[str, str] | None = None
    paid: bool = False


@dataclass(frozen=True, slots=True)
class Read402:
    """Read the body of a 402 (or an error after payment): a problem detail, bounded.

    Over the limit the driver raises a ``ChallengeError`` and leaves the body unread.
    """

    response: httpx.Response


@dataclass(frozen=True, slots=True)
class Ask:
    """Ask the approver about ``request``; the result is True, False, or None (no answer)."""

    request: ApprovalRequest
    decision: Decision


@dataclass(frozen=True, slots=True)
class Pay:
    """Have the wallet pay ``plan``; the result is the credential payload."""

    plan: Plan


@dataclass(frozen=True, slots=True)
class Record:
    """Run ``work(*args)``: a step that reads or writes the ledger, and its result.

    Durable ledgers do disk or network I/O, so the async driver runs this in a
    worker thread, shielded: a reservation made in the thread must never be
    lost to a cancellation. Sync code has no cancellation to shield from: a
    ``KeyboardInterrupt`` either lands before the ledger's transaction
    commits (nothing was written) or after (the record says what happened).
    """

    work: Callable[..., Any]
    args: tuple[Any, ...] = field(default=())


Effect: TypeAlias = Send | Read402 | Ask | Pay | Record
Loop: TypeAlias = Generator[Effect, Any, None]


class SendLost(Exception):
    """Thrown into the loop when httpx closed the flow while the paid retry was in flight."""

    def __init__(self, cause: BaseException | None) -> None:
        super().__init__("the paid request was lost")
        self.cause = cause


def payment_loop(
    call: Call, request: httpx.Request, response: httpx.Response | None = None
) -> Loop:
    """Send ``request``; while the answer is a 402 the call may pay, pay it and retry.

    At most ``max_payments`` payments; each is reserved before the wallet is
    called and settled (committed, released or unknown) before the loop
    returns or raises. Typed errors propagate out of the driver unchanged.
    ``response`` is the answer to ``request`` when a driver already sent it.
    """
    if response is None:
        response = yield Send(request)
    dry_run: DryRun | None = None
    while response.status_code == 402 and call.wants_payment:
        yield Read402(response)
        step = yield Record(call.plan_http, (response,))
        if isinstance(step, DryRun):
            dry_run = step
            break
        if isinstance(step, Pending):
            answer = yield Ask(call.approval_request(step), step.decision)
            step = yield Record(call.approved, (step, answer, response))
        plan: Plan = step
        try:
            payload = yield Pay(plan)
            header = call.credential(plan, payload)
        except Exception as exc:
            error = yield Record(call.pay_failed, (plan, exc))
            raise error from None
        except BaseException:
            # Interrupted mid-payment: settle the reservation, let the interruption through.
            yield Record(call.pay_interrupted, (plan,))
            raise
        try:
            response = yield Send(call.retry_request(plan), header, paid=True)
        except SendLost as lost:
            error = yield Record(call.retry_lost, (plan,))
            raise error from lost.cause
        if response.status_code == 402:
            yield Read402(response)
        elif not 200 <= response.status_code < 300:
            # Read the error's problem detail too, so the raised error's response
            # can be inspected; an oversize body stays unread and changes nothing.
            with contextlib.suppress(PaymentError):
                yield Read402(response)
        again = yield Record(call.settle, (plan, response))
        if not again:
            break
    call.finish(response, dry_run)
