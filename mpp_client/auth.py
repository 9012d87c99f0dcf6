"""``PaymentAuth``: the 402 flow as an ``httpx.Auth``.

It works like ``httpx.DigestAuth`` does for 401: send the request, and when the
server answers with a challenge, answer it and send the request again. Here
the challenge is a price, so between the two sends the spending policy decides
and the ledger reserves, and after the second the ledger records the outcome.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime, timedelta

import anyio
import anyio.to_thread
import httpx

from ._flow import MAX_402_BODY, Call, DryRun, Engine, Pending, read_402_limit_error
from ._text import get_logger
from .identity import AgentKey
from .ledger import Ledger, open_ledger
from .methods import PaymentMethod
from .policy import ApprovalRequest, Approver, Decision, SpendPolicy
from .protocol import format_accept_payment

__all__ = ["PaymentAuth"]

logger = get_logger("mpp_client")


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

    def with_auth(self, auth: httpx.Auth | None) -> PaymentAuth:
        """The same payment configuration (shared ledger and state) around another auth."""
        clone = object.__new__(PaymentAuth)
        clone._engine = self._engine
        clone._inner = auth
        return clone

    def __repr__(self) -> str:
        names = ", ".join(m.name for m in self._engine.methods)
        return f"<PaymentAuth methods=[{names}] policy={self._engine.policy!r}>"

    # -- sync -------------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        call = Call(self._engine, request)
        inner = _SyncInner(self._inner, request, None)
        outgoing: httpx.Request | None = inner.start()
        while outgoing is not None:
            outgoing = inner.feed((yield outgoing))
        response = inner.response
        dry_run: DryRun | None = None
        while response.status_code == 402 and call.wants_payment:
            _read_402_sync(response)
            step = call.plan(response)
            if isinstance(step, DryRun):
                dry_run = step
                break
            if isinstance(step, Pending):
                answer = _ask_sync(self._engine, call.approval_request(step), step.decision)
                step = call.approved(step, answer, response)
            plan = step
            try:
                header = call.credential(plan, plan.method.pay(plan.challenge))
            except Exception as exc:
                raise call.pay_failed(plan, exc) from None
            except BaseException:
                call.pay_interrupted(plan)
                raise
            inner = _SyncInner(self._inner, call.retry_request(plan), header)
            try:
                outgoing = inner.start()
                while outgoing is not None:
                    outgoing = inner.feed((yield outgoing))
            except GeneratorExit as closed:
                # httpx closes the flow when sending failed: the payment was made
                # and its result is unknown. Record that, and say so, with the
                # transport error as the cause.
                raise call.retry_lost(plan) from closed.__context__
            response = inner.response
            if response.status_code == 402:
                _read_402_sync(response)
            if not call.settle(plan, response):
                break
        call.finish(response, dry_run)

    # -- async ------------------------------------------------------------------

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        call = Call(self._engine, request)
        inner = _AsyncInner(self._inner, request, None)
        outgoing: httpx.Request | None = await inner.start()
        while outgoing is not None:
            outgoing = await inner.feed((yield outgoing))
        response = inner.response
        dry_run: DryRun | None = None
        blocking = self._engine.ledger.blocking
        while response.status_code == 402 and call.wants_payment:
            await _read_402_async(response)
            # A durable ledger does I/O: keep it off the event loop. Shielded: a
            # reservation made in the thread must not be lost to a cancellation.
            if blocking:
                with anyio.CancelScope(shield=True):
                    step = await anyio.to_thread.run_sync(call.plan, response)
            else:
                step = call.plan(response)
            if isinstance(step, DryRun):
                dry_run = step
                break
            if isinstance(step, Pending):
                answer = await _ask_async(self._engine, call.approval_request(step), step.decision)
                approve = functools.partial(call.approved, step, answer, response)
                if blocking:
                    with anyio.CancelScope(shield=True):
                        plan = await anyio.to_thread.run_sync(approve)
                else:
                    plan = approve()
            else:
                plan = step
            try:
                header = call.credential(plan, await plan.method.apay(plan.challenge))
            except Exception as exc:
                raise call.pay_failed(plan, exc) from None
            except BaseException:
                # Cancelled mid-payment: settle the reservation, let the cancellation through.
                call.pay_interrupted(plan)
                raise
            inner = _AsyncInner(self._inner, call.retry_request(plan), header)
            try:
                outgoing = await inner.start()
                while outgoing is not None:
                    outgoing = await inner.feed((yield outgoing))
            except GeneratorExit as closed:
                lost = call.retry_lost(plan)
                if _being_cancelled():
                    raise  # the record says unknown; the cancellation goes on
                raise lost from closed.__context__
            response = inner.response
            if response.status_code == 402:
                await _read_402_async(response)
            settle = functools.partial(call.settle, plan, response)
            if blocking:
                with anyio.CancelScope(shield=True):
                    again = await anyio.to_thread.run_sync(settle)
            else:
                again = settle()
            if not again:
                break
        call.finish(response, dry_run)


def _being_cancelled() -> bool:
    """True inside an asyncio task that is being cancelled (a timeout, say)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return False
    return task is not None and task.cancelling() > 0


def _ask_sync(engine: Engine, request: ApprovalRequest, decision: Decision) -> bool | None:
    """Ask the approver from sync code, in a worker thread so a timeout can apply."""
    approver = engine.approver
    assert approver is not None

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
        return None
    finally:
        pool.shutdown(wait=False)


async def _ask_async(engine: Engine, request: ApprovalRequest, decision: Decision) -> bool | None:
    """Ask the approver from async code: await it, or run a sync one in a thread."""
    approver = engine.approver
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
        return None
    return answer is True


async def _resolve(awaitable: Awaitable[bool]) -> bool:
    return await awaitable


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


def _check_length(response: httpx.Response) -> None:
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_402_BODY:
        raise read_402_limit_error(response)


def _read_402_sync(response: httpx.Response) -> None:
    """Read a 402 body (a problem detail), refusing hostile sizes."""
    _check_length(response)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_402_BODY:
            raise read_402_limit_error(response)
        chunks.append(chunk)
    # Keep the body readable afterwards, as response.read() would.
    response._content = b"".join(chunks)


async def _read_402_async(response: httpx.Response) -> None:
    _check_length(response)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_402_BODY:
            raise read_402_limit_error(response)
        chunks.append(chunk)
    response._content = b"".join(chunks)
