"""The ``stripe`` payment method: one-time charges paid with Shared Payment Tokens.

Implements the client side of ``draft-stripe-charge-00``. A challenge asks for
``amount`` in the smallest unit of ``currency`` and names the seller's Stripe
Business Network profile (``methodDetails.networkId``) and the payment method
types the seller accepts (``methodDetails.paymentMethodTypes``). The wallet
creates a Shared Payment Token (SPT) from its configured PaymentMethod, limited
to exactly this payment, and sends its id as the payload::

    {"spt": "spt_...", "externalId": "<the request's externalId, if any>"}

The SPT is created with ``POST /v1/shared_payment/issued_tokens``::

    payment_method=pm_...
    usage_limits[currency]=<currency>          the challenge's, lowercase
    usage_limits[max_amount]=<amount>          the challenge's amount, exactly
    usage_limits[expires_at]=<unix seconds>    no later than the challenge expires
    seller_details[network_business_profile]=<methodDetails.networkId>

so the seller can charge at most this amount, in this currency, before the
challenge expires, and no one but this seller can use it. The token is only an
authorization: the seller charges it when it receives the credential
(its quotes say ``moves_funds=False``), and a token that is never sent can never be
used. A token Stripe returns in any state but ``active`` (say
``requires_action``, a 3-D Secure step an agent cannot take) or with limits
other than those asked for is revoked and the payment fails.

The payload echoes the ``externalId`` of the charge request, as
the reference SDKs (mppx, pympp) do and their servers require.

Needs the ``stripe`` extra (the ``stripe`` SDK). The secret key goes to the
SDK's client (and is kept to scrub it from Stripe's messages): it never appears
in ``repr()``, errors or logs, and the wallet refuses to be pickled. ``apay`` uses
the SDK's async HTTP client (httpx), so it never blocks the event loop;
``pay`` its default synchronous one (requests).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, NoReturn

try:
    import stripe
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        'the stripe payment method needs the stripe SDK: pip install "mpp-client[stripe]"'
    ) from exc

from .._exceptions import (
    ChallengeError,
    ChallengeExpired,
    PaymentFailed,
    TermsExpired,
    TermsRefused,
)
from .._text import get_logger
from ..money import Amount
from ..protocol import Challenge
from ._base import PaymentMethod, Quote, charge_terms

__all__ = [
    "DEFAULT_STRIPE_VERSION",
    "SPT_PATH",
    "StripeTerms",
    "StripeWallet",
    "spt_params",
    "stripe_terms",
]

logger = get_logger("mpp_client.stripe")

#: The API version the SPT endpoints are requested with: Shared Payment Tokens
#: are a preview feature, outside the SDK's pinned GA version.
DEFAULT_STRIPE_VERSION = "2026-07-29.preview"
#: Where Shared Payment Tokens are issued.
SPT_PATH = "/v1/shared_payment/issued_tokens"

_CURRENCY = re.compile(r"[a-z]{3}")
_KEY_LIKE = re.compile(r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z_*]+")


@dataclass(frozen=True, slots=True)
class StripeTerms:
    """A ``stripe`` charge request, validated (see :func:`stripe_terms`)."""

    amount: int
    currency: str
    network_id: str
    payment_method_types: tuple[str, ...]
    recipient: str | None
    expires: datetime | None
    external_id: str | None
    metadata: Mapping[str, str]


def stripe_terms(challenge: Challenge) -> StripeTerms:
    """Read and check a ``stripe`` charge request. Raises :class:`ChallengeError`."""
    if challenge.intent != "charge":
        raise ChallengeError(f"stripe intent {challenge.intent!r} is not supported (only charge)")
    terms = charge_terms(challenge)
    currency = terms.currency.lower()
    if _CURRENCY.fullmatch(currency) is None:
        raise ChallengeError(
            f"stripe charge currency must be a three-letter ISO code, got {terms.currency!r:.40}"
        )
    if terms.amount <= 0:
        raise ChallengeError("stripe charge amount must be positive")
    details = terms.method_details
    network_id = details.get("networkId")
    if not isinstance(network_id, str) or not network_id.strip() or len(network_id) > 255:
        raise ChallengeError("stripe charge has no methodDetails.networkId (the seller's profile)")
    types = details.get("paymentMethodTypes")
    if not isinstance(types, list) or not types or not all(isinstance(t, str) and t for t in types):
        raise ChallengeError(
            "stripe charge methodDetails.paymentMethodTypes must be a non-empty list of strings"
        )
    metadata = details.get("metadata", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ChallengeError("stripe charge methodDetails.metadata must map strings to strings")
    external_id = challenge.request.get("externalId")
    if external_id is not None and not isinstance(external_id, str):
        raise ChallengeError("stripe charge externalId must be a string")
    return StripeTerms(
        amount=terms.amount,
        currency=currency,
        network_id=network_id,
        payment_method_types=tuple(types),
        recipient=terms.recipient,
        expires=terms.expires,
        external_id=external_id,
        metadata=dict(metadata),
    )


def spt_params(terms: StripeTerms, *, payment_method: str, expires_at: int) -> dict[str, Any]:
    """The ``POST /v1/shared_payment/issued_tokens`` parameters for ``terms``."""
    return {
        "payment_method": payment_method,
        "usage_limits": {
            "currency": terms.currency,
            "max_amount": terms.amount,
            "expires_at": expires_at,
        },
        "seller_details": {"network_business_profile": terms.network_id},
    }


def _idempotency_key(challenge: Challenge, params: Mapping[str, Any]) -> str:
    # The same challenge and the same parameters get the same key, so a retry
    # (ours or the SDK's) returns the token already created instead of a second one.
    limits = params["usage_limits"]
    material = "\n".join(
        (
            challenge.realm,
            challenge.id,
            challenge.request_b64,
            str(params["payment_method"]),
            str(limits["currency"]),
            str(limits["max_amount"]),
            str(limits["expires_at"]),
            str(params["seller_details"]["network_business_profile"]),
        )
    )
    return "mpp-spt-" + hashlib.sha256(material.encode("utf-8")).hexdigest()[:48]


class StripeWallet(PaymentMethod):
    """Pays ``stripe`` charges with Shared Payment Tokens from one PaymentMethod.

    ::

        wallet = StripeWallet(
            os.environ["STRIPE_SECRET_KEY"],
            payment_method="pm_1Q...",
            network_ids=["profile_1MqDcVKA5fEO2tZvKQm9g8Yj"],   # the sellers it pays
        )

    ``secret_key``: a secret (``sk_``) or restricted (``rk_``) key of the
    Stripe account that owns ``payment_method``. ``payment_method_type``: the
    type of that PaymentMethod (``card`` by default); a seller whose
    ``paymentMethodTypes`` does not list it is refused. ``currencies``: the
    currencies paid and their decimals (``{"usd": 2}``); the quote is in the
    upper-cased code. ``network_ids``: when given, the only seller profiles
    paid. ``token_lifetime``: the longest an SPT may live; a challenge that
    expires sooner bounds it further. ``stripe_account`` sends
    ``Stripe-Account`` (a connected account); ``api_base`` points the SDK at
    another host (a test double); ``http_client`` replaces the SDK's HTTP
    client (it must support async calls for ``apay``).
    """

    name: ClassVar[str] = "stripe"

    def __init__(
        self,
        secret_key: str,
        *,
        payment_method: str,
        payment_method_type: str = "card",
        currencies: Mapping[str, int] | None = None,
        network_ids: Iterable[str] | None = None,
        token_lifetime: timedelta = timedelta(minutes=10),
        stripe_version: str = DEFAULT_STRIPE_VERSION,
        stripe_account: str | None = None,
        api_base: str | None = None,
        max_network_retries: int = 2,
        timeout: float = 30.0,
        http_client: stripe.HTTPClient | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not isinstance(secret_key, str) or not secret_key.startswith(("sk_", "rk_")):
            # Never echo the value: it may be a live key pasted in the wrong place.
            raise ValueError(
                "secret_key must be a Stripe secret (sk_...) or restricted (rk_...) key"
            )
        if not isinstance(payment_method, str) or not payment_method.strip():
            raise ValueError("payment_method must be a Stripe PaymentMethod id (pm_...)")
        self.payment_method = payment_method
        self.payment_method_type = payment_method_type
        chosen = {"usd": 2} if currencies is None else dict(currencies)
        for code, decimals in chosen.items():
            if _CURRENCY.fullmatch(code.lower()) is None:
                raise ValueError(f"currency {code!r} is not a three-letter ISO code")
            if not isinstance(decimals, int) or not 0 <= decimals <= 4:
                raise ValueError(f"decimals of {code!r} must be an int between 0 and 4")
        self.currencies = {code.lower(): decimals for code, decimals in chosen.items()}
        self.network_ids = None if network_ids is None else frozenset(network_ids)
        if token_lifetime <= timedelta(0):
            raise ValueError("token_lifetime must be positive")
        self.token_lifetime = token_lifetime
        self.stripe_version = stripe_version
        self.stripe_account = stripe_account
        self._clock = clock or (lambda: datetime.now(UTC))
        if http_client is None:
            # The SDK's own defaults: requests for pay, httpx for apay.
            http_client = stripe.RequestsClient(
                timeout=timeout, async_fallback_client=stripe.HTTPXClient(timeout=timeout)
            )
        self._client = stripe.StripeClient(
            secret_key,
            stripe_version=stripe_version,
            stripe_account=stripe_account,
            base_addresses={"api": api_base} if api_base is not None else None,
            max_network_retries=max_network_retries,
            http_client=http_client,
        )
        # Kept only to scrub it from messages Stripe sends back; never shown.
        self._scrub_key = secret_key

    # -- checking -----------------------------------------------------------------

    def _terms(self, challenge: Challenge) -> StripeTerms:
        terms = stripe_terms(challenge)
        if terms.currency not in self.currencies:
            raise ChallengeError(
                f"stripe charge is in {terms.currency!r}; the wallet pays "
                f"{', '.join(sorted(self.currencies))}"
            )
        if self.network_ids is not None and terms.network_id not in self.network_ids:
            raise ChallengeError(
                f"stripe seller profile {terms.network_id!r} is not one the wallet pays"
            )
        if self.payment_method_type not in terms.payment_method_types:
            raise ChallengeError(
                f"the seller accepts {', '.join(terms.payment_method_types)}; the wallet's "
                f"payment method is a {self.payment_method_type!r}"
            )
        return terms

    def _expires_at(self, terms: StripeTerms) -> int:
        now = self._clock()
        bound = now + self.token_lifetime
        if terms.expires is not None:
            if terms.expires <= now:
                raise ChallengeExpired(f"stripe charge expired at {terms.expires.isoformat()}")
            bound = min(bound, terms.expires)
        # Whole seconds, rounded down: never later than the challenge's expiry.
        expires_at = math.floor(bound.timestamp())
        if expires_at <= math.floor(now.timestamp()):
            raise ChallengeExpired("stripe charge expires too soon to issue a token for it")
        return expires_at

    def quote(self, challenge: Challenge) -> Quote:
        terms = self._terms(challenge)
        expires_at = self._expires_at(terms)
        details: dict[str, Any] = {
            "networkId": terms.network_id,
            "paymentMethodTypes": terms.payment_method_types,
            "tokenExpiresAt": expires_at,
        }
        if terms.recipient is not None:
            details["recipient"] = terms.recipient
        return Quote(
            amount=Amount(terms.amount, terms.currency.upper(), self.currencies[terms.currency]),
            # The token is granted to this profile: it is who can take the money.
            payee=terms.network_id,
            method=self.name,
            intent=challenge.intent,
            expires=terms.expires,
            currency=terms.currency,
            details=details,
            moves_funds=False,  # a token the seller charges when it gets the credential
            prepared=terms,
        )

    def _prepare(
        self, challenge: Challenge, quote: Quote
    ) -> tuple[StripeTerms, dict[str, Any], dict[str, Any]]:
        """The quoted terms, with the token's expiry computed now (time has passed)."""
        terms = quote.prepared if isinstance(quote.prepared, StripeTerms) else None
        try:
            terms = terms or self._terms(challenge)
            expires_at = self._expires_at(terms)
        except ChallengeExpired as exc:
            raise TermsExpired(exc.message) from None
        except ChallengeError as exc:
            raise TermsRefused(exc.message) from None
        params = spt_params(terms, payment_method=self.payment_method, expires_at=expires_at)
        options: dict[str, Any] = {
            "idempotency_key": _idempotency_key(challenge, params),
            "stripe_version": self.stripe_version,
        }
        return terms, params, options

    # -- paying -------------------------------------------------------------------

    def pay(self, challenge: Challenge, quote: Quote) -> Mapping[str, Any]:
        terms, params, options = self._prepare(challenge, quote)
        try:
            response = self._client.raw_request("post", SPT_PATH, **params, **options)
        except stripe.StripeError as exc:
            raise self._failed("create", exc) from None
        token = self._token(response)
        problem = self._problem(token, params)
        if problem is not None:
            self._revoke(token)
            raise PaymentFailed(f"{problem}; the token was revoked and nothing was paid")
        return self._payload(terms, token, params)

    async def apay(self, challenge: Challenge, quote: Quote) -> Mapping[str, Any]:
        terms, params, options = self._prepare(challenge, quote)
        try:
            response = await self._client.raw_request_async("post", SPT_PATH, **params, **options)
        except stripe.StripeError as exc:
            raise self._failed("create", exc) from None
        token = self._token(response)
        problem = self._problem(token, params)
        if problem is not None:
            await self._arevoke(token)
            raise PaymentFailed(f"{problem}; the token was revoked and nothing was paid")
        return self._payload(terms, token, params)

    def _token(self, response: Any) -> dict[str, Any]:
        try:
            body = self._client.deserialize(response, api_mode="V1").to_dict()
        except Exception:
            raise PaymentFailed(
                "Stripe answered the token request with an unreadable body"
            ) from None
        if not isinstance(body, dict):
            raise PaymentFailed("Stripe answered the token request with an unreadable body")
        return body

    @staticmethod
    def _problem(token: Mapping[str, Any], params: Mapping[str, Any]) -> str | None:
        """Why the token Stripe returned cannot be sent, or None when it can."""
        token_id = token.get("id")
        if not isinstance(token_id, str) or not token_id.startswith("spt_"):
            return "Stripe returned no Shared Payment Token id"
        status = token.get("status")
        if status != "active":
            return f"Stripe issued token {token_id} in state {status!r:.40}, not active"
        asked = params["usage_limits"]
        limits = token.get("usage_limits")
        if isinstance(limits, Mapping) and any(
            key in limits and limits[key] != asked[key]
            for key in ("currency", "max_amount", "expires_at")
        ):
            return f"Stripe issued token {token_id} with other usage limits than asked for"
        seller = token.get("seller_details")
        profile = params["seller_details"]["network_business_profile"]
        if isinstance(seller, Mapping) and seller.get("network_business_profile") not in (
            None,
            profile,
        ):
            return f"Stripe issued token {token_id} for another seller than asked for"
        return None

    def _payload(
        self, terms: StripeTerms, token: Mapping[str, Any], params: Mapping[str, Any]
    ) -> dict[str, Any]:
        limits = params["usage_limits"]
        logger.info(
            "stripe: issued %s for %s %s to seller %s, expiring at %s",
            token["id"],
            limits["max_amount"],
            limits["currency"],
            terms.network_id,
            limits["expires_at"],
        )
        payload: dict[str, Any] = {"spt": token["id"]}
        if terms.external_id is not None:
            payload["externalId"] = terms.external_id
        return payload

    def _revoke_path(self, token: Mapping[str, Any]) -> str:
        return f"{SPT_PATH}/{token['id']}/revoke"

    def _revoke(self, token: Mapping[str, Any]) -> None:
        try:
            self._client.raw_request(
                "post", self._revoke_path(token), stripe_version=self.stripe_version
            )
        except stripe.StripeError as exc:
            logger.warning("stripe: could not revoke %s: %s", token["id"], self._describe(exc))

    async def _arevoke(self, token: Mapping[str, Any]) -> None:
        try:
            await self._client.raw_request_async(
                "post", self._revoke_path(token), stripe_version=self.stripe_version
            )
        except stripe.StripeError as exc:
            logger.warning("stripe: could not revoke %s: %s", token["id"], self._describe(exc))

    def _describe(self, exc: stripe.StripeError) -> str:
        parts = [type(exc).__name__]
        if exc.http_status is not None:
            parts.append(f"HTTP {exc.http_status}")
        if exc.code:
            parts.append(f"code {exc.code}")
        message = exc.user_message or ""
        if message:
            message = _KEY_LIKE.sub("[redacted]", message.replace(self._scrub_key, "[redacted]"))
            parts.append(message[:200])
        return ", ".join(parts)

    def _failed(self, action: str, exc: stripe.StripeError) -> PaymentFailed:
        # The token was not created, or was created and will never be sent:
        # either way nothing can be charged.
        return PaymentFailed(
            f"Stripe could not {action} the Shared Payment Token ({self._describe(exc)}); "
            "nothing was paid"
        )

    # -- hygiene ------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"<StripeWallet payment_method={self.payment_method!r}>"

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("StripeWallet cannot be pickled: that would write its key in the clear")

    def __reduce__(self) -> NoReturn:
        self.__reduce_ex__(None)

    def __getstate__(self) -> NoReturn:
        self.__reduce_ex__(None)
