"""The Payment scheme over MCP (JSON-RPC): challenges, credentials and receipts as JSON objects.

Over MCP nothing is base64url-encoded on the wire (draft-payment-transport-mcp-00):

- a tool call that needs payment fails with JSON-RPC error ``-32042`` whose
  ``data.challenges`` is a list of challenge objects, each with ``request``
  as a JSON object; ``-32043`` (verification failed) carries fresh ones;
- the credential goes in ``params._meta["org.paymentauth/credential"]`` as
  ``{"challenge": <the challenge object as received>, "payload": ..., "source": ...}``;
- the receipt comes back in ``result._meta["org.paymentauth/receipt"]``, with
  the ``challengeId`` it pays.

Servers bind the challenge id to the JCS (RFC 8785) encoding of ``request``,
so :class:`~mpp_client.protocol.Challenge` values built here carry that
encoding as ``request_b64``: the wallets sign and hash the same bytes as over
HTTP. What goes back to the server is the challenge object exactly as it
came (:attr:`McpChallenge.echo`), unknown fields included.

The checks are the HTTP parser's: the same id, realm, method and intent rules,
the same size limit, the same ``expires`` parsing, strict JSON (no NaN, no
lone surrogates, bounded nesting). Peers differ on ``opaque``: pympp sends it
as a JSON object, mppx as the base64url string it binds; both are accepted and
echoed as received.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .._exceptions import ChallengeError, ProtocolError
from ._b64 import Base64Error, b64url_decode_json, b64url_encode, loads_json
from ._challenge import INTENT_RE, MAX_CHALLENGE_BYTES, METHOD_RE, Challenge
from ._credential import MAX_CREDENTIAL_BYTES, Credential
from ._jcs import canonical_json
from ._receipt import PROBLEM_BASE, Problem, Receipt
from ._time import parse_rfc3339

__all__ = [
    "MCP_META_CREDENTIAL",
    "MCP_META_PAYMENT_REQUIRED",
    "MCP_META_RECEIPT",
    "MCP_PAYMENT_REQUIRED",
    "MCP_VERIFICATION_FAILED",
    "McpChallenge",
    "McpPaymentRequired",
    "is_mcp_payment_required",
    "mcp_challenge_object",
    "mcp_credential",
    "mcp_receipt",
    "parse_mcp_credential",
    "parse_mcp_receipt",
]

#: JSON-RPC error code: payment required (``data.challenges``).
MCP_PAYMENT_REQUIRED = -32042
#: JSON-RPC error code: the credential failed verification (fresh ``data.challenges``).
MCP_VERIFICATION_FAILED = -32043
#: ``params._meta`` key of the credential.
MCP_META_CREDENTIAL = "org.paymentauth/credential"
#: ``result._meta`` key of the receipt.
MCP_META_RECEIPT = "org.paymentauth/receipt"
#: ``result._meta`` key under which some servers (mppx) put challenges in a tool result.
MCP_META_PAYMENT_REQUIRED = "org.paymentauth/payment-required"

_MAX_RECEIPT_BYTES = 16 * 1024
_OPTIONAL_STRINGS = ("expires", "digest", "description", "header")


def _json_text(
    value: object, what: str, limit: int, error: type[ChallengeError | ProtocolError]
) -> Any:
    """A deep copy of ``value`` through strict JSON, refusing what the HTTP form would refuse."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        raise error(f"{what} is not plain JSON (or holds NaN or Infinity)") from None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise error(f"{what} holds a lone UTF-16 surrogate") from None
    if size > limit:
        raise error(f"{what} is over the {limit} byte limit")
    try:
        return loads_json(text)
    except Base64Error as exc:
        raise error(f"{what} {exc}") from None


