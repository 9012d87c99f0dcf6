"""httpcore's connection pool, with its bookkeeping made linear for many connections.

An agent paying for calls at high concurrency keeps many keep-alive
connections open. Every time a request starts or a response closes,
httpcore 1.0's pool sweeps its connections, and that sweep costs more than
the rest of a paid request once there are dozens (measured against one
server at concurrency 64: about 6 ms of the client's 8 ms per paid request,
50 connections open, 42 idle):

* for each idle connection it counts the whole pool again
  (``len([c.is_idle() for c in connections])``), so a sweep is quadratic;
* for each idle connection it asks the network stream whether the socket is
  readable (a server that hung up), and anyio's stream answers by building
  its whole table of socket attributes (``getpeername`` included) to find the
  raw socket, before the one ``poll`` that answers the question.

:func:`tune_pool` gives a client's own default pool both answers the cheap
way, deciding exactly what httpcore decides: the count is ``len()`` of the
same list at the same moment, and readability is the same ``poll`` on the
same socket, found once per connection instead of once per sweep. It applies
only to the plain pools of the httpcore versions whose sweep this mirrors
(tests/test_pool.py runs both side by side over generated pool states); any
other pool or version is left exactly as it is.
"""

from __future__ import annotations

import socket
import ssl
import typing

import httpcore
from httpcore._utils import is_socket_readable

__all__ = ["tune_pool"]

#: The httpcore versions whose pool sweep ``_sweep`` mirrors line by line.
_MIRRORED = ("1.0.",)

_Connection = typing.TypeVar(
    "_Connection", httpcore.AsyncConnectionInterface, httpcore.ConnectionInterface
)
_Assigned_contra = typing.TypeVar("_Assigned_contra", contravariant=True)


class _PoolRequest(typing.Protocol[_Assigned_contra]):
    request: httpcore.Request

    def is_queued(self) -> bool: ...
    def assign_to_connection(self, connection: _Assigned_contra | None) -> None: ...


def _sweep(
    connections: list[_Connection],
    requests: typing.Sequence[_PoolRequest[_Connection]],
    max_connections: int,
    max_keepalive: int,
    create: typing.Callable[[httpcore.Origin], _Connection],
) -> list[_Connection]:
    """httpcore 1.0's ``_assign_requests_to_connections``, with the same outcome.

    Two differences in cost only: the pool's size is ``len(connections)``
    (httpcore builds a list of that length for every idle connection), and
    the idle connections are listed only for a request that needs one.
    """
    closing: list[_Connection] = []
    # Closed, expired and (above the keep-alive limit) idle connections leave.
    for connection in list(connections):
        if connection.is_closed():
            connections.remove(connection)
        elif connection.has_expired() or (
            connection.is_idle() and len(connections) > max_keepalive
        ):
            connections.remove(connection)
            closing.append(connection)
    # Queued requests get a connection: a free one, a new one, or an idle one replaced.
    for pool_request in [request for request in requests if request.is_queued()]:
        origin = pool_request.request.url.origin
        available = [c for c in connections if c.can_handle_request(origin) and c.is_available()]
        if available:
            pool_request.assign_to_connection(available[0])
        elif len(connections) < max_connections:
            connection = create(origin)
            connections.append(connection)
            pool_request.assign_to_connection(connection)
        else:
            idle = [c for c in connections if c.is_idle()]
            if idle:
                connections.remove(idle[0])
                closing.append(idle[0])
                connection = create(origin)
                connections.append(connection)
                pool_request.assign_to_connection(connection)
    return closing


class _AsyncPool(httpcore.AsyncConnectionPool):
    """``httpcore.AsyncConnectionPool`` sweeping in linear time (see :func:`_sweep`)."""

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        return _sweep(
            self._connections,
            self._requests,
            self._max_connections,
            self._max_keepalive_connections,
            self.create_connection,
        )


class _SyncPool(httpcore.ConnectionPool):
    """``httpcore.ConnectionPool`` sweeping in linear time (see :func:`_sweep`)."""

    def _assign_requests_to_connections(self) -> list[httpcore.ConnectionInterface]:
        return _sweep(
            self._connections,
            self._requests,
            self._max_connections,
            self._max_keepalive_connections,
            self.create_connection,
        )


class _Stream(httpcore.AsyncNetworkStream):
    """A network stream that remembers its socket, to answer ``is_readable`` with one poll."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        # A socket.socket, or asyncio's TransportSocket around one: all a poll needs.
        sock = stream.get_extra_info("socket")
        self._socket: socket.socket | None = sock if hasattr(sock, "fileno") else None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable" and self._socket is not None:
            # What httpcore's anyio stream answers, minus finding the socket again.
            return is_socket_readable(self._socket)
        return self._stream.get_extra_info(info)


class _Backend(httpcore.AsyncNetworkBackend):
    """The pool's own network backend, handing out :class:`_Stream` wrappers."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._backend.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def tune_pool(transport: object) -> bool:
    """Give an httpx transport's plain connection pool the linear sweep. True if it did.

    Only an ``httpx.HTTPTransport``/``AsyncHTTPTransport`` whose pool is
    exactly httpcore's own, on a mirrored httpcore version, with no
    connection made yet: a proxy pool, a custom transport or an unknown
    httpcore is left alone.
    """
    if not httpcore.__version__.startswith(_MIRRORED):
        return False
    pool = getattr(transport, "_pool", None)
    if type(pool) is httpcore.AsyncConnectionPool and not pool._connections:
        pool.__class__ = _AsyncPool
        pool._network_backend = _Backend(pool._network_backend)
        return True
    if type(pool) is httpcore.ConnectionPool and not pool._connections:
        # The sync backend keeps its socket at hand already: only the sweep changes.
        pool.__class__ = _SyncPool
        return True
    return False
