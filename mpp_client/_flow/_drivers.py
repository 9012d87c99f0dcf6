"""The two drivers of the payment loop: one for sync code, one for async code.

Each runs :func:`~._loop.payment_loop` as an httpx auth flow: a :class:`~._loop.Send`
is yielded to httpx (through the inner auth, if the user configured one), and
every other effect is performed here, blocking in the sync driver and awaited
in the async one. That is the only difference between them; what to do with
each result, and what to do when an effect fails, is decided by the loop.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any

import anyio
import anyio.to_thread
import httpx
import sniffio

from .._text import get_logger
from ..policy import ApprovalRequest, Approver, Decision
from ._call import Call, prepare_request
from ._engine import ApproverFailed, Engine
from ._loop import Ask, Effect, Loop, Pay, Read402, Record, Send, SendLost, payment_loop
from ._transport import (
    MAX_402_BODY,
    TRANSPORT_ERROR,
    BoundedBody,
    read_402_limit_error,
    redact_url,
)

__all__ = ["drive_async", "drive_sync"]

logger = get_logger("mpp_client")


# -- sync -------------------------------------------------------------------------------


def drive_sync(
    engine: Engine, inner: httpx.Auth | None, request: httpx.Request
) -> Generator[httpx.Request, httpx.Response, None]:
    """The payment loop as a sync httpx auth flow."""
    options = prepare_request(engine, request)
    if inner is None:
        # Most requests are not paid for: send, and only a 402 builds a call and a loop.
        first = yield request
        if first.status_code != 402:
            return
        call = Call(engine, options)
        if not call.wants_payment:
            return
        loop = payment_loop(call, request, first)
    else:
        call = Call(engine, options)
        loop = payment_loop(call, request)
    observer = engine.observer
    payment: Any = None  # the telemetry span of this paid request, once a 402 came
    ended: BaseException | None = None
    reply: Any = None
    failure: BaseException | None = None
    try:
        while True:
            try:
                effect = loop.send(reply) if failure is None else loop.throw(failure)
            except StopIteration:
                return
            reply, failure = None, None
            if isinstance(effect, Send):
                step = observer.step(payment, "retry") if effect.paid else None
                stepper = _SyncInner(inner, effect.request, effect.credential)
                sent = effect.request
                try:
                    outgoing: httpx.Request | None = stepper.start()
                    while outgoing is not None:
                        sent = outgoing
                        outgoing = stepper.feed((yield outgoing))
                except BaseException as exc:
                    observer.end_step(step, exc)
                    if not effect.paid:
                        loop.close()
                        raise
                    # The credential went out and no response came back (httpx closes
                    # the flow with GeneratorExit when sending failed): the loop records
                    # the payment as unknown and says so, with the transport error as cause.
                    cause = _lost_cause(exc, sent)
                    error = _settle_lost_sync(engine, loop, cause)
                    raise error from error.__cause__
                observer.end_step(step)
                reply = stepper.response
                continue
            if payment is None and observer.active:
                payment = observer.begin(redact_url(request.url))
            step = observer.step(payment, _step_name(effect))
            try:
                reply = _perform_sync(engine, effect)
            except BaseException as exc:  # thrown into the loop, which decides
                failure = exc
            observer.end_step(step, failure)
    except BaseException as exc:
        ended = exc
        raise
    finally:
        if observer.active:
            observer.end(payment, call.record, ended)
            observer.notify_sync(call.record, ended)


def _lost_cause(exc: BaseException, sent: httpx.Request) -> BaseException | None:
    """The transport error behind a lost paid request.

    httpx closes the flow with ``GeneratorExit`` while handling the error: a
    sync generator sees the error as that exit's context, an async generator
    (on CPython 3.11) does not, so ``AsyncClient`` also leaves it on the paid
    request it failed to send (:data:`TRANSPORT_ERROR`, which ``_Inner`` puts
    on every request that carries a credential). ``Client`` needs no such stash.
    """
    if not isinstance(exc, GeneratorExit):
        return exc
    stashed = sent.extensions.get(TRANSPORT_ERROR)
    return exc.__context__ or (stashed if isinstance(stashed, BaseException) else None)


def _step_name(effect: Effect) -> str | None:
    """The telemetry name of the step an effect performs (None: not a step of its own)."""
    if isinstance(effect, Record):
        return _RECORD_STEPS.get(getattr(effect.work, "__name__", ""), "ledger")
    return _EFFECT_STEPS.get(type(effect))


#: The steps named by their effect alone.
_EFFECT_STEPS: dict[type, str] = {Pay: "pay", Ask: "approval"}


#: The loop's ledger steps, by the Call method performing them.
_RECORD_STEPS = {
    "plan_http": "decide",
    "approved": "reserve",
    "settle": "settle",
    "pay_failed": "settle",
    "pay_interrupted": "settle",
    "retry_lost": "settle",
}


def _perform_sync(engine: Engine, effect: Effect) -> Any:
    if isinstance(effect, Record):
        return effect.work(*effect.args)
    if isinstance(effect, Pay):
        plan = effect.plan
        return plan.method.pay(plan.challenge, plan.quote)
    if isinstance(effect, Read402):
        return _read_402_sync(effect.response)
    if isinstance(effect, Ask):
        return _ask_sync(engine.approver, effect.request, effect.decision)
    raise TypeError(f"the sync driver cannot perform {effect!r}")  # pragma: no cover


def _settle_lost_sync(engine: Engine, loop: Loop, cause: BaseException | None) -> BaseException:
    """Tell the loop its paid request was lost; run what it does about it; return its error."""
    try:
        effect = loop.throw(SendLost(cause))
        while True:
            effect = loop.send(_perform_sync(engine, effect))
    except BaseException as error:
        return error


def _read_402_sync(response: httpx.Response) -> None:
    """Read a 402 body (a problem detail), refusing hostile sizes."""
    body = BoundedBody(response, MAX_402_BODY, read_402_limit_error)
    for chunk in response.iter_bytes():
        body.add(chunk)
    # Keep the body readable afterwards, as response.read() would.
    response._content = body.content()


def _ask_sync(
    approver: Approver | None, request: ApprovalRequest, decision: Decision
) -> bool | ApproverFailed | None:
    """Ask the approver from sync code, in a worker thread so a timeout can apply."""
    assert approver is not None
    # Approvals are rare: their thread pool and event loop load when one is asked.
    import asyncio  # noqa: PLC0415
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415
    from concurrent.futures import TimeoutError as FutureTimeout  # noqa: PLC0415

    def ask() -> bool:
        answer = approver(request)
        if inspect.isawaitable(answer):
            answer = asyncio.run(_resolve(answer))
        return answer is True

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mpp-approval")
    try:
        return pool.submit(ask).result(timeout=decision.approval_timeout)
    except FutureTimeout:
        logger.warning("approval timed out after %ss", decision.approval_timeout)
        return None
    except Exception as exc:
        logger.warning("the approver failed: %s", type(exc).__name__)
        return ApproverFailed(exc)
    finally:
        pool.shutdown(wait=False)


async def _resolve(awaitable: Awaitable[bool]) -> bool:
    return await awaitable


# -- async ------------------------------------------------------------------------------


async def drive_async(
    engine: Engine, inner: httpx.Auth | None, request: httpx.Request
) -> AsyncGenerator[httpx.Request, httpx.Response]:
    """The payment loop as an async httpx auth flow."""
    options = prepare_request(engine, request)
    if inner is None:
        first = yield request
        if first.status_code != 402:
            return
        call = Call(engine, options)
        if not call.wants_payment:
            return
        loop = payment_loop(call, request, first)
    else:
        call = Call(engine, options)
        loop = payment_loop(call, request)
    observer = engine.observer
    payment: Any = None
    ended: BaseException | None = None
    deferred: BaseException | None = None
    reply: Any = None
    failure: BaseException | None = None
    try:
        while True:
            try:
                effect = loop.send(reply) if failure is None else loop.throw(failure)
            except StopIteration:
                break
            reply, failure = None, None
            if isinstance(effect, Send):
                step = observer.step(payment, "retry") if effect.paid else None
                stepper = _AsyncInner(inner, effect.request, effect.credential)
                sent = effect.request
                try:
                    outgoing: httpx.Request | None = await stepper.start()
                    while outgoing is not None:
                        sent = outgoing
                        outgoing = await stepper.feed((yield outgoing))
                except BaseException as exc:
                    observer.end_step(step, exc)
                    if not effect.paid:
                        loop.close()
                        raise
                    cause = _lost_cause(exc, sent)
                    error = await _settle_lost_async(engine, loop, cause)
                    if isinstance(exc, GeneratorExit) and _being_cancelled():
                        raise  # the record says unknown; the cancellation goes on
                    raise error from error.__cause__
                observer.end_step(step)
                reply = stepper.response
                continue
            if deferred is not None and not isinstance(effect, Record):
                # Cancelled while the ledger wrote: the loop has the result; now it
                # settles the interruption instead of going on (no payment starts).
                failure, deferred = deferred, None
                continue
            if payment is None and observer.active:
                payment = observer.begin(redact_url(request.url))
            step = observer.step(payment, _step_name(effect))
            try:
                reply = await _perform_async(engine, effect)
            except _Deferred as late:
                reply, deferred = late.result, late.cancellation
            except BaseException as exc:  # thrown into the loop, which decides
                failure = exc
            observer.end_step(step, failure)
    except BaseException as exc:
        ended = exc
        raise
    finally:
        if observer.active:
            observer.end(payment, call.record, ended)
            await observer.notify_async(call.record, ended)
    if deferred is not None:  # the loop finished; the cancellation goes on
        raise deferred


async def _perform_async(engine: Engine, effect: Effect) -> Any:
    if isinstance(effect, Record):
        return await _record_async(engine, effect)
    if isinstance(effect, Pay):
        plan = effect.plan
        return await plan.method.apay(plan.challenge, plan.quote)
    if isinstance(effect, Read402):
        return await _read_402_async(effect.response)
    if isinstance(effect, Ask):
        return await _ask_async(engine.approver, effect.request, effect.decision)
    raise TypeError(f"the async driver cannot perform {effect!r}")  # pragma: no cover


async def _record_async(engine: Engine, effect: Record) -> Any:
    """Ledger work off the event loop when the ledger does I/O, shielded from cancellation.

    A reservation made in the worker thread must reach the loop even when the
    task is cancelled meanwhile, or it would stay held with nobody to settle
    it. Under anyio cancel scopes (and trio) a shielded scope does that; a
    native asyncio cancellation (``task.cancel()``: ``asyncio.timeout``,
    ``wait_for``, task groups) is not stopped by it, so on asyncio the work's
    future is awaited through ``asyncio.shield`` until it is done, and the
    cancellation is handed back with the result (:class:`_Deferred`) for the
    loop to settle before it goes on.
    """
    if not engine.ledger.blocking:
        return effect.work(*effect.args)
    work: Callable[[], Any] = lambda: effect.work(*effect.args)  # noqa: E731
    if sniffio.current_async_library() != "asyncio":
        with anyio.CancelScope(shield=True):
            return await anyio.to_thread.run_sync(work)
    import asyncio  # noqa: PLC0415 - loaded already: this is an asyncio task

    future = asyncio.get_running_loop().run_in_executor(None, work)
    cancelled: BaseException | None = None
    while True:
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError as exc:
            if not future.done():
                cancelled = exc  # keep waiting: the ledger is writing
                continue
            cancelled = exc
            result = future.result()  # the work's own error, if it raised, wins
        break
    if cancelled is not None:
        raise _Deferred(result, cancelled)
    return result


class _Deferred(BaseException):
    """Ledger work finished while the task was being cancelled: its result, and the
    cancellation, which the driver throws into the loop at its next step."""

    def __init__(self, result: Any, cancellation: BaseException) -> None:
        super().__init__("cancelled during ledger work")
        self.result = result
        self.cancellation = cancellation


async def _settle_lost_async(
    engine: Engine, loop: Loop, cause: BaseException | None
) -> BaseException:
    try:
        effect = loop.throw(SendLost(cause))
        while True:
            if not isinstance(effect, Record):  # pragma: no cover
                raise TypeError(f"unexpected {effect!r} after a lost request")
            try:
                result = await _record_async(engine, effect)
            except _Deferred as late:  # the caller re-raises the cancellation
                result = late.result
            effect = loop.send(result)
    except BaseException as error:
        return error


def _being_cancelled() -> bool:
    """True inside an asyncio task that is being cancelled (a timeout, say)."""
    if "asyncio" not in sys.modules:  # never imported: no asyncio task is running
        return False
    import asyncio  # noqa: PLC0415

    try:
        task = asyncio.current_task()
    except RuntimeError:
        return False
    return task is not None and task.cancelling() > 0


async def _read_402_async(response: httpx.Response) -> None:
    body = BoundedBody(response, MAX_402_BODY, read_402_limit_error)
    async for chunk in response.aiter_bytes():
        body.add(chunk)
    response._content = body.content()


async def _ask_async(
    approver: Approver | None, request: ApprovalRequest, decision: Decision
) -> bool | ApproverFailed | None:
    """Ask the approver from async code: await it, or run a sync one in a thread."""
    assert approver is not None
    try:
        with anyio.fail_after(decision.approval_timeout):
            if inspect.iscoroutinefunction(approver):
                answer = await approver(request)
            else:
                answer = await anyio.to_thread.run_sync(approver, request, abandon_on_cancel=True)
                if inspect.isawaitable(answer):
                    answer = await answer
    except TimeoutError:
        logger.warning("approval timed out after %ss", decision.approval_timeout)
        return None
    except Exception as exc:
        logger.warning("the approver failed: %s", type(exc).__name__)
        return ApproverFailed(exc)
    return answer is True


# -- the inner auth -----------------------------------------------------------------------


class _Inner:
    """Steps one request through an inner ``httpx.Auth`` (which may need several
    round trips), adding the credential header to every request it sends."""

    __slots__ = ("_header", "_inner", "_request", "response")

    def __init__(
        self, inner: httpx.Auth | None, request: httpx.Request, header: tuple[str, str] | None
    ) -> None:
        self._inner = inner
        self._request = request
        self._header = header
        self.response: httpx.Response

    def _mark(self, request: httpx.Request) -> httpx.Request:
        if self._header is not None:
            request.headers[self._header[0]] = self._header[1]
            # A paid request: AsyncClient watches its sending, to name the transport
            # error if it is lost (see _lost_cause); unpaid requests go unwatched.
            request.extensions.setdefault(TRANSPORT_ERROR, None)
        return request


class _SyncInner(_Inner):
    __slots__ = ("_flow",)
    _flow: Generator[httpx.Request, httpx.Response, None] | None

    def start(self) -> httpx.Request:
        self._flow = None
        if self._inner is None:
            return self._mark(self._request)
        self._flow = self._inner.sync_auth_flow(self._request)
        return self._mark(next(self._flow))

    def feed(self, response: httpx.Response) -> httpx.Request | None:
        """Give the response; get the next request, or None when done."""
        if self._flow is None:
            self.response = response
            return None
        assert self._inner is not None
        if self._inner.requires_response_body:
            response.read()
        try:
            return self._mark(self._flow.send(response))
        except StopIteration:
            self.response = response
            return None


class _AsyncInner(_Inner):
    __slots__ = ("_flow",)
    _flow: AsyncGenerator[httpx.Request, httpx.Response] | None

    async def start(self) -> httpx.Request:
        self._flow = None
        if self._inner is None:
            return self._mark(self._request)
        self._flow = self._inner.async_auth_flow(self._request)
        return self._mark(await self._flow.__anext__())

    async def feed(self, response: httpx.Response) -> httpx.Request | None:
        if self._flow is None:
            self.response = response
            return None
        assert self._inner is not None
        if self._inner.requires_response_body:
            await response.aread()
        try:
            return self._mark(await self._flow.asend(response))
        except StopAsyncIteration:
            self.response = response
            return None
