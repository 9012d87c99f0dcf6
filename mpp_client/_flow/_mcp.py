"""The payment loop for MCP tool calls, and its driver.

The same pipeline as HTTP (:mod:`._loop`), over JSON-RPC: a tool call fails
with ``-32042`` and challenges, the call plans, asks, pays and records
through the same :class:`~._call.Call`, and the tool is called again with the
credential in ``params._meta``. The loop is a generator of effects; besides
the HTTP loop's :class:`~._loop.Ask`, :class:`~._loop.Pay` and
:class:`~._loop.Record` (performed exactly as the async HTTP driver performs
them) it has its own :class:`CallTool`, which the MCP client performs with its
``mcp.ClientSession``. There is no sync driver: the MCP SDK is async.

How the answer to a paid call settles the payment, as the HTTP flow does:

=====================================================  =======================
answer to the call that carried the credential          settlement
=====================================================  =======================
a result (``result._meta`` receipt read and checked)    accepted: commit
a tool error (``isError``) *with* a receipt             accepted: commit
a tool error without a receipt                          unknown (kept counted)
``-32042``/``-32043`` with challenges, ``httpStatus``   refused: released, or
402 or absent (or an mppx payment-required result)      unknown if funds moved
``-32043`` with another ``httpStatus`` (pympp's 403)    unknown
any other JSON-RPC error, a lost connection, a timeout  unknown
=====================================================  =======================
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

from .._exceptions import ChallengeError, ProtocolError
from .._text import printable
from ..protocol import (
    MCP_META_CREDENTIAL,
    MCP_META_PAYMENT_REQUIRED,
    MCP_META_RECEIPT,
    MCP_PAYMENT_REQUIRED,
    Challenge,
    McpChallenge,
    McpPaymentRequired,
    is_mcp_payment_required,
    mcp_credential,
    parse_mcp_receipt,
)
from ._call import Call
from ._drivers import _perform_async, _settle_lost_async
from ._engine import DryRun, Engine, Pending, Plan, Target
from ._loop import Ask, Loop, Pay, Record, SendLost
from ._receipts import ReceiptReading, checked_receipt, unreadable_receipt

__all__ = [
    "CallTool",
    "McpOutcome",
    "ToolAnswer",
    "asked_payment",
    "drive_mcp",
    "mcp_payment_loop",
    "read_mcp_receipt",
]


@dataclass(frozen=True, slots=True)
class ToolAnswer:
    """What one ``tools/call`` got back: a result, or a JSON-RPC error.

    ``result`` is the SDK's result object (the flow never looks inside it);
    ``meta`` its ``_meta``; ``error`` the ``(code, message, data)`` of an
    error response. ``http_payments`` counts payments the HTTP layer made
    for this request (a streamable HTTP server that answered 402).
    """

    result: Any = None
    meta: Mapping[str, Any] | None = None
    is_error: bool = False
    error: tuple[int, str, Any] | None = None
    http_payments: int = 0


@dataclass(frozen=True, slots=True)
class CallTool:
    """Call the tool, adding ``meta`` (the credential) to ``params._meta``; the result is a
    :class:`ToolAnswer`. ``paid``: the call carries a credential, and its loss is recorded."""

    meta: Mapping[str, Any] | None = None
    paid: bool = False


@dataclass(frozen=True, slots=True)
class McpOutcome:
    """The last answer, and the policy's decision when it was a dry run (never paid)."""

    answer: ToolAnswer
    dry_run: DryRun | None = None


McpEffect: TypeAlias = CallTool | Ask | Pay | Record
McpLoop: TypeAlias = Generator[McpEffect, Any, McpOutcome]


def asked_payment(answer: ToolAnswer) -> McpPaymentRequired | None:
    """The payment an answer asks for; raises ChallengeError for malformed challenge data."""
    if answer.error is not None:
        code, _, data = answer.error
        return McpPaymentRequired.parse(code, data) if is_mcp_payment_required(code, data) else None
    meta = answer.meta or {}
    if MCP_META_PAYMENT_REQUIRED in meta and MCP_META_RECEIPT not in meta:
        return McpPaymentRequired.parse(MCP_PAYMENT_REQUIRED, meta[MCP_META_PAYMENT_REQUIRED])
    return None


