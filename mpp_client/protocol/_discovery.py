"""Service discovery: the priced operations an origin describes in ``/openapi.json``.

The discovery draft (draft-payment-discovery) has a service publish an
OpenAPI 3 document whose operations carry an ``x-payment-info`` extension:
one payment offer, or ``{"offers": [...]}`` with several. It lets a client
show what an API costs before calling it.

It is advisory only. Nothing signs it, and the 402 challenge a server sends
at request time is what a client pays, always: an offer read here is never a
reason to pay, to pay more, or to skip checking the challenge. So the parser
keeps only what helps a person or an agent choose (method, intent, amount,
currency, a description for display) and is strict about the shape of
those, so a malformed document is a typed error naming the JSON path, never
a half-read price. Unknown fields are ignored, as the peers add their own.

No I/O here: :func:`parse_discovery` takes the bytes (or the decoded JSON)
and the client fetches them (``Client.discover``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import ProtocolError
from ._b64 import Base64Error, loads_json
from ._challenge import INTENT_RE, METHOD_RE
from ._terms import BASE_UNITS

__all__ = [
    "DISCOVERY_PATH",
    "MAX_DISCOVERY_BYTES",
    "DiscoveredOffer",
    "Discovery",
    "DiscoveryError",
    "PricedOperation",
    "parse_discovery",
]

#: Where the discovery draft puts the document, on the service's origin.
DISCOVERY_PATH = "/openapi.json"
#: The most of a discovery document we read. Registries are told to stop at
#: 64 KB; OpenAPI documents with input and output schemas can be larger.
MAX_DISCOVERY_BYTES = 1024 * 1024
#: Bounds on what one document may list, so a hostile one cannot flood a table.
MAX_OPERATIONS = 5_000
MAX_OFFERS = 64
_MAX_TEXT = 1_000
_MAX_CURRENCY = 128
_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: The fields of one offer; with ``offers`` alongside them the form is ambiguous.
_OFFER_FIELDS = frozenset({"intent", "method", "amount", "currency", "description"})


class DiscoveryError(ProtocolError):
    """A discovery document is malformed, oversized, or not an OpenAPI 3 document.

    The message names the JSON path of the first problem
    (``paths./weather.get.x-payment-info.offers[0].amount: ...``).
    """


@dataclass(frozen=True, slots=True)
class DiscoveredOffer:
    """One advertised way to pay for an operation (advisory: the 402 wins).

    ``amount`` is in the currency's base units, or None when the service
    prices per request (the draft's ``"amount": null``, dynamic pricing).
    ``description`` is the service's own text, for display only.
    """

    method: str
    intent: str
    amount: int | None
    currency: str | None = None
    description: str | None = None

    @property
    def key(self) -> str:
        """``method/intent``, as in ``Accept-Payment`` and ``Challenge.key``."""
        return f"{self.method}/{self.intent}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "intent": self.intent,
            "amount": str(self.amount) if self.amount is not None else None,
            "currency": self.currency,
            "description": self.description,
        }


@dataclass(frozen=True, slots=True)
class PricedOperation:
    """An operation that asks for payment: where, how, and its advertised offers."""

    path: str
    #: Upper case: ``GET``, ``POST``...
    http_method: str
    offers: tuple[DiscoveredOffer, ...]
    summary: str | None = None
    operation_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "http_method": self.http_method,
            "summary": self.summary,
            "operation_id": self.operation_id,
            "offers": [offer.to_dict() for offer in self.offers],
        }


@dataclass(frozen=True, slots=True)
class Discovery:
    """What a service's discovery document advertises. Advisory only.

    ``operations`` lists only the operations with ``x-payment-info``, in the
    document's order. ``categories`` and ``docs`` come from the optional
    ``x-service-info``.
    """

    title: str
    version: str
    openapi: str
    operations: tuple[PricedOperation, ...]
    categories: tuple[str, ...] = ()
    docs: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "version": self.version,
            "openapi": self.openapi,
            "categories": list(self.categories),
            "docs": dict(self.docs),
            "operations": [operation.to_dict() for operation in self.operations],
        }


def parse_discovery(document: bytes | str | Mapping[str, Any]) -> Discovery:
    """Read a discovery document (``/openapi.json``): its priced operations.

    Takes the raw bytes (at most :data:`MAX_DISCOVERY_BYTES`, UTF-8 JSON
    without duplicate keys) or an already decoded JSON object. Raises
    :class:`DiscoveryError` for anything that is not an OpenAPI 3 document
    with well-formed ``x-payment-info``; operations without it are skipped.
    """
    data = _decode(document)
    openapi = data.get("openapi")
    if not isinstance(openapi, str) or not openapi.startswith("3."):
        raise DiscoveryError("openapi: not an OpenAPI 3 document (expected 'openapi': '3.x')")
    info = data.get("info")
    if not isinstance(info, Mapping):
        raise DiscoveryError("info: missing, or not an object")
    title = _required_text(info, "title", "info")
    version = _required_text(info, "version", "info")
    paths = data.get("paths", {})
    if not isinstance(paths, Mapping):
        raise DiscoveryError("paths: not an object")
    operations: list[PricedOperation] = []
    for path, item in paths.items():
        if not isinstance(item, Mapping):
            raise DiscoveryError(f"paths.{path}: not an object")
        for verb in _HTTP_METHODS:
            operation = item.get(verb)
            if operation is None:
                continue
            where = f"paths.{path}.{verb}"
            if not isinstance(operation, Mapping):
                raise DiscoveryError(f"{where}: not an object")
            raw = operation.get("x-payment-info")
            if raw is None:
                continue
            if len(operations) >= MAX_OPERATIONS:
                raise DiscoveryError(f"paths: more than {MAX_OPERATIONS} priced operations")
            operations.append(
                PricedOperation(
                    path=path,
                    http_method=verb.upper(),
                    offers=_offers(raw, f"{where}.x-payment-info"),
                    summary=_text(operation, "summary", where),
                    operation_id=_text(operation, "operationId", where),
                )
            )
    categories, docs = _service_info(data.get("x-service-info"))
    return Discovery(title, version, openapi, tuple(operations), categories, docs)


def _decode(document: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(document, Mapping):
        return document
    if isinstance(document, bytes | bytearray):
        if len(document) > MAX_DISCOVERY_BYTES:
            raise DiscoveryError(f"document is over {MAX_DISCOVERY_BYTES} bytes")
        try:
            text = bytes(document).decode("utf-8")
        except UnicodeDecodeError:
            raise DiscoveryError("document is not UTF-8 text") from None
    elif isinstance(document, str):
        if len(document) > MAX_DISCOVERY_BYTES:
            raise DiscoveryError(f"document is over {MAX_DISCOVERY_BYTES} characters")
        text = document
    else:
        raise TypeError("a discovery document is bytes, str or a JSON object")
    try:
        data = loads_json(text.removeprefix("\ufeff"))
    except Base64Error as exc:
        raise DiscoveryError(f"document: {exc}") from None
    if not isinstance(data, dict):
        raise DiscoveryError("document: not a JSON object")
    return data


def _required_text(data: Mapping[str, Any], name: str, where: str) -> str:
    value = _text(data, name, where)
    if value is None:
        raise DiscoveryError(f"{where}.{name}: missing")
    return value


def _text(data: Mapping[str, Any], name: str, where: str, *, limit: int = _MAX_TEXT) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DiscoveryError(f"{where}.{name}: not a string")
    if len(value) > limit:
        raise DiscoveryError(f"{where}.{name}: longer than {limit} characters")
    return value


def _offers(raw: Any, where: str) -> tuple[DiscoveredOffer, ...]:
    if not isinstance(raw, Mapping):
        raise DiscoveryError(f"{where}: not an object")
    if "offers" not in raw:
        return (_offer(raw, where),)  # the single-offer shorthand
    mixed = sorted(_OFFER_FIELDS & set(raw))
    if mixed:
        raise DiscoveryError(f"{where}: 'offers' cannot be mixed with offer fields ({mixed})")
    offers = raw["offers"]
    if not isinstance(offers, list) or not offers:
        raise DiscoveryError(f"{where}.offers: not a non-empty array")
    if len(offers) > MAX_OFFERS:
        raise DiscoveryError(f"{where}.offers: more than {MAX_OFFERS} offers")
    return tuple(_offer(offer, f"{where}.offers[{i}]") for i, offer in enumerate(offers))


def _offer(raw: Any, where: str) -> DiscoveredOffer:
    if not isinstance(raw, Mapping):
        raise DiscoveryError(f"{where}: not an object")
    method = raw.get("method")
    if not isinstance(method, str) or METHOD_RE.fullmatch(method) is None or len(method) > 64:
        raise DiscoveryError(f"{where}.method: not a payment method id ([a-z][a-z0-9:_-]*)")
    intent = raw.get("intent")
    if not isinstance(intent, str) or INTENT_RE.fullmatch(intent) is None or len(intent) > 64:
        raise DiscoveryError(f"{where}.intent: not an intent name")
    # The draft requires "amount" but lets it be null (dynamic pricing); a
    # missing one is read the same way, as the peers do.
    amount = raw.get("amount")
    if amount is not None and (not isinstance(amount, str) or BASE_UNITS.fullmatch(amount) is None):
        raise DiscoveryError(
            f"{where}.amount: must be null or a string of base-unit digits (not a JSON number)"
        )
    currency = _text(raw, "currency", where, limit=_MAX_CURRENCY)
    if currency == "":
        raise DiscoveryError(f"{where}.currency: empty")
    return DiscoveredOffer(
        method=method,
        intent=intent,
        amount=int(amount) if amount is not None else None,
        currency=currency,
        description=_text(raw, "description", where),
    )


def _service_info(raw: Any) -> tuple[tuple[str, ...], dict[str, str]]:
    if raw is None:
        return (), {}
    where = "x-service-info"
    if not isinstance(raw, Mapping):
        raise DiscoveryError(f"{where}: not an object")
    categories = raw.get("categories", [])
    if not isinstance(categories, list) or not all(
        isinstance(c, str) and len(c) <= 64 for c in categories
    ):
        raise DiscoveryError(f"{where}.categories: not an array of short strings")
    docs = raw.get("docs", {})
    if not isinstance(docs, Mapping):
        raise DiscoveryError(f"{where}.docs: not an object")
    links: dict[str, str] = {}
    for name in ("apiReference", "homepage", "llms"):
        value = _text(docs, name, f"{where}.docs", limit=2_000)
        if value is not None:
            links[name] = value
    return tuple(categories[:32]), links
