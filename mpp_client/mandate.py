"""Mandates: an owner's signed delegation of a spending policy to one agent.

An agent should only spend what someone allowed it to spend. The owner says
so in a mandate: which agent (by ``did:key``), under which policy, from when
until when, signed with the owner's key. The agent (or anyone auditing it)
checks the mandate against the owner keys it trusts before paying::

    mandate = Mandate.issue(owner, agent.did, {"max_per_call": "0.50 USD"},
                            expires_at=now + timedelta(days=30))
    mandate.save("agent.mandate.json")
    ...
    mandate = load_mandate("agent.mandate.json", owner_keys=[owner.did], agent=agent)

What the owner signs is the RFC 8785 canonical JSON of the body, which carries
``"type": "mpp-client/mandate/v1"`` so the signature cannot be replayed as any
other document the same key signs. The file is that body plus ``signature``
(unpadded base64url), and a parsed mandate keeps the body exactly as read, so
verification re-serializes precisely what was signed.

The policy is opaque here: a JSON object that :meth:`mpp_client.Policy.from_mandate`
validates. A mandate is refused as a whole (never partly honored) when it is
malformed, not signed by a trusted owner, issued to another agent, revoked,
not yet valid or expired.

An owner withdraws a mandate before it expires by listing its id in signed
:class:`Revocations`. The list is signed too, so an agent cannot be fed a
forged (say, empty) one; it cannot prove it is the *latest* list, which is what
its ``issued_at`` and :meth:`Revocations.verify`'s ``max_age`` are for.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, NoReturn, Self

from ._didkey import public_from_did_key
from ._exceptions import (
    MandateAgentMismatch,
    MandateError,
    MandateExpired,
    MandateNotYetValid,
    MandateOwnerUntrusted,
    MandateRevoked,
    MandateSignatureInvalid,
    RevocationsInvalid,
)
from .identity import AgentKey, OwnerKey, verify_signature
from .identity._files import read_limited, write_atomically
from .protocol._b64 import Base64Error, b64url_decode, b64url_encode, loads_json
from .protocol._jcs import canonical_json
from .protocol._time import format_rfc3339, parse_rfc3339

__all__ = [
    "MANDATE_TYPE",
    "REVOCATIONS_TYPE",
    "Mandate",
    "Revocations",
    "load_mandate",
]

MANDATE_TYPE = "mpp-client/mandate/v1"
REVOCATIONS_TYPE = "mpp-client/revocations/v1"
#: Generous for a policy with long allowlists, small enough to refuse junk early.
_MAX_DOCUMENT_BYTES = 1024 * 1024
#: Ids end up in logs, file names and revocation lists: a plain token, nothing else.
_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}", re.ASCII)
_DEFAULT_SKEW = timedelta(seconds=5)
_SIGNATURE_BYTES = 64

StrPath = str | os.PathLike[str]


class _SignedDocument:
    """A JSON object signed by the owner it names: what mandates and revocations share.

    Holds the body exactly as signed (normalized through canonical JSON, so an
    issued document and the same document read back from disk are identical)
    and the raw signature. Constructing one checks its shape, not its signature.
    """

    __slots__ = ("_body", "_signature")
    _TYPE: ClassVar[str]
    _FIELDS: ClassVar[frozenset[str]]
    _WHAT: ClassVar[str]
    _ERROR: ClassVar[type[MandateError]]

    def __init__(self, body: Mapping[str, Any], signature: str) -> None:
        if not isinstance(body, Mapping):
            self._malformed("not a JSON object")
        try:
            normal = json.loads(canonical_json(body))
        except (TypeError, ValueError, RecursionError):
            self._malformed("not representable as JSON")
        missing = sorted(self._FIELDS - set(normal))
        extra = sorted(set(normal) - self._FIELDS)
        if missing:
            self._malformed(f"missing field(s) {', '.join(missing)}")
        if extra:
            # Fields this version does not understand are refused, not ignored:
            # an owner's restriction must never be silently dropped.
            self._malformed(f"unexpected field(s) {', '.join(repr(x[:40]) for x in extra[:5])}")
        if normal["type"] != self._TYPE:
            self._malformed(f"'type' must be {self._TYPE!r}")
        if not _is_did_key(normal["owner"]):
            self._malformed("'owner' must be an Ed25519 did:key")
        _check_time(normal, "issued_at", self._malformed)
        if not isinstance(signature, str):
            self._malformed("'signature' must be a string")
        try:
            raw = b64url_decode(signature)
        except Base64Error:
            self._malformed("'signature' must be unpadded base64url")
        if len(raw) != _SIGNATURE_BYTES:
            self._malformed("'signature' must be a 64-byte Ed25519 signature")
        self._check(normal)
        self._body: dict[str, Any] = normal
        self._signature = raw

    def _check(self, body: dict[str, Any]) -> None:
        """Type-specific field checks; call ``self._malformed`` on failure."""

    @classmethod
    def _malformed(cls, reason: str) -> NoReturn:
        raise cls._ERROR(f"malformed {cls._WHAT}: {reason}")

    # -- serialization -----------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Parse the JSON object form (body fields plus ``signature``); does not verify."""
        if not isinstance(data, Mapping):
            cls._malformed("not a JSON object")
        if "signature" not in data:
            cls._malformed("missing field(s) signature")
        body = {key: value for key, value in data.items() if key != "signature"}
        return cls(body, data["signature"])

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """Parse the JSON text form, strictly; does not verify.

        Refuses (with the class's error) anything but one JSON object with
        exactly the expected fields: duplicate keys, NaN, deep nesting,
        unknown fields, wrong types and oversized input included.
        """
        if isinstance(text, bytes | bytearray):
            if len(text) > _MAX_DOCUMENT_BYTES:
                cls._malformed(f"larger than {_MAX_DOCUMENT_BYTES} bytes")
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError:
                cls._malformed("not UTF-8 text")
        if not isinstance(text, str):
            raise TypeError("from_json() takes str or bytes")
        if len(text) > _MAX_DOCUMENT_BYTES:
            cls._malformed(f"larger than {_MAX_DOCUMENT_BYTES} bytes")
        try:
            text.encode("utf-8")  # a lone surrogate could never have been signed
            data = loads_json(text)
        except (UnicodeEncodeError, Base64Error):
            cls._malformed("not a valid JSON document")
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: StrPath) -> Self:
        """Read and parse a file written by :meth:`save`; does not verify."""
        name = repr(os.fspath(path))
        try:
            raw, _mode = read_limited(Path(path), _MAX_DOCUMENT_BYTES)
        except OSError as exc:
            raise cls._ERROR(
                f"cannot read {cls._WHAT} {name}: {exc.strerror or type(exc).__name__}"
            ) from exc
        except ValueError as exc:
            raise cls._ERROR(f"cannot read {cls._WHAT} {name}: {exc}") from None
        return cls.from_json(raw)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object form: the signed body plus ``signature`` (a fresh copy)."""
        return {**copy.deepcopy(self._body), "signature": self.signature}

    def to_json(self) -> str:
        """Canonical JSON text (RFC 8785): byte-identical for equal documents."""
        return canonical_json(self.to_dict()).decode("utf-8")

    def save(self, path: StrPath, *, overwrite: bool = False) -> None:
        """Write :meth:`to_json` to ``path`` atomically.

        An existing file is kept unless ``overwrite=True``. Nothing secret is
        inside, so the file gets the usual 0644 less the umask.
        """
        name = repr(os.fspath(path))
        try:
            write_atomically(
                Path(path),
                self.to_json().encode("utf-8") + b"\n",
                private=False,
                overwrite=overwrite,
            )
        except FileExistsError:
            raise self._ERROR(f"{name} already exists; pass overwrite=True to replace it") from None
        except OSError as exc:
            raise self._ERROR(
                f"cannot write {self._WHAT} {name}: {exc.strerror or type(exc).__name__}"
            ) from exc

    # -- common fields -----------------------------------------------------

    @property
    def owner(self) -> str:
        """The ``did:key`` of the owner who signed it."""
        owner: str = self._body["owner"]
        return owner

    @property
    def issued_at(self) -> datetime:
        return parse_rfc3339(self._body["issued_at"])

    @property
    def signature(self) -> str:
        """The owner's Ed25519 signature, unpadded base64url."""
        return b64url_encode(self._signature)

    def _signed_by_owner(self) -> bool:
        return verify_signature(self.owner, canonical_json(self._body), self._signature)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _SignedDocument) and type(other) is type(self):
            return self._body == other._body and self._signature == other._signature
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self).__name__, canonical_json(self._body), self._signature))


