"""The offers of a 402: MPP challenges and x402 terms, and one spelling per payee.

A 402 may carry ``WWW-Authenticate: Payment`` challenges, x402 terms
(``PAYMENT-REQUIRED``, or a version 1 body), or both; each becomes an offer
the flow ranks and decides alike. Paying and quoting read them here, the same
way.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from datetime import datetime

import httpx

from .._exceptions import ChallengeError
from ..protocol import Challenge, Quote, parse_challenges_lenient

__all__ = ["canonical_payee", "http_offers", "same_payee"]


def http_offers(
    response: httpx.Response, now: datetime
) -> tuple[list[Challenge], list[ChallengeError]]:
    """Every offer of a 402 and every malformed one (MPP challenges first, then x402).

    Raises :class:`~mpp_client.ChallengeError` (with the response) only for a
    header no challenge can be read from at all.
    """
    try:
        offers, broken = parse_challenges_lenient(response.headers.get_list("www-authenticate"))
    except ChallengeError as exc:
        exc.response = response
        raise
    x402_offers, x402_broken = _x402_offers(response, now)
    return [*offers, *x402_offers], [*broken, *x402_broken]


def _x402_offers(
    response: httpx.Response, now: datetime
) -> tuple[list[Challenge], list[ChallengeError]]:
    """x402 (issue 13): the 402's x402 terms as offers, each 402 with fresh ids.

    Version 2 states them in ``PAYMENT-REQUIRED``, version 1 in the JSON
    body (read only when there is no such header). A header that cannot be
    read is a broken offer, like a malformed ``WWW-Authenticate`` challenge.
    """
    # x402 loads with the first 402 (see mpp_client._lazy), not with the client.
    from ..protocol import parse_x402_body, parse_x402_required, x402_challenges  # noqa: PLC0415

    try:
        header = response.headers.get("payment-required")
        if header is not None:
            required = parse_x402_required(header)
        else:
            try:
                content = response.content
            except httpx.ResponseNotRead:
                return [], []
            body = parse_x402_body(content)
            if body is None:
                return [], []
            required = body
        return x402_challenges(
            required,
            url=str(response.request.url),
            id_prefix=f"x402-{secrets.token_urlsafe(12)}",
            now=now,
        )
    except ChallengeError as exc:
        return [], [exc]


_HEX_ADDRESS = re.compile(r"0[xX][0-9a-fA-F]{40}")


def same_payee(expected: str, payee: str) -> bool:
    """Payee ids compare exactly, except hex addresses, which compare by value."""
    if _HEX_ADDRESS.fullmatch(expected) and _HEX_ADDRESS.fullmatch(payee):
        return expected.lower() == payee.lower()
    return expected == payee


def canonical_payee(quote: Quote) -> Quote:
    """One spelling per payee: hex addresses are case-insensitive, so lowercase them.

    Otherwise "0xAbC..." and "0xabc..." would be two payees to per-payee
    budgets, rate limits, history and the circuit breaker.
    """
    if not isinstance(quote, Quote):
        raise ChallengeError("the payment method returned something other than a Quote")
    if _HEX_ADDRESS.fullmatch(quote.payee) and quote.payee != quote.payee.lower():
        return dataclasses.replace(quote, payee=quote.payee.lower())
    return quote
