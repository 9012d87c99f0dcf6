"""What the ``evm`` and ``tempo`` wallets share: one secp256k1 key on eip155 chains.

Addresses (20 bytes, EIP-55 when mixed-case), the payer's ``did:pkh``, key
loading that never quotes the key, the JSON-RPC envelope, and
:class:`EthWallet`, the base of both wallets: the key's address and DID per
chain, the payee and split-recipient allowlists, the asset lookup, which
payloads moved money, and the refusal to be pickled.

Private. It needs only eth-account (and what eth-account itself brings:
eth-utils), which both extras install; :mod:`mpp_client.methods` imports it
only through the wallets, lazily, so the core never loads eth-account.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, NoReturn

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from .._exceptions import ChallengeError
from ..money import BUILTIN_ASSETS, AssetEntry, AssetRegistry
from ..protocol import Challenge
from ._base import PaymentMethod

__all__ = [
    "HEX_ADDRESS",
    "ZERO_ADDRESS",
    "EthWallet",
    "RpcError",
    "as_account",
    "challenge_chain_id",
    "did_pkh",
    "is_address",
    "parse_did_pkh",
    "rpc_body",
    "rpc_result",
    "same_address",
    "to_hex",
]

#: A 0x-prefixed 20-byte hex string, any case (checksum not checked).
HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
ZERO_ADDRESS = "0x" + "00" * 20
_DID_PKH = re.compile(r"did:pkh:eip155:([1-9][0-9]{0,19}):(0x[0-9a-fA-F]{40})")
_KEY_HEX = re.compile(r"[0-9a-fA-F]{64}")


# -- addresses and identifiers ---------------------------------------------------


def to_hex(data: bytes) -> str:
    """``0x``-prefixed lowercase hex."""
    return "0x" + data.hex()


def is_address(value: object) -> bool:
    """True for a 0x-prefixed 20-byte hex string whose mixed case, if any, is EIP-55."""
    if not isinstance(value, str) or HEX_ADDRESS.fullmatch(value) is None:
        return False
    body = value[2:]
    if body.lower() == body or body.upper() == body:
        return True
    return bool(to_checksum_address(value) == value)


def same_address(left: str, right: str) -> bool:
    """Compare two addresses by their 20-byte value, as the drafts require."""
    return left.lower() == right.lower()


def did_pkh(chain_id: int, address: str) -> str:
    """The payer's ``did:pkh:eip155:<chain>:<address>`` (EIP-55 address)."""
    return f"did:pkh:eip155:{chain_id}:{to_checksum_address(address)}"


def parse_did_pkh(source: str) -> tuple[int, str] | None:
    """``(chain_id, address)`` of a ``did:pkh:eip155`` DID, or None if it is not one."""
    match = _DID_PKH.fullmatch(source)
    if match is None or not is_address(match.group(2)):
        return None
    return int(match.group(1)), to_checksum_address(match.group(2))


def challenge_chain_id(challenge: Challenge) -> int | None:
    """``methodDetails.chainId`` when it is a positive integer, else None (unchecked otherwise)."""
    details = challenge.request.get("methodDetails")
    chain = details.get("chainId") if isinstance(details, Mapping) else None
    if isinstance(chain, bool) or not isinstance(chain, int) or chain <= 0:
        return None
    return chain


# -- keys ------------------------------------------------------------------------


def as_account(key: object, label: str) -> LocalAccount:
    """A ``LocalAccount`` from a hex string, 32 bytes or an account.

    ``label`` names the key in errors (``"an EVM private key"``). No error
    quotes the key: the library's own message is replaced.
    """
    if isinstance(key, LocalAccount):
        return key
    if isinstance(key, bytes | bytearray):
        raw = bytes(key)
    elif isinstance(key, str):
        text = key[2:] if key[:2] in ("0x", "0X") else key
        if _KEY_HEX.fullmatch(text) is None:
            raise ValueError(f"{label} is 32 bytes: 64 hex digits, 0x-prefixed or not")
        raw = bytes.fromhex(text)
    else:
        raise TypeError("key must be a hex string, 32 bytes or an eth_account LocalAccount")
    if len(raw) != 32:
        raise ValueError(f"{label} is 32 bytes")
    try:
        account: LocalAccount = Account.from_key(raw)
    except Exception:  # the library's message could quote the key: replace it
        raise ValueError("not a valid secp256k1 private key") from None
    return account


