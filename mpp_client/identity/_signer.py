"""The signer seam: a key that signs without handing out its secret.

Everything in mpp-client that signs goes through one of two small
interfaces, so the key behind it can live in this process, in an encrypted
keystore file, in the OS keyring or inside a PKCS#11 token (an HSM, a smart
card, SoftHSM) without the code that signs knowing which:

* :class:`Ed25519Signer` for the agent's and the owner's identities
  (``did:key``): decision records, ledger audit events and checkpoints,
  mandates and revocation lists. :class:`~mpp_client.identity.AgentKey` and
  :class:`~mpp_client.identity.OwnerKey` wrap one.
* :class:`Secp256k1Signer` for wallet keys: it signs a 32-byte digest and
  returns a :class:`RecoverableSignature`, which is all an EIP-712 typed-data
  signature, an EIP-1559 transaction or a Tempo ``0x76`` transaction needs
  (each is ``keccak256`` of an encoding, then ``(v, r, s)``; see
  ``mpp_client.identity._ethereum`` for the encodings).

Neither interface has a way to read the private key, and every
implementation keeps it out of ``repr()``, pickles and error messages. Each
says where its key lives (:attr:`Signer.location`) and whether that place is
hardware that never exports it (:attr:`Signer.hardware`), which a policy can
require above an amount (``[signing] hardware_above``).

Implement a new place (a cloud KMS, say) by subclassing one of these ABCs.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, Self

import nacl.exceptions
import nacl.signing

from .._didkey import did_key_from_public, public_from_did_key
from .._exceptions import SignerError

__all__ = [
    "LOCATIONS",
    "SECP256K1_N",
    "Ed25519Signer",
    "Location",
    "RecoverableSignature",
    "Secp256k1Signer",
    "Signer",
    "SignerError",
    "verify_signature",
]

#: Where a key is kept at rest. ``process``: only in this process's memory;
#: ``keystore``: an encrypted file, decrypted into memory to sign; ``keyring``:
#: the OS keyring, read into memory to sign; ``pkcs11``: inside a token, which
#: signs and never hands the key out.
Location = Literal["process", "keystore", "keyring", "pkcs11"]
LOCATIONS: tuple[Location, ...] = ("process", "keystore", "keyring", "pkcs11")

ED25519_SIGNATURE_BYTES = 64
#: The order of the secp256k1 group.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class Signer(abc.ABC):
    """What every signer shares: where its key lives, and secret hygiene.

    Signers cannot be pickled (a pickle of an in-process key would be the
    key in the clear, and one of a token session is meaningless elsewhere)
    and copy to themselves.
    """

    __slots__ = ()

    @property
    @abc.abstractmethod
    def location(self) -> Location:
        """Where the key is kept at rest (see :data:`Location`)."""

    @property
    def hardware(self) -> bool:
        """True when the key is held by hardware that signs and never exports it.

        False unless an implementation can say so: a key that can be copied
        out (every in-process, keystore or keyring key) is never hardware.
        """
        return False

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError(
            f"{type(self).__name__} cannot be pickled: a signer's key must not be copied "
            "into a byte string; persist it with its key store instead"
        )

    def __reduce__(self) -> NoReturn:
        self.__reduce_ex__(None)

    def __getstate__(self) -> NoReturn:
        self.__reduce_ex__(None)


class Ed25519Signer(Signer):
    """An Ed25519 key that signs messages (RFC 8032, pure Ed25519)."""

    __slots__ = ()

    @property
    @abc.abstractmethod
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""

    @property
    def did(self) -> str:
        """The public identity, ``did:key:z6Mk...``."""
        return did_key_from_public(self.public_key)

    @abc.abstractmethod
    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature over ``message`` (raises :class:`SignerError`)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(did={self.did!r}, location={self.location!r})"


@dataclass(frozen=True, slots=True, repr=False)
class RecoverableSignature:
    """A secp256k1 ECDSA signature as Ethereum wants it: low ``s``, with its parity.

    ``y_parity`` (0 or 1) is the recovery id, so the signer's address can be
    recovered from the digest and the signature alone. :attr:`v` is the
    ``27 + y_parity`` of ``personal_sign``/EIP-712 signatures and of
    eth-account's ``signature`` bytes; typed transactions (EIP-1559, Tempo
    ``0x76``) carry ``y_parity`` itself. Construction refuses an ``s`` in the
    upper half of the group order (EIP-2): such signatures are malleable and
    nodes refuse them.
    """

    r: int
    s: int
    y_parity: int

    def __post_init__(self) -> None:
        for name in ("r", "s", "y_parity"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int")
        if not 0 < self.r < SECP256K1_N:
            raise ValueError("r is out of range for secp256k1")
        if not 0 < self.s <= SECP256K1_N // 2:
            raise ValueError("s must be in the lower half of the secp256k1 order (EIP-2)")
        if self.y_parity not in (0, 1):
            raise ValueError("y_parity must be 0 or 1")

    @property
    def v(self) -> int:
        """``27 + y_parity``, the ``v`` of a 65-byte message signature."""
        return 27 + self.y_parity

    @property
    def vrs(self) -> tuple[int, int, int]:
        """``(v, r, s)`` with ``v`` = 27 or 28, as eth-account's ``unsafe_sign_hash`` gives."""
        return self.v, self.r, self.s

    def to_bytes(self) -> bytes:
        """``r || s || v``, 65 bytes: the ``signature`` of eth-account and viem."""
        return self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big") + bytes([self.v])

    def __repr__(self) -> str:
        # Signatures stay out of logs, like everything else that authorises a payment.
        return "RecoverableSignature(<65 bytes>)"


