"""The one chain client (``mpp_client.methods._chain._rpc``) against real sockets.

What a wallet does with a failed request depends on one question: can it
have reached the node? These tests make each failure really happen (a
closed port, a server that hangs up without answering, one that answers
garbage, a real node's error) through web3's sync (requests) and async
(aiohttp) providers, and check the answer, the retry rule of each kind of
request, and that no message shows the URL's secret.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from mpp_client.methods._chain._rpc import (
    AsyncChainRpc,
    ChainRpc,
    ChainTransportError,
    RpcError,
    broadcast,
    read,
)
from mpp_client.testing.evm import Anvil

from ..rails import closed_port
from .tooling import anvil_binary


class Rude:
    """A loopback server that accepts each connection, reads, and then ``answer``s.

    ``hang-up`` closes without a reply; ``garbage`` replies with an HTTP 200
    whose body is not JSON. ``hits`` counts the connections that arrived.
    """

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.hits = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/rpc?apikey=SECRET-KEY"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.hits += 1
                conn.recv(65536)
                if self.answer == "garbage":
                    body = b"<html>not json-rpc</html>"
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                        + body
                    )

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def hang_up() -> Iterator[Rude]:
    server = Rude("hang-up")
    yield server
    server.close()


@pytest.fixture
def garbage() -> Iterator[Rude]:
    server = Rude("garbage")
    yield server
    server.close()


@pytest.fixture(scope="module")
def node() -> Iterator[Anvil]:
    with Anvil(anvil_binary()) as anvil:
        yield anvil


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert "SECRET-KEY" not in text and "apikey" not in text


def test_a_closed_port_is_a_request_that_never_left() -> None:
    url = f"http://127.0.0.1:{closed_port()}/?apikey=SECRET-KEY"
    rpc = ChainRpc(url, attempts=2)
    with pytest.raises(ChainTransportError) as caught:
        rpc.call("eth_chainId")
    assert caught.value.reached is False
    with pytest.raises(ChainTransportError) as sent:
        rpc.request(broadcast("eth_sendRawTransaction", "0x02"))
    assert sent.value.reached is False  # a broadcast that certainly did not happen
    _no_secret(str(caught.value), str(sent.value), repr(rpc), rpc.where)

    async def run() -> ChainTransportError:
        async with AsyncChainRpc(url, attempts=1) as arpc:
            with pytest.raises(ChainTransportError) as failed:
                await arpc.request(broadcast("eth_sendRawTransaction", "0x02"))
            return failed.value

    assert asyncio.run(run()).reached is False


def test_a_hang_up_after_the_request_may_have_reached_the_node(hang_up: Rude) -> None:
    rpc = ChainRpc(hang_up.url, attempts=3)
    with pytest.raises(ChainTransportError) as sent:
        rpc.request(broadcast("eth_sendRawTransaction", "0x02"))
    assert sent.value.reached is True  # it was sent: its fate is unknown
    assert hang_up.hits == 1  # a broadcast is sent once
    with pytest.raises(ChainTransportError):
        rpc.request(read("eth_blockNumber"))
    assert hang_up.hits == 1 + 3  # a read is retried, three attempts in all

    async def run() -> bool:
        async with AsyncChainRpc(hang_up.url, attempts=2) as arpc:
            with pytest.raises(ChainTransportError) as failed:
                await arpc.request(broadcast("eth_sendRawTransaction", "0x02"))
            with pytest.raises(ChainTransportError):
                await arpc.call("eth_blockNumber")
            return failed.value.reached

    assert asyncio.run(run()) is True
    assert hang_up.hits == 4 + 1 + 2
    _no_secret(str(sent.value))


def test_an_answer_that_is_not_json_rpc_is_a_transport_failure(garbage: Rude) -> None:
    rpc = ChainRpc(garbage.url, attempts=1)
    with pytest.raises(ChainTransportError) as caught:
        rpc.call("eth_chainId")
    assert caught.value.reached is True


def test_a_nodes_error_is_an_answer_and_not_retried(node: Anvil) -> None:
    rpc = ChainRpc(node.url)
    with pytest.raises(RpcError) as caught:
        rpc.send("eth_sendRawTransaction", "0x02")
    assert caught.value.code == -32602 and "decode" in caught.value.rpc_message
    assert rpc.chain_id() == node.chain_id
    # Not mined (not even known): polled until the time runs out, then None.
    assert rpc.wait_for_receipt("0x" + "11" * 32, timeout=0.3) is None

    async def run() -> int:
        async with AsyncChainRpc(node.url) as arpc:
            with pytest.raises(RpcError):
                await arpc.send("eth_sendRawTransaction", "0x02")
            assert await arpc.wait_for_receipt("0x" + "11" * 32, timeout=0.3) is None
            return await arpc.chain_id()

    assert asyncio.run(run()) == node.chain_id