def _opaque(
    value: object, error: type[ChallengeError | ProtocolError]
) -> tuple[dict[str, str], str]:
    """``opaque`` as an object (pympp) or as the base64url string it binds (mppx)."""
    if isinstance(value, str):
        try:
            decoded = b64url_decode_json(value)
        except Base64Error as exc:
            raise error(
                f"'opaque' must be a JSON object of strings or unpadded base64url of one: it {exc}"
            ) from None
        raw = value
    elif isinstance(value, dict):
        decoded = value
        raw = ""
    else:
        raise error("'opaque' must be a JSON object of strings or unpadded base64url of one")
    if not _all_strings(decoded):
        raise error("'opaque' must be a map of strings to strings")
    return dict(decoded), raw or b64url_encode(canonical_json(decoded))


def _all_strings(value: Mapping[str, Any]) -> bool:
    return all(isinstance(v, str) for v in value.values())


def _request_b64(request: Mapping[str, Any], error: type[ChallengeError | ProtocolError]) -> str:
    try:
        return b64url_encode(canonical_json(request))
    except (TypeError, ValueError):
        raise error("'request' cannot be canonically encoded (RFC 8785)") from None


@dataclass(frozen=True, slots=True, eq=False)
class McpChallenge:
    """One MCP payment offer: the validated :class:`Challenge` and the object to echo.

    ``challenge.request_b64`` (and ``opaque_b64``) are the JCS base64url forms
    the server bound the id to; ``echo`` is the challenge object exactly as
    received, which the credential carries back unchanged.
    """

    challenge: Challenge
    echo: Mapping[str, Any]

    @classmethod
    def parse(cls, value: object) -> McpChallenge:
        """Validate one challenge object (already strict JSON). Raises :class:`ChallengeError`."""
        if not isinstance(value, dict):
            raise ChallengeError("MCP payment challenge is not a JSON object")
        for name in ("id", "realm", "method", "intent"):
            if name not in value:
                raise ChallengeError(
                    f"MCP payment challenge is missing the required field {name!r}"
                )
            if not isinstance(value[name], str):
                raise ChallengeError(f"MCP payment challenge field {name!r} must be a string")
        if "request" not in value:
            raise ChallengeError("MCP payment challenge is missing the required field 'request'")
        cid, realm, method, intent = value["id"], value["realm"], value["method"], value["intent"]
        if not cid:
            raise ChallengeError("MCP payment challenge has an empty 'id'")
        if METHOD_RE.fullmatch(method) is None:
            raise ChallengeError(
                f"MCP payment challenge has an invalid method {method[:40]!r}: "
                "expected a lowercase letter followed by a-z, 0-9, ':', '_' or '-'"
            )
        if INTENT_RE.fullmatch(intent) is None:
            raise ChallengeError(f"MCP payment challenge has an invalid intent {intent[:40]!r}")
        request = value["request"]
        if not isinstance(request, dict):
            raise ChallengeError(
                "MCP payment challenge 'request' must be a JSON object (not base64url)"
            )
        for name in _OPTIONAL_STRINGS:
            if name in value and not isinstance(value[name], str):
                raise ChallengeError(f"MCP payment challenge field {name!r} must be a string")
        expires: datetime | None = None
        expires_raw: str | None = value.get("expires")
        if expires_raw is not None:
            try:
                expires = parse_rfc3339(expires_raw)
            except ValueError:
                raise ChallengeError(
                    f"MCP payment challenge 'expires' is not an RFC 3339 date-time: "
                    f"{expires_raw[:40]!r}"
                ) from None
        opaque: dict[str, str] | None = None
        opaque_b64: str | None = None
        if value.get("opaque") is not None:
            opaque, opaque_b64 = _opaque(value["opaque"], ChallengeError)
        challenge = Challenge(
            id=cid,
            realm=realm,
            method=method,
            intent=intent,
            request=request,
            request_b64=_request_b64(request, ChallengeError),
            expires=expires,
            expires_raw=expires_raw,
            digest=value.get("digest"),
            description=value.get("description"),
            opaque=opaque,
            opaque_b64=opaque_b64,
            # Over MCP the credential always travels in _meta; a `header` is only echoed.
            header=None,
            params={k: v for k, v in value.items() if isinstance(v, str)},
        )
        return cls(challenge, value)

    def __repr__(self) -> str:
        return f"McpChallenge({self.challenge!r})"