# -- JSON-RPC --------------------------------------------------------------------


class RpcError(Exception):
    """The node answered a JSON-RPC call with an error (the call reached it)."""

    def __init__(self, method: str, code: object, message: str) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.rpc_message = message


def rpc_body(method: str, params: Sequence[Any], request_id: int = 1) -> dict[str, Any]:
    """A JSON-RPC 2.0 request object."""
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}


def rpc_result(method: str, response: httpx.Response) -> Any:
    """The ``result`` of a JSON-RPC response.

    ``httpx.HTTPStatusError`` for an HTTP error status; :class:`RpcError` for a
    JSON-RPC error or a body that is not a JSON-RPC response object.
    """
    response.raise_for_status()
    data = response.json()
    if not isinstance(data, dict):
        raise RpcError(method, None, "malformed JSON-RPC response")
    error = data.get("error")
    if error is not None:
        message = error.get("message", "error") if isinstance(error, dict) else str(error)
        code = error.get("code") if isinstance(error, dict) else None
        raise RpcError(method, code, str(message)[:300])
    return data.get("result")


# -- the wallets' base -----------------------------------------------------------


class EthWallet(PaymentMethod):
    """A wallet with one secp256k1 key that pays on eip155 chains.

    Holds the key (never shown: not in ``repr()``, and the wallet refuses to
    be pickled), the asset registry and the payee and split-recipient
    allowlists. Its quotes name the payer as its ``did:pkh`` on the
    challenge's chain (:meth:`source_for`).
    """

    #: How errors name the key (``"an EVM private key"``).
    key_label: ClassVar[str] = "a private key"

    def __init__(
        self,
        key: LocalAccount | str | bytes,
        *,
        assets: AssetRegistry | Iterable[AssetEntry] | None,
        payees: Iterable[str] | None,
        split_recipients: Iterable[str] | Literal["*"],
        clock: Callable[[], datetime] | None,
    ) -> None:
        self._account = as_account(key, self.key_label)
        if isinstance(assets, AssetRegistry):
            self.assets = assets
        else:
            self.assets = AssetRegistry(BUILTIN_ASSETS if assets is None else assets)
        self.payees = None if payees is None else frozenset(p.lower() for p in payees)
        if split_recipients == "*":
            self._split_recipients: frozenset[str] | None = None
        else:
            self._split_recipients = frozenset(r.lower() for r in split_recipients)
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- identity -----------------------------------------------------------------

    @property
    def address(self) -> str:
        """The payer's EIP-55 address."""
        return str(self._account.address)

    def source_for(self, chain_id: int) -> str:
        """The payer's ``did:pkh`` on ``chain_id``."""
        return did_pkh(chain_id, self.address)

    # -- checking -----------------------------------------------------------------

    def _asset(self, currency: str, chain: int) -> AssetEntry:
        asset = self.assets.lookup(self.name, currency, chain)
        if asset is None:
            raise ChallengeError(
                f"token {currency} on chain {chain} is not in the wallet's asset registry"
            )
        return asset

    def _check_recipients(self, recipient: str, splits: Sequence[str]) -> None:
        """The recipient is an expected payee, and every split goes to an expected recipient.

        The zero address is never paid (a burn), as recipient or split.
        """
        if self.payees is not None and recipient.lower() not in self.payees:
            raise ChallengeError(f"recipient {recipient} is not one of the expected payees")
        if same_address(recipient, ZERO_ADDRESS):
            raise ChallengeError(f"{self.name} charge recipient is the zero address")
        for index, split in enumerate(splits):
            if same_address(split, ZERO_ADDRESS) or (
                self._split_recipients is not None and split.lower() not in self._split_recipients
            ):
                raise ChallengeError(
                    f"split {index} pays {split}, who is not an expected split recipient"
                )

    # -- hygiene ------------------------------------------------------------------

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError(
            f"{type(self).__name__} cannot be pickled: that would write its key in the clear"
        )

    def __reduce__(self) -> NoReturn:
        self.__reduce_ex__(None)

    def __getstate__(self) -> NoReturn:
        self.__reduce_ex__(None)
