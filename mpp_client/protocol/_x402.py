"""x402 on the wire: payment requirements, the payment header, the settlement header.

x402 is a sibling of the Payment scheme that answers the same question (what
does this request cost, and how is it paid) with other headers:

=============  ===========================================  ======================
               version 2                                    version 1
=============  ===========================================  ======================
the terms      ``PAYMENT-REQUIRED`` header on the 402        the 402's JSON body
the payment    ``PAYMENT-SIGNATURE`` on the retry            ``X-PAYMENT``
settlement     ``PAYMENT-RESPONSE`` on the answer            ``X-PAYMENT-RESPONSE``
network        CAIP-2, ``eip155:8453``                       a name, ``base``
amount         ``amount``                                    ``maxAmountRequired``
resource       ``resource.url``, once for all ``accepts``    ``resource`` per entry
=============  ===========================================  ======================

Every header value is standard base64 of JSON (not the Payment scheme's
unpadded base64url of JCS). The payment names the requirement it pays: in
version 2 it echoes the ``accepts`` entry as ``accepted`` (the server
compares every field), in version 1 its ``scheme`` and ``network``.

So that one policy, one ledger and one flow serve both protocols, each
``accepts`` entry becomes a :class:`~mpp_client.protocol.Challenge` with
``method="x402"`` and ``intent="charge"`` whose ``request`` holds the terms
in the charge intent's words (``amount``, ``currency`` = the asset,
``recipient`` = ``payTo``, the rest in ``methodDetails``), and whose ``x402``
field keeps the parsed requirement, its raw entry included, for the payment
to echo (:func:`x402_challenges`). x402 has no challenge id: the caller
gives each 402 a fresh random one, so the single-use rules of the flow and
the ledger apply per 402 received.

Parsing is strict where the money is (amounts are digit strings, addresses
and networks are bounded, a header is at most :data:`MAX_X402_BYTES`) and
lenient where a peer may add fields: unknown fields are ignored, and one bad
``accepts`` entry does not spoil the others. Every failure is a typed error
(:class:`~mpp_client.ChallengeError` for the terms,
:class:`~mpp_client.ProtocolError` for a settlement), and what the server
wrote reaches a message only truncated and with control characters escaped.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from .._exceptions import ChallengeError, ProtocolError
from ._b64 import Base64Error, loads_json
from ._challenge import Challenge
from ._receipt import Receipt
from ._terms import BASE_UNITS

__all__ = [
    "MAX_X402_BYTES",
    "X402_PAYMENT_REQUIRED",
    "X402_PAYMENT_RESPONSE",
    "X402_PAYMENT_SIGNATURE",
    "X402_V1_PAYMENT",
    "X402_V1_PAYMENT_RESPONSE",
    "X402PaymentRequired",
    "X402Requirement",
    "X402Settlement",
    "parse_x402_body",
    "parse_x402_required",
    "parse_x402_settlement",
    "resource_matches",
    "x402_challenges",
    "x402_payment_header",
]

X402_PAYMENT_REQUIRED = "PAYMENT-REQUIRED"
X402_PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
X402_PAYMENT_RESPONSE = "PAYMENT-RESPONSE"
X402_V1_PAYMENT = "X-PAYMENT"
X402_V1_PAYMENT_RESPONSE = "X-PAYMENT-RESPONSE"

#: The largest x402 header value (or version 1 body) read.
MAX_X402_BYTES = 64 * 1024
#: The most ``accepts`` entries considered in one 402.
MAX_X402_ACCEPTS = 32

_SCHEME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_CAIP2 = re.compile(r"[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}")
_V1_NAME = re.compile(r"[a-z][a-z0-9-]{0,47}")
_EIP155 = re.compile(r"eip155:([1-9][0-9]{0,19})")
_TEXT_MAX = 256
_URL_MAX = 2048
#: Chain ids of the EVM networks version 1 names (the x402 package's table).
V1_NETWORKS: Mapping[str, int] = {
    "ethereum": 1,
    "base": 8453,
    "base-sepolia": 84532,
    "polygon": 137,
    "polygon-amoy": 80002,
    "avalanche": 43114,
    "avalanche-fuji": 43113,
    "abstract": 2741,
    "abstract-testnet": 11124,
    "iotex": 4689,
    "sei": 1329,
    "sei-testnet": 1328,
    "peaq": 3338,
    "story": 1513,
    "celo": 42220,
}


@dataclass(frozen=True, slots=True, eq=False)
class X402Requirement:
    """One ``accepts`` entry: what paying the resource this way takes.

    ``raw`` is the entry exactly as decoded, echoed as the payment's
    ``accepted`` (version 2); ``resource_info`` is the 402's ``resource``
    object as decoded (version 2), echoed too. ``chain_id`` is known for
    ``eip155`` networks and the version 1 EVM names, else None.
    ``description`` is the server's text, for display only.
    """

    version: int
    scheme: str
    network: str
    chain_id: int | None
    asset: str
    amount: int
    pay_to: str
    max_timeout_seconds: int
    extra: Mapping[str, Any]
    resource: str | None
    raw: Mapping[str, Any] = field(repr=False)
    resource_info: Mapping[str, Any] | None = field(default=None, repr=False)
    description: str | None = None

    @property
    def header(self) -> str:
        """The request header the payment goes in."""
        return X402_PAYMENT_SIGNATURE if self.version >= 2 else X402_V1_PAYMENT

    @property
    def settlement_header(self) -> str:
        """The response header the server settles in."""
        return X402_PAYMENT_RESPONSE if self.version >= 2 else X402_V1_PAYMENT_RESPONSE


@dataclass(frozen=True, slots=True)
class X402PaymentRequired:
    """A 402's x402 terms: the entries that parsed, and why the others did not."""

    version: int
    accepts: tuple[X402Requirement, ...]
    broken: tuple[ChallengeError, ...] = ()
    #: The server's ``error`` text (why it asked again, after a refused payment).
    error: str | None = None