@dataclass(frozen=True, slots=True)
class McpPaymentRequired:
    """What a ``-32042``/``-32043`` error (or a payment-required tool result) asks for.

    ``offers`` are the challenges that validated, ``broken`` why the others
    did not; ``problem`` is the server's problem detail (``data.problem``, or
    ``data.failure`` as a problem) and ``http_status`` its ``data.httpStatus``.
    """

    code: int
    offers: tuple[McpChallenge, ...]
    broken: tuple[ChallengeError, ...]
    problem: Problem | None = None
    http_status: int | None = None

    @classmethod
    def parse(cls, code: int, data: object) -> McpPaymentRequired:
        """Read ``error.data``; a good offer is kept even when another is broken.

        Structural problems (no ``challenges`` list, over the size limit,
        not strict JSON) raise :class:`ChallengeError`.
        """
        if not isinstance(data, dict) or not isinstance(data.get("challenges"), list):
            raise ChallengeError("MCP payment error has no 'challenges' list in its data")
        raw = _json_text(
            data["challenges"], "MCP payment challenges", MAX_CHALLENGE_BYTES, ChallengeError
        )
        offers: list[McpChallenge] = []
        broken: list[ChallengeError] = []
        for item in raw:
            try:
                offers.append(McpChallenge.parse(item))
            except ChallengeError as exc:
                broken.append(exc)
        status = data.get("httpStatus")
        return cls(
            code=code,
            offers=tuple(offers),
            broken=tuple(broken),
            problem=_problem(data),
            http_status=status
            if isinstance(status, int) and not isinstance(status, bool)
            else None,
        )

    @property
    def retryable(self) -> bool:
        """True when the server invites another payment (``httpStatus`` 402 or absent).

        pympp answers a replayed or misused payment with ``-32043`` and
        ``httpStatus`` 403: paid but denied, as an HTTP 403 would be.
        """
        return self.http_status is None or self.http_status == 402


def _problem(data: Mapping[str, Any]) -> Problem | None:
    """The problem detail of a payment error: ``problem`` (mppx) or ``failure`` (pympp)."""
    problem = data.get("problem")
    if isinstance(problem, dict):
        try:
            text = json.dumps(problem, allow_nan=False)
        except (TypeError, ValueError):
            return None
        return Problem.parse(text.encode("utf-8"))
    failure = data.get("failure")
    if isinstance(failure, dict):
        reason = failure.get("reason")
        detail = failure.get("detail")
        code = reason if isinstance(reason, str) and reason.replace("-", "").isalnum() else None
        return Problem(
            type=PROBLEM_BASE + code if code else "about:blank",
            detail=detail if isinstance(detail, str) else None,
            data=dict(failure),
        )
    return None


def is_mcp_payment_required(code: int, data: object) -> bool:
    """True for a ``-32042``/``-32043`` error that carries payment challenges.

    ``-32042`` is also MCP's "URL elicitation required": only an error whose
    data has a ``challenges`` list is a payment request.
    """
    return (
        code in (MCP_PAYMENT_REQUIRED, MCP_VERIFICATION_FAILED)
        and isinstance(data, dict)
        and isinstance(data.get("challenges"), list)
    )


