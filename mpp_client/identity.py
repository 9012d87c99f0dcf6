"""Ed25519 identities for agents and owners, and an encrypted keystore for them.

An *owner* (a person or the service that runs agents) signs mandates that
delegate a spending policy to an *agent*; the agent signs the records of what
it decided, so the owner can later prove which agent authorized which payment.
Both are Ed25519 keys named by their ``did:key``::

    owner = OwnerKey.generate()
    agent = AgentKey.generate()
    agent.save("agent.key", passphrase)          # encrypted, mode 0600
    agent = AgentKey.load("agent.key", passphrase)

The private half never leaves the object by accident: ``repr()`` and ``str()``
show the class and the ``did`` only, pickling is refused (so a key cannot ride
along into a log, a cache or a task queue), and no error message contains it.
The only way to persist a key is :meth:`save`, which encrypts it.

Keystore file (JSON, mode 0600)::

    {"version": 1, "kind": "agent", "did": "did:key:z6Mk...",
     "kdf": {"name": "argon2id", "opslimit": 3, "memlimit": 268435456, "salt": "<b64url>"},
     "cipher": "xsalsa20poly1305", "nonce": "<b64url>", "ciphertext": "<b64url>"}

The key is derived from the passphrase with Argon2id (memory-hard, so a stolen
file is expensive to brute-force) and the seed is sealed with XSalsa20-Poly1305.
SecretBox has no associated data, so the plaintext is the seed followed by the
canonical JSON of every other header field; loading checks that copy against
the file, which detects a swapped ``did`` or ``kind`` even though the passphrase
is right.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import stat
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, NoReturn, Self

import nacl.exceptions
import nacl.pwhash.argon2id
import nacl.secret
import nacl.signing

from ._didkey import did_key_from_public, public_from_did_key
from ._exceptions import KeystoreError
from .protocol._b64 import Base64Error, b64url_decode, b64url_encode, loads_json
from .protocol._jcs import canonical_json

__all__ = [
    "KDF_MEMLIMIT_INTERACTIVE",
    "KDF_MEMLIMIT_MIN",
    "KDF_MEMLIMIT_MODERATE",
    "KDF_OPSLIMIT_INTERACTIVE",
    "KDF_OPSLIMIT_MIN",
    "KDF_OPSLIMIT_MODERATE",
    "AgentKey",
    "OwnerKey",
    "sign_record",
    "verify_record",
    "verify_signature",
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

_SEED_BYTES = 32
_SIGNATURE_BYTES = 64
_KEYSTORE_VERSION = 1
_KDF_NAME = "argon2id"
_CIPHER = "xsalsa20poly1305"
_KEYSTORE_FIELDS = frozenset({"version", "kind", "did", "kdf", "cipher", "nonce", "ciphertext"})
_KDF_FIELDS = frozenset({"name", "opslimit", "memlimit", "salt"})
_MAX_KEYSTORE_BYTES = 16 * 1024
_RECORD_TYPE = "mpp-client/record/v1"

Kind = Literal["agent", "owner"]


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
        if not isinstance(seed, bytes | bytearray) or len(seed) != _SEED_BYTES:
            raise ValueError(f"an Ed25519 seed is {_SEED_BYTES} bytes")
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
            "kind": self._kind,
            "did": self._did,
            "kdf": {
                "name": _KDF_NAME,
                "opslimit": opslimit,
                "memlimit": memlimit,
                "salt": b64url_encode(salt),
            },
            "cipher": _CIPHER,
        }
        box = nacl.secret.SecretBox(_derive_key(passphrase, salt, opslimit, memlimit))
        plaintext = bytes(self._signing_key) + canonical_json(header)
        ciphertext = box.encrypt(plaintext, nonce).ciphertext
        document = {
            **header,
            "nonce": b64url_encode(nonce),
            "ciphertext": b64url_encode(ciphertext),
        }
        write_keystore(path, document, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: str) -> Self:
        """Read and decrypt a key written by :meth:`save`.

        ``KeystoreError`` when the file cannot be read, is readable or writable
        by group or others (POSIX), holds the other kind of key, was altered,
        or the passphrase is wrong.
        """
        if not isinstance(passphrase, str):
            raise TypeError("passphrase must be a str")
        name = repr(os.fspath(path))
        raw = read_keystore(path, _MAX_KEYSTORE_BYTES)
        header, nonce, ciphertext, salt = _parse_keystore(raw, name)
        if header["kind"] != cls._kind:
            raise KeystoreError(
                f"keystore {name} holds an {header['kind']} key, not an {cls._kind} key"
            )
        kdf = header["kdf"]
        box = nacl.secret.SecretBox(_derive_key(passphrase, salt, kdf["opslimit"], kdf["memlimit"]))
        try:
            plaintext = box.decrypt(ciphertext, nonce)
        except nacl.exceptions.CryptoError:
            raise KeystoreError(
                f"cannot decrypt keystore {name}: wrong passphrase, or the file was altered"
            ) from None
        seed, bound = plaintext[:_SEED_BYTES], plaintext[_SEED_BYTES:]
        if not hmac.compare_digest(bound, canonical_json(header)):
            raise KeystoreError(
                f"keystore {name} was altered: its header does not match the encrypted copy"
            )
        key = cls(nacl.signing.SigningKey(seed))
        if key.did != header["did"]:  # pragma: no cover - only a buggy writer gets here
            raise KeystoreError(f"keystore {name} holds a key that does not match its did")
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


# -- signatures -------------------------------------------------------------


def verify_signature(did: str, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``did``'s Ed25519 signature over ``message``.

    Returns False (never raises) for anything else: a malformed ``did``, a
    signature of the wrong length, or arguments of the wrong type. Callers
    then have one branch, and a bad input can never be mistaken for a pass.
    """
    if not _is_bytes(message) or not _is_bytes(signature) or len(signature) != _SIGNATURE_BYTES:
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


