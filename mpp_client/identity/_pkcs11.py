"""Keys inside a PKCS#11 token (an HSM, a smart card, SoftHSM), through python-pkcs11.

The token generates the key pair, keeps the private half (``CKA_SENSITIVE``,
not ``CKA_EXTRACTABLE``) and signs on request; this process only ever sees
the public key and the signatures::

    token = Pkcs11Token("/usr/lib/softhsm/libsofthsm2.so", token_label="agents", pin=pin)
    agent = AgentKey(token.generate_ed25519("agent-1"))    # or token.ed25519("agent-1")
    wallet = token.generate_secp256k1("wallet-1")          # a Secp256k1Signer

* Ed25519 uses ``CKK_EC_EDWARDS`` keys (``CKA_EC_PARAMS`` the Ed25519 OID
  1.3.101.112) and ``CKM_EDDSA`` without parameters: pure Ed25519, so the
  signatures verify with :func:`~mpp_client.identity.verify_signature` like
  any other.
* secp256k1 uses ``CKK_EC`` keys on the named curve 1.3.132.0.10 and
  ``CKM_ECDSA`` over the 32-byte digest. The token answers ``r || s``; the
  signer makes it an Ethereum signature (low ``s``, recovery id found by
  recovering the address), see ``_ethereum.recoverable_signature``.

One logged-in session per :class:`Pkcs11Token`, shared by its signers and
used one operation at a time (a lock), since PKCS#11 sessions are not safe
for concurrent operations. The PIN is used to log in and not kept. PKCS#11
logs in per process: a second ``Pkcs11Token`` on a token this process is
already logged in to shares that login (its PIN is not checked again).

``hardware`` is True only for a key the token will not export (sensitive,
never extractable) *and* a token that is hardware: by default, a slot that
reports ``CKF_HW_SLOT``. SoftHSM does not (it is software), so its keys say
``hardware=False`` unless the operator vouches for the token with
``hardware=True``.

Needs the ``pkcs11`` extra (``pip install "mpp-client[pkcs11]"``), imported
when a token is opened.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from typing import TYPE_CHECKING, Any, NoReturn

from ._ethereum import address_of, recoverable_signature
from ._signer import (
    Ed25519Signer,
    Location,
    RecoverableSignature,
    Secp256k1Signer,
    SignerError,
    check_digest,
    check_message,
)

if TYPE_CHECKING:
    from pkcs11 import Session

__all__ = ["Pkcs11Ed25519Signer", "Pkcs11Secp256k1Signer", "Pkcs11Token"]

_MISSING = 'PKCS#11 tokens need python-pkcs11: pip install "mpp-client[pkcs11]"'
#: DER of the Ed25519 OID (RFC 8410), what PKCS#11 3.0 puts in CKA_EC_PARAMS...
_ED25519_OID = bytes.fromhex("06032b6570")
#: ...or the PrintableString "edwards25519" that earlier drafts (and some tokens) use.
_ED25519_NAME = b"\x13\x0c" + b"edwards25519"
#: DER of the secp256k1 OID 1.3.132.0.10.
_SECP256K1_OID = bytes.fromhex("06052b8104000a")
_MAX_LABEL = 128


def _fail(action: str, exc: BaseException) -> NoReturn:
    # PKCS#11 errors carry only a return-value name; the class name says it all.
    raise SignerError(f"PKCS#11: {action} failed ({type(exc).__name__})") from exc


def _point(raw: object, length: int) -> bytes:
    """The public point from CKA_EC_POINT: DER OCTET STRING (the standard) or raw."""
    if not isinstance(raw, bytes):
        raise SignerError("PKCS#11: the token returned no public key")
    if len(raw) == length + 2 and raw[0] == 0x04 and raw[1] == length:
        return raw[2:]
    if len(raw) == length:
        return raw
    raise SignerError("PKCS#11: the token's public key has an unexpected encoding")


class Pkcs11Token:
    """A logged-in session on one PKCS#11 token, and the keys in it.

    ``library`` is the token's PKCS#11 module (``libsofthsm2.so``, a vendor's
    ``.so``); ``token_label`` names the token; ``pin`` is the user PIN.
    ``hardware`` overrides the slot's own ``CKF_HW_SLOT`` claim (see the
    module notes). Close it (or use ``with``) when done; its signers then
    refuse to sign. Raises :class:`SignerError` (naming the token, never
    the PIN) when the module, the token or the login fails.
    """

    def __init__(
        self,
        library: str | os.PathLike[str],
        *,
        token_label: str,
        pin: str,
        hardware: bool | None = None,
    ) -> None:
        try:
            import pkcs11  # noqa: PLC0415 - optional extra
            from pkcs11.constants import SlotFlag  # noqa: PLC0415
            from pkcs11.exceptions import PKCS11Error  # noqa: PLC0415
        except ImportError:
            raise SignerError(_MISSING) from None
        if not isinstance(token_label, str) or not token_label:
            raise ValueError("token_label must be a non-empty string")
        if not isinstance(pin, str) or not pin:
            raise ValueError("pin must be a non-empty string")
        self._label = token_label
        self._library = os.fspath(library)
        self._lock = threading.Lock()
        try:
            lib = pkcs11.lib(self._library)
        except (PKCS11Error, OSError, RuntimeError) as exc:
            _fail(f"loading the module {self._library!r}", exc)
        try:
            token = lib.get_token(token_label=token_label)
            self._session: Session | None = _log_in(token, pin)
        except PKCS11Error as exc:
            _fail(f"opening token {token_label!r}", exc)
        slot_is_hardware = bool(token.slot.flags & SlotFlag.HW_SLOT)
        self._hardware = slot_is_hardware if hardware is None else bool(hardware)

    @property
    def label(self) -> str:
        return self._label

    @property
    def hardware(self) -> bool:
        """Whether this token counts as hardware (the slot's claim, or the caller's)."""
        return self._hardware

    # -- keys -----------------------------------------------------------------------

    def generate_ed25519(self, label: str) -> Pkcs11Ed25519Signer:
        """Generate a non-extractable Ed25519 key pair in the token, stored under ``label``."""
        return Pkcs11Ed25519Signer(self, self._generate("EC_EDWARDS", _ED25519_OID, label))

    def generate_secp256k1(self, label: str) -> Pkcs11Secp256k1Signer:
        """Generate a non-extractable secp256k1 key pair in the token, stored under ``label``."""
        return Pkcs11Secp256k1Signer(self, self._generate("EC", _SECP256K1_OID, label))

    def ed25519(self, label: str) -> Pkcs11Ed25519Signer:
        """The Ed25519 key stored in the token under ``label``."""
        return Pkcs11Ed25519Signer(self, self._find("EC_EDWARDS", label))

    def secp256k1(self, label: str) -> Pkcs11Secp256k1Signer:
        """The secp256k1 key stored in the token under ``label``."""
        return Pkcs11Secp256k1Signer(self, self._find("EC", label))

    def _generate(self, key_type: str, params: bytes, label: str) -> tuple[Any, Any, str]:
        from pkcs11 import Attribute, KeyType, MechanismFlag  # noqa: PLC0415
        from pkcs11.exceptions import PKCS11Error  # noqa: PLC0415

        _check_label(label)
        with self._lock:
            session = self._open_session()
            if any(True for _ in session.get_objects({Attribute.LABEL: label})):
                raise SignerError(
                    f"PKCS#11: token {self._label!r} already holds an object labelled {label!r}"
                )
            try:
                public, private = session.generate_keypair(
                    KeyType[key_type],
                    store=True,
                    label=label,
                    id=secrets.token_bytes(16),
                    capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
                    public_template={Attribute.EC_PARAMS: params},
                    private_template={
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.PRIVATE: True,
                    },
                )
            except PKCS11Error as exc:
                _fail(f"generating a {key_type} key {label!r} in token {self._label!r}", exc)
        return public, private, label

    def _find(self, key_type: str, label: str) -> tuple[Any, Any, str]:
        from pkcs11 import KeyType, ObjectClass  # noqa: PLC0415
        from pkcs11.exceptions import NoSuchKey, PKCS11Error  # noqa: PLC0415

        _check_label(label)
        kind = KeyType[key_type]
        with self._lock:
            session = self._open_session()
            try:
                private = session.get_key(ObjectClass.PRIVATE_KEY, kind, label=label)
                public = session.get_key(ObjectClass.PUBLIC_KEY, kind, label=label)
            except NoSuchKey:
                raise SignerError(
                    f"PKCS#11: token {self._label!r} has no {key_type} key pair labelled {label!r}"
                ) from None
            except PKCS11Error as exc:
                _fail(f"finding key {label!r} in token {self._label!r}", exc)
        return public, private, label

    def _open_session(self) -> Session:
        if self._session is None:
            raise SignerError(f"PKCS#11: token {self._label!r} was closed")
        return self._session

    def _sign(self, private: Any, data: bytes, mechanism: str, label: str) -> bytes:
        """Have the token sign ``data`` with ``private`` (one operation at a time)."""
        from pkcs11 import Mechanism  # noqa: PLC0415
        from pkcs11.exceptions import PKCS11Error  # noqa: PLC0415

        with self._lock:
            self._open_session()
            try:
                return bytes(private.sign(data, mechanism=Mechanism[mechanism]))
            except PKCS11Error as exc:
                _fail(f"signing with key {label!r} in token {self._label!r}", exc)

    def close(self) -> None:
        """Log out and close the session; the signers it handed out stop signing."""
        from pkcs11.exceptions import PKCS11Error  # noqa: PLC0415

        with self._lock:
            session, self._session = self._session, None
            if session is not None:
                # Already gone (the token was removed): nothing is left to close.
                with contextlib.suppress(PKCS11Error):
                    session.close()

    def __enter__(self) -> Pkcs11Token:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "" if self._session is not None else ", closed"
        return f"Pkcs11Token(token={self._label!r}, library={self._library!r}{state})"

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("a PKCS#11 session cannot be pickled")


def _log_in(token: Any, pin: str) -> Session:
    """A read-write session on ``token``, logged in as its user.

    PKCS#11 logs in per application, not per session: when this process is
    already logged in to the token (another :class:`Pkcs11Token` on it), the
    new session shares that login and the PIN is not checked again.
    """
    from pkcs11.exceptions import UserAlreadyLoggedIn  # noqa: PLC0415

    try:
        session: Session = token.open(rw=True, user_pin=pin)
    except UserAlreadyLoggedIn:
        session = token.open(rw=True)
    return session


def _check_label(label: object) -> None:
    if not isinstance(label, str) or not label or len(label) > _MAX_LABEL:
        raise ValueError(f"a key label is a non-empty string of at most {_MAX_LABEL} characters")


def _sealed(private: Any) -> bool:
    """Whether the token says the private key can never leave it."""
    from pkcs11 import Attribute  # noqa: PLC0415
    from pkcs11.exceptions import PKCS11Error  # noqa: PLC0415

    try:
        return (
            private[Attribute.SENSITIVE] is True
            and private[Attribute.EXTRACTABLE] is False
            and private[Attribute.NEVER_EXTRACTABLE] is True
        )
    except PKCS11Error:
        return False


def _params(public: Any, label: str) -> bytes:
    from pkcs11 import Attribute  # noqa: PLC0415
    from pkcs11.exceptions import PKCS11Error  # noqa: PLC0415

    try:
        return bytes(public[Attribute.EC_PARAMS])
    except PKCS11Error as exc:
        _fail(f"reading the curve of key {label!r}", exc)


def _ec_point(public: Any, label: str) -> Any:
    from pkcs11 import Attribute  # noqa: PLC0415
    from pkcs11.exceptions import PKCS11Error  # noqa: PLC0415

    try:
        return public[Attribute.EC_POINT]
    except PKCS11Error as exc:
        _fail(f"reading the public key {label!r}", exc)


class _TokenKey:
    """What a key held in a token is, whichever its curve: where it lives, and its label.

    ``hardware`` only when the token is vouched for as hardware and the key is
    sealed in it (sensitive, never extractable).
    """

    __slots__ = ("_hardware", "_label", "_private", "_token")
    _token: Pkcs11Token
    _private: Any
    _label: str
    _hardware: bool

    def _hold(self, token: Pkcs11Token, private: Any, label: str) -> None:
        self._token = token
        self._private = private
        self._label = label
        self._hardware = token.hardware and _sealed(private)

    @property
    def location(self) -> Location:
        return "pkcs11"

    @property
    def hardware(self) -> bool:
        return self._hardware

    @property
    def label(self) -> str:
        return self._label

    def _where(self) -> str:
        return f"token={self._token.label!r}, label={self._label!r}, hardware={self._hardware}"


class Pkcs11Ed25519Signer(_TokenKey, Ed25519Signer):
    """An Ed25519 key that lives in a PKCS#11 token and signs there (``CKM_EDDSA``)."""

    __slots__ = ("_public",)

    def __init__(self, token: Pkcs11Token, keys: tuple[Any, Any, str]) -> None:
        public, private, label = keys
        if _params(public, label) not in (_ED25519_OID, _ED25519_NAME):
            raise SignerError(f"PKCS#11: key {label!r} is not an Ed25519 key")
        self._hold(token, private, label)
        self._public = _point(_ec_point(public, label), 32)

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        data = check_message(message)
        return self._token._sign(self._private, data, "EDDSA", self._label)

    def __repr__(self) -> str:
        return f"Pkcs11Ed25519Signer(did={self.did!r}, {self._where()})"


class Pkcs11Secp256k1Signer(_TokenKey, Secp256k1Signer):
    """A secp256k1 key that lives in a PKCS#11 token and signs digests there (``CKM_ECDSA``).

    The address is derived from the token's public key (needs eth-account,
    the ``evm`` extra, like every secp256k1 signer here).
    """

    __slots__ = ("_address",)

    def __init__(self, token: Pkcs11Token, keys: tuple[Any, Any, str]) -> None:
        public, private, label = keys
        if _params(public, label) != _SECP256K1_OID:
            raise SignerError(f"PKCS#11: key {label!r} is not on the secp256k1 curve")
        self._hold(token, private, label)
        self._address = address_of(_point(_ec_point(public, label), 65))

    @property
    def address(self) -> str:
        return self._address

    def sign_digest(self, digest: bytes) -> RecoverableSignature:
        data = check_digest(digest)
        raw = self._token._sign(self._private, data, "ECDSA", self._label)
        if len(raw) != 64:
            raise SignerError(f"PKCS#11: key {self._label!r} returned a malformed ECDSA signature")
        r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        return recoverable_signature(data, r, s, self._address)

    def __repr__(self) -> str:
        return f"Pkcs11Secp256k1Signer(address={self._address!r}, {self._where()})"
