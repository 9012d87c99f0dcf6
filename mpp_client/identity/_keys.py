"""The agent's and the owner's Ed25519 keys, named by their ``did:key``.

Each wraps an :class:`~mpp_client.identity.Ed25519Signer`: by default a key
in this process, or one in the OS keyring or a PKCS#11 token. The private
half never leaves the object by accident: ``repr()`` and ``str()`` show the
class, the ``did`` and where the key lives only, pickling is refused (so a
key cannot ride along into a log, a cache or a task queue), and no error
message contains it. The only ways to persist an in-process key are
:meth:`save`, which encrypts it, and the OS keyring.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, Self

import nacl.signing

from .._didkey import public_from_did_key
from .._exceptions import KeystoreError
from ._keyring import load_seed
from ._keystore import KDF_MEMLIMIT_MODERATE, KDF_OPSLIMIT_MODERATE, Kind, open_keystore
from ._local import LocalEd25519Signer
from ._signer import Ed25519Signer, Location, SignerError, check_message, verify_signature

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

__all__ = ["AgentKey", "OwnerKey"]


class _SigningIdentity:
    """An Ed25519 identity: a ``did:key`` and the signer that proves it.

    Build one with :meth:`generate`, :meth:`from_seed` or :meth:`load` (keys
    in this process), or around any :class:`Ed25519Signer` (a keyring or
    PKCS#11 key, or your own). The constructor also accepts a
    ``nacl.signing.SigningKey`` for interoperation. Instances are immutable,
    compare equal when they hold the same key, and copy to themselves.
    """

    __slots__ = ("_did", "_signer")
    _kind: ClassVar[Kind]

    def __init__(self, signer: Ed25519Signer | nacl.signing.SigningKey) -> None:
        if isinstance(signer, nacl.signing.SigningKey):
            signer = LocalEd25519Signer(signer)
        if not isinstance(signer, Ed25519Signer):
            raise TypeError("expected an Ed25519Signer (or a nacl.signing.SigningKey)")
        self._signer = signer
        # Read once: the identity must not change under the caller's feet.
        self._did = signer.did

    @classmethod
    def generate(cls) -> Self:
        """A fresh random key, in this process."""
        return cls(LocalEd25519Signer.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Self:
        """The key for a 32-byte Ed25519 seed (deterministic: same seed, same ``did``)."""
        return cls(LocalEd25519Signer.from_seed(seed))

    @property
    def did(self) -> str:
        """The public identity, ``did:key:z6Mk...``."""
        return self._did

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        return public_from_did_key(self._did)

    @property
    def signer(self) -> Ed25519Signer:
        """The signer behind this identity (it never hands out its key either)."""
        return self._signer

    @property
    def location(self) -> Location:
        """Where the key is kept at rest: ``process``, ``keystore``, ``keyring`` or ``pkcs11``."""
        return self._signer.location

    @property
    def hardware(self) -> bool:
        """True when hardware holds the key and never exports it."""
        return self._signer.hardware

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature over ``message``.

        Every signature made for this identity (records, audit events,
        checkpoints, mandates) comes through here. A signer outside this
        process is checked on every call: a token that answers with a
        signature that does not verify (a wrong key, a wrong mechanism) is a
        :class:`SignerError`, never a bad signature in an audit log.
        """
        data = check_message(message)
        signer = self._signer
        if isinstance(signer, LocalEd25519Signer):
            return signer.sign(data)
        try:
            signature = signer.sign(data)
        except SignerError:
            raise
        except Exception as exc:
            raise SignerError(
                f"the {signer.location} signer for {self._did} failed ({type(exc).__name__})"
            ) from exc
        if not isinstance(signature, bytes) or not verify_signature(self._did, data, signature):
            raise SignerError(
                f"the {signer.location} signer for {self._did} returned a signature "
                "that does not verify under its public key"
            )
        return signature

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

        Only a key held in this process can be saved: a PKCS#11 key never
        leaves its token (``KeystoreError``).
        """
        self._local("written to a keystore file").seal(
            path,
            passphrase,
            kind=self._kind,
            overwrite=overwrite,
            opslimit=opslimit,
            memlimit=memlimit,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: str) -> Self:
        """Read and decrypt a key written by :meth:`save` (``location`` is ``"keystore"``).

        ``KeystoreError`` when the file cannot be read, is readable or writable
        by group or others (POSIX), holds the other kind of key, was altered,
        or the passphrase is wrong.
        """
        seed, did = open_keystore(path, passphrase, cls._kind)
        key = cls(LocalEd25519Signer.from_seed(seed, location="keystore"))
        if key.did != did:  # pragma: no cover - only a buggy writer gets here
            raise KeystoreError(
                f"keystore {os.fspath(path)!r} holds a key that does not match its did"
            )
        return key

    def save_to_keyring(
        self,
        service: str,
        name: str,
        *,
        overwrite: bool = False,
        backend: KeyringBackend | None = None,
    ) -> None:
        """Store the key in the OS keyring under ``service``/``name``.

        ``backend`` defaults to ``keyring.get_keyring()`` (the platform's, or
        what ``keyring.set_keyring`` chose). An existing entry is kept
        (``KeystoreError``) unless ``overwrite=True``. Needs the ``keyring``
        extra. Only a key held in this process can be stored.
        """
        self._local("stored in a keyring").store_in_keyring(
            service, name, kind=self._kind, overwrite=overwrite, backend=backend
        )

    @classmethod
    def from_keyring(
        cls, service: str, name: str, *, backend: KeyringBackend | None = None
    ) -> Self:
        """The key stored by :meth:`save_to_keyring` (``location`` is ``"keyring"``).

        ``KeystoreError`` when there is no such entry, it holds the other
        kind of key or was altered; :class:`SignerError` when the keyring
        itself fails (locked, no backend, no extra installed).
        """
        seed, did = load_seed(service, name, cls._kind, backend=backend)
        key = cls(LocalEd25519Signer.from_seed(seed, location="keyring"))
        if key.did != did:
            raise KeystoreError(
                f"the keyring entry {service!r}/{name!r} holds a key that does not match its did"
            )
        return key

    def _local(self, action: str) -> LocalEd25519Signer:
        if not isinstance(self._signer, LocalEd25519Signer):
            raise KeystoreError(
                f"{self!r} cannot be {action}: its key lives in {self.location} and never leaves it"
            )
        return self._signer

    # -- hygiene -----------------------------------------------------------

    def __repr__(self) -> str:
        where = "" if self.location == "process" else f", location={self.location!r}"
        return f"{type(self).__name__}(did={self._did!r}{where})"

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
