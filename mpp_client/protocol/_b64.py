"""Unpadded base64url (RFC 4648 section 5), strict on input.

The Payment scheme carries every structured value as base64url without
padding. Decoding is strict: padding, characters outside the URL-safe
alphabet, impossible lengths and non-zero trailing bits are all refused, so a
value has exactly one wire form and what we echo is what the server signed.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

__all__ = ["b64url_decode", "b64url_decode_json", "b64url_decode_text", "b64url_encode"]

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
# Nesting deeper than this is refused before the stdlib recursion limit would be.
_MAX_JSON_DEPTH = 64


class Base64Error(ValueError):
    """Raised for malformed base64url or JSON inside it; callers rewrap it."""


def b64url_encode(data: bytes | str) -> str:
    """Encode bytes (or UTF-8 text) as base64url without padding."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(value: str) -> bytes:
    """Decode unpadded base64url, refusing every non-canonical form."""
    if not isinstance(value, str):
        raise Base64Error("expected a string")
    if _ALPHABET.fullmatch(value) is None:
        raise Base64Error("contains characters outside the base64url alphabet (or padding)")
    if len(value) % 4 == 1:
        raise Base64Error("has an impossible length")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - alphabet already checked
        raise Base64Error("is not valid base64url") from None
    # Reject non-zero trailing bits: "YR" and "YQ" must not both mean "a".
    if b64url_encode(raw) != value:
        raise Base64Error("is not canonical (non-zero trailing bits)")
    return raw


def b64url_decode_text(value: str) -> str:
    """Decode unpadded base64url to UTF-8 text."""
    raw = b64url_decode(value)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Base64Error("does not decode to UTF-8 text") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise Base64Error(f"JSON object has a duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise Base64Error(f"JSON contains the non-standard constant {name}")


def _finite_float(text: str) -> float:
    # 1e999 is valid JSON syntax but overflows to infinity, which JCS cannot encode.
    value = float(text)
    if math.isinf(value):
        raise Base64Error("JSON contains a number out of the range of a double")
    return value


def _depth_ok(text: str) -> bool:
    depth = 0
    deepest = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest <= _MAX_JSON_DEPTH


def loads_json(text: str) -> Any:
    """Parse JSON strictly: no duplicate keys, no NaN/Infinity, bounded nesting."""
    if text.count("[") + text.count("{") > _MAX_JSON_DEPTH and not _depth_ok(text):
        raise Base64Error(f"JSON nests deeper than {_MAX_JSON_DEPTH} levels")
    try:
        obj = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except Base64Error:
        raise
    except (ValueError, RecursionError):
        raise Base64Error("is not valid JSON") from None
    if "\\u" in text or "\\U" in text:
        # An escaped lone surrogate parses, but could never be re-encoded as UTF-8.
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise Base64Error("JSON contains a lone UTF-16 surrogate") from None
    return obj


def b64url_decode_json(value: str) -> dict[str, Any]:
    """Decode unpadded base64url holding a JSON object."""
    obj = loads_json(b64url_decode_text(value))
    if not isinstance(obj, dict):
        raise Base64Error("does not hold a JSON object")
    return obj
