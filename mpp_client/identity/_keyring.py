"""Ed25519 keys in the OS keyring (macOS Keychain, Windows Credential Locker,
the Secret Service on Linux desktops), through the ``keyring`` package.

The keyring stores a secret string under a *service* and a *name*; ours is
the canonical JSON of::

    {"type": "mpp-client/keyring-key/v1", "kind": "agent",
     "did": "did:key:z6Mk...", "seed": "<b64url>"}

so loading can refuse the other kind of key, and a seed that does not match
its ``did`` (an entry edited by hand). The keyring protects the entry at
rest (the login keychain, the user's session); to sign, the seed is read
into this process, so a keyring key is never ``hardware``.

Needs the ``keyring`` extra (``pip install "mpp-client[keyring]"``),
imported on first use. Headless machines have no keyring daemon: configure a
backend (``keyring.set_keyring(...)``, or pass ``backend=``), e.g. a file
keyring from ``keyrings.alt``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._exceptions import KeystoreError
from ..protocol._b64 import Base64Error, b64url_decode, b64url_encode, loads_json
from ..protocol._jcs import canonical_json
from ._keystore import SEED_BYTES, Kind
from ._signer import SignerError

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

__all__ = ["KEYRING_ENTRY_TYPE", "load_seed", "store_seed"]

KEYRING_ENTRY_TYPE = "mpp-client/keyring-key/v1"
_FIELDS = frozenset({"type", "kind", "did", "seed"})
_MAX_ENTRY = 4096
_MISSING = 'the OS keyring needs the keyring package: pip install "mpp-client[keyring]"'


def _backend(backend: KeyringBackend | None) -> KeyringBackend:
    try:
        import keyring  # noqa: PLC0415 - optional extra
    except ImportError:
        raise SignerError(_MISSING) from None
    if backend is not None:
        return backend
    try:
        return keyring.get_keyring()
    except Exception as exc:
        raise SignerError(f"no OS keyring is available ({type(exc).__name__})") from exc


def _where(service: str, name: str, backend: KeyringBackend) -> str:
    return f"{service!r}/{name!r} in the keyring ({type(backend).__name__})"


def _check_names(service: object, name: object) -> None:
    for what, value in (("service", service), ("name", name)):
        if not isinstance(value, str) or not value or len(value) > 256:
            raise ValueError(f"the keyring {what} must be a non-empty string (at most 256)")


def _get(service: str, name: str, backend: KeyringBackend) -> str | None:
    try:
        return backend.get_password(service, name)
    except Exception as exc:  # backends raise their own types (D-Bus, Win32, locked)
        raise SignerError(
            f"cannot read {_where(service, name, backend)} ({type(exc).__name__})"
        ) from exc


def store_seed(
    service: str,
    name: str,
    seed: bytes,
    *,
    kind: Kind,
    did: str,
    overwrite: bool,
    backend: KeyringBackend | None,
) -> None:
    """Store the ``kind`` key ``seed`` (whose identity is ``did``) under ``service``/``name``.

    An existing entry is kept (``KeystoreError``) unless ``overwrite``:
    replacing a key by mistake loses an identity.
    """
    _check_names(service, name)
    store = _backend(backend)
    if not overwrite and _get(service, name, store) is not None:
        raise KeystoreError(
            f"{_where(service, name, store)} already holds a secret; "
            "pass overwrite=True to replace it"
        )
    entry = {"type": KEYRING_ENTRY_TYPE, "kind": kind, "did": did, "seed": b64url_encode(seed)}
    try:
        store.set_password(service, name, canonical_json(entry).decode("ascii"))
    except Exception as exc:
        raise SignerError(
            f"cannot write {_where(service, name, store)} ({type(exc).__name__})"
        ) from exc


def load_seed(
    service: str, name: str, kind: Kind, *, backend: KeyringBackend | None
) -> tuple[bytes, str]:
    """The seed and ``did`` of the ``kind`` key under ``service``/``name``.

    ``KeystoreError`` when there is none, it is not one of ours, or it holds
    the other kind of key; :class:`SignerError` when the keyring fails.
    """
    _check_names(service, name)
    store = _backend(backend)
    where = _where(service, name, store)
    value = _get(service, name, store)
    if value is None:
        raise KeystoreError(f"no key under {where}")

    def bad(reason: str) -> KeystoreError:
        return KeystoreError(f"the entry {where} is not an mpp-client key: {reason}")

    if not isinstance(value, str) or len(value) > _MAX_ENTRY:
        raise bad("not a short string")
    try:
        entry: Any = loads_json(value)
    except Base64Error:
        raise bad("not JSON") from None
    if not isinstance(entry, dict) or set(entry) != _FIELDS:
        raise bad(f"expected exactly the fields {sorted(_FIELDS)}")
    if entry["type"] != KEYRING_ENTRY_TYPE:
        raise bad(f"'type' must be {KEYRING_ENTRY_TYPE!r}")
    if entry["kind"] not in ("agent", "owner") or not isinstance(entry["did"], str):
        raise bad("'kind' must be 'agent' or 'owner' and 'did' a string")
    if entry["kind"] != kind:
        raise KeystoreError(f"{where} holds an {entry['kind']} key, not an {kind} key")
    try:
        seed = b64url_decode(entry["seed"]) if isinstance(entry["seed"], str) else b""
    except Base64Error:
        seed = b""
    if len(seed) != SEED_BYTES:
        raise bad("'seed' must be 32 bytes of base64url")
    did: str = entry["did"]
    return seed, did