class Mandate(_SignedDocument):
    """An owner's signed grant of a spending policy to one agent, for a time window.

    Build one with :meth:`issue` (owner side) or read one with :meth:`from_json`,
    :meth:`from_dict` or :meth:`from_file`; none of the readers verify, so call
    :meth:`verify` (or use :func:`load_mandate`) before trusting it. Immutable;
    :attr:`policy` returns a copy, so editing it cannot desynchronize the
    mandate from its signature.

    The validity window is ``not_before <= now < expires_at``: like JWT's
    ``nbf``/``exp``, ``expires_at`` is the first instant the mandate is no
    longer valid. ``clock_skew`` widens both ends.
    """

    __slots__ = ()
    _TYPE: ClassVar[str] = MANDATE_TYPE
    _FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"type", "id", "agent", "owner", "policy", "issued_at", "not_before", "expires_at"}
    )
    _WHAT: ClassVar[str] = "mandate"
    _ERROR: ClassVar[type[MandateError]] = MandateError

    def _check(self, body: dict[str, Any]) -> None:
        if not isinstance(body["id"], str) or _ID.fullmatch(body["id"]) is None:
            self._malformed("'id' must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        if not _is_did_key(body["agent"]):
            self._malformed("'agent' must be an Ed25519 did:key")
        if not isinstance(body["policy"], dict):
            self._malformed("'policy' must be a JSON object")
        start = _check_time(body, "not_before", self._malformed)
        end = _check_time(body, "expires_at", self._malformed)
        if end <= start:
            self._malformed("'expires_at' must be after 'not_before'")

    @classmethod
    def issue(
        cls,
        owner: OwnerKey,
        agent: str,
        policy: Mapping[str, Any],
        *,
        expires_at: datetime,
        not_before: datetime | None = None,
        id: str | None = None,
        issued_at: datetime | None = None,
    ) -> Mandate:
        """Sign a mandate granting ``policy`` to the agent ``agent`` (a ``did:key``).

        ``issued_at`` defaults to now (whole seconds), ``not_before`` to
        ``issued_at``, ``id`` to a random 128-bit token. Datetimes must be
        timezone-aware; they are stored as RFC 3339 in UTC. ``policy`` must be
        JSON-representable: write amounts as strings (``"0.50 USD"``), never
        floats. Bad arguments raise ``TypeError``/``ValueError``.
        """
        if not isinstance(owner, OwnerKey):
            raise TypeError("mandates are signed with an OwnerKey")
        if not _is_did_key(agent):
            raise ValueError("agent must be an Ed25519 did:key (pass agent_key.did)")
        if not isinstance(policy, Mapping):
            raise TypeError("policy must be a JSON object (a Mapping)")
        issued = datetime.now(UTC).replace(microsecond=0) if issued_at is None else issued_at
        start = issued if not_before is None else not_before
        for name, moment in (
            ("issued_at", issued),
            ("not_before", start),
            ("expires_at", expires_at),
        ):
            if not isinstance(moment, datetime) or moment.tzinfo is None:
                raise ValueError(f"{name} must be a timezone-aware datetime")
        if expires_at <= start:
            raise ValueError("expires_at must be after not_before")
        mandate_id = secrets.token_urlsafe(16) if id is None else id
        if not isinstance(mandate_id, str) or _ID.fullmatch(mandate_id) is None:
            raise ValueError("id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        body = {
            "type": MANDATE_TYPE,
            "id": mandate_id,
            "owner": owner.did,
            "agent": agent,
            "policy": policy,
            "issued_at": format_rfc3339(issued),
            "not_before": format_rfc3339(start),
            "expires_at": format_rfc3339(expires_at),
        }
        message = canonical_json(body)  # TypeError/ValueError for a non-JSON policy
        return cls(body, b64url_encode(owner.sign(message)))

    @property
    def id(self) -> str:
        """The mandate id, what :class:`Revocations` lists."""
        value: str = self._body["id"]
        return value

    @property
    def agent(self) -> str:
        """The ``did:key`` of the agent this mandate authorizes."""
        value: str = self._body["agent"]
        return value

    @property
    def policy(self) -> dict[str, Any]:
        """The delegated policy, a fresh copy (see ``mpp_client.Policy.from_mandate``)."""
        policy: dict[str, Any] = copy.deepcopy(self._body["policy"])
        return policy

    @property
    def not_before(self) -> datetime:
        return parse_rfc3339(self._body["not_before"])

    @property
    def expires_at(self) -> datetime:
        return parse_rfc3339(self._body["expires_at"])

    def verify(
        self,
        *,
        owner_keys: Iterable[str],
        agent: AgentKey | str,
        now: datetime,
        revoked: Revocations | Iterable[str] | None = None,
        clock_skew: timedelta = _DEFAULT_SKEW,
    ) -> None:
        """Check that this mandate authorizes ``agent`` at ``now``; raise if not.

        ``owner_keys`` are the owner ``did:key`` values the caller trusts.
        ``revoked`` is a signed :class:`Revocations` (which must itself verify
        against ``owner_keys``; any trusted owner may revoke, since revoking
        only ever removes authority) or plain mandate ids the caller vouches
        for. Raises, in this order of checks: :class:`MandateOwnerUntrusted`,
        :class:`MandateSignatureInvalid`, :class:`MandateAgentMismatch`,
        :class:`RevocationsInvalid`, :class:`MandateRevoked`,
        :class:`MandateNotYetValid`, :class:`MandateExpired`.
        """
        trusted = _trusted_dids(owner_keys)
        agent_did = agent.did if isinstance(agent, AgentKey) else agent
        if not isinstance(agent_did, str):
            raise TypeError("agent must be an AgentKey or a did:key string")
        _require_aware(now, "now")
        if clock_skew < timedelta(0):
            raise ValueError("clock_skew cannot be negative")

        if self.owner not in trusted:
            raise MandateOwnerUntrusted(
                f"mandate {self.id!r} is signed by {self.owner}, which is not a trusted owner key"
            )
        if not self._signed_by_owner():
            raise MandateSignatureInvalid(
                f"mandate {self.id!r} does not match its signature: it was altered after "
                f"signing, or was not signed by {self.owner}"
            )
        if self.agent != agent_did:
            raise MandateAgentMismatch(
                f"mandate {self.id!r} was issued to agent {self.agent}, not {agent_did[:128]}"
            )
        if revoked is not None and self.id in _revoked_ids(revoked, trusted):
            raise MandateRevoked(f"mandate {self.id!r} was revoked by its owner")
        if now + clock_skew < self.not_before:
            raise MandateNotYetValid(
                f"mandate {self.id!r} is not valid before {self._body['not_before']}"
            )
        if now - clock_skew >= self.expires_at:
            raise MandateExpired(f"mandate {self.id!r} expired at {self._body['expires_at']}")

    def __repr__(self) -> str:
        return (
            f"Mandate(id={self.id!r}, owner={self.owner!r}, agent={self.agent!r}, "
            f"expires_at={self._body['expires_at']!r})"
        )


class Revocations(_SignedDocument):
    """A signed list of revoked mandate ids.

    Issued and signed by an owner (:meth:`issue`), distributed as a file, and
    passed to :meth:`Mandate.verify` as ``revoked=``. It behaves as a read-only
    set of ids (``mandate.id in revocations``). A list is cumulative: issue a
    new one with every id still revoked, and set ``max_age`` when verifying if
    an old (replayed) list must not be accepted.
    """

    __slots__ = ()
    _TYPE: ClassVar[str] = REVOCATIONS_TYPE
    _FIELDS: ClassVar[frozenset[str]] = frozenset({"type", "owner", "issued_at", "revoked"})
    _WHAT: ClassVar[str] = "revocation list"
    _ERROR: ClassVar[type[MandateError]] = RevocationsInvalid

    def _check(self, body: dict[str, Any]) -> None:
        ids = body["revoked"]
        if not isinstance(ids, list) or not all(
            isinstance(item, str) and _ID.fullmatch(item) for item in ids
        ):
            self._malformed("'revoked' must be a list of mandate ids")
        if len(set(ids)) != len(ids):
            self._malformed("'revoked' lists an id twice")

    @classmethod
    def issue(
        cls, owner: OwnerKey, ids: Iterable[str], *, issued_at: datetime | None = None
    ) -> Revocations:
        """Sign the list of revoked mandate ``ids`` (deduplicated and sorted)."""
        if not isinstance(owner, OwnerKey):
            raise TypeError("revocation lists are signed with an OwnerKey")
        if isinstance(ids, str):
            raise TypeError("ids is a collection of mandate ids; wrap a single id in a list")
        unique = sorted(set(ids))
        for item in unique:
            if not isinstance(item, str) or _ID.fullmatch(item) is None:
                raise ValueError("every id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        issued = datetime.now(UTC).replace(microsecond=0) if issued_at is None else issued_at
        _require_aware(issued, "issued_at")
        body = {
            "type": REVOCATIONS_TYPE,
            "owner": owner.did,
            "issued_at": format_rfc3339(issued),
            "revoked": unique,
        }
        return cls(body, b64url_encode(owner.sign(canonical_json(body))))

    @property
    def ids(self) -> frozenset[str]:
        """The revoked mandate ids."""
        return frozenset(self._body["revoked"])

    def verify(
        self,
        *,
        owner_keys: Iterable[str],
        now: datetime | None = None,
        max_age: timedelta | None = None,
    ) -> None:
        """Raise :class:`RevocationsInvalid` unless a trusted owner signed this list.

        With ``max_age``, also refuse a list issued longer ago than that
        (``now`` defaults to the current time): the defence against an old
        list, validly signed, being replayed to hide a newer revocation.
        """
        trusted = _trusted_dids(owner_keys)
        if self.owner not in trusted:
            raise RevocationsInvalid(
                f"revocation list is signed by {self.owner}, which is not a trusted owner key"
            )
        if not self._signed_by_owner():
            raise RevocationsInvalid(
                "revocation list does not match its signature: it was altered after signing, "
                f"or was not signed by {self.owner}"
            )
        if max_age is not None:
            moment = datetime.now(UTC) if now is None else now
            _require_aware(moment, "now")
            if moment - self.issued_at > max_age:
                raise RevocationsInvalid(
                    f"revocation list issued at {self._body['issued_at']} is older than {max_age}"
                )

    def __contains__(self, mandate_id: object) -> bool:
        return mandate_id in self._body["revoked"]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._body["revoked"]))

    def __len__(self) -> int:
        return len(self._body["revoked"])

    def __repr__(self) -> str:
        return (
            f"Revocations(owner={self.owner!r}, issued_at={self._body['issued_at']!r}, "
            f"count={len(self)})"
        )


