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
``eth_call`` and ``eth_estimateGas``). A ``Web3`` you hand in keeps its
configuration; the wallets then ask the chain before reading a broadcast
refusal as "nothing was sent" (:func:`._nodes.send_transaction`).

A wallet's chain access is a :class:`ChainFlow`: a generator that yields
:class:`Request`s and receives their results (errors are thrown into it at
the ``yield``), written once and run by :meth:`ChainRpc.run` or
:meth:`AsyncChainRpc.run`; the steps both rails take, and how a wallet
reaches each of its chains, are in :mod:`._nodes`.

Errors never carry the RPC URL (it may hold an API key): messages name the
node's host only.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping, Sequence
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

__all__ = [
    "BROADCASTS",
    "READ_ATTEMPTS",
    "AsyncChainRpc",
    "ChainFlow",
    "ChainRpc",
    "ChainTransportError",
    "Request",
    "RpcError",
    "broadcast",
    "eth_call",
    "host",
    "quantity",
    "read",
    "receipt",
    "returned_data",
]

T = TypeVar("T")

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


def host(url: str | None) -> str:
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
        return host(self._url)

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
        return self._sync.where if self._sync is not None else host(self._url)

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
