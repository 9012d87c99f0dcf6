"""Adding your own payment method in a few lines.

A method reads the terms (``quote``) and pays (``pay``). Here a "prepaid"
method spends codes from a list of prepaid vouchers; the toy server in this
file (an httpx.MockTransport, to keep the example self-contained) accepts each
code once. Run it: ``.venv/bin/python examples/custom_method.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

import mpp_client
from mpp_client import Amount, Challenge, PaymentMethod, Quote, charge_terms
from mpp_client.protocol import Credential, Receipt


class Prepaid(PaymentMethod):
    """Pays ``prepaid`` charges with single-use codes (1 code = 1 cent)."""

    name = "prepaid"

    def __init__(self, codes: list[str]) -> None:
        self._codes = list(codes)

    def quote(self, challenge: Challenge) -> Quote:
        terms = charge_terms(challenge)  # validated amount, currency, recipient, expiry
        return Quote(
            amount=Amount(terms.amount, "USD", 2),
            payee=terms.recipient or challenge.realm,
            method=self.name,
            intent=challenge.intent,
            expires=terms.expires,
            currency=terms.currency,
            # The server redeems the code: if it refuses the credential, nothing was spent.
            moves_funds=False,
        )

    def pay(self, challenge: Challenge, quote: Quote) -> Mapping[str, Any]:
        if not self._codes:
            raise mpp_client.PaymentFailed("no prepaid codes left")
        return {"code": self._codes.pop()}


def main() -> None:
    used: set[str] = set()
    challenge = Challenge.create(
        id="c-1",
        realm="shop.example",
        method="prepaid",
        intent="charge",
        request={"amount": "5", "currency": "usd", "recipient": "shop"},
    )

    def server(request: httpx.Request) -> httpx.Response:
        value = request.headers.get("authorization")
        if value is None:
            return httpx.Response(402, headers={"www-authenticate": challenge.to_header()})
        code = Credential.parse(value).payload["code"]
        if code in used:
            return httpx.Response(402, headers={"www-authenticate": challenge.to_header()})
        used.add(code)
        receipt = Receipt(status="success", method="prepaid", reference=f"code:{code}")
        return httpx.Response(200, headers={"payment-receipt": receipt.to_header()}, text="hi")

    with mpp_client.Client(
        transport=httpx.MockTransport(server),
        methods=[Prepaid(["A1", "B2"])],
        policy=mpp_client.SimplePolicy(max_per_call="0.10 USD"),
    ) as client:
        response = client.get("https://shop.example/greeting")
        record = mpp_client.payment_record(response)
        assert record is not None
        print(response.text, "- paid", record.amount, "receipt", record.receipt)


if __name__ == "__main__":
    main()
