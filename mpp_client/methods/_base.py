"""The payment-method interface: how a wallet adapter plugs into the flow."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import anyio.to_thread

from ..protocol import Challenge, ChargeTerms, Quote, charge_terms

__all__ = ["ChargeTerms", "PaymentMethod", "Quote", "charge_terms"]


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
