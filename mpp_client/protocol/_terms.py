"""The terms of a ``charge``: what a challenge asks for, and what paying it would cost.

:func:`charge_terms` reads the fields every charge request shares (amount,
currency, recipient, expiry); a payment method reads its own from
``methodDetails`` and answers with a :class:`Quote`. The policy decides on
the quote, the ledger records it, the flow checks it: the words live here,
in the pure wire room, so none of those rooms has to import another.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._exceptions import ChallengeError
from ..money import Amount
from ._challenge import Challenge
from ._time import parse_rfc3339

__all__ = ["BASE_UNITS", "ChargeTerms", "Quote", "charge_terms"]

#: An amount in base units on the wire: a decimal digit string, no sign, no
#: leading zeros, at most 78 digits (a uint256).
BASE_UNITS = re.compile(r"0|[1-9][0-9]{0,77}")


@dataclass(frozen=True, slots=True)
class Quote:
    """What paying a challenge would cost, and how, as the wallet understands the terms.

    ``amount`` is in the asset the method pays with (base units plus
    decimals); ``payee`` is who receives it. The policy decides on this, so a
    method must fill it from the challenge's ``request``, never from its
    ``description``. The flow hands the same quote back to the wallet's
    ``pay``, so what is paid is what was decided.
    """

    amount: Amount
    payee: str
    method: str
    intent: str
    expires: datetime | None = None
    #: The currency exactly as the challenge wrote it (``usd``, a token address...).
    currency: str = ""
    chain_id: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    #: The payer's id for the credential's ``source`` (a DID), if the wallet has one.
    payer: str | None = None
    #: Whether paying this quote moves money by itself (a transfer the wallet
    #: broadcasts). Then a server refusing the credential, or a failure inside
    #: ``pay``, leaves the outcome unknown (still counted, never paid again).
    #: False when the payload only authorizes a payment the server makes (a
    #: voucher, a signed authorization or transaction): a refusal then means
    #: nothing was spent. True, the cautious answer, unless the wallet says.
    moves_funds: bool = True
    #: What the wallet prepared while quoting (its own reading of the terms),
    #: handed back to ``pay`` so the challenge is not parsed twice. Not
    #: compared, not shown, never recorded.
    prepared: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class ChargeTerms:
    """The common fields of a ``charge`` intent request, validated."""

    amount: int
    currency: str
    recipient: str | None
    expires: datetime | None
    external_id: str | None
    method_details: Mapping[str, Any]


def charge_terms(challenge: Challenge) -> ChargeTerms:
    """Read and check a ``charge`` request: amount, currency, recipient, expiry.

    The amount must be a string of base-10 digits (JSON numbers are refused: a
    float cannot be trusted to carry money). Unknown fields are ignored, as
    servers add their own. Raises :class:`ChallengeError`.
    """
    request = challenge.request
    amount = request.get("amount")
    if not isinstance(amount, str) or BASE_UNITS.fullmatch(amount) is None:
        raise ChallengeError(
            f"charge request 'amount' must be a string of base-unit digits, got {amount!r:.40}"
        )
    currency = request.get("currency")
    if not isinstance(currency, str) or not currency or len(currency) > 128:
        raise ChallengeError("charge request has no usable 'currency'")
    recipient = request.get("recipient")
    if recipient is not None and (not isinstance(recipient, str) or not recipient):
        raise ChallengeError("charge request 'recipient' must be a non-empty string")
    expires = challenge.expires
    raw_expires = request.get("expires")
    if raw_expires is not None:
        try:
            request_expires = parse_rfc3339(raw_expires)
        except (ValueError, TypeError):
            raise ChallengeError("charge request 'expires' is not RFC 3339") from None
        expires = request_expires if expires is None else min(expires, request_expires)
    external_id = request.get("externalId")
    details = request.get("methodDetails", {})
    if not isinstance(details, dict):
        raise ChallengeError("charge request 'methodDetails' must be an object")
    return ChargeTerms(
        amount=int(amount),
        currency=currency,
        recipient=recipient,
        expires=expires,
        external_id=external_id if isinstance(external_id, str) else None,
        method_details=details,
    )
