"""The in-process Ed25519 signer: the default, and what keystores and keyrings load into.

The seed sits in this process's memory (inside a pynacl ``SigningKey``). It
leaves the object only to be sealed by a key store: :meth:`seal` (the
encrypted keystore file) and :meth:`store_in_keyring` (the OS keyring). There
is no method that returns it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

import nacl.signing

from .._didkey import did_key_from_public
from ._keyring import store_seed
from ._keystore import SEED_BYTES, Kind, seal_seed
from ._signer import Ed25519Signer, Location, check_message

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

__all__ = ["LocalEd25519Signer", "LocalLocation"]

#: Where an in-process key came from (``pkcs11`` keys never enter the process).
LocalLocation = Literal["process", "keystore", "keyring"]


class LocalEd25519Signer(Ed25519Signer):
    """An Ed25519 key held in this process's memory.

    ``location`` records where it is kept at rest: ``"process"`` for a key
    made here (:meth:`generate`, :meth:`from_seed`), ``"keystore"`` or
    ``"keyring"`` for one loaded from there. Either way it signs in memory,
    so it is never :attr:`~Ed25519Signer.hardware`.
    """

    __slots__ = ("_did", "_key", "_location")

    def __init__(
        self, signing_key: nacl.signing.SigningKey, *, location: LocalLocation = "process"
    ) -> None:
        if not isinstance(signing_key, nacl.signing.SigningKey):
            raise TypeError("expected a nacl.signing.SigningKey")
        if location not in ("process", "keystore", "keyring"):
            raise ValueError("an in-process key comes from the process, a keystore or a keyring")
        self._key = signing_key
        self._did = did_key_from_public(bytes(signing_key.verify_key))
        self._location: LocalLocation = location

    @classmethod
    def generate(cls) -> LocalEd25519Signer:
        """A fresh random key."""
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes, *, location: LocalLocation = "process") -> LocalEd25519Signer:
        """The key for a 32-byte Ed25519 seed (deterministic: same seed, same ``did``)."""
        if not isinstance(seed, bytes | bytearray) or len(seed) != SEED_BYTES:
            raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes")
        return cls(nacl.signing.SigningKey(bytes(seed)), location=location)

    @property
    def location(self) -> Location:
        return self._location

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    @property
    def did(self) -> str:
        return self._did

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(check_message(message)).signature

    # -- sealing into a key store ------------------------------------------------

    def seal(
        self,
        path: str | os.PathLike[str],
        passphrase: str,
        *,
        kind: Kind,
        overwrite: bool,
        opslimit: int,
        memlimit: int,
    ) -> None:
        """Write this key to an encrypted keystore file (see ``_keystore``)."""
        seal_seed(
            path,
            bytes(self._key),
            kind=kind,
            did=self._did,
            passphrase=passphrase,
            overwrite=overwrite,
            opslimit=opslimit,
            memlimit=memlimit,
        )

    def store_in_keyring(
        self,
        service: str,
        name: str,
        *,
        kind: Kind,
        overwrite: bool,
        backend: KeyringBackend | None,
    ) -> None:
        """Put this key into the OS keyring under ``service``/``name`` (see ``_keyring``)."""
        store_seed(
            service,
            name,
            bytes(self._key),
            kind=kind,
            did=self._did,
            overwrite=overwrite,
            backend=backend,
        )