def mcp_credential(
    offer: McpChallenge, payload: Mapping[str, Any], *, source: str | None = None
) -> dict[str, Any]:
    """The ``_meta["org.paymentauth/credential"]`` value answering ``offer``.

    The challenge is echoed as received. Raises :class:`ProtocolError`
    (naming the problem, never the payload) if the payload is not JSON.
    """
    if not isinstance(payload, Mapping):
        raise TypeError("payment methods must return the payload as a mapping")
    credential: dict[str, Any] = {
        "challenge": copy.deepcopy(dict(offer.echo)),
        "payload": dict(payload),
    }
    if source is not None:
        credential["source"] = source
    try:
        json.dumps(credential, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(
            f"credential payload is not JSON-serializable: {type(exc).__name__}"
        ) from None
    return credential


def parse_mcp_credential(value: object) -> Credential:
    """Read an MCP credential (server side) as a :class:`Credential` with wire-string echoes.

    ``request`` (and an ``opaque`` object) become their JCS base64url forms,
    which is what the challenge id was bound to. Raises :class:`ProtocolError`.
    """
    data = _json_text(value, "MCP credential", MAX_CREDENTIAL_BYTES, ProtocolError)
    if not isinstance(data, dict):
        raise ProtocolError("MCP credential is not a JSON object")
    challenge = data.get("challenge")
    if not isinstance(challenge, dict):
        raise ProtocolError("MCP credential has no 'challenge' object")
    for name in ("id", "realm", "method", "intent"):
        if not isinstance(challenge.get(name), str):
            raise ProtocolError(f"MCP credential challenge is missing the string field {name!r}")
    if not challenge["id"]:
        raise ProtocolError("MCP credential challenge has an empty 'id'")
    if METHOD_RE.fullmatch(challenge["method"]) is None:
        raise ProtocolError("MCP credential challenge has an invalid method")
    request = challenge.get("request")
    if not isinstance(request, dict):
        raise ProtocolError("MCP credential challenge 'request' must be a JSON object")
    echo = {k: challenge[k] for k in ("id", "realm", "method", "intent")}
    echo["request"] = _request_b64(request, ProtocolError)
    for name in ("description", "digest", "expires", "header"):
        if name in challenge:
            if not isinstance(challenge[name], str):
                raise ProtocolError(f"MCP credential challenge field {name!r} must be a string")
            echo[name] = challenge[name]
    if challenge.get("opaque") is not None:
        echo["opaque"] = _opaque(challenge["opaque"], ProtocolError)[1]
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise ProtocolError("MCP credential has no 'payload' object")
    source = data.get("source")
    if source is not None and not isinstance(source, str):
        raise ProtocolError("MCP credential 'source' must be a string")
    return Credential(echo=echo, payload=payload, source=source)


def parse_mcp_receipt(value: object) -> Receipt:
    """Read ``result._meta["org.paymentauth/receipt"]`` with the ``Payment-Receipt`` rules.

    ``challengeId`` and every other field stay in ``receipt.data``. Raises
    :class:`ProtocolError`.
    """
    data = _json_text(value, "MCP receipt", _MAX_RECEIPT_BYTES, ProtocolError)
    if not isinstance(data, dict):
        raise ProtocolError("MCP receipt is not a JSON object")
    try:
        encoded = b64url_encode(canonical_json(data))
    except (TypeError, ValueError):
        raise ProtocolError("MCP receipt cannot be canonically encoded") from None
    return Receipt.parse(encoded)


def mcp_challenge_object(challenge: Challenge) -> dict[str, Any]:
    """A challenge as the JSON object an MCP server sends (``request``, ``opaque`` as objects)."""
    data: dict[str, Any] = {
        "id": challenge.id,
        "realm": challenge.realm,
        "method": challenge.method,
        "intent": challenge.intent,
        "request": copy.deepcopy(dict(challenge.request)),
    }
    if challenge.expires_raw is not None:
        data["expires"] = challenge.expires_raw
    if challenge.digest is not None:
        data["digest"] = challenge.digest
    if challenge.description is not None:
        data["description"] = challenge.description
    if challenge.opaque is not None:
        data["opaque"] = dict(challenge.opaque)
    return data


def mcp_receipt(receipt: Receipt, challenge_id: str) -> dict[str, Any]:
    """A receipt as the JSON object an MCP server puts in ``result._meta``."""
    data = b64url_decode_json(receipt.to_header())
    data["challengeId"] = challenge_id
    return data
