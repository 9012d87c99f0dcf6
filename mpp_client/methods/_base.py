"""The payment-method interface: how a wallet adapter plugs into the flow.

A wallet author reads one docstring, :class:`PaymentMethod`'s. The hooks of
earlier versions (``pay(challenge)``, ``source``, ``credential_source``,
``moves_funds_on_pay``, ``funds_moved``) still work, with a
``DeprecationWarning`` when the class is defined; they will be removed in 0.3.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import anyio.to_thread

from ..protocol import Challenge, ChargeTerms, Quote, charge_terms

__all__ = ["ChargeTerms", "PaymentMethod", "Quote", "charge_terms"]

#: Hooks of earlier versions, replaced by ``Quote.payer`` and ``Quote.moves_funds``.
#: (A ``source`` attribute alone is only informational now: classes using the
#: earlier hooks still have it read as the payer when their quote names none.)
_LEGACY_HOOKS = ("credential_source", "moves_funds_on_pay", "funds_moved")


class PaymentMethod(abc.ABC):
    """A way to pay: one wallet adapter for one MPP payment method.

    Subclass it, set ``name`` (the challenge's ``method``, ``[a-z][a-z0-9:_-]*``)
    and ``intents``, and implement two methods::

        class Voucher(PaymentMethod):
            name = "voucher"

            def quote(self, challenge):
                terms = charge_terms(challenge)
                return Quote(Amount(terms.amount, "USD", 2), terms.recipient or "",
                             self.name, challenge.intent, terms.expires, terms.currency,
                             moves_funds=False)        # the server redeems the code

            def pay(self, challenge, quote):
                return {"code": my_backend.issue(challenge.id, quote.amount)}

    ``quote(challenge)`` reads the terms from ``challenge.request`` (never
    from ``description``) and spends nothing: the policy may still refuse.
    Raise :class:`~mpp_client.ChallengeError` for terms you will not pay.
    Fill the quote's ``payer`` (the DID for the credential's ``source``) and
    ``moves_funds`` (does ``pay`` itself move money?), and keep what you
    parsed in ``prepared``.

    ``pay(challenge, quote)`` runs only after the policy allowed that quote
    and the ledger reserved it, and returns the credential payload (a JSON
    object). Raise :class:`~mpp_client.PaymentFailed` when nothing was spent
    (the reservation is released) and
    :class:`~mpp_client.PaymentOutcomeUnknown` when money may have moved
    (it stays counted). Any other exception, or a cancellation, counts as
    unknown if ``quote.moves_funds`` and as nothing spent otherwise.

    ``apay(challenge, quote)`` is the async ``pay``; the default runs ``pay``
    in a worker thread. Override it when paying is network I/O.
    """

    #: The method id as it appears in challenges (``[a-z][a-z0-9:_-]*``).
    name: ClassVar[str] = ""
    #: The intents this method can pay.
    intents: ClassVar[frozenset[str]] = frozenset({"charge"})
    #: Set on subclasses written against the earlier hooks (see the module notes).
    _legacy_hooks: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr in ("pay", "apay"):
            fn = cls.__dict__.get(attr)
            if fn is not None and _takes_only_challenge(fn):
                warnings.warn(
                    f"{cls.__qualname__}.{attr}(challenge) is deprecated: define "
                    f"{attr}(challenge, quote); the old form is removed in 0.3",
                    DeprecationWarning,
                    stacklevel=3,
                )
                setattr(cls, attr, _ignore_quote(fn))
        legacy = [hook for hook in _LEGACY_HOOKS if hook in cls.__dict__]
        if legacy:
            warnings.warn(
                f"{cls.__qualname__} defines {', '.join(legacy)}: deprecated, set the "
                "quote's payer and moves_funds instead; removed in 0.3",
                DeprecationWarning,
                stacklevel=3,
            )
            cls._legacy_hooks = True

    def supports(self, challenge: Challenge) -> bool:
        """True when this method can answer ``challenge``."""
        return challenge.method == self.name and challenge.intent in self.intents

    @abc.abstractmethod
    def quote(self, challenge: Challenge) -> Quote:
        """Read the terms: amount, asset, payee, expiry. Raise ChallengeError if unusable."""

    @abc.abstractmethod
    def pay(self, challenge: Challenge, quote: Quote) -> Mapping[str, Any]:
        """Pay what ``quote`` says and return the credential payload (a JSON object)."""

    async def apay(self, challenge: Challenge, quote: Quote) -> Mapping[str, Any]:
        """Async :meth:`pay`. The default runs ``pay`` in a worker thread;
        methods whose payment is network I/O should override it."""
        return await anyio.to_thread.run_sync(self.pay, challenge, quote)

    # -- what the flow calls (not part of the wallet author's contract) --------------

    def _flow_quote(self, challenge: Challenge) -> Quote:
        """``quote``, with ``payer``/``moves_funds`` taken from the earlier hooks if defined."""
        quote = self.quote(challenge)
        if not self._legacy_hooks or not isinstance(quote, Quote):
            return quote
        payer = quote.payer
        if payer is None:
            source: Any = getattr(self, "credential_source", None)
            payer = source(challenge) if callable(source) else getattr(self, "source", None)
        moves = getattr(self, "moves_funds_on_pay", quote.moves_funds)
        return dataclasses.replace(quote, payer=payer, moves_funds=bool(moves))

    def _flow_moved(self, challenge: Challenge, quote: Quote, payload: Mapping[str, Any]) -> bool:
        """Whether money moved once ``pay`` returned ``payload``."""
        funds_moved: Any = getattr(self, "funds_moved", None) if self._legacy_hooks else None
        if callable(funds_moved):
            return bool(funds_moved(challenge, payload))
        return quote.moves_funds

    def __repr__(self) -> str:
        return f"<{type(self).__name__} method={self.name!r}>"


def _takes_only_challenge(fn: Any) -> bool:
    """True for ``def pay(self, challenge)``: the signature of earlier versions."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    return len(positional) == 2 and not variadic


def _ignore_quote(fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def adapted_async(self: Any, challenge: Challenge, quote: Quote) -> Any:
            return await fn(self, challenge)

        return adapted_async

    @functools.wraps(fn)
    def adapted(self: Any, challenge: Challenge, quote: Quote) -> Any:
        return fn(self, challenge)

    return adapted
