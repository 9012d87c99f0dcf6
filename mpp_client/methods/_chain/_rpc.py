"""One chain client for both rails and both verifiers, on web3.py.

:class:`ChainRpc` (sync) and :class:`AsyncChainRpc` send JSON-RPC through a
web3.py ``Web3`` / ``AsyncWeb3``: one built from an RPC URL, or the user's
own (or one around the user's provider: IPC, WebSocket, an HTTP provider
with its own session or headers). Requests go through the instance's
request manager (``manager.request_blocking`` / ``coro_request``), so the
user's middleware applies; results come back as the node's JSON (hex
quantities, receipts as JSON objects), the same shape for every method and
both rails, which is why the typed ``w3.eth`` methods are not used: Tempo's
``eth_sendRawTransactionSync`` has no web3 method and its ``0x76`` receipts
carry fields web3's formatters do not know (see docs/methods.md).

Three kinds of request (:class:`Request`), three retry rules:

``read``
    Bounded retries on transport errors (:data:`READ_ATTEMPTS`, with
    backoff, by ``tenacity``): a read cannot pay twice. A node's error
    answer (:class:`RpcError`) is an answer and is not retried.
``receipt``
    Polled until the node has the receipt or ``timeout`` passes (``tenacity``
    again): "not yet mined" and transport errors are retried; the answer is
    None if the time runs out.
``broadcast``
    Sent exactly once, never retried blindly. A failure says whether the
    request can have reached the node (:attr:`ChainTransportError.reached`):
    a refused connection means nothing was sent; a timeout or a dropped
    connection mean it may have been.

A web3 ``HTTPProvider`` built here has web3's own retries off (by default
web3 re-sends ``eth_sendRawTransaction`` up to five times on a timeout) and
no middleware (the default stack asks for ``eth_chainId`` before every
``eth_call``). A provider you hand in keeps its configuration; the wallets
then ask the chain before reading a broadcast refusal as "nothing was sent".

A wallet's chain access is a :class:`ChainFlow`: a generator that yields
:class:`Request`s and receives their results (errors are thrown into it at
the ``yield``), written once and run by :meth:`ChainRpc.run` or
:meth:`AsyncChainRpc.run`. Before the first request of a flow, the runner
checks that the node serves the chain the flow is for.

Errors never carry the RPC URL (it may hold an API key): messages name the
node's host only.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Generator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, TypeAlias, TypeVar, cast

import aiohttp
import anyio.to_thread
import httpx
import urllib3.exceptions
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)
from web3 import AsyncWeb3, Web3
from web3.exceptions import BadResponseFormat, ProviderConnectionError, Web3RPCError
from web3.providers import AsyncBaseProvider, AsyncHTTPProvider, BaseProvider, HTTPProvider
from web3.types import RPCEndpoint

from ..._exceptions import TermsRefused

__all__ = [
    "BROADCASTS",
    "READ_ATTEMPTS",
    "AsyncChainRpc",
    "ChainFlow",
    "ChainRpc",
    "ChainTransportError",
    "MaybeSent",
    "Node",
    "NotSent",
    "Request",
    "RpcError",
    "Web3Arg",
    "Web3Like",
    "broadcast",
    "eth_call",
    "expect_chain",
    "nodes_from",
    "quantity",
    "read",
    "receipt",
    "returned_data",
    "run_offline",
    "send_transaction",
]

T = TypeVar("T")

#: One way to reach a chain through web3.py: an instance or a provider.
Web3Like: TypeAlias = Web3 | AsyncWeb3[Any] | BaseProvider | AsyncBaseProvider
#: A wallet's ``web3=``: one :data:`Web3Like` (for a wallet on one chain), a pair
#: of one sync and one async, or a mapping of chain id to either.
Web3Arg: TypeAlias = (
    Web3Like | Sequence[Web3Like] | Mapping[int, Web3Like | Sequence[Web3Like]] | None
)
#: Attempts of a read before its transport error is final.
READ_ATTEMPTS = 3
#: Methods that send a transaction: never retried.
BROADCASTS = frozenset(
    {"eth_sendRawTransaction", "eth_sendRawTransactionSync", "eth_sendTransaction"}
)
_BACKOFF = wait_exponential(multiplier=0.05, max=1.0)


class RpcError(Exception):
    """The node answered with a JSON-RPC error (so the request reached it)."""

    def __init__(self, method: str, code: object, message: str) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.rpc_message = message


class ChainTransportError(Exception):
    """No usable answer came back: the connection failed, timed out or the answer was garbled.

    ``reached`` is False only when the request cannot have reached a node
    (the connection was refused, never made, or there is no node to ask):
    then a broadcast certainly did not happen.
    """

    def __init__(self, method: str, cause: str, *, reached: bool) -> None:
        super().__init__(f"{method}: {cause}")
        self.method = method
        self.cause = cause
        self.reached = reached


@dataclass(frozen=True, slots=True)
class Request:
    """One JSON-RPC request of a :class:`ChainFlow` (see the module notes for ``kind``)."""

    method: str
    params: tuple[Any, ...] = ()
    kind: Literal["read", "broadcast", "receipt"] = "read"
    #: ``receipt``: how long to wait for it; ``broadcast``: the HTTP timeout (None: the client's).
    timeout: float | None = None


def read(method: str, *params: Any) -> Request:
    """A read: retried on transport errors."""
    return Request(method, params)


def broadcast(method: str, *params: Any, timeout: float | None = None) -> Request:
    """A broadcast: sent once."""
    return Request(method, params, "broadcast", timeout)


def receipt(tx_hash: str, timeout: float) -> Request:
    """``eth_getTransactionReceipt`` polled until mined or ``timeout`` seconds passed."""
    return Request("eth_getTransactionReceipt", (tx_hash,), "receipt", timeout)


#: A wallet's conversation with a node, written once for sync and async.
ChainFlow: TypeAlias = Generator[Request, Any, T]


def quantity(value: object, method: str) -> int:
    """A JSON-RPC hex quantity (``"0x1a"``) as an int; :class:`ChainTransportError` otherwise."""
    if isinstance(value, str) and value[:2] == "0x" and 2 < len(value) <= 66:
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise ChainTransportError(method, f"not a hex quantity: {value!r:.40}", reached=True)


def eth_call(to: str, data: bytes, sender: str | None = None) -> Request:
    """An ``eth_call`` read at the latest block (its result: :func:`returned_data`)."""
    call = {"to": to, "data": "0x" + data.hex()}
    if sender is not None:
        call["from"] = sender
    return read("eth_call", call, "latest")


def returned_data(result: object) -> bytes:
    """The bytes an ``eth_call`` returned; :class:`ChainTransportError` for anything but hex."""
    if isinstance(result, str) and result[:2] == "0x":
        try:
            return bytes.fromhex(result[2:])
        except ValueError:
            pass
    raise ChainTransportError("eth_call", "the result is not hex data", reached=True)


def expect_chain(chain_id: int, where: str) -> ChainFlow[None]:
    """The first step of a flow that will sign with what the node says: the node's chain.

    :class:`~mpp_client.TermsRefused` when the node serves another chain than
    ``chain_id`` (``where`` names the node in the message).
    """
    served = quantity((yield read("eth_chainId")), "eth_chainId")
    if served != chain_id:
        raise TermsRefused(f"{where} serves chain {served}, not the charge's chain {chain_id}")


class NotSent(Exception):
    """A broadcast that certainly did not happen: refused by the node, or never sent."""


class MaybeSent(Exception):
    """A broadcast whose fate is unclear: it may be mined, now or later."""


def send_transaction(
    raw: bytes, tx_hash: str, *, wait: float, sync: bool = False, timeout: float | None = None
) -> ChainFlow[dict[str, Any]]:
    """Broadcast a signed transaction once and return its mined receipt (any status).

    ``sync``: one ``eth_sendRawTransactionSync`` (Tempo), whose answer is the
    receipt; else ``eth_sendRawTransaction`` then the receipt polled for
    ``wait`` seconds. ``timeout`` is the broadcast's HTTP timeout.

    :class:`NotSent` when the connection was never made, or the node refused
    the transaction and does not know it (a provider that re-sent it after a
    timeout gets "already known" for a transaction that is in fact in the
    pool, so a refusal is checked against ``eth_getTransactionByHash``);
    :class:`MaybeSent` for everything else that is not a receipt of this
    transaction: it may still be mined.
    """
    method = "eth_sendRawTransactionSync" if sync else "eth_sendRawTransaction"
    answer: Any = None
    try:
        answer = yield broadcast(method, "0x" + raw.hex(), timeout=timeout)
    except ChainTransportError as exc:
        if not exc.reached:
            raise NotSent(f"the node could not be reached ({exc.cause})") from None
        raise MaybeSent(exc.cause) from None
    except RpcError as exc:
        try:
            known = yield read("eth_getTransactionByHash", tx_hash)
        except (RpcError, ChainTransportError):
            raise MaybeSent(f"the node answered {exc.rpc_message!r:.120}") from None
        if known is None:
            raise NotSent(f"the node refused it: {exc.rpc_message}") from None
        answer = None  # the node has it after all: wait for its receipt
    if not sync or answer is None:
        try:
            answer = yield receipt(tx_hash, wait)
        except (RpcError, ChainTransportError) as exc:
            raise MaybeSent(f"reading its receipt failed ({type(exc).__name__})") from None
        if answer is None:
            raise MaybeSent(f"it was not mined within {wait:g} s")
    if not isinstance(answer, dict):
        raise MaybeSent("the node returned no receipt")
    got = answer.get("transactionHash")
    if not isinstance(got, str) or got.lower() != tx_hash.lower():
        raise MaybeSent(f"the node's receipt names transaction {got!r:.80}, not {tx_hash}")
    return answer


def run_offline(flow: ChainFlow[T]) -> T:
    """Run a flow that needs no node (it must not yield a request)."""
    try:
        request = next(flow)
    except StopIteration as stop:
        return cast(T, stop.value)
    flow.close()
    raise RuntimeError(f"this payment needs a node ({request.method}) and has none")


# -- what went wrong -------------------------------------------------------------

#: Exceptions a transport can raise for a request that got no usable answer.
_TRANSPORT = (
    OSError,  # sockets, TimeoutError, requests' RequestException, IPC
    aiohttp.ClientError,
    httpx.HTTPError,
    ProviderConnectionError,
    json.JSONDecodeError,
    UnicodeDecodeError,
)
#: ...and those among them that mean the request never left this machine.
_NEVER_SENT = (
    urllib3.exceptions.NewConnectionError,  # requests: connection refused
    urllib3.exceptions.ConnectTimeoutError,  # requests: connecting timed out
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    httpx.ConnectError,
    httpx.ConnectTimeout,
    ConnectionRefusedError,
    FileNotFoundError,  # an IPC socket that is not there
)


def _never_sent(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) says the connection was never made."""
    seen: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(seen) < 16:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        if isinstance(item, _NEVER_SENT):
            return True
        if isinstance(item, urllib3.exceptions.MaxRetryError):
            todo.append(item.reason)
        todo.extend((*item.args, item.__cause__, item.__context__))
    return False


