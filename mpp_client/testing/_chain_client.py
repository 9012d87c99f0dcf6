"""Sending transactions in tests: :class:`ChainClient`, a local key on the one chain client.

It reads token balances and allowances, simulates calls, and sends EIP-1559
transactions from one ``LocalAccount`` (deploying the test contracts,
minting, approving, submitting a settlement). The transaction is prepared,
signed and broadcast by the same steps the ``evm`` wallet uses
(:func:`~mpp_client.methods._chain._nodes.prepare_eip1559`,
:func:`~mpp_client.methods._chain._signing.sign_eip1559`,
:func:`~mpp_client.methods._chain._nodes.send_transaction`), so there is one
EIP-1559 implementation in the package.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from ..methods._chain._evm_charge import selector
from ..methods._chain._nodes import prepare_eip1559, send_transaction
from ..methods._chain._rpc import ChainRpc
from ..methods._chain._signing import LocalSigner, sign_eip1559

__all__ = ["ChainClient", "authorization_calldata", "selector"]


class ChainClient:
    """Reads a chain and sends transactions from a local key (one at a time).

    ``rpc`` is a :class:`~mpp_client.methods._chain._rpc.ChainRpc` or an RPC
    URL. ``account`` pays the gas; its nonce is taken from the node's pending
    count under a lock, so one client must not be shared with another sender
    of the same key. A broadcast the node refuses raises
    :class:`~mpp_client.methods._chain._nodes.NotSent`; one whose fate is
    unclear (not mined within ``timeout`` seconds, a lost answer)
    :class:`~mpp_client.methods._chain._nodes.MaybeSent`.
    """

    def __init__(
        self, rpc: ChainRpc | str, account: LocalAccount | None = None, *, timeout: float = 30.0
    ) -> None:
        self.rpc = rpc if isinstance(rpc, ChainRpc) else ChainRpc(rpc)
        self.account = account
        self.timeout = timeout
        self._lock = threading.Lock()
        self.chain_id = self.rpc.chain_id()

    def call(self, to: str, data: bytes) -> bytes:
        return self.rpc.eth_call(to, data)

    def balance_of(self, token: str, owner: str) -> int:
        data = selector("balanceOf(address)") + abi_encode(["address"], [owner])
        (value,) = abi_decode(["uint256"], self.call(token, data))
        return int(value)

    def allowance(self, token: str, owner: str, spender: str) -> int:
        data = selector("allowance(address,address)") + abi_encode(
            ["address", "address"], [owner, spender]
        )
        (value,) = abi_decode(["uint256"], self.call(token, data))
        return int(value)

    def simulate(self, to: str, data: bytes) -> None:
        """``eth_call`` the transaction from the sender; RpcError if it would revert."""
        self.rpc.eth_call(to, data, sender=self._account().address)

    def _account(self) -> LocalAccount:
        if self.account is None:
            raise RuntimeError("this ChainClient has no account to send from")
        return self.account

    def sign(self, to: str | None, data: bytes) -> tuple[bytes, str]:
        """A signed transaction from the client's account (nonce, gas and fees from the node)."""
        account = self._account()
        tx = self.rpc.run(prepare_eip1559(account.address, self.chain_id, to, data, headroom=25))
        return sign_eip1559(LocalSigner(account), tx)

    def send_raw(self, raw: bytes, tx_hash: str) -> dict[str, Any]:
        """Broadcast a signed transaction once and wait for its receipt (any status)."""
        return self.rpc.run(send_transaction(raw, tx_hash, wait=self.timeout))

    def transact(self, to: str | None, data: bytes) -> dict[str, Any]:
        """Sign, send and wait; the receipt, whatever its status."""
        with self._lock:
            raw, tx_hash = self.sign(to, data)
            return self.send_raw(raw, tx_hash)

    def deploy(self, bytecode: str, constructor: bytes = b"") -> str:
        """Deploy a contract; its address."""
        receipt = self.transact(None, bytes.fromhex(bytecode.removeprefix("0x")) + constructor)
        if receipt.get("status") != "0x1" or not receipt.get("contractAddress"):
            raise RuntimeError("contract deployment failed")
        return str(to_checksum_address(receipt["contractAddress"]))

    def submit_authorization(self, token: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Call ``transferWithAuthorization`` with an ``authorization`` payload; the receipt."""
        data = authorization_calldata(payload)
        self.simulate(token, data)
        return self.transact(token, data)

    def __repr__(self) -> str:
        sender = "" if self.account is None else f" account={self.account.address}"
        return f"<ChainClient chain_id={self.chain_id}{sender}>"


_TWA = (
    "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,"
    "uint8,bytes32,bytes32)"
)
_TWA_TYPES = [
    "address",
    "address",
    "uint256",
    "uint256",
    "uint256",
    "bytes32",
    "uint8",
    "bytes32",
    "bytes32",
]


def authorization_calldata(payload: Mapping[str, Any]) -> bytes:
    """``transferWithAuthorization(...)`` call data for an ``authorization`` payload."""
    raw = bytes.fromhex(str(payload["signature"])[2:])
    v = raw[64] + 27 if raw[64] < 27 else raw[64]
    return selector(_TWA) + abi_encode(
        _TWA_TYPES,
        [
            to_checksum_address(payload["from"]),
            to_checksum_address(payload["to"]),
            int(payload["value"]),
            int(payload["validAfter"]),
            int(payload["validBefore"]),
            bytes.fromhex(payload["nonce"][2:]),
            v,
            raw[:32],
            raw[32:64],
        ],
    )
