"""``did:key`` identifiers for Ed25519 public keys (multicodec 0xed01, base58btc)."""

from __future__ import annotations

__all__ = ["did_key_from_public", "public_from_did_key"]

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}
_ED25519_PREFIX = b"\xed\x01"


def _b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = []
    while number:
        number, rem = divmod(number, 58)
        out.append(_B58[rem])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        index = _B58_INDEX.get(char)
        if index is None:
            raise ValueError("invalid base58 character")
        number = number * 58 + index
    pad = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * pad + body


def did_key_from_public(public_key: bytes) -> str:
    """``did:key:z6Mk...`` for a 32-byte Ed25519 public key."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return "did:key:z" + _b58encode(_ED25519_PREFIX + public_key)


def public_from_did_key(did: str) -> bytes:
    """The Ed25519 public key inside a ``did:key``; ``ValueError`` if it holds none."""
    if not isinstance(did, str) or not did.startswith("did:key:z") or len(did) > 128:
        raise ValueError("not an Ed25519 did:key")
    raw = _b58decode(did[len("did:key:z") :])
    if len(raw) != 34 or not raw.startswith(_ED25519_PREFIX):
        raise ValueError("not an Ed25519 did:key")
    return raw[2:]
