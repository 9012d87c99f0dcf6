"""A local Tempo chain for tests: :class:`TempoChain`, ``anvil --network tempo`` with a faucet.

Facts about that node a test needs are in :mod:`mpp_client.testing.tempo`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from pytempo import Call, TempoTransaction  # type: ignore[import-untyped]
from pytempo.contracts import TIP20  # type: ignore[import-untyped]

from ..methods._chain._evm_charge import selector
from ..methods._chain._rpc import ChainRpc
from ..methods._chain._signing import LocalSigner
from ..methods._chain._tempo_charge import PATH_USD
from ..methods._chain._tempo_tx import sign_as_sender
from ..money import AssetEntry
from ._anvil import Anvil

__all__ = ["ANVIL_DEV_KEY", "TEMPO_HARDFORK", "TempoChain"]

#: Dev account 0 of anvil's default mnemonic ("test test ... junk"): public, test-only.
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
#: The newest Tempo hardfork anvil 1.7.1 knows; expiring nonces need T1 or later.
TEMPO_HARDFORK = "T4"
_GAS_LIMIT = 1_000_000


class TempoChain:
    """A local Tempo chain on ``127.0.0.1`` with a funded faucet, as a context manager.

    ::

        with TempoChain(anvil_binary) as chain:
            payer = chain.funded_account(5_000_000)      # 5 pathUSD
            assert chain.balance(payer.address) == 5_000_000

    ``binary`` is the anvil executable (``scripts/chain-tools.sh`` prints its
    path). ``chain_id`` defaults to anvil's 31337, which no public Tempo chain
    uses; ``hardfork`` to :data:`TEMPO_HARDFORK`.
    """

    def __init__(
        self,
        binary: str | os.PathLike[str],
        *,
        chain_id: int = 31337,
        hardfork: str = TEMPO_HARDFORK,
        startup_timeout: float = 20.0,
    ) -> None:
        self.anvil = Anvil(
            binary,
            chain_id=chain_id,
            startup_timeout=startup_timeout,
            accounts=1,
            extra_args=("--network", "tempo", "--hardfork", hardfork),
        )
        self.chain_id = chain_id
        self.hardfork = hardfork
        #: Dev account 0: it holds the genesis stablecoins and funds test keys.
        self.faucet: LocalAccount = Account.from_key(ANVIL_DEV_KEY)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.anvil.url

    @property
    def rpc(self) -> ChainRpc:
        return self.anvil.rpc

    def start(self) -> Self:
        self.anvil.start()
        return self

    def stop(self) -> None:
        self.anvil.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<TempoChain url={self.url!r} chain_id={self.chain_id} hardfork={self.hardfork}>"

    # -- reading ------------------------------------------------------------------

    def balance(self, owner: str, token: str = PATH_USD) -> int:
        """``owner``'s balance of the TIP-20 ``token`` (pathUSD by default), in base units."""
        data = selector("balanceOf(address)") + abi_encode(["address"], [owner])
        (value,) = abi_decode(["uint256"], self.rpc.eth_call(token, data))
        return int(value)

    def asset(self, token: str = PATH_USD, name: str = "pathUSD") -> AssetEntry:
        """A registry entry for a genesis stablecoin on this chain (6 decimals, USD)."""
        return AssetEntry("tempo", to_checksum_address(token), "USD", 6, self.chain_id, name)

    def gas_price(self) -> int:
        """The node's ``eth_gasPrice``, in attodollars per gas."""
        return int(self.rpc.call("eth_gasPrice"), 16)

    def receipt(self, tx_hash: str) -> dict[str, Any]:
        receipt = self.rpc.call("eth_getTransactionReceipt", tx_hash)
        if not isinstance(receipt, dict):
            raise LookupError(f"no receipt for {tx_hash}")
        return receipt

    # -- sending ------------------------------------------------------------------

    def send(
        self,
        account: LocalAccount,
        calls: Sequence[Any],
        *,
        fee_token: str = PATH_USD,
    ) -> dict[str, Any]:
        """Sign ``calls`` (pytempo ``Call``s) from ``account`` and broadcast them; the receipt.

        Uses the account's sequential nonce (lane 0), so transactions from one
        account must not be sent concurrently from elsewhere. Raises
        ``RuntimeError`` when the transaction reverted.
        """
        with self._lock:
            nonce = int(self.rpc.call("eth_getTransactionCount", account.address, "pending"), 16)
            gas_price = self.gas_price()
            tx = TempoTransaction.create(
                chain_id=self.chain_id,
                gas_limit=_GAS_LIMIT,
                max_fee_per_gas=2 * gas_price,
                max_priority_fee_per_gas=gas_price // 10,
                nonce=nonce,
                nonce_key=0,
                fee_token=fee_token,
                calls=tuple(calls),
            )
            signed = sign_as_sender(LocalSigner(account), tx)
            raw = "0x" + bytes(signed.encode()).hex()
            receipt = self.rpc.send("eth_sendRawTransactionSync", raw)
        if not isinstance(receipt, dict) or receipt.get("status") != "0x1":
            raise RuntimeError(f"the transaction from {account.address} failed: {receipt!r:.200}")
        return receipt

    def fund(self, address: str, amount: int, token: str = PATH_USD) -> dict[str, Any]:
        """Send ``amount`` base units of ``token`` from the faucet to ``address``; the receipt."""
        call: Call = TIP20(to_checksum_address(token)).transfer(
            to=to_checksum_address(address), amount=amount
        )
        return self.send(self.faucet, [call])

    def funded_account(self, amount: int = 10_000_000, token: str = PATH_USD) -> LocalAccount:
        """A fresh key holding ``amount`` base units of ``token`` (10 pathUSD by default).

        The same token pays its fees (pathUSD is a fee token).
        """
        account: LocalAccount = Account.create()
        if amount:
            self.fund(account.address, amount, token)
        return account
