"""The ``dev`` payment method: signed vouchers, for demos and tests.

No money moves, but nothing is faked either: the wallet holds an Ed25519 key
and pays by signing a voucher bound to the exact challenge (its id, realm,
method, intent and ``request`` wire string, so the amount, currency and
recipient are covered). The embedded server verifies the signature against the
payer's ``did:key`` and accepts each challenge once. A server cannot redeem a
voucher for a different challenge, and a client cannot pay with a flag.

Payload::

    {"type": "voucher", "payer": "did:key:z6Mk...", "signature": "<base64url>"}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import nacl.exceptions
import nacl.signing

from .._didkey import did_key_from_public, public_from_did_key
from .._exceptions import ChallengeError
from ..money import Amount
from ..protocol import Challenge, b64url_decode, b64url_encode, canonical_json
from ._base import PaymentMethod, Quote, charge_terms

__all__ = ["DevWallet", "verify_voucher", "voucher_message"]

_DOMAIN = "mpp-client/dev-voucher/v1"


def voucher_message(echo: Mapping[str, str], payer: str) -> bytes:
    """The bytes a dev voucher signs: canonical JSON of the bound challenge fields."""
    return canonical_json(
        {
            "domain": _DOMAIN,
            "id": echo["id"],
            "realm": echo["realm"],
            "method": echo["method"],
            "intent": echo["intent"],
            "request": echo["request"],
            "payer": payer,
        }
    )


def verify_voucher(echo: Mapping[str, str], payload: Mapping[str, Any]) -> str:
    """Check a dev voucher; return the payer's DID. Raises ``ValueError`` if invalid."""
    if payload.get("type") != "voucher":
        raise ValueError("payload is not a dev voucher")
    payer = payload.get("payer")
    signature = payload.get("signature")
    if not isinstance(payer, str) or not isinstance(signature, str):
        raise ValueError("voucher needs a string 'payer' and 'signature'")
    key = nacl.signing.VerifyKey(public_from_did_key(payer))
    try:
        key.verify(voucher_message(echo, payer), b64url_decode(signature))
    except (nacl.exceptions.BadSignatureError, ValueError):
        raise ValueError("voucher signature does not verify") from None
    return payer


class DevWallet(PaymentMethod):
    """Pays ``dev`` challenges with Ed25519-signed vouchers.

    ``currency`` is the challenge currency it pays (``usd`` by default), worth
    ``decimals`` digits of ``asset`` (``USD``): a request for ``"25"`` is
    ``0.25 USD``. Pass ``seed`` (32 bytes) for a stable identity; the default is
    a fresh random key. The key never appears in ``repr()`` or errors.
    """

    name: ClassVar[str] = "dev"

    def __init__(
        self,
        seed: bytes | None = None,
        *,
        currency: str = "usd",
        asset: str = "USD",
        decimals: int = 2,
    ) -> None:
        self._key = (
            nacl.signing.SigningKey(seed)
            if seed is not None
            else nacl.signing.SigningKey.generate()
        )
        self._did = did_key_from_public(bytes(self._key.verify_key))
        self.currency = currency
        self.asset = asset
        self.decimals = decimals

    @property
    def did(self) -> str:
        """The payer's ``did:key``: the credential's ``source``."""
        return self._did

    @property
    def source(self) -> str:
        """The same as :attr:`did` (the name earlier versions used)."""
        return self._did

    def quote(self, challenge: Challenge) -> Quote:
        terms = charge_terms(challenge)
        if terms.currency.lower() != self.currency.lower():
            raise ChallengeError(
                f"dev wallet pays {self.currency!r}, the challenge asks for {terms.currency!r:.40}"
            )
        if terms.recipient is None:
            raise ChallengeError("dev charge request has no 'recipient'")
        return Quote(
            amount=Amount(terms.amount, self.asset, self.decimals),
            payee=terms.recipient,
            method=self.name,
            intent=challenge.intent,
            expires=terms.expires,
            currency=terms.currency,
            payer=self._did,
            moves_funds=False,  # a voucher: the server redeems it
        )

    def _sign(self, challenge: Challenge) -> dict[str, Any]:
        echo = {
            "id": challenge.id,
            "realm": challenge.realm,
            "method": challenge.method,
            "intent": challenge.intent,
            "request": challenge.request_b64,
        }
        signature = self._key.sign(voucher_message(echo, self._did)).signature
        return {"type": "voucher", "payer": self._did, "signature": b64url_encode(signature)}

    # The voucher signs the challenge alone, so the quote is optional here: code
    # written for earlier versions may still call ``pay(challenge)``.
    def pay(self, challenge: Challenge, quote: Quote | None = None) -> Mapping[str, Any]:
        return self._sign(challenge)

    async def apay(self, challenge: Challenge, quote: Quote | None = None) -> Mapping[str, Any]:
        # Signing is fast and CPU-only: no worker thread needed.
        return self._sign(challenge)

    def __repr__(self) -> str:
        return f"<DevWallet source={self._did!r}>"
