"""The payment-method interface: how a wallet adapter plugs into the flow."""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import anyio.to_thread

from .._exceptions import ChallengeError
from ..money import Amount
from ..protocol import Challenge, parse_rfc3339

__all__ = ["ChargeTerms", "PaymentMethod", "Quote", "charge_terms"]

_UNITS = re.compile(r"0|[1-9][0-9]{0,77}")


@dataclass(frozen=True, slots=True)
class Quote:
    """What paying a challenge would cost, as the method understands the terms.

    ``amount`` is in the asset the method pays with (base units plus
    decimals); ``payee`` is who receives it. The policy decides on this, so a
    method must fill it from the challenge's ``request``, never from its
    ``description``.
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
    if not isinstance(amount, str) or _UNITS.fullmatch(amount) is None:
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


class PaymentMethod(abc.ABC):
    """A way to pay: one wallet adapter for one MPP payment method.

    Subclass it, set ``name`` (the challenge's ``method``) and ``intents``,
    and implement :meth:`quote` and :meth:`pay`::

        class Voucher(PaymentMethod):
            name = "voucher"

            def quote(self, challenge):
                terms = charge_terms(challenge)
                return Quote(Amount(terms.amount, "USD", 2), terms.recipient or "",
                             self.name, challenge.intent, terms.expires, terms.currency)

            def pay(self, challenge):
                return {"code": my_backend.issue(challenge.id)}

    ``quote`` must not spend anything: the policy may still refuse. ``pay``
    runs only after the policy allowed and the ledger reserved the amount; it
    returns the credential ``payload``. Raise :class:`~mpp_client.PaymentFailed`
    when nothing was spent; any other exception is treated the same way unless
    ``moves_funds_on_pay`` says money may already have moved.
    """

    #: The method id as it appears in challenges (``[a-z][a-z0-9:_-]*``).
    name: ClassVar[str] = ""
    #: The intents this method can pay.
    intents: ClassVar[frozenset[str]] = frozenset({"charge"})
    #: True when ``pay`` itself moves money (a broadcast transfer): then a
    #: server that refuses the credential leaves the outcome unknown. False
    #: when the payload is only an authorization that the server redeems (a
    #: signed voucher or transaction): a refusal then means nothing was spent.
    moves_funds_on_pay: ClassVar[bool] = True

    @property
    def source(self) -> str | None:
        """The payer's identifier for the credential (a DID), if the method has one."""
        return None

    def credential_source(self, challenge: Challenge) -> str | None:
        """The payer id for the credential answering ``challenge``.

        Defaults to :attr:`source`; a wallet whose identity depends on the
        challenge (an address on the challenge's chain) overrides this.
        """
        return self.source

    def funds_moved(self, challenge: Challenge, payload: Mapping[str, Any]) -> bool:
        """Whether money already moved when :meth:`pay` returned ``payload``.

        Decides what a server refusal means: if money moved (a broadcast
        transfer), the outcome is unknown and never paid again; if not (a
        voucher, a signed transaction the server submits), nothing was spent.
        Defaults to :attr:`moves_funds_on_pay`; wallets that produce both kinds
        of payload say per payment.
        """
        return self.moves_funds_on_pay

    def supports(self, challenge: Challenge) -> bool:
        """True when this method can answer ``challenge``."""
        return challenge.method == self.name and challenge.intent in self.intents

    @abc.abstractmethod
    def quote(self, challenge: Challenge) -> Quote:
        """Read the terms: amount, asset, payee, expiry. Raise ChallengeError if unusable."""

    @abc.abstractmethod
    def pay(self, challenge: Challenge) -> Mapping[str, Any]:
        """Pay and return the credential payload (a JSON object)."""

    async def apay(self, challenge: Challenge) -> Mapping[str, Any]:
        """Async :meth:`pay`. The default runs ``pay`` in a worker thread;
        methods whose payment is network I/O should override it."""
        return await anyio.to_thread.run_sync(self.pay, challenge)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} method={self.name!r}>"
