"""The agent's and the owner's Ed25519 keys, named by their ``did:key``.

The private half never leaves the object by accident: ``repr()`` and ``str()``
show the class and the ``did`` only, pickling is refused (so a key cannot ride
along into a log, a cache or a task queue), and no error message contains it.
The only way to persist a key is :meth:`save`, which encrypts it.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, NoReturn, Self

import nacl.signing

from .._didkey import did_key_from_public
from .._exceptions import KeystoreError
from ._keystore import (
    KDF_MEMLIMIT_MODERATE,
    KDF_OPSLIMIT_MODERATE,
    SEED_BYTES,
    Kind,
    open_keystore,
    seal_seed,
)

__all__ = ["AgentKey", "OwnerKey"]


class _SigningIdentity:
    """An Ed25519 signing key that is careful not to leak its private half.

    Build one with :meth:`generate`, :meth:`from_seed` or :meth:`load`; the
    constructor also accepts a ``nacl.signing.SigningKey`` for interoperation.
    Instances are immutable, compare equal when they hold the same key, and
    copy to themselves.
    """

    __slots__ = ("_did", "_signing_key")
    _kind: ClassVar[Kind]

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        if not isinstance(signing_key, nacl.signing.SigningKey):
            raise TypeError("expected a nacl.signing.SigningKey")
        self._signing_key = signing_key
        self._did = did_key_from_public(bytes(signing_key.verify_key))

    @classmethod
    def generate(cls) -> Self:
        """A fresh random key."""
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Self:
        """The key for a 32-byte Ed25519 seed (deterministic: same seed, same ``did``)."""
        if not isinstance(seed, bytes | bytearray) or len(seed) != SEED_BYTES:
            raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes")
        return cls(nacl.signing.SigningKey(bytes(seed)))

    @property
    def did(self) -> str:
        """The public identity, ``did:key:z6Mk...``."""
        return self._did

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        return bytes(self._signing_key.verify_key)

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature over ``message``."""
        if not isinstance(message, bytes | bytearray):
            raise TypeError("sign() takes bytes")
        return self._signing_key.sign(bytes(message)).signature

    # -- persistence -------------------------------------------------------

    def save(
        self,
        path: str | os.PathLike[str],
        passphrase: str,
        *,
        overwrite: bool = False,
        opslimit: int = KDF_OPSLIMIT_MODERATE,
        memlimit: int = KDF_MEMLIMIT_MODERATE,
    ) -> None:
        """Encrypt the key under ``passphrase`` and write it to ``path`` (mode 0600).

        The write is atomic: a temporary file in the same directory is written,
        flushed to disk and renamed over ``path``, so a crash never leaves half
        a key file. An existing file is kept (``KeystoreError``) unless
        ``overwrite=True``: replacing a key by mistake loses an identity.

        ``opslimit``/``memlimit`` set the Argon2id cost; the default is pynacl's
        MODERATE (about 256 MiB). Lower it (``KDF_*_INTERACTIVE``, or
        ``KDF_*_MIN`` in tests) only when unlocking must be fast.
        """
        seal_seed(
            path,
            bytes(self._signing_key),
            kind=self._kind,
            did=self._did,
            passphrase=passphrase,
            overwrite=overwrite,
            opslimit=opslimit,
            memlimit=memlimit,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: str) -> Self:
        """Read and decrypt a key written by :meth:`save`.

        ``KeystoreError`` when the file cannot be read, is readable or writable
        by group or others (POSIX), holds the other kind of key, was altered,
        or the passphrase is wrong.
        """
        seed, did = open_keystore(path, passphrase, cls._kind)
        key = cls(nacl.signing.SigningKey(seed))
        if key.did != did:  # pragma: no cover - only a buggy writer gets here
            raise KeystoreError(
                f"keystore {os.fspath(path)!r} holds a key that does not match its did"
            )
        return key

    # -- hygiene -----------------------------------------------------------

    def __repr__(self) -> str:
        return f"{type(self).__name__}(did={self._did!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _SigningIdentity) and type(other) is type(self):
            return self._did == other._did
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._did))

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError(
            f"{type(self).__name__} cannot be pickled: that would write the private key "
            "in the clear; use save() for an encrypted copy"
        )

    def __reduce__(self) -> NoReturn:
        self.__reduce_ex__(None)

    def __getstate__(self) -> NoReturn:
        self.__reduce_ex__(None)


class AgentKey(_SigningIdentity):
    """The agent's key: signs the records of what the agent decided and paid.

    A mandate names the agent by :attr:`did`; the agent proves it is that
    agent by signing with this key.
    """

    __slots__ = ()
    _kind: ClassVar[Kind] = "agent"


class OwnerKey(_SigningIdentity):
    """The owner's key: signs the mandates (and revocation lists) that bind agents.

    Kept apart from :class:`AgentKey` as a type so an agent key cannot issue a
    mandate by mistake, and so an owner keystore cannot be loaded as an agent.
    """

    __slots__ = ()
    _kind: ClassVar[Kind] = "owner"
