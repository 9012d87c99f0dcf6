"""The ``Accept-Payment`` request header: which method/intent pairs we can pay.

It is advisory: servers may use it to order or filter their offers, but the
challenge they send stays authoritative and is validated like any other.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._challenge import INTENT_RE, METHOD_RE

__all__ = ["format_accept_payment"]


def _q(weight: float | int | str) -> str:
    # q-values are decimals with at most three digits (RFC 9110 §12.4.2).
    text = str(weight)
    whole, _, frac = text.partition(".")
    if whole not in ("0", "1") or (whole == "1" and frac.strip("0")) or len(frac) > 3:
        raise ValueError(f"q must be between 0 and 1 with at most 3 decimals, got {weight!r}")
    if frac and not (frac.isascii() and frac.isdigit()):  # "0.٥" is not a q-value
        raise ValueError(f"q must be between 0 and 1 with at most 3 decimals, got {weight!r}")
    frac = frac.rstrip("0")
    return whole + ("." + frac if frac else "")


def format_accept_payment(ranges: Iterable[tuple[str, str, float | int | str]]) -> str:
    """Build ``Accept-Payment`` from ``(method, intent, q)`` triples, in order.

    ``"*"`` is allowed for method or intent. ``q=1`` is left implicit.

    >>> format_accept_payment([("tempo", "charge", 1), ("stripe", "charge", "0.5")])
    'tempo/charge, stripe/charge;q=0.5'
    """
    parts: list[str] = []
    for method, intent, weight in ranges:
        if method != "*" and METHOD_RE.fullmatch(method) is None:
            raise ValueError(f"invalid payment method id {method!r}")
        if intent != "*" and INTENT_RE.fullmatch(intent) is None:
            raise ValueError(f"invalid intent {intent!r}")
        q = _q(weight)
        parts.append(f"{method}/{intent}" + ("" if q == "1" else f";q={q}"))
    return ", ".join(parts)