class Secp256k1Signer(Signer):
    """A secp256k1 key that signs 32-byte digests, for Ethereum-style wallets."""

    __slots__ = ()

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """The EIP-55 checksummed address of the key."""

    @abc.abstractmethod
    def sign_digest(self, digest: bytes) -> RecoverableSignature:
        """Sign a 32-byte digest (already hashed: this never hashes again).

        The caller is responsible for the digest being the hash of something
        it means to sign (an EIP-712 or transaction encoding): signing an
        arbitrary digest is as powerful as eth-account's ``unsafe_sign_hash``.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(address={self.address!r}, location={self.location!r})"


def verify_signature(did: str, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``did``'s Ed25519 signature over ``message``.

    The one verifier for every :class:`Ed25519Signer`, wherever its key
    lives: a signature made in a token verifies exactly like one made here.
    Returns False (never raises) for anything else: a malformed ``did``, a
    signature of the wrong length, or arguments of the wrong type. Callers
    then have one branch, and a bad input can never be mistaken for a pass.
    """
    if (
        not _is_bytes(message)
        or not _is_bytes(signature)
        or len(signature) != ED25519_SIGNATURE_BYTES
    ):
        return False
    try:
        public = public_from_did_key(did)
        nacl.signing.VerifyKey(public).verify(bytes(message), bytes(signature))
    except (ValueError, TypeError, nacl.exceptions.CryptoError):
        return False
    return True


def _is_bytes(value: object) -> bool:
    # Annotations say bytes, but verifiers are handed untrusted values: check anyway.
    return isinstance(value, bytes | bytearray)


def check_digest(digest: object) -> bytes:
    """``digest`` as bytes when it is exactly 32 bytes, else ``ValueError``/``TypeError``."""
    if not isinstance(digest, bytes | bytearray):
        raise TypeError("sign_digest() takes the 32-byte digest as bytes")
    if len(digest) != 32:
        raise ValueError("sign_digest() takes a 32-byte digest")
    return bytes(digest)


def check_message(message: object) -> bytes:
    """``message`` as bytes, else ``TypeError`` (never str: the encoding would be a guess)."""
    if not isinstance(message, bytes | bytearray):
        raise TypeError("sign() takes bytes")
    return bytes(message)
