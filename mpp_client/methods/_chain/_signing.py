"""Every secp256k1 signature the wallets make goes through one seam.

A signature on these rails is always ``(v, r, s)`` over a 32-byte keccak
digest of some encoding: EIP-712 typed data (EIP-3009 and Permit2
authorizations, the Tempo proof), an EIP-1559 transaction, a Tempo ``0x76``
transaction. So the key is reached through one small object,
:class:`DigestSigner`: an ``address`` and ``sign_digest(digest)``. The
encodings live here and in :mod:`._eip712` / :mod:`._tempo_tx`; the key
never sees anything but a digest, and can live outside the process (a
hardware token, a keyring, a remote signer) as long as it has that shape.

The protocol is structural: any object with that shape is a wallet key,
without importing anything from this package. The default wraps an
eth-account ``LocalAccount`` (:class:`LocalSigner`); the ``Secp256k1Signer``
of :mod:`mpp_client.identity` has the same shape.

``sign_digest`` may answer with 65 bytes (``r || s || v``), a ``(v, r, s)``
tuple, or an object with ``v``, ``r`` and ``s`` (eth-account's
``SignedMessage``, the identity signers' ``RecoverableSignature``); ``v`` is
27/28 or the bare recovery id 0/1. :func:`sign` turns each into one
:class:`Signature` with low ``s`` (EIP-2: nodes refuse the other half) and,
for a signer that is not a :class:`LocalSigner`, checks that it recovers to
the signer's address (trying the other recovery id when a token gave a wrong
one): a signer that signs with another key than it names would otherwise pay
from, or vouch for, an address nobody meant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NoReturn, Protocol, TypeAlias, runtime_checkable

import rlp  # type: ignore[import-untyped]
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_keys.datatypes import Signature as _KeySignature
from eth_typing import Hash32
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from ..._exceptions import PaymentFailed
from ._addresses import is_address, same_address, to_hex

__all__ = [
    "SECP256K1_N",
    "DigestSigner",
    "Eip1559Transaction",
    "LocalSigner",
    "RecoverableLike",
    "Signature",
    "SignatureLike",
    "SignerFailed",
    "as_signer",
    "eip1559_signing_payload",
    "recover_address",
    "recover_signer",
    "sign",
    "sign_eip1559",
    "typed_data_digest",
]

#: The order of the secp256k1 group.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2
_KEY_HEX = re.compile(r"[0-9a-fA-F]{64}")
_SIGNATURE_HEX = re.compile(r"0x[0-9a-fA-F]{130}")


class RecoverableLike(Protocol):
    """A signature object: ``v`` (27/28 or 0/1), ``r`` and ``s`` as integers."""

    @property
    def v(self) -> int: ...

    @property
    def r(self) -> int: ...

    @property
    def s(self) -> int: ...


#: What ``sign_digest`` may return (see the module notes).
SignatureLike: TypeAlias = RecoverableLike | tuple[int, int, int] | bytes


@runtime_checkable
class DigestSigner(Protocol):
    """A secp256k1 key that signs 32-byte digests: the wallets' only way to their key.

    ``address`` is the key's EIP-55 address; ``sign_digest`` signs a digest
    that is already a hash (it must not hash again) and returns a
    :data:`SignatureLike`. Signing an arbitrary digest is as powerful as the
    key itself: the wallets only ever pass digests of encodings they built
    from terms they checked.
    """

    @property
    def address(self) -> str: ...

    def sign_digest(self, digest: bytes) -> SignatureLike: ...


class SignerFailed(PaymentFailed):
    """The signer failed or answered with something unusable: nothing was signed or sent."""


@dataclass(frozen=True, slots=True, repr=False)
class Signature:
    """A secp256k1 signature as Ethereum wants it: low ``s``, with its recovery id."""

    r: int
    s: int
    #: The recovery id, 0 or 1 (typed transactions carry it as ``yParity``).
    y_parity: int

    @property
    def v(self) -> int:
        """``27 + y_parity``: the ``v`` of a 65-byte message signature."""
        return 27 + self.y_parity

    def to_bytes(self) -> bytes:
        """``r || s || v`` (65 bytes), the ``signature`` field of every credential."""
        return self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big") + bytes([self.v])

    def __repr__(self) -> str:
        return "Signature(<65 bytes>)"  # signatures authorise payments: keep them out of logs


def _normalize(answer: object) -> Signature:
    """What a signer returned, as a low-``s`` :class:`Signature`; ValueError/TypeError otherwise."""
    if isinstance(answer, bytes | bytearray):
        if len(answer) != 65:
            raise ValueError("a signature is 65 bytes")
        r, s, v = (
            int.from_bytes(answer[:32], "big"),
            int.from_bytes(answer[32:64], "big"),
            answer[64],
        )
    elif all(hasattr(answer, name) for name in ("v", "r", "s")):
        v, r, s = (getattr(answer, name) for name in ("v", "r", "s"))
    elif isinstance(answer, tuple) and len(answer) == 3:
        v, r, s = answer
    else:
        raise TypeError("sign_digest must return 65 bytes, (v, r, s) or an object with v, r, s")
    for value in (v, r, s):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("v, r and s must be integers")
    if v in (27, 28):
        v -= 27
    if v not in (0, 1) or not 0 < r < SECP256K1_N or not 0 < s < SECP256K1_N:
        raise ValueError("the signature's v, r or s is out of range")
    if s > _HALF_N:  # the same signature, in the half nodes accept (EIP-2)
        s, v = SECP256K1_N - s, v ^ 1
    return Signature(r, s, v)


def recover_address(digest: bytes, signature: Signature) -> str:
    """The EIP-55 address whose key made ``signature`` over ``digest``."""
    parsed = _KeySignature(vrs=(signature.y_parity, signature.r, signature.s))
    return str(parsed.recover_public_key_from_msg_hash(digest).to_checksum_address())


def recover_signer(digest: bytes, signature: str) -> str:
    """The address whose key made ``signature`` (65 bytes, ``0x`` hex) over ``digest``.

    Strict, as a server must be: ``v`` is 27 or 28 and ``s`` low. Raises
    ``ValueError`` for a malformed, malleable or unrecoverable signature.
    """
    if not isinstance(signature, str) or _SIGNATURE_HEX.fullmatch(signature) is None:
        raise ValueError("signature must be 65 bytes of 0x-prefixed hex")
    raw = bytes.fromhex(signature[2:])
    if raw[64] not in (27, 28) or int.from_bytes(raw[32:64], "big") > _HALF_N:
        raise ValueError("signature has a bad v or a malleable s")
    try:
        return recover_address(digest, _normalize(raw))
    except Exception:
        raise ValueError("signature does not recover to a key") from None


def sign(signer: DigestSigner, digest: bytes) -> Signature:
    """``signer`` signs ``digest``; the answer normalized and checked (see the module notes).

    :class:`SignerFailed` (a :class:`~mpp_client.PaymentFailed`: nothing was
    sent) when the signer raises, answers with something that is not a
    signature, or signs with another key than its ``address``. The message
    names only the failure's type: a signer's own message could carry a PIN
    or a token label.
    """
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise ValueError("a digest is 32 bytes")
    try:
        answer = signer.sign_digest(digest)
    except Exception as exc:
        raise SignerFailed(
            f"the wallet's signer failed ({type(exc).__name__}); nothing was signed"
        ) from None
    try:
        signature = _normalize(answer)
    except (TypeError, ValueError) as exc:
        raise SignerFailed(f"the wallet's signer returned no usable signature ({exc})") from None
    if isinstance(signer, LocalSigner):
        return signature  # eth-account signs with the key it derives the address from
    for candidate in (signature, Signature(signature.r, signature.s, signature.y_parity ^ 1)):
        try:
            if same_address(recover_address(digest, candidate), signer.address):
                return candidate
        except Exception:  # noqa: S112 - an unrecoverable candidate: try the other parity
            continue
    raise SignerFailed(
        f"the wallet's signer signed with another key than its address {signer.address}; "
        "nothing was sent"
    )


# -- the default signer ----------------------------------------------------------


class LocalSigner:
    """The default signer: an eth-account ``LocalAccount`` in this process.

    The key never shows: not in ``repr()``, and the signer refuses to be
    pickled. ``location`` and ``hardware`` say where the key lives, in the
    words of :mod:`mpp_client.identity`'s signers.
    """

    __slots__ = ("_account",)

    location: ClassVar[Literal["process"]] = "process"
    hardware: ClassVar[bool] = False

    def __init__(self, account: LocalAccount) -> None:
        self._account = account

    @property
    def address(self) -> str:
        return str(self._account.address)

    @property
    def account(self) -> LocalAccount:
        """The account itself (to export the key, e.g. into a keystore)."""
        return self._account

    def sign_digest(self, digest: bytes) -> RecoverableLike:
        signed: RecoverableLike = self._account.unsafe_sign_hash(Hash32(digest))
        return signed

    def __repr__(self) -> str:
        return f"LocalSigner(address={self.address!r})"

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("LocalSigner cannot be pickled: that would write its key in the clear")


def as_signer(key: object, label: str) -> DigestSigner:
    """The wallet's signer from a hex key, 32 bytes, a ``LocalAccount`` or a signer object.

    ``label`` names the key in errors (``"an EVM private key"``). No error
    quotes the key: the library's own message is replaced.
    """
    if isinstance(key, LocalAccount):
        return LocalSigner(key)
    if isinstance(key, bytes | bytearray):
        raw = bytes(key)
    elif isinstance(key, str):
        text = key[2:] if key[:2] in ("0x", "0X") else key
        if _KEY_HEX.fullmatch(text) is None:
            raise ValueError(f"{label} is 32 bytes: 64 hex digits, 0x-prefixed or not")
        raw = bytes.fromhex(text)
    elif isinstance(key, DigestSigner) and callable(key.sign_digest):
        if not is_address(key.address):
            raise ValueError("the signer's address is not a 20-byte EIP-55 address")
        return key
    else:
        raise TypeError(
            "key must be a hex string, 32 bytes, an eth_account LocalAccount or a signer "
            "(an object with address and sign_digest(digest))"
        )
    if len(raw) != 32:
        raise ValueError(f"{label} is 32 bytes")
    try:
        account: LocalAccount = Account.from_key(raw)
    except Exception:  # the library's message could quote the key: replace it
        raise ValueError("not a valid secp256k1 private key") from None
    return LocalSigner(account)


# -- what gets signed ------------------------------------------------------------


def typed_data_digest(full_message: Mapping[str, Any]) -> bytes:
    """The EIP-712 digest of ``full_message`` (``types`` with ``EIP712Domain``, ``domain``,
    ``primaryType``, ``message``), as eth-account encodes it."""
    signable = encode_typed_data(full_message=dict(full_message))
    return bytes(keccak(b"\x19" + signable.version + signable.header + signable.body))


@dataclass(frozen=True, slots=True)
class Eip1559Transaction:
    """An EIP-1559 (type 2) transaction: what the wallets and the test tooling send."""

    chain_id: int
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas: int
    #: The callee; None creates a contract.
    to: str | None
    value: int
    data: bytes

    def fields(self) -> list[Any]:
        to = b"" if self.to is None else bytes.fromhex(to_checksum_address(self.to)[2:])
        return [
            self.chain_id,
            self.nonce,
            self.max_priority_fee_per_gas,
            self.max_fee_per_gas,
            self.gas,
            to,
            self.value,
            self.data,
            [],  # access list
        ]


def eip1559_signing_payload(tx: Eip1559Transaction) -> bytes:
    """``0x02 || rlp(fields)``: what the sender signs the keccak of (EIP-1559, EIP-2718)."""
    return b"\x02" + bytes(rlp.encode(tx.fields()))


def sign_eip1559(signer: DigestSigner, tx: Eip1559Transaction) -> tuple[bytes, str]:
    """The signed transaction's wire bytes and its hash, signed through the seam."""
    signature = sign(signer, bytes(keccak(eip1559_signing_payload(tx))))
    raw = b"\x02" + bytes(rlp.encode([*tx.fields(), signature.y_parity, signature.r, signature.s]))
    return raw, to_hex(bytes(keccak(raw)))