def _decode(value: object) -> Any:
    """Standard base64 (padding optional; the URL-safe alphabet accepted) of JSON."""
    if not isinstance(value, str):
        raise Base64Error("must be a string")
    text = value.strip()
    if len(text) > MAX_X402_BYTES:
        raise Base64Error(f"is over the {MAX_X402_BYTES} byte limit")
    if not text:
        raise Base64Error("is empty")
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            raw = base64.urlsafe_b64decode(padded.encode("ascii"))
        else:
            raw = base64.b64decode(padded.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise Base64Error("is not base64") from None
    try:
        return loads_json(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise Base64Error("does not decode to UTF-8 text") from None


def _text(entry: Mapping[str, Any], key: str, what: str, *, limit: int = _TEXT_MAX) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ChallengeError(f"{what} '{key}' must be a non-empty string, got {value!r:.40}")
    return value


def _optional_text(entry: Mapping[str, Any], key: str, limit: int = _URL_MAX) -> str | None:
    value = entry.get(key)
    if isinstance(value, str) and value and len(value) <= limit:
        return value
    return None


def _chain_id(network: str) -> int | None:
    match = _EIP155.fullmatch(network)
    if match is not None:
        return int(match.group(1))
    return V1_NETWORKS.get(network)


def _requirement(
    entry: object,
    version: int,
    resource: str | None,
    resource_info: Mapping[str, Any] | None,
    description: str | None,
) -> X402Requirement:
    what = "x402 requirement"
    if not isinstance(entry, dict):
        raise ChallengeError(f"{what} must be a JSON object")
    scheme = _text(entry, "scheme", what, limit=32)
    if _SCHEME.fullmatch(scheme) is None:
        raise ChallengeError(f"{what} has an invalid scheme {scheme!r:.40}")
    network = _text(entry, "network", what, limit=64)
    if _CAIP2.fullmatch(network) is None and (version >= 2 or _V1_NAME.fullmatch(network) is None):
        raise ChallengeError(f"{what} has an invalid network {network!r:.40}")
    amount_key = "amount" if version >= 2 else "maxAmountRequired"
    amount = entry.get(amount_key)
    if not isinstance(amount, str) or BASE_UNITS.fullmatch(amount) is None:
        raise ChallengeError(
            f"{what} '{amount_key}' must be a string of base-unit digits, got {amount!r:.40}"
        )
    asset = _text(entry, "asset", what, limit=128)
    pay_to = _text(entry, "payTo", what, limit=128)
    timeout = entry.get("maxTimeoutSeconds")
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 0 <= timeout < 2**31:
        raise ChallengeError(
            f"{what} 'maxTimeoutSeconds' must be a whole number of seconds, got {timeout!r:.40}"
        )
    extra: Any = entry.get("extra")
    if isinstance(extra, str) and version == 1:
        # Some version 1 servers send ``extra`` as JSON text.
        try:
            extra = loads_json(extra)
        except Base64Error:
            extra = None
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise ChallengeError(f"{what} 'extra' must be a JSON object")
    if version == 1:
        resource = _optional_text(entry, "resource")
        description = _optional_text(entry, "description", _TEXT_MAX)
    return X402Requirement(
        version=version,
        scheme=scheme,
        network=network,
        chain_id=_chain_id(network),
        asset=asset,
        amount=int(amount),
        pay_to=pay_to,
        max_timeout_seconds=timeout,
        extra=extra,
        resource=resource,
        raw=entry,
        resource_info=resource_info,
        description=description,
    )


def _payment_required(document: object, version: int) -> X402PaymentRequired:
    if not isinstance(document, dict):
        raise ChallengeError("x402 payment requirements must be a JSON object")
    accepts = document.get("accepts")
    if not isinstance(accepts, list) or not accepts:
        raise ChallengeError("x402 payment requirements have no 'accepts' list")
    if len(accepts) > MAX_X402_ACCEPTS:
        raise ChallengeError(
            f"x402 payment requirements list {len(accepts)} offers, over the "
            f"{MAX_X402_ACCEPTS} considered"
        )
    resource: str | None = None
    resource_info: dict[str, Any] | None = None
    description: str | None = None
    if version >= 2:
        info = document.get("resource")
        if info is not None:
            if not isinstance(info, dict) or _optional_text(info, "url") is None:
                raise ChallengeError("x402 'resource' must be an object with a 'url'")
            resource_info = info
            resource = info["url"]
            description = _optional_text(info, "description", _TEXT_MAX)
    good: list[X402Requirement] = []
    bad: list[ChallengeError] = []
    for entry in accepts:
        try:
            good.append(_requirement(entry, version, resource, resource_info, description))
        except ChallengeError as exc:
            bad.append(exc)
    error = document.get("error")
    return X402PaymentRequired(
        version=version,
        accepts=tuple(good),
        broken=tuple(bad),
        error=error[:_TEXT_MAX] if isinstance(error, str) and error else None,
    )


def _version(document: object) -> int | None:
    version = document.get("x402Version") if isinstance(document, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version in (1, 2):
        return version
    return None


def parse_x402_required(value: str) -> X402PaymentRequired:
    """Parse a ``PAYMENT-REQUIRED`` header value (x402 version 2).

    Raises :class:`~mpp_client.ChallengeError` when the header as a whole is
    unusable; an entry of ``accepts`` that is not lands in ``broken``.
    """
    try:
        document = _decode(value)
    except Base64Error as exc:
        raise ChallengeError(
            f"{X402_PAYMENT_REQUIRED} must be base64 of a JSON object: it {exc}"
        ) from None
    version = _version(document)
    if version != 2:
        raise ChallengeError(
            f"{X402_PAYMENT_REQUIRED} must say x402Version 2, not "
            f"{(document.get('x402Version') if isinstance(document, dict) else None)!r:.20}"
        )
    return _payment_required(document, 2)


def parse_x402_body(body: bytes) -> X402PaymentRequired | None:
    """The x402 terms in a 402's JSON body (version 1), or None if the body holds none.

    A body that is not JSON, or JSON without an ``x402Version`` and
    ``accepts``, is not x402 (a problem detail, say): None. One that claims
    to be x402 but is malformed raises :class:`~mpp_client.ChallengeError`.
    """
    if not body or len(body) > MAX_X402_BYTES or body.lstrip()[:1] != b"{":
        return None
    try:
        document = loads_json(body.decode("utf-8"))
    except (UnicodeDecodeError, Base64Error):
        return None
    if not isinstance(document, dict) or "accepts" not in document:
        return None
    version = _version(document)
    if version is None:
        return None
    return _payment_required(document, version)


# -- offers -----------------------------------------------------------------------


def _origin(url: str) -> tuple[str, str, int | None, str] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if port is None:
        port = {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port, unquote(parts.path) or "/"


def resource_matches(resource: str, requested: str) -> bool:
    """True when a requirement's ``resource`` names the URL that was requested.

    Scheme, host, port and path must be the same (a relative resource is
    read against the requested URL); a query, when the resource has one,
    must be the same too. The fragment never counts.
    """
    try:
        absolute = urljoin(requested, resource)
    except ValueError:
        return False
    want, got = _origin(requested), _origin(absolute)
    if want is None or got is None or want != got:
        return False
    query = urlsplit(absolute).query
    return not query or query == urlsplit(requested).query


def _shown(url: str) -> str:
    """A URL for a message: scheme, host and path only (a query can carry a token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "an unreadable URL"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"[:120]


def _authority(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2].lower()


def x402_challenges(
    required: X402PaymentRequired, *, url: str, id_prefix: str, now: datetime
) -> tuple[list[Challenge], list[ChallengeError]]:
    """One :class:`Challenge` per payable ``accepts`` entry, and why the rest are not.

    ``url`` is the URL that was requested: an entry for another resource is
    refused. ``id_prefix`` must be fresh for every 402 (x402 has none of its
    own); entries get ``<id_prefix>.<index>``. The realm is the requested
    URL's authority (``api.example.com``, with a port if it has one), as
    Payment realms are written. ``expires`` is ``now`` plus
    ``maxTimeoutSeconds``: no signature may outlive it.
    """
    good: list[Challenge] = []
    bad = list(required.broken)
    realm = _authority(url)
    for index, requirement in enumerate(required.accepts):
        if requirement.resource is not None and not resource_matches(requirement.resource, url):
            bad.append(
                ChallengeError(
                    f"x402 requirement is for the resource {_shown(requirement.resource)!r}, "
                    f"not the URL requested ({_shown(url)!r}); refusing to pay for another resource"
                )
            )
            continue
        details: dict[str, Any] = {
            "x402Version": requirement.version,
            "scheme": requirement.scheme,
            "network": requirement.network,
            "maxTimeoutSeconds": requirement.max_timeout_seconds,
            "extra": dict(requirement.extra),
        }
        if requirement.chain_id is not None:
            details["chainId"] = requirement.chain_id
        if requirement.resource is not None:
            details["resource"] = requirement.resource
        request = {
            "amount": str(requirement.amount),
            "currency": requirement.asset,
            "recipient": requirement.pay_to,
            "methodDetails": details,
        }
        try:
            challenge = Challenge.create(
                id=f"{id_prefix}.{index}",
                realm=realm,
                method="x402",
                intent="charge",
                request=request,
                expires=now + timedelta(seconds=requirement.max_timeout_seconds),
                description=requirement.description,
                header=requirement.header,
            )
        except (TypeError, ValueError) as exc:
            bad.append(ChallengeError(f"x402 requirement cannot be read as terms ({exc})"))
            continue
        good.append(dataclasses.replace(challenge, x402=requirement))
    return good, bad


# -- the payment and the settlement -----------------------------------------------


def x402_payment_header(requirement: X402Requirement, payload: Mapping[str, Any]) -> str:
    """The value of the payment header for ``payload`` (the scheme's signed payload).

    Version 2 echoes the requirement (``accepted``) and the 402's ``resource``
    as received; version 1 names the ``scheme`` and ``network``. The 402's
    ``extensions`` are not echoed: a server declares them optional, and
    answering one means agreeing to what it says.
    """
    document: dict[str, Any]
    if requirement.version >= 2:
        document = {"x402Version": requirement.version, "payload": dict(payload)}
        document["accepted"] = requirement.raw
        if requirement.resource_info is not None:
            document["resource"] = requirement.resource_info
    else:
        document = {
            "x402Version": 1,
            "scheme": requirement.scheme,
            "network": requirement.network,
            "payload": dict(payload),
        }
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


@dataclass(frozen=True, slots=True)
class X402Settlement:
    """What a ``PAYMENT-RESPONSE`` (``X-PAYMENT-RESPONSE``) says about the payment.

    ``transaction`` is the settling transaction's hash ("" when the server
    names none); ``error_reason`` the server's code for a failure.
    """

    success: bool
    transaction: str
    network: str | None = None
    payer: str | None = None
    error_reason: str | None = None

    def receipt(self) -> Receipt | None:
        """The settlement as a :class:`Receipt` (method ``x402``); None unless it succeeded
        and names its transaction."""
        if not self.success or not self.transaction:
            return None
        data: dict[str, Any] = {"success": True, "transaction": self.transaction}
        if self.network is not None:
            data["network"] = self.network
        if self.payer is not None:
            data["payer"] = self.payer
        return Receipt(status="success", method="x402", reference=self.transaction, data=data)


def parse_x402_settlement(value: str) -> X402Settlement:
    """Parse a settlement header value. Raises :class:`~mpp_client.ProtocolError`."""
    try:
        document = _decode(value)
    except Base64Error as exc:
        raise ProtocolError(
            f"the x402 settlement must be base64 of a JSON object: it {exc}"
        ) from None
    if not isinstance(document, dict):
        raise ProtocolError("the x402 settlement must be a JSON object")
    success = document.get("success")
    if not isinstance(success, bool):
        raise ProtocolError("the x402 settlement has no boolean 'success'")
    transaction = document.get("transaction", "")
    if not isinstance(transaction, str) or len(transaction) > _TEXT_MAX:
        raise ProtocolError("the x402 settlement's 'transaction' must be a string")
    reason = document.get("errorReason")
    return X402Settlement(
        success=success,
        transaction=transaction,
        network=_optional_text(document, "network", 64),
        payer=_optional_text(document, "payer", 128),
        error_reason=reason[:_TEXT_MAX] if isinstance(reason, str) and reason else None,
    )
