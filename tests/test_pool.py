"""The clients' tuned connection pool decides exactly what httpcore's own pool decides."""

from __future__ import annotations

import asyncio
import random
import socket
from dataclasses import dataclass, field

import httpcore
import httpx
import pytest

import mpp_client
from mpp_client._flow._pool import _AsyncPool, _Stream, _SyncPool, tune_pool
from mpp_client.testing import LocalServer, PaidServer

ORIGINS = [httpcore.URL(f"http://host{i}.test/").origin for i in range(3)]


@dataclass(eq=False)
class FakeConnection:
    """A connection in one of the states a pool sees; ``log`` records what was asked."""

    name: str
    origin: httpcore.Origin
    state: str  # "new", "idle", "active", "closed"
    expired: bool = False
    log: list[str] = field(default_factory=list)

    def can_handle_request(self, origin: httpcore.Origin) -> bool:
        return origin == self.origin

    def is_available(self) -> bool:
        return self.state == "idle"

    def has_expired(self) -> bool:
        self.log.append("has_expired")
        return self.expired and self.state == "idle"

    def is_idle(self) -> bool:
        return self.state == "idle"

    def is_closed(self) -> bool:
        return self.state == "closed"


def _state(rng: random.Random) -> tuple[list[FakeConnection], list[tuple[int, bool]], int, int]:
    connections = [
        FakeConnection(
            f"c{i}",
            rng.choice(ORIGINS),
            rng.choice(["new", "idle", "idle", "active", "closed"]),
            expired=rng.random() < 0.2,
        )
        for i in range(rng.randint(0, 12))
    ]
    requests = [(rng.randrange(len(ORIGINS)), rng.random() < 0.6) for _ in range(rng.randint(0, 8))]
    max_connections = rng.randint(1, 14)
    return connections, requests, max_connections, rng.randint(0, max_connections)


def _run(pool_class: type, seed: int) -> object:
    """One sweep of a pool of ``pool_class`` over the state made from ``seed``; what it did."""
    connections, requests, max_connections, max_keepalive = _state(random.Random(seed))
    pool = pool_class(max_connections=max_connections, max_keepalive_connections=max_keepalive)
    pool._connections = connections
    created: list[str] = []

    def create(origin: httpcore.Origin) -> FakeConnection:
        created.append(f"new{len(created)}")
        return FakeConnection(created[-1], origin, "new")

    pool.create_connection = create
    request_class = (
        httpcore._async.connection_pool.AsyncPoolRequest
        if issubclass(pool_class, httpcore.AsyncConnectionPool)
        else httpcore._sync.connection_pool.PoolRequest
    )
    pool_requests = []
    for origin_index, queued in requests:
        origin = ORIGINS[origin_index]
        url = f"{origin.scheme.decode()}://{origin.host.decode()}/"
        pool_request = request_class(httpcore.Request("GET", url))
        if not queued:
            pool_request.connection = FakeConnection("elsewhere", origin, "active")
        pool_requests.append(pool_request)
    pool._requests = pool_requests
    closing = pool._assign_requests_to_connections()
    return (
        [c.name for c in pool._connections],
        [c.name for c in closing],
        [getattr(r.connection, "name", None) for r in pool_requests],
        [(c.name, c.log) for c in connections],
        created,
    )


@pytest.mark.parametrize(
    ("stock", "tuned"),
    [(httpcore.AsyncConnectionPool, _AsyncPool), (httpcore.ConnectionPool, _SyncPool)],
)
def test_the_tuned_sweep_decides_what_httpcores_decides(stock: type, tuned: type) -> None:
    # Which connections stay, which close, which request gets which connection,
    # which new ones are made, and which connections were asked whether they expired.
    async def sweeps() -> None:  # an async pool's requests signal through anyio
        for seed in range(3000):
            assert _run(tuned, seed) == _run(stock, seed), f"state {seed}"

    asyncio.run(sweeps())


def test_only_the_clients_own_default_pools_are_tuned() -> None:
    paying = {"methods": [mpp_client.DevWallet()], "ledger": "memory:"}
    with mpp_client.Client(**paying) as client:
        assert type(client._transport._pool) is _SyncPool
    with mpp_client.Client() as plain:  # no methods: exactly httpx
        assert type(plain._transport._pool) is httpcore.ConnectionPool
    custom = httpx.HTTPTransport()
    with mpp_client.Client(transport=custom, **paying):
        assert type(custom._pool) is httpcore.ConnectionPool
    proxy = httpx.AsyncHTTPTransport(proxy="http://127.0.0.1:1")
    assert tune_pool(proxy) is False and type(proxy._pool) is httpcore.AsyncHTTPProxy
    assert tune_pool(httpx.MockTransport(lambda request: httpx.Response(200))) is False


def test_a_stream_answers_is_readable_from_its_own_socket() -> None:
    left, right = socket.socketpair()

    class Inner(httpcore.AsyncNetworkStream):
        def get_extra_info(self, info: str) -> object:
            return left if info == "socket" else f"inner {info}"

    stream = _Stream(Inner())
    try:
        assert stream.get_extra_info("is_readable") is False
        right.sendall(b"x")
        assert stream.get_extra_info("is_readable") is True
        assert stream.get_extra_info("server_addr") == "inner server_addr"
    finally:
        left.close()
        right.close()


def test_many_concurrent_paid_requests_over_the_tuned_pool() -> None:
    async def main(url: str) -> list[int]:
        async with mpp_client.AsyncClient(
            methods=[mpp_client.DevWallet()],
            policy=mpp_client.SimplePolicy(max_per_call="1 USD"),
            ledger="memory:",
            allow_insecure_localhost=True,
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
        ) as client:
            assert type(client._transport._pool) is _AsyncPool
            responses = await asyncio.gather(*(client.get(f"{url}/paid") for _ in range(40)))
            assert all(mpp_client.payment_record(r) is not None for r in responses)
            return [r.status_code for r in responses]

    with LocalServer(PaidServer({"/paid": "0.01 USD"})) as server:
        assert asyncio.run(main(server.url)) == [200] * 40
