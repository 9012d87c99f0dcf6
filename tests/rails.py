"""What the EVM and Tempo tests share: one copy each.

``HeldKey`` is a secp256k1 key reachable only through the wallets' signer
seam (``address`` and ``sign_digest``), as a key in a hardware token would
be: not an eth-account ``LocalAccount``, and it answers in whichever of the
shapes a signer may use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from eth_keys import keys

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

#: How a :class:`HeldKey` answers ``sign_digest``.
Answer = Literal["vrs", "vrs-0/1", "bytes", "object", "high-s", "wrong-parity"]


@dataclass(frozen=True)
class Recoverable:
    """A signature object as the identity signers return one (``r``, ``s``, ``y_parity``)."""

    r: int
    s: int
    y_parity: int

    @property
    def v(self) -> int:
        return 27 + self.y_parity


class HeldKey:
    """A signer that is not a ``LocalAccount``: the key lives behind ``sign_digest`` only.

    ``answer`` picks the shape of its signatures (see :data:`Answer`;
    ``high-s`` and ``wrong-parity`` are valid signatures in forms a token may
    produce, which the wallet must normalize). ``claims`` makes it name
    another address than its key's (a broken or hostile signer). ``fail``
    makes it raise, with a message that must not reach any error.
    """

    location = "pkcs11"
    hardware = True

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        answer: Answer = "vrs",
        claims: str | None = None,
        fail: bool = False,
    ) -> None:
        self._key = keys.PrivateKey(secret if secret is not None else os.urandom(32))
        self.answer = answer
        self.claims = claims
        self.fail = fail
        self.signed = 0

    @property
    def address(self) -> str:
        return self.claims or str(self._key.public_key.to_checksum_address())

    def sign_digest(self, digest: bytes) -> Any:
        if self.fail:
            raise RuntimeError("token locked: PIN 123456 rejected")
        self.signed += 1
        signature = self._key.sign_msg_hash(digest)
        parity, r, s = signature.v, signature.r, signature.s
        if self.answer == "vrs":
            return (27 + parity, r, s)
        if self.answer == "vrs-0/1":
            return (parity, r, s)
        if self.answer == "bytes":
            return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + parity])
        if self.answer == "object":
            return Recoverable(r, s, parity)
        if self.answer == "high-s":
            return (27 + (parity ^ 1), r, SECP256K1_N - s)
        return (27 + (parity ^ 1), r, s)  # wrong-parity: a token that guessed the recovery id

    def __repr__(self) -> str:
        return f"HeldKey(address={self.address!r})"
