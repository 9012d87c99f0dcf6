"""The encrypted keystore file: an Ed25519 seed sealed under a passphrase.

Keystore file (JSON, mode 0600)::

    {"version": 1, "kind": "agent", "did": "did:key:z6Mk...",
     "kdf": {"name": "argon2id", "opslimit": 3, "memlimit": 268435456, "salt": "<b64url>"},
     "cipher": "xsalsa20poly1305", "nonce": "<b64url>", "ciphertext": "<b64url>"}

The key is derived from the passphrase with Argon2id (memory-hard, so a stolen
file is expensive to brute-force) and the seed is sealed with XSalsa20-Poly1305.
SecretBox has no associated data, so the plaintext is the seed followed by the
canonical JSON of every other header field; opening checks that copy against
the file, which detects a swapped ``did`` or ``kind`` even though the passphrase
is right.

Only the key classes call :func:`seal_seed` (the seed never leaves them
otherwise); :func:`open_keystore` hands the seed straight to a new key.
"""

from __future__ import annotations

import hmac
import os
import secrets
import unicodedata
from typing import Any, Literal, NoReturn

import nacl.exceptions
import nacl.pwhash.argon2id
import nacl.secret

from .._exceptions import KeystoreError
from ..protocol._b64 import Base64Error, b64url_decode, b64url_encode, loads_json
from ..protocol._jcs import canonical_json
from ._files import read_keystore, write_keystore

__all__ = [
    "KDF_MEMLIMIT_INTERACTIVE",
    "KDF_MEMLIMIT_MIN",
    "KDF_MEMLIMIT_MODERATE",
    "KDF_OPSLIMIT_INTERACTIVE",
    "KDF_OPSLIMIT_MIN",
    "KDF_OPSLIMIT_MODERATE",
    "Kind",
    "open_keystore",
    "seal_seed",
]

#: Argon2id cost presets (pynacl's). MODERATE is the default for :meth:`AgentKey.save`;
#: INTERACTIVE suits keys unlocked often; MIN is for tests only.
KDF_OPSLIMIT_MODERATE: int = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
KDF_MEMLIMIT_MODERATE: int = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
KDF_OPSLIMIT_INTERACTIVE: int = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
KDF_MEMLIMIT_INTERACTIVE: int = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
KDF_OPSLIMIT_MIN: int = nacl.pwhash.argon2id.OPSLIMIT_MIN
KDF_MEMLIMIT_MIN: int = nacl.pwhash.argon2id.MEMLIMIT_MIN
# A file asking for more than SENSITIVE is refused instead of obeyed: otherwise a
# tampered keystore could make load() allocate gigabytes before failing.
_OPSLIMIT_CAP: int = nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE
_MEMLIMIT_CAP: int = nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE

SEED_BYTES = 32
_KEYSTORE_VERSION = 1
_KDF_NAME = "argon2id"
_CIPHER = "xsalsa20poly1305"
_KEYSTORE_FIELDS = frozenset({"version", "kind", "did", "kdf", "cipher", "nonce", "ciphertext"})
_KDF_FIELDS = frozenset({"name", "opslimit", "memlimit", "salt"})
_MAX_KEYSTORE_BYTES = 16 * 1024

Kind = Literal["agent", "owner"]


def seal_seed(
    path: str | os.PathLike[str],
    seed: bytes,
    *,
    kind: Kind,
    did: str,
    passphrase: str,
    overwrite: bool,
    opslimit: int,
    memlimit: int,
) -> None:
    """Encrypt ``seed`` under ``passphrase`` and write the keystore to ``path``."""
    if not isinstance(passphrase, str):
        raise TypeError("passphrase must be a str")
    if not passphrase:
        # Usually an unset environment variable; an empty passphrase encrypts nothing.
        raise ValueError("refusing to encrypt a key under an empty passphrase")
    _check_kdf_limits(opslimit, memlimit, ValueError)
    salt = secrets.token_bytes(nacl.pwhash.argon2id.SALTBYTES)
    nonce = secrets.token_bytes(nacl.secret.SecretBox.NONCE_SIZE)
    header: dict[str, Any] = {
        "version": _KEYSTORE_VERSION,
        "kind": kind,
        "did": did,
        "kdf": {
            "name": _KDF_NAME,
            "opslimit": opslimit,
            "memlimit": memlimit,
            "salt": b64url_encode(salt),
        },
        "cipher": _CIPHER,
    }
    box = nacl.secret.SecretBox(_derive_key(passphrase, salt, opslimit, memlimit))
    ciphertext = box.encrypt(seed + canonical_json(header), nonce).ciphertext
    document = {
        **header,
        "nonce": b64url_encode(nonce),
        "ciphertext": b64url_encode(ciphertext),
    }
    write_keystore(path, document, overwrite=overwrite)