def mcp_payment_loop(call: Call, target: Target, check: Callable[[], None]) -> McpLoop:
    """Call the tool; while it asks for payment and the call may pay, pay and call again.

    ``check`` raises :class:`~mpp_client.InsecureTransport` when a credential
    may not travel over this connection; it runs before anything is decided.
    """
    answer = yield CallTool()
    dry_run: DryRun | None = None
    while True:
        call.payments += answer.http_payments
        required = asked_payment(answer)
        if required is None:
            break
        if not call.wants_payment:
            # pay=False, or the call already paid as often as it may (at the HTTP
            # layer, say): the answer goes back as it is, unpaid.
            break
        if not required.offers:
            detail = f": {required.broken[0].message}" if required.broken else ""
            raise ChallengeError(f"the tool call has no usable payment challenge{detail}")
        check()
        offers = required.offers
        step = yield Record(call.plan, ([o.challenge for o in offers], required.broken, target))
        if isinstance(step, DryRun):
            dry_run = step
            break
        if isinstance(step, Pending):
            answer_ = yield Ask(call.approval_request(step), step.decision)
            step = yield Record(call.approved, (step, answer_))
        plan: Plan = step
        offer = _offer_of(offers, plan.challenge)
        try:
            payload = yield Pay(plan)
            meta = _credential_meta(call, plan, offer, payload)
        except Exception as exc:
            error = yield Record(call.pay_failed, (plan, exc))
            raise error from None
        except BaseException:
            yield Record(call.pay_interrupted, (plan,))
            raise
        try:
            answer = yield CallTool(meta, paid=True)
        except SendLost as lost:
            error = yield Record(call.retry_lost, (plan,))
            raise error from lost.cause
        again = yield Record(settle_answer, (call, plan, answer))
        if not again:
            break
    return McpOutcome(answer, dry_run)


def _offer_of(offers: tuple[McpChallenge, ...], challenge: Challenge) -> McpChallenge:
    for offer in offers:
        if offer.challenge is challenge:
            return offer
    raise AssertionError("the plan pays a challenge that was not offered")  # pragma: no cover


def _credential_meta(
    call: Call, plan: Plan, offer: McpChallenge, payload: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``_meta`` entry carrying the credential; counts the payment, as HTTP's does."""
    if not isinstance(payload, Mapping):
        raise TypeError("payment methods must return the payload as a mapping")
    plan.moved = plan.method._flow_moved(plan.challenge, plan.quote, payload)
    credential = mcp_credential(offer, payload, source=plan.quote.payer)
    call.payments += 1
    return {MCP_META_CREDENTIAL: credential}


def settle_answer(call: Call, plan: Plan, answer: ToolAnswer) -> bool:
    """Record what the paid call's answer means. True: pay again (fresh challenges)."""
    if answer.error is not None:
        code, message, data = answer.error
        if is_mcp_payment_required(code, data):
            try:
                required: McpPaymentRequired | None = McpPaymentRequired.parse(code, data)
            except ChallengeError:
                required = None
            if required is not None and required.retryable:
                return call.settle_refused(plan, required.problem)
            status = required.http_status if required is not None else None
            call.settle_unknown(
                plan,
                f"paid tool call answered JSON-RPC error {code} with HTTP status {status}",
            )
        call.settle_unknown(
            plan, f"paid tool call answered JSON-RPC error {code} ({printable(message, 80)})"
        )
    meta = answer.meta or {}
    if MCP_META_PAYMENT_REQUIRED in meta and MCP_META_RECEIPT not in meta:
        try:
            asked = McpPaymentRequired.parse(MCP_PAYMENT_REQUIRED, meta[MCP_META_PAYMENT_REQUIRED])
        except ChallengeError:
            call.settle_unknown(plan, "paid tool call answered with malformed payment data")
        return call.settle_refused(plan, asked.problem)
    reading = read_mcp_receipt(meta, plan.challenge)
    if answer.is_error and reading.receipt is None:
        call.settle_unknown(plan, "paid tool call returned a tool error and no receipt")
    call.settle_accepted(plan, reading, "the paid tool call returned a result")
    return False


def read_mcp_receipt(meta: Mapping[str, Any], challenge: Challenge) -> ReceiptReading:
    """The receipt in ``result._meta`` for this payment, checked as HTTP's ``Payment-Receipt`` is.

    A malformed receipt, or one for another method or challenge, is not kept
    (the result still means the credential was accepted) and the record says
    why; a receipt whose status is not ``success`` makes the outcome unknown.
    """
    value = meta.get(MCP_META_RECEIPT)
    if value is None:
        return ReceiptReading()
    try:
        receipt = parse_mcp_receipt(value)
    except ProtocolError as exc:
        status = value.get("status") if isinstance(value, dict) else None
        return unreadable_receipt(exc, status, "receipt")
    return checked_receipt(receipt, challenge, "receipt")


async def drive_mcp(
    engine: Engine, loop: McpLoop, call_tool: Callable[[CallTool], Awaitable[ToolAnswer]]
) -> McpOutcome:
    """Run the MCP loop: :class:`CallTool` through ``call_tool``, the rest as the async
    HTTP driver performs it (the ledger off the event loop, shielded)."""
    reply: Any = None
    failure: BaseException | None = None
    while True:
        try:
            effect = loop.send(reply) if failure is None else loop.throw(failure)
        except StopIteration as stop:
            return cast(McpOutcome, stop.value)
        reply, failure = None, None
        if isinstance(effect, CallTool):
            try:
                reply = await call_tool(effect)
            except BaseException as exc:
                if not effect.paid:
                    loop.close()
                    raise
                # The credential went out and no answer came back: unknown, kept counted.
                error = await _settle_lost_async(engine, cast(Loop, loop), exc)
                if not isinstance(exc, Exception):
                    raise  # a cancellation goes on; the record says unknown
                raise error from error.__cause__
            continue
        try:
            reply = await _perform_async(engine, effect)
        except BaseException as exc:  # thrown into the loop, which decides
            failure = exc