def _failure(method: str, exc: Exception) -> Exception:
    """The exception a request raised, as :class:`RpcError` or :class:`ChainTransportError`."""
    if isinstance(exc, Web3RPCError):
        response = exc.rpc_response or {}
        error = response.get("error") if isinstance(response, Mapping) else None
        if isinstance(error, Mapping):
            message = str(error.get("message", "error"))[:300]
            return RpcError(method, error.get("code"), message)
        return RpcError(method, None, str(exc.message)[:300])
    if isinstance(exc, BadResponseFormat):
        return ChainTransportError(method, "the node's answer is not JSON-RPC", reached=True)
    if isinstance(exc, _TRANSPORT):
        return ChainTransportError(method, type(exc).__name__, reached=not _never_sent(exc))
    return exc


def _plain(value: Any) -> Any:
    """A result as plain JSON values (middleware may hand back AttributeDicts)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _host(url: str | None) -> str:
    # An RPC URL may hold an API key in its path or query: name only the host.
    if url is None:
        return "the given web3 provider"
    try:
        return f"the node at {httpx.URL(url).host or '?'}"
    except Exception:
        return "the node"


def _last_outcome(state: RetryCallState) -> Any:
    """When polling gives up: the last answer (None), or the last error raised again."""
    assert state.outcome is not None
    return state.outcome.result()


# -- sync ------------------------------------------------------------------------


class ChainRpc:
    """A synchronous chain client: an RPC URL, a ``Web3``, or a sync web3 provider.

    ::

        rpc = ChainRpc("https://base.example/rpc")          # or ChainRpc(my_web3)
        rpc.call("eth_blockNumber")                          # '0x1b4', retried on transport errors
        rpc.eth_call(token, data)                            # bytes
        rpc.send("eth_sendRawTransaction", raw_hex)          # once
        rpc.wait_for_receipt(tx_hash, timeout=60)            # the receipt, or None

    ``timeout`` is the HTTP timeout of a client built from a URL;
    ``attempts`` the attempts of a read. ``repr()`` shows only the host.
    """

    def __init__(
        self,
        node: str | Web3 | BaseProvider,
        *,
        timeout: float = 10.0,
        attempts: int = READ_ATTEMPTS,
    ) -> None:
        self._url: str | None = None
        self._timeout = timeout
        self._attempts = attempts
        self._by_timeout: dict[float, Web3] = {}
        if isinstance(node, str):
            self._url = node
            self._w3 = self._built(timeout)
        elif isinstance(node, Web3):
            self._w3 = node
        elif isinstance(node, BaseProvider):
            self._w3 = Web3(node, middleware=[])
        else:
            raise TypeError("node must be an RPC URL, a web3 Web3 or a sync web3 provider")

    def _built(self, timeout: float) -> Web3:
        assert self._url is not None
        w3 = self._by_timeout.get(timeout)
        if w3 is None:
            provider = HTTPProvider(
                self._url,
                request_kwargs={"timeout": timeout},
                exception_retry_configuration=None,
            )
            w3 = self._by_timeout[timeout] = Web3(provider, middleware=[])
        return w3

    @property
    def web3(self) -> Web3:
        """The ``Web3`` requests go through."""
        return self._w3

    @property
    def where(self) -> str:
        """How messages name this node (its host, never its URL)."""
        return _host(self._url)

    # -- requests -----------------------------------------------------------------

    def _once(self, method: str, params: Sequence[Any], timeout: float | None = None) -> Any:
        w3 = self._w3 if timeout is None or self._url is None else self._built(timeout)
        try:
            result = w3.manager.request_blocking(RPCEndpoint(method), list(params))
        except Exception as exc:
            failure = _failure(method, exc)
            if failure is exc:
                raise
            raise failure from None
        return _plain(result)

    def request(self, request: Request) -> Any:
        """Send ``request`` under its kind's retry rule (see the module notes)."""
        if request.kind == "broadcast" or request.method in BROADCASTS:
            return self._once(request.method, request.params, request.timeout)
        if request.kind == "receipt":
            polling = Retrying(
                stop=stop_after_delay(request.timeout or 0.0),
                wait=_BACKOFF,
                retry=retry_if_result(lambda answer: answer is None)
                | retry_if_exception_type(ChainTransportError),
                retry_error_callback=_last_outcome,
            )
            return polling(self._once, request.method, request.params)
        reading = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=_BACKOFF,
            retry=retry_if_exception_type(ChainTransportError),
            reraise=True,
        )
        return reading(self._once, request.method, request.params)

    def call(self, method: str, *params: Any) -> Any:
        """A read (a broadcast method is sent once); the node's JSON result."""
        return self.request(read(method, *params))

    def send(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        """A broadcast: sent once."""
        return self.request(broadcast(method, *params, timeout=timeout))

    def eth_call(self, to: str, data: bytes, sender: str | None = None) -> bytes:
        """``eth_call`` at the latest block; the returned bytes."""
        return returned_data(self.request(eth_call(to, data, sender)))

    def chain_id(self) -> int:
        return quantity(self.call("eth_chainId"), "eth_chainId")

    def wait_for_receipt(self, tx_hash: str, timeout: float = 60.0) -> dict[str, Any] | None:
        """The transaction's receipt once mined, or None after ``timeout`` seconds."""
        answer = self.request(receipt(tx_hash, timeout))
        return answer if isinstance(answer, dict) else None

    def run(self, flow: ChainFlow[T]) -> T:
        """Run ``flow`` against this node: each request sent, its result or error handed back."""
        try:
            request = next(flow)
            while True:
                try:
                    result = self.request(request)
                except (RpcError, ChainTransportError) as exc:
                    request = flow.throw(exc)
                else:
                    request = flow.send(result)
        except StopIteration as stop:
            return cast(T, stop.value)

    def close(self) -> None:
        """Forget the clients built here (their sessions close with them)."""
        self._by_timeout.clear()

    def __repr__(self) -> str:
        return f"<ChainRpc {self.where}>"


# -- async -----------------------------------------------------------------------


class AsyncChainRpc:
    """The async :class:`ChainRpc`: an RPC URL, an ``AsyncWeb3``, an async provider, or a
    :class:`ChainRpc` (whose requests then run in a worker thread).

    Use it as an async context manager: what it built from a URL (an
    ``AsyncWeb3`` and its aiohttp sessions, bound to the running event loop)
    is closed at exit. An ``AsyncWeb3`` or a ``ChainRpc`` handed in belongs
    to its owner and is left open.
    """

    def __init__(
        self,
        node: str | AsyncWeb3[Any] | AsyncBaseProvider | ChainRpc,
        *,
        timeout: float = 10.0,
        attempts: int = READ_ATTEMPTS,
    ) -> None:
        self._url: str | None = None
        self._timeout = timeout
        self._attempts = attempts
        self._sync: ChainRpc | None = None
        self._w3: AsyncWeb3[Any] | None = None
        self._by_timeout: dict[float, AsyncWeb3[Any]] = {}
        if isinstance(node, ChainRpc):
            self._sync = node
        elif isinstance(node, str):
            self._url = node
            self._w3 = self._built(timeout)
        elif isinstance(node, AsyncWeb3):
            self._w3 = node
        elif isinstance(node, AsyncBaseProvider):
            self._w3 = AsyncWeb3(node, middleware=[])
        else:
            raise TypeError(
                "node must be an RPC URL, a web3 AsyncWeb3, an async web3 provider or a ChainRpc"
            )

    def _built(self, timeout: float) -> AsyncWeb3[Any]:
        assert self._url is not None
        w3 = self._by_timeout.get(timeout)
        if w3 is None:
            provider = AsyncHTTPProvider(
                self._url,
                request_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)},
                exception_retry_configuration=None,
            )
            w3 = self._by_timeout[timeout] = AsyncWeb3(provider, middleware=[])
        return w3

    @property
    def where(self) -> str:
        return self._sync.where if self._sync is not None else _host(self._url)

    async def _once(self, method: str, params: Sequence[Any], timeout: float | None = None) -> Any:
        if self._sync is not None:
            return await anyio.to_thread.run_sync(self._sync._once, method, params, timeout)
        assert self._w3 is not None
        w3 = self._w3 if timeout is None or self._url is None else self._built(timeout)
        try:
            result = await w3.manager.coro_request(RPCEndpoint(method), list(params))
        except Exception as exc:
            failure = _failure(method, exc)
            if failure is exc:
                raise
            raise failure from None
        return _plain(result)

    async def request(self, request: Request) -> Any:
        """Send ``request`` under its kind's retry rule (see the module notes)."""
        if request.kind == "broadcast" or request.method in BROADCASTS:
            return await self._once(request.method, request.params, request.timeout)
        if request.kind == "receipt":
            polling = AsyncRetrying(
                stop=stop_after_delay(request.timeout or 0.0),
                wait=_BACKOFF,
                retry=retry_if_result(lambda answer: answer is None)
                | retry_if_exception_type(ChainTransportError),
                retry_error_callback=_last_outcome,
                sleep=anyio.sleep,
            )
            return await polling(self._once, request.method, request.params)
        reading = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=_BACKOFF,
            retry=retry_if_exception_type(ChainTransportError),
            reraise=True,
            sleep=anyio.sleep,
        )
        return await reading(self._once, request.method, request.params)

    async def call(self, method: str, *params: Any) -> Any:
        return await self.request(read(method, *params))

    async def send(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        return await self.request(broadcast(method, *params, timeout=timeout))

    async def eth_call(self, to: str, data: bytes, sender: str | None = None) -> bytes:
        return returned_data(await self.request(eth_call(to, data, sender)))

    async def chain_id(self) -> int:
        return quantity(await self.call("eth_chainId"), "eth_chainId")

    async def wait_for_receipt(self, tx_hash: str, timeout: float = 60.0) -> dict[str, Any] | None:
        answer = await self.request(receipt(tx_hash, timeout))
        return answer if isinstance(answer, dict) else None

    async def run(self, flow: ChainFlow[T]) -> T:
        """:meth:`ChainRpc.run`, awaiting each request."""
        try:
            request = next(flow)
            while True:
                try:
                    result = await self.request(request)
                except (RpcError, ChainTransportError) as exc:
                    request = flow.throw(exc)
                else:
                    request = flow.send(result)
        except StopIteration as stop:
            return cast(T, stop.value)

    async def aclose(self) -> None:
        """Close what was built here (its aiohttp sessions)."""
        built, self._by_timeout = list(self._by_timeout.values()), {}
        for w3 in built:
            provider = w3.provider
            if isinstance(provider, AsyncHTTPProvider):
                await provider.disconnect()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncChainRpc {self.where}>"


# -- how a wallet reaches each chain -----------------------------------------------


class Node:
    """How a wallet reaches one chain: an RPC URL, the user's ``Web3`` and/or ``AsyncWeb3``.

    The sync path (:meth:`rpc`) uses the ``Web3`` when given, else a client
    built from the URL (kept for the wallet's life). The async path
    (:meth:`arpc`) uses the ``AsyncWeb3`` when given, else one built from the
    URL for the payment's duration (aiohttp sessions belong to one event
    loop), else the ``Web3`` in a worker thread. An ``AsyncWeb3`` alone
    cannot serve ``pay``: that is a :class:`ChainTransportError` that
    reached nothing.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        web3: Web3 | None = None,
        async_web3: AsyncWeb3[Any] | None = None,
        timeout: float = 10.0,
    ) -> None:
        if url is None and web3 is None and async_web3 is None:
            raise ValueError("a node needs an RPC URL, a Web3 or an AsyncWeb3")
        self.url = url
        self.web3 = web3
        self.async_web3 = async_web3
        self.timeout = timeout
        self._rpc: ChainRpc | None = None

    @property
    def where(self) -> str:
        return _host(self.url) if self.web3 is None and self.async_web3 is None else _host(None)

    def rpc(self) -> ChainRpc:
        """The sync client (see the class notes)."""
        if self._rpc is None:
            if self.web3 is not None:
                self._rpc = ChainRpc(self.web3, timeout=self.timeout)
            elif self.url is not None:
                self._rpc = ChainRpc(self.url, timeout=self.timeout)
            else:
                raise ChainTransportError(
                    "connect",
                    "this chain has only an AsyncWeb3: pay with AsyncClient, or also pass a "
                    "Web3 or an RPC URL",
                    reached=False,
                )
        return self._rpc

    @contextlib.asynccontextmanager
    async def arpc(self) -> AsyncIterator[AsyncChainRpc]:
        """The async client for one payment (see the class notes)."""
        if self.async_web3 is not None:
            yield AsyncChainRpc(self.async_web3, timeout=self.timeout)
        elif self.url is not None:
            async with AsyncChainRpc(self.url, timeout=self.timeout) as rpc:
                yield rpc
        else:
            yield AsyncChainRpc(self.rpc(), timeout=self.timeout)

    def close(self) -> None:
        if self._rpc is not None:
            self._rpc.close()
            self._rpc = None

    def __repr__(self) -> str:
        return f"<Node {self.where}>"


def _sorted_web3(value: object, what: str) -> tuple[Web3 | None, AsyncWeb3[Any] | None]:
    """A ``web3=`` value (one instance or provider, or a pair) as (sync, async)."""
    items: Sequence[object] = value if isinstance(value, list | tuple) else (value,)
    sync: Web3 | None = None
    async_: AsyncWeb3[Any] | None = None
    for item in items:
        if isinstance(item, Web3) and sync is None:
            sync = item
        elif isinstance(item, AsyncWeb3) and async_ is None:
            async_ = item
        elif isinstance(item, BaseProvider) and sync is None:
            sync = Web3(item, middleware=[])
        elif isinstance(item, AsyncBaseProvider) and async_ is None:
            async_ = AsyncWeb3(item, middleware=[])
        else:
            raise TypeError(
                f"{what} must be a web3 Web3, AsyncWeb3 or provider (or one sync and one async)"
            )
    return sync, async_


def nodes_from(
    *,
    rpc_urls: Mapping[int, str],
    web3: Web3Arg,
    single_chain: int | None,
    timeout: float,
) -> dict[int, Node]:
    """The wallet's nodes per chain, from its ``rpc_urls`` and ``web3`` arguments.

    ``web3`` is None, one value (for ``single_chain``; ValueError without
    one) or a mapping of chain id to value; a value is a ``Web3``, an
    ``AsyncWeb3``, a provider, or a pair of one sync and one async.
    """
    given: dict[int, object] = {}
    if isinstance(web3, Mapping):
        given = {int(chain): value for chain, value in web3.items()}
    elif web3 is not None:
        if single_chain is None:
            raise ValueError(
                "a single web3= serves a wallet on one chain: name it (chain_id=) "
                "or pass web3={chain_id: w3}"
            )
        given = {single_chain: web3}
    nodes: dict[int, Node] = {}
    for chain in {*rpc_urls, *given}:
        sync, async_ = (None, None)
        if chain in given:
            sync, async_ = _sorted_web3(given[chain], f"web3[{chain}]")
        nodes[chain] = Node(url=rpc_urls.get(chain), web3=sync, async_web3=async_, timeout=timeout)
    return nodes