def open_keystore(path: str | os.PathLike[str], passphrase: str, kind: Kind) -> tuple[bytes, str]:
    """The seed and the ``did`` in the ``kind`` keystore at ``path``.

    ``KeystoreError`` when the file cannot be read, is readable or writable by
    group or others (POSIX), holds the other kind of key, was altered, or the
    passphrase is wrong.
    """
    if not isinstance(passphrase, str):
        raise TypeError("passphrase must be a str")
    name = repr(os.fspath(path))
    raw = read_keystore(path, _MAX_KEYSTORE_BYTES)
    header, nonce, ciphertext, salt = _parse_keystore(raw, name)
    if header["kind"] != kind:
        raise KeystoreError(f"keystore {name} holds an {header['kind']} key, not an {kind} key")
    kdf = header["kdf"]
    box = nacl.secret.SecretBox(_derive_key(passphrase, salt, kdf["opslimit"], kdf["memlimit"]))
    try:
        plaintext = box.decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        raise KeystoreError(
            f"cannot decrypt keystore {name}: wrong passphrase, or the file was altered"
        ) from None
    seed, bound = plaintext[:SEED_BYTES], plaintext[SEED_BYTES:]
    if not hmac.compare_digest(bound, canonical_json(header)):
        raise KeystoreError(
            f"keystore {name} was altered: its header does not match the encrypted copy"
        )
    did: str = header["did"]
    return seed, did


def _check_kdf_limits(opslimit: object, memlimit: object, error: type[Exception]) -> None:
    for name, value, low, high in (
        ("opslimit", opslimit, KDF_OPSLIMIT_MIN, _OPSLIMIT_CAP),
        ("memlimit", memlimit, KDF_MEMLIMIT_MIN, _MEMLIMIT_CAP),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise error(f"argon2id {name} must be an integer from {low} to {high}")


def _derive_key(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    # NFC so the same passphrase typed on different keyboards or OSes (composed
    # or decomposed accents) unlocks the same file.
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, secret, salt, opslimit=opslimit, memlimit=memlimit
    )


def _parse_keystore(raw: bytes, name: str) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """Split a keystore file into (bound header, nonce, ciphertext, salt), strictly."""

    def bad(reason: str) -> NoReturn:
        raise KeystoreError(f"keystore {name} is malformed: {reason}")

    try:
        document = loads_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, Base64Error):
        bad("not a JSON document")
    if not isinstance(document, dict):
        bad("not a JSON object")
    if set(document) != _KEYSTORE_FIELDS:
        bad(f"expected exactly the fields {sorted(_KEYSTORE_FIELDS)}")
    version = document["version"]
    if type(version) is not int or version != _KEYSTORE_VERSION:
        bad("unsupported version")
    if document["kind"] not in ("agent", "owner"):
        bad("'kind' must be 'agent' or 'owner'")
    if not isinstance(document["did"], str):
        bad("'did' must be a string")
    if document["cipher"] != _CIPHER:
        bad(f"'cipher' must be {_CIPHER!r}")
    kdf = document["kdf"]
    if not isinstance(kdf, dict) or set(kdf) != _KDF_FIELDS or kdf["name"] != _KDF_NAME:
        bad(f"'kdf' must be an {_KDF_NAME} object with {sorted(_KDF_FIELDS)}")
    try:
        _check_kdf_limits(kdf["opslimit"], kdf["memlimit"], ValueError)
    except ValueError as exc:
        bad(str(exc))
    try:
        salt = b64url_decode(kdf["salt"])
        nonce = b64url_decode(document["nonce"])
        ciphertext = b64url_decode(document["ciphertext"])
    except Base64Error:
        bad("'salt', 'nonce' and 'ciphertext' must be base64url")
    if len(salt) != nacl.pwhash.argon2id.SALTBYTES:
        bad("wrong salt length")
    if len(nonce) != nacl.secret.SecretBox.NONCE_SIZE:
        bad("wrong nonce length")
    header = {key: document[key] for key in ("version", "kind", "did", "kdf", "cipher")}
    return header, nonce, ciphertext, salt
