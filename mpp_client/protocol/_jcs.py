"""JSON Canonicalization Scheme (RFC 8785).

Used wherever bytes are signed or bound: challenge requests the embedded server
issues, dev vouchers, and (later) mandates and ledger record hashes. Kept in
the core so the package does not need a dependency for forty lines.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["canonical_json"]


def _number(value: float) -> str:
    """Format a float the way ECMAScript's Number.prototype.toString does."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError("JCS cannot encode NaN or Infinity")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digits that round-trip, as ECMAScript requires.
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    exponent_shift = int(exp_text) if exp_text else 0
    # Find n such that value = 0.DIGITS * 10**n, with DIGITS free of outer zeros.
    if int_part.strip("0"):
        point = len(int_part) + exponent_shift
    else:
        point = exponent_shift - (len(frac_part) - len(frac_part.lstrip("0")))
    digits = (int_part + frac_part).strip("0") or "0"
    k = len(digits)
    if k <= point <= 21:
        return sign + digits + "0" * (point - k)
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    exponent = point - 1
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{head}e{'+' if exponent > 0 else '-'}{abs(exponent)}"


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int):
        # Written exactly. RFC 8785 peers read integers beyond 2**53 as doubles,
        # so money and ids travel as strings; this only keeps round trips exact.
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, Mapping):
        out.append("{")
        if not all(isinstance(key, str) for key in value):
            raise TypeError("JCS object keys must be strings")
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
        for index, key in enumerate(keys):
            if index:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"JCS cannot encode {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    """Serialize ``value`` as RFC 8785 canonical JSON, UTF-8 encoded."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")