def _record_message(record: Mapping[str, Any]) -> bytes:
    # The type tag keeps a record signature from ever passing as a signature
    # over something else the same key signs (a voucher, another version).
    return canonical_json({"type": _RECORD_TYPE, "record": record})


def sign_record(agent: AgentKey, record: Mapping[str, Any]) -> str:
    """The agent's signature over a decision or ledger record, as unpadded base64url.

    What is signed is the RFC 8785 canonical JSON of
    ``{"type": "mpp-client/record/v1", "record": record}``, so any party can
    re-serialize the record and check it. ``record`` must be JSON-representable
    (``TypeError``/``ValueError`` otherwise); keep amounts as strings.
    """
    if not isinstance(agent, AgentKey):
        raise TypeError("records are signed with an AgentKey")
    if not isinstance(record, Mapping):
        raise TypeError("a record is a JSON object (a Mapping)")
    return b64url_encode(agent.sign(_record_message(record)))


def verify_record(did: str, record: Mapping[str, Any], signature: str) -> bool:
    """True when ``signature`` is ``did``'s :func:`sign_record` signature over ``record``.

    False (never an exception) for a tampered record, another signer, a
    malformed signature string or a record that is not JSON-representable.
    """
    try:
        if not isinstance(record, Mapping):
            raise TypeError("not a Mapping")
        message = _record_message(record)
        raw = b64url_decode(signature)
    except (TypeError, ValueError):
        return False
    return verify_signature(did, message, raw)


# -- keystore internals -----------------------------------------------------


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


# -- files (shared with mpp_client.mandate) ----------------------------------


def _write_atomically(path: Path, data: bytes, *, private: bool, overwrite: bool) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new, never half.

    ``private`` files are created 0600 (and forced to it, whatever the umask);
    others get 0644 less the umask. Without ``overwrite`` an existing ``path``
    raises ``FileExistsError`` and is left alone.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o600 if private else 0o644)
    try:
        try:
            if private and hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            _place_without_clobbering(tmp, path)
    finally:
        # Gone already after a successful rename; otherwise do not leave it behind.
        tmp.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def _place_without_clobbering(tmp: Path, path: Path) -> None:
    try:
        # link() fails if ``path`` exists: no window in which another writer's
        # file could be replaced between a check and the rename.
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        # Filesystems without hard links: check, then rename (a tiny race).
        if os.path.lexists(path):
            raise FileExistsError(path) from None
        os.replace(tmp, path)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable on POSIX; not possible (nor needed) elsewhere.
    if os.name != "posix":  # pragma: no cover
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _read_limited(path: Path, limit: int) -> tuple[bytes, int]:
    """A regular file's bytes (at most ``limit``) and its permission bits.

    ``ValueError`` when it is not a regular file or is larger than ``limit``;
    the mode is taken from the open descriptor, so it describes what was read.
    """
    with path.open("rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data, stat.S_IMODE(info.st_mode)


def write_keystore(
    path: str | os.PathLike[str], document: Mapping[str, Any], *, overwrite: bool
) -> None:
    """Write an encrypted key document as JSON, atomically, mode 0600.

    Shared by every keystore format (ours, and the Web3 Secret Storage one the
    EVM wallet writes) so they refuse to clobber and report errors alike.
    """
    data = json.dumps(dict(document), indent=2).encode("ascii") + b"\n"
    try:
        _write_atomically(Path(path), data, private=True, overwrite=overwrite)
    except FileExistsError:
        raise KeystoreError(
            f"keystore {os.fspath(path)!r} already exists; pass overwrite=True to replace it"
        ) from None
    except OSError as exc:
        raise KeystoreError(
            f"cannot write keystore {os.fspath(path)!r}: {exc.strerror or type(exc).__name__}"
        ) from exc


def read_keystore(path: str | os.PathLike[str], limit: int) -> bytes:
    """Read a key file of at most ``limit`` bytes that only its owner can read."""
    name = repr(os.fspath(path))
    try:
        raw, mode = _read_limited(Path(path), limit)
    except OSError as exc:
        raise KeystoreError(
            f"cannot read keystore {name}: {exc.strerror or type(exc).__name__}"
        ) from exc
    except ValueError as exc:
        raise KeystoreError(f"cannot read keystore {name}: {exc}") from None
    if os.name == "posix" and mode & 0o077:
        raise KeystoreError(
            f"keystore {name} is accessible by group or others (mode {mode:04o}); "
            "restrict it with chmod 600"
        )
    return raw
