"""How a wallet reaches each of its chains, and the steps both rails take there.

:class:`Node` is one chain's access: an RPC URL, the user's ``Web3`` and/or
``AsyncWeb3`` (or providers), from the wallets' ``rpc_urls=`` and ``web3=``
(:func:`nodes_from`). The steps are :data:`~._rpc.ChainFlow` pieces every
wallet flow is made of: :func:`expect_chain` (the node serves the charge's
chain, checked before anything is signed with what the node says),
:func:`prepare_eip1559` (an EIP-1559 call's nonce, gas and fees, for the
wallet and the test tooling alike) and :func:`send_transaction` (a broadcast
sent once, its receipt awaited, and its failure sorted into "certainly not
sent" and "may have been sent").
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar, cast

from web3 import AsyncWeb3, Web3
from web3.providers import AsyncBaseProvider, BaseProvider

from ..._exceptions import PaymentFailed, TermsRefused
from ._rpc import (
    AsyncChainRpc,
    ChainFlow,
    ChainRpc,
    ChainTransportError,
    RpcError,
    broadcast,
    host,
    quantity,
    read,
    receipt,
)
from ._signing import Eip1559Transaction

__all__ = [
    "MaybeSent",
    "Node",
    "NotSent",
    "Web3Arg",
    "Web3Like",
    "expect_chain",
    "nodes_from",
    "prepare_eip1559",
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


def expect_chain(chain_id: int, where: str) -> ChainFlow[None]:
    """The first step of a flow that will sign with what the node says: the node's chain.

    :class:`~mpp_client.TermsRefused` when the node serves another chain than
    ``chain_id`` (``where`` names the node in the message).
    """
    served = quantity((yield read("eth_chainId")), "eth_chainId")
    if served != chain_id:
        raise TermsRefused(f"{where} serves chain {served}, not the charge's chain {chain_id}")


def prepare_eip1559(
    sender: str,
    chain_id: int,
    to: str | None,
    data: bytes,
    *,
    headroom: int = 20,
    max_gas: int | None = None,
) -> ChainFlow[Eip1559Transaction]:
    """An unsigned EIP-1559 call from ``sender``, its nonce, gas and fees from the node.

    The gas limit is the node's estimate plus ``headroom`` percent (and at most
    ``max_gas``: an estimate above it is a :class:`~mpp_client.PaymentFailed`);
    the tip is ``eth_maxPriorityFeePerGas`` (1 gwei when the node has no such
    method), the fee cap twice the latest base fee plus the tip. ``to=None``
    creates a contract. The node's errors come out as they are.
    """
    nonce = quantity(
        (yield read("eth_getTransactionCount", sender, "pending")), "eth_getTransactionCount"
    )
    call = {"from": sender, "data": "0x" + data.hex()}
    if to is not None:
        call["to"] = to
    gas = quantity((yield read("eth_estimateGas", call)), "eth_estimateGas")
    if max_gas is not None and gas > max_gas:
        raise PaymentFailed(f"the transaction needs {gas} gas, over max_gas {max_gas}")
    block = yield read("eth_getBlockByNumber", "latest", False)
    base_fee = quantity(
        block.get("baseFeePerGas", "0x0") if isinstance(block, dict) else None,
        "eth_getBlockByNumber",
    )
    try:
        tip = quantity((yield read("eth_maxPriorityFeePerGas")), "eth_maxPriorityFeePerGas")
    except RpcError:
        tip = 10**9
    limit = gas + gas * headroom // 100
    return Eip1559Transaction(
        chain_id=chain_id,
        nonce=nonce,
        max_priority_fee_per_gas=tip,
        max_fee_per_gas=2 * base_fee + tip,
        gas=limit if max_gas is None else min(max_gas, limit),
        to=to,
        value=0,
        data=data,
    )


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
    timeout gets "already known" or "nonce too low" for a transaction that is
    in the pool or mined, so a refusal is checked against
    ``eth_getTransactionByHash``). An error answer to the synchronous send is
    never taken for a refusal: it is also how the node says its wait for
    inclusion timed out. :class:`MaybeSent` for everything else that is not a
    receipt of this transaction: it may still be mined.
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
        if known is None and not sync:
            raise NotSent(f"the node refused it: {exc.rpc_message}") from None
        if known is None:
            # A synchronous send also fails when the wait for inclusion times out,
            # after the transaction was accepted and passed on: not a refusal.
            raise MaybeSent(f"the node answered {exc.rpc_message!r:.120}") from None
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
        return host(self.url) if self.web3 is None and self.async_web3 is None else host(None)

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