def load_mandate(
    path: StrPath,
    *,
    owner_keys: Iterable[str],
    agent: AgentKey | str,
    now: datetime | None = None,
    revoked: Revocations | Iterable[str] | None = None,
    clock_skew: timedelta = _DEFAULT_SKEW,
) -> Mandate:
    """Read the mandate at ``path`` and :meth:`~Mandate.verify` it; return it only if valid.

    The one call an agent needs at start-up. ``now`` defaults to the current
    time. Raises a :class:`~mpp_client.MandateError` subclass otherwise.
    """
    mandate = Mandate.from_file(path)
    mandate.verify(
        owner_keys=owner_keys,
        agent=agent,
        now=datetime.now(UTC) if now is None else now,
        revoked=revoked,
        clock_skew=clock_skew,
    )
    return mandate


# -- helpers ----------------------------------------------------------------


def _is_did_key(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        public_from_did_key(value)
    except ValueError:
        return False
    return True


def _check_time(
    body: Mapping[str, Any], name: str, malformed: Callable[[str], NoReturn]
) -> datetime:
    try:
        return parse_rfc3339(body[name])
    except ValueError:
        malformed(f"{name!r} must be an RFC 3339 date-time with a UTC offset")


def _require_aware(moment: object, name: str) -> None:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")


def _trusted_dids(owner_keys: Iterable[str]) -> frozenset[str]:
    if isinstance(owner_keys, str):
        # A lone did would otherwise be iterated as characters and trust nothing.
        raise TypeError("owner_keys is a collection of did:key strings; wrap one in a list")
    trusted = frozenset(owner_keys)
    if not all(isinstance(did, str) for did in trusted):
        raise TypeError("owner_keys must hold did:key strings")
    return trusted


def _revoked_ids(revoked: Revocations | Iterable[str], trusted: frozenset[str]) -> frozenset[str]:
    if isinstance(revoked, Revocations):
        revoked.verify(owner_keys=trusted)
        return revoked.ids
    if isinstance(revoked, str):
        raise TypeError("revoked is a collection of mandate ids; wrap a single id in a list")
    return frozenset(revoked)
