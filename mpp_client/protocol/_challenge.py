"""The ``WWW-Authenticate: Payment`` challenge: parse, validate, format."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._exceptions import ChallengeError
from ._authparams import RawChallenge, split_challenges
from ._b64 import Base64Error, b64url_decode_json, b64url_encode
from ._jcs import canonical_json
from ._time import format_rfc3339, parse_rfc3339

if TYPE_CHECKING:
    from ._x402 import X402Requirement

__all__ = [
    "AUTHORIZATION",
    "MAX_CHALLENGE_BYTES",
    "PAYMENT_AUTHORIZATION",
    "Challenge",
    "format_challenge",
    "parse_challenges",
]

#: The largest ``WWW-Authenticate`` content (all lines together) we will parse.
MAX_CHALLENGE_BYTES = 16 * 1024

AUTHORIZATION = "Authorization"
PAYMENT_AUTHORIZATION = "Payment-Authorization"
_CREDENTIAL_HEADERS = {
    "authorization": AUTHORIZATION,
    "payment-authorization": PAYMENT_AUTHORIZATION,
}

# Both reference SDKs accept and emit this charset ("x402", "tempo-pay", "vendor:method").
METHOD_RE = re.compile(r"[a-z][a-z0-9:_-]*")
INTENT_RE = re.compile(r"[A-Za-z0-9-]+")
_REQUIRED = ("id", "realm", "method", "intent", "request")
_KNOWN = frozenset({*_REQUIRED, "expires", "digest", "description", "opaque", "header"})


@dataclass(frozen=True, slots=True, eq=False)
class Challenge:
    """One payment offer from a 402 response.

    ``request`` is the decoded JSON object; ``request_b64`` (and
    ``opaque_b64``) are the exact wire strings, echoed byte for byte in the
    credential because the server binds the challenge id to them.
    ``description`` is for display only and never trusted for verification.
    """

    id: str
    realm: str
    method: str
    intent: str
    request: Mapping[str, Any]
    request_b64: str
    expires: datetime | None = None
    expires_raw: str | None = None
    digest: str | None = None
    description: str | None = None
    opaque: Mapping[str, str] | None = None
    opaque_b64: str | None = None
    #: Header the credential goes in; ``None`` means ``Authorization``.
    header: str | None = None
    #: Every parameter as received (lowercased names), unknown ones included.
    params: Mapping[str, str] = field(default_factory=dict)
    #: For an offer read from x402 payment requirements (``method="x402"``): the
    #: requirement, its entry as received included, which the payment echoes.
    #: None for every ``WWW-Authenticate: Payment`` challenge.
    x402: X402Requirement | None = None

    @property
    def key(self) -> str:
        """``method/intent``, the form used by ``Accept-Payment``."""
        return f"{self.method}/{self.intent}"

    @property
    def credential_header(self) -> str:
        """The request header that must carry the credential."""
        return self.header or AUTHORIZATION

    def is_expired(self, now: datetime, *, skew_seconds: float = 0.0) -> bool:
        """True when ``expires`` lies more than ``skew_seconds`` in the past."""
        if self.expires is None:
            return False
        return (now - self.expires).total_seconds() > skew_seconds

    @classmethod
    def create(
        cls,
        *,
        id: str,
        realm: str,
        method: str,
        intent: str,
        request: Mapping[str, Any],
        expires: datetime | None = None,
        digest: str | None = None,
        description: str | None = None,
        opaque: Mapping[str, str] | None = None,
        header: str | None = None,
    ) -> Challenge:
        """Build a challenge from values, encoding ``request``/``opaque`` as JCS base64url."""
        request_b64 = b64url_encode(canonical_json(request))
        opaque_b64 = b64url_encode(canonical_json(opaque)) if opaque is not None else None
        return cls(
            id=id,
            realm=realm,
            method=method,
            intent=intent,
            request=dict(request),
            request_b64=request_b64,
            expires=expires,
            expires_raw=format_rfc3339(expires) if expires is not None else None,
            digest=digest,
            description=description,
            opaque=dict(opaque) if opaque is not None else None,
            opaque_b64=opaque_b64,
            header=header if header and header.lower() != "authorization" else None,
        )

    def to_header(self) -> str:
        """Format as a ``WWW-Authenticate`` value (see :func:`format_challenge`)."""
        return format_challenge(self)

    def __repr__(self) -> str:
        return (
            f"Challenge(id={self.id!r}, realm={self.realm!r}, method={self.method!r}, "
            f"intent={self.intent!r})"
        )


def _quote(name: str, value: str) -> str:
    out: list[str] = []
    for char in value:
        code = ord(char)
        if char in "\r\n":
            raise ChallengeError(f"parameter {name!r} contains CR or LF (header injection)")
        if (code < 0x20 and char != "\t") or code == 0x7F:
            raise ChallengeError(f"parameter {name!r} contains a control character")
        if char in '"\\':
            out.append("\\" + char)
        elif code <= 0xFF:
            out.append(char)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
    return f'{name}="{"".join(out)}"'


def format_challenge(challenge: Challenge) -> str:
    """Format a challenge as a ``WWW-Authenticate`` field value.

    Characters above U+00FF are written as ``\\uXXXX`` escapes, as the reference
    SDKs do, so the header stays within ISO-8859-1. CR, LF and other control
    characters are refused with :class:`ChallengeError`: they could split headers.
    """
    parts = [
        _quote("id", challenge.id),
        _quote("realm", challenge.realm),
        _quote("method", challenge.method),
        _quote("intent", challenge.intent),
        _quote("request", challenge.request_b64),
    ]
    if challenge.expires_raw is not None:
        parts.append(_quote("expires", challenge.expires_raw))
    if challenge.digest is not None:
        parts.append(_quote("digest", challenge.digest))
    if challenge.description is not None:
        parts.append(_quote("description", challenge.description))
    if challenge.header is not None:
        parts.append(_quote("header", challenge.header))
    if challenge.opaque_b64 is not None:
        parts.append(_quote("opaque", challenge.opaque_b64))
    return "Payment " + ", ".join(parts)


def _build(raw: RawChallenge) -> Challenge:
    """Validate one scanned Payment challenge. Raises ChallengeError."""
    params: dict[str, str] = {}
    for name, value in raw.params:
        if name in params:
            raise ChallengeError(f"Payment challenge repeats the parameter {name!r}")
        params[name] = value
    broken = [name for name in raw.broken if name in _KNOWN]
    if broken:
        raise ChallengeError(
            f"Payment challenge has an unterminated quoted value for {broken[0]!r}"
        )
    if raw.token68 is not None:
        raise ChallengeError("Payment challenge carries a token68 instead of parameters")
    for name in _REQUIRED:
        if name not in params:
            raise ChallengeError(f"Payment challenge is missing the required parameter {name!r}")
    cid = params["id"]
    if not cid:
        raise ChallengeError("Payment challenge has an empty 'id'")
    method = params["method"]
    if METHOD_RE.fullmatch(method) is None:
        raise ChallengeError(
            f"Payment challenge has an invalid method {method[:40]!r}: "
            "expected a lowercase letter followed by a-z, 0-9, ':', '_' or '-'"
        )
    intent = params["intent"]
    if INTENT_RE.fullmatch(intent) is None:
        raise ChallengeError(f"Payment challenge has an invalid intent {intent[:40]!r}")
    request_b64 = params["request"]
    try:
        request = b64url_decode_json(request_b64)
    except Base64Error as exc:
        raise ChallengeError(
            f"Payment challenge 'request' must be unpadded base64url of a JSON object: it {exc}"
        ) from None
    opaque: dict[str, str] | None = None
    opaque_b64 = params.get("opaque")
    if opaque_b64 is not None:
        try:
            decoded = b64url_decode_json(opaque_b64)
        except Base64Error as exc:
            raise ChallengeError(
                f"Payment challenge 'opaque' must be unpadded base64url of a JSON object: it {exc}"
            ) from None
        if not all(isinstance(v, str) for v in decoded.values()):
            raise ChallengeError("Payment challenge 'opaque' must be a map of strings to strings")
        opaque = decoded
    expires: datetime | None = None
    expires_raw = params.get("expires")
    if expires_raw is not None:
        try:
            expires = parse_rfc3339(expires_raw)
        except ValueError:
            raise ChallengeError(
                f"Payment challenge 'expires' is not an RFC 3339 date-time: {expires_raw[:40]!r}"
            ) from None
    header: str | None = None
    if "header" in params:
        wanted = _CREDENTIAL_HEADERS.get(params["header"].lower())
        if wanted is None:
            raise ChallengeError(
                f"Payment challenge asks for the credential in an unsupported header "
                f"{params['header'][:40]!r}"
            )
        # Kept as received: the server binds this exact string into the id.
        header = None if wanted == AUTHORIZATION else params["header"]
    return Challenge(
        id=cid,
        realm=params["realm"],
        method=method,
        intent=intent,
        request=request,
        request_b64=request_b64,
        expires=expires,
        expires_raw=expires_raw,
        digest=params.get("digest"),
        description=params.get("description"),
        opaque=opaque,
        opaque_b64=opaque_b64,
        header=header,
        params=params,
    )


def _normalize_values(values: object) -> list[str]:
    # Typed as object: callers pass whatever a hostile or buggy peer produced.
    if isinstance(values, str):
        return [values]
    if isinstance(values, bytes | bytearray):
        raise ChallengeError("WWW-Authenticate values must be text, not bytes")
    if not isinstance(values, Iterable):
        raise ChallengeError(
            f"expected a WWW-Authenticate value or an iterable of them, got {type(values).__name__}"
        )
    try:
        items = list(values)
    except TypeError:
        raise ChallengeError(
            f"expected a WWW-Authenticate value or an iterable of them, got {type(values).__name__}"
        ) from None
    for item in items:
        if not isinstance(item, str):
            raise ChallengeError(
                f"WWW-Authenticate values must be strings, got {type(item).__name__}"
            )
    return items


def parse_challenges_lenient(
    values: str | Iterable[str],
) -> tuple[list[Challenge], list[ChallengeError]]:
    """Parse every Payment challenge, returning the good ones and the errors separately.

    Used by the payment flow, which pays a valid offer even when the server
    also sent a broken one. Header-level problems (size, type) still raise.
    """
    items = _normalize_values(values)
    total = sum(len(item) for item in items)
    if total > MAX_CHALLENGE_BYTES:
        raise ChallengeError(
            f"WWW-Authenticate is {total} bytes, over the {MAX_CHALLENGE_BYTES} byte limit"
        )
    good: list[Challenge] = []
    bad: list[ChallengeError] = []
    for item in items:
        for raw in split_challenges(item):
            if raw.scheme.lower() != "payment":
                continue
            try:
                good.append(_build(raw))
            except ChallengeError as exc:
                bad.append(exc)
    return good, bad


def parse_challenges(values: str | Iterable[str]) -> list[Challenge]:
    """Parse every ``Payment`` challenge out of ``WWW-Authenticate`` values.

    ``values`` is one header value or several (``response.headers.get_list(
    "www-authenticate")``). Challenges of other schemes are skipped. Raises
    :class:`ChallengeError` naming the problem if the header is oversized, a
    Payment challenge is malformed, or there is no Payment challenge at all.
    """
    good, bad = parse_challenges_lenient(values)
    if bad:
        raise bad[0]
    if not good:
        raise ChallengeError("no Payment challenge in WWW-Authenticate")
    return good
