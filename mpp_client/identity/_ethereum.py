"""secp256k1 signers for Ethereum-style wallets, and what they sign.

Every signature an EVM or Tempo wallet makes is ``(v, r, s)`` over a 32-byte
Keccak digest of some encoding:

* EIP-712 typed data (Permit2, EIP-3009, Tempo proofs):
  ``keccak256(0x19 || 0x01 || domainSeparator || hashStruct(message))``, see
  :func:`typed_data_digest`;
* EIP-1559 (and other EIP-2718 typed) transactions: the keccak of the
  unsigned envelope, see :func:`sign_transaction`;
* Tempo ``0x76`` transactions: pytempo's ``get_signing_hash()``.

So :class:`~mpp_client.identity.Secp256k1Signer` signs a digest and nothing
else, and the encodings live here (wallets call them instead of handing a
``LocalAccount`` the whole job). :class:`LocalSecp256k1Signer` is the
in-process signer (an eth-account ``LocalAccount``);
:func:`recoverable_signature` turns a token's plain ``r || s`` into an
Ethereum signature (low ``s``, recovery id found by recovering both
candidates).

Needs eth-account (the ``evm`` or ``tempo`` extra), imported on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._signer import (
    SECP256K1_N,
    Location,
    RecoverableSignature,
    Secp256k1Signer,
    SignerError,
    check_digest,
)

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

__all__ = [
    "LocalSecp256k1Signer",
    "address_of",
    "recover_address",
    "recoverable_signature",
    "sign_transaction",
    "sign_typed_data",
    "typed_data_digest",
]

_MISSING = 'secp256k1 signers need eth-account: pip install "mpp-client[evm]"'


def _require_eth() -> None:
    try:
        import eth_account  # noqa: F401, PLC0415 - optional extra
        import eth_keys  # noqa: F401, PLC0415
    except ImportError:
        raise SignerError(_MISSING) from None


class LocalSecp256k1Signer(Secp256k1Signer):
    """A secp256k1 key in this process: an eth-account ``LocalAccount`` behind the seam.

    Takes a ``LocalAccount``, a hex private key or 32 bytes. Signs exactly
    as ``LocalAccount.unsafe_sign_hash`` does (RFC 6979, low ``s``).
    """

    __slots__ = ("_account",)

    def __init__(self, key: LocalAccount | str | bytes) -> None:
        _require_eth()
        from eth_account import Account  # noqa: PLC0415
        from eth_account.signers.local import LocalAccount  # noqa: PLC0415

        if isinstance(key, LocalAccount):
            self._account = key
            return
        if not isinstance(key, str | bytes | bytearray):
            raise TypeError("key must be a LocalAccount, a hex string or 32 bytes")
        try:
            account: LocalAccount = Account.from_key(key)
        except Exception:  # eth-keys raises several types; none may echo the key
            raise ValueError("not a valid secp256k1 private key") from None
        self._account = account

    @property
    def location(self) -> Location:
        return "process"

    @property
    def address(self) -> str:
        return str(self._account.address)

    def sign_digest(self, digest: bytes) -> RecoverableSignature:
        from eth_typing import Hash32  # noqa: PLC0415

        signed = self._account.unsafe_sign_hash(Hash32(check_digest(digest)))
        return RecoverableSignature(r=signed.r, s=signed.s, y_parity=signed.v - 27)


def address_of(public_key: bytes) -> str:
    """The checksummed address of an uncompressed secp256k1 public key (64 or 65 bytes)."""
    _require_eth()
    from eth_keys.datatypes import PublicKey  # noqa: PLC0415

    raw = public_key[1:] if len(public_key) == 65 and public_key[0] == 4 else public_key
    if len(raw) != 64:
        raise ValueError("an uncompressed secp256k1 public key is 64 bytes (or 65 with 0x04)")
    return str(PublicKey(raw).to_checksum_address())


def recover_address(digest: bytes, signature: RecoverableSignature) -> str:
    """The address whose key made ``signature`` over ``digest``."""
    _require_eth()
    from eth_keys.datatypes import Signature  # noqa: PLC0415

    vrs = (signature.y_parity, signature.r, signature.s)
    recovered = Signature(vrs=vrs).recover_public_key_from_msg_hash(check_digest(digest))
    return str(recovered.to_checksum_address())


def recoverable_signature(digest: bytes, r: int, s: int, address: str) -> RecoverableSignature:
    """An Ethereum signature from a plain ECDSA ``(r, s)`` that ``address``'s key made.

    Tokens sign with CKM_ECDSA and return ``r || s`` with no recovery id and
    either ``s``: normalise ``s`` to the lower half (EIP-2; ``(r, n - s)`` is
    the same signature mirrored), then try both parities and keep the one
    that recovers ``address``. Neither recovering it means the token signed
    with another key, or something else entirely: :class:`SignerError`.
    """
    if not 0 < s < SECP256K1_N or not 0 < r < SECP256K1_N:
        raise SignerError("the token returned an ECDSA signature out of range for secp256k1")
    if s > SECP256K1_N // 2:
        s = SECP256K1_N - s
    for parity in (0, 1):
        candidate = RecoverableSignature(r=r, s=s, y_parity=parity)
        try:
            if recover_address(digest, candidate) == address:
                return candidate
        except SignerError:
            raise
        except Exception:  # noqa: S112 - an unrecoverable candidate is simply not it
            continue
    raise SignerError(f"the token's signature does not recover {address}: wrong key or mechanism")


def typed_data_digest(full_message: Mapping[str, Any]) -> bytes:
    """The 32-byte EIP-712 digest of ``full_message`` (``types``, ``domain``,
    ``primaryType``, ``message``), the one ``LocalAccount.sign_typed_data`` signs."""
    _require_eth()
    from eth_account.messages import encode_typed_data  # noqa: PLC0415
    from eth_utils.crypto import keccak  # noqa: PLC0415

    signable = encode_typed_data(full_message=dict(full_message))
    return bytes(keccak(b"\x19" + signable.version + signable.header + signable.body))


def sign_typed_data(
    signer: Secp256k1Signer, full_message: Mapping[str, Any]
) -> RecoverableSignature:
    """``signer``'s EIP-712 signature over ``full_message`` (``.to_bytes()`` is the 65 bytes)."""
    return signer.sign_digest(typed_data_digest(full_message))


def sign_transaction(signer: Secp256k1Signer, transaction: Mapping[str, Any]) -> tuple[bytes, str]:
    """Sign an EIP-2718 typed transaction dict (EIP-1559 ``type`` 2, or 1): raw bytes and hash.

    The same bytes ``LocalAccount.sign_transaction`` produces for the same
    key. Legacy (untyped) transactions are refused: their ``v`` folds in the
    chain id, and no wallet here sends them.
    """
    _require_eth()
    from eth_account.typed_transactions.typed_transaction import TypedTransaction  # noqa: PLC0415
    from eth_utils.crypto import keccak  # noqa: PLC0415

    if "type" not in transaction:
        raise ValueError("only typed transactions (EIP-2718 'type' 1 or 2) are signed here")
    unsigned = TypedTransaction.from_dict(dict(transaction))
    signature = signer.sign_digest(unsigned.hash())
    fields = {key: value for key, value in unsigned.as_dict().items() if key not in ("v", "r", "s")}
    fields.update(v=signature.y_parity, r=signature.r, s=signature.s)
    raw = TypedTransaction.from_dict(fields).encode()
    return raw, "0x" + keccak(raw).hex()
