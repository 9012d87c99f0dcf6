"""``Payment-Receipt`` headers and RFC 9457 problem details."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._exceptions import ProtocolError
from ._b64 import Base64Error, b64url_decode_json, b64url_encode, loads_json
from ._jcs import canonical_json
from ._time import format_rfc3339, parse_rfc3339

__all__ = ["PROBLEM_BASE", "Problem", "Receipt"]

PROBLEM_BASE = "https://paymentauth.org/problems/"
_MAX_RECEIPT_BYTES = 16 * 1024
_MAX_PROBLEM_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof of settlement returned by the server with the paid resource.

    ``reference`` is method specific (a transaction hash, an invoice id, a
    voucher id). ``data`` keeps every field as received, method extras included.
    """

    status: str
    method: str
    reference: str
    timestamp: datetime | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> Receipt:
        """Decode a ``Payment-Receipt`` header value. Raises :class:`ProtocolError`."""
        if not isinstance(value, str):
            raise ProtocolError("Payment-Receipt must be a string")
        value = value.strip()
        if len(value) > _MAX_RECEIPT_BYTES:
            raise ProtocolError(f"Payment-Receipt is over the {_MAX_RECEIPT_BYTES} byte limit")
        try:
            data = b64url_decode_json(value)
        except Base64Error as exc:
            raise ProtocolError(
                f"Payment-Receipt must be base64url of a JSON object: it {exc}"
            ) from None
        status = data.get("status")
        if status != "success":
            raise ProtocolError(f"Payment-Receipt status must be 'success', got {status!r:.40}")
        method = data.get("method")
        reference = data.get("reference")
        if not isinstance(method, str) or not method:
            raise ProtocolError("Payment-Receipt has no 'method'")
        if not isinstance(reference, str) or not reference:
            raise ProtocolError("Payment-Receipt has no 'reference'")
        timestamp: datetime | None = None
        raw_ts = data.get("timestamp")
        if raw_ts is not None:
            try:
                timestamp = parse_rfc3339(raw_ts)
            except (ValueError, TypeError):
                raise ProtocolError("Payment-Receipt 'timestamp' is not RFC 3339") from None
        return cls(
            status=status, method=method, reference=reference, timestamp=timestamp, data=data
        )

    @staticmethod
    def peek_status(value: str) -> str | None:
        """The ``status`` a ``Payment-Receipt`` claims, even when the receipt is unusable.

        Lets a client tell a receipt that reports a failed payment from one
        that is merely malformed. None when there is no readable status string.
        """
        if not isinstance(value, str) or len(value) > _MAX_RECEIPT_BYTES:
            return None
        try:
            status = b64url_decode_json(value.strip()).get("status")
        except Base64Error:
            return None
        return status if isinstance(status, str) else None

    def to_header(self) -> str:
        """Encode as a ``Payment-Receipt`` value (JCS, base64url)."""
        body: dict[str, Any] = dict(self.data)
        body.update(status=self.status, method=self.method, reference=self.reference)
        if self.timestamp is not None:
            body["timestamp"] = format_rfc3339(self.timestamp)
        return b64url_encode(canonical_json(body))


@dataclass(frozen=True, slots=True)
class Problem:
    """An RFC 9457 problem detail from a failed payment attempt.

    ``code`` is the last segment of a ``https://paymentauth.org/problems/``
    type (``verification-failed``, ``payment-expired``...), else ``None``.
    ``detail`` is the server's text: display it, never act on it.
    """

    type: str = "about:blank"
    title: str | None = None
    status: int | None = None
    detail: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def code(self) -> str | None:
        if self.type.startswith(PROBLEM_BASE):
            return self.type[len(PROBLEM_BASE) :] or None
        return None

    @classmethod
    def parse(cls, body: bytes | str, content_type: str | None = None) -> Problem | None:
        """Decode a problem body; ``None`` when the body is not a problem object.

        Lenient by design: the problem only explains a failure we already
        handle by status code, so a malformed one must not mask that failure.
        """
        if content_type is not None:
            media = content_type.split(";", 1)[0].strip().lower()
            if media not in ("application/problem+json", "application/json"):
                return None
        if len(body) > _MAX_PROBLEM_BYTES or not body:
            return None
        try:
            text = body.decode("utf-8") if isinstance(body, bytes) else body
            data = loads_json(text)
        except (UnicodeDecodeError, Base64Error):
            return None
        if not isinstance(data, dict):
            return None
        type_ = data.get("type", "about:blank")
        status = data.get("status")
        title = data.get("title")
        detail = data.get("detail")
        return cls(
            type=type_ if isinstance(type_, str) else "about:blank",
            title=title if isinstance(title, str) else None,
            status=status if isinstance(status, int) and not isinstance(status, bool) else None,
            detail=detail if isinstance(detail, str) else None,
            data=data,
        )

    @classmethod
    def build(cls, code: str, *, status: int = 402, title: str, detail: str) -> Problem:
        """A problem of type ``https://paymentauth.org/problems/<code>``."""
        data = {"type": PROBLEM_BASE + code, "title": title, "status": status, "detail": detail}
        return cls(type=PROBLEM_BASE + code, title=title, status=status, detail=detail, data=data)

    def to_json(self) -> bytes:
        return json.dumps(dict(self.data), separators=(",", ":")).encode("utf-8")
