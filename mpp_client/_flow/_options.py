"""Per-call payment options: ``extensions={"mpp": {...}}`` on a request.

A call can narrow what the policy allows (a lower ``max_amount``, the one
``payee`` it expects), say why it pays (``purpose``, ``tags``, recorded with
the payment), or not pay at all (``pay: False``). It can never widen the
policy. Bad options are a :class:`~mpp_client.PaymentError` before anything
is sent, not a surprise after.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from .._exceptions import PaymentError
from ..money import Amount, MoneyError

__all__ = ["CallOptions"]

_OPTION_KEYS = frozenset({"purpose", "tags", "max_amount", "payee", "pay"})


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call settings from ``request.extensions["mpp"]``; they only narrow the policy."""

    purpose: str | None = None
    tags: Mapping[str, str] | None = None
    max_amount: Amount | None = None
    payee: str | None = None
    pay: bool = True

    @classmethod
    def from_request(cls, request: httpx.Request) -> CallOptions:
        """The options of ``request.extensions["mpp"]`` (none given: the defaults)."""
        raw = request.extensions.get("mpp")
        return _NO_OPTIONS if raw is None else cls.from_mapping(raw)

    @classmethod
    def from_mapping(cls, raw: object) -> CallOptions:
        """Check options given as a mapping, whatever carried them (HTTP, an MCP or tool call)."""
        if not isinstance(raw, Mapping):
            raise PaymentError('extensions["mpp"] must be a dict of payment options')
        unknown = set(raw) - _OPTION_KEYS
        if unknown:
            raise PaymentError(
                f'unknown extensions["mpp"] option(s) {sorted(unknown)}; '
                f"expected some of {sorted(_OPTION_KEYS)}"
            )
        purpose = raw.get("purpose")
        if purpose is not None and not isinstance(purpose, str):
            raise PaymentError('extensions["mpp"]["purpose"] must be a string')
        tags = raw.get("tags")
        if tags is not None and (
            not isinstance(tags, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
        ):
            raise PaymentError('extensions["mpp"]["tags"] must map strings to strings')
        max_amount = raw.get("max_amount")
        if max_amount is not None:
            try:
                max_amount = Amount.coerce(max_amount)
            except MoneyError as exc:
                raise PaymentError(f'extensions["mpp"]["max_amount"]: {exc}') from None
        payee = raw.get("payee")
        if payee is not None and not isinstance(payee, str):
            raise PaymentError('extensions["mpp"]["payee"] must be a string')
        pay = raw.get("pay", True)
        if not isinstance(pay, bool):
            raise PaymentError('extensions["mpp"]["pay"] must be True or False')
        return cls(purpose, dict(tags) if tags else None, max_amount, payee, pay)


_NO_OPTIONS = CallOptions()
