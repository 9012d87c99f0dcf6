"""The ``stripe`` payment method (draft-stripe-charge-00): Shared Payment Tokens.

Stripe's API cannot be reached where these tests run (no network), so the
``stripe`` SDK is pointed (``api_base=``) at :class:`tests.fake_stripe.FakeStripe`,
a local HTTP server on 127.0.0.1 that speaks the Shared Payment Token endpoints
the way Stripe's API reference describes them and records every request
exactly as it arrived. The tests assert the exact requests the SDK sent: the
path, the form-encoded parameters (payment method, usage limits with the
amount, currency and an expiry no later than the challenge's, and the seller's
network profile from ``methodDetails.networkId``) and the headers
(``Authorization``, ``Stripe-Version``, ``Idempotency-Key``, ``Stripe-Account``).
Nothing here talks to Stripe itself.
"""

from __future__ import annotations

import asyncio
import logging
import math
import pickle
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import stripe

from mpp_client import (
    Amount,
    AsyncClient,
    ChallengeError,
    ChallengeExpired,
    Client,
    MemoryLedger,
    PaymentFailed,
    PolicyDenied,
    Quote,
    SimplePolicy,
    TermsRefused,
    payment_record,
)
from mpp_client.methods.stripe import DEFAULT_STRIPE_VERSION, SPT_PATH, StripeWallet
from mpp_client.protocol import Challenge, Credential, Receipt

from .fake_stripe import FakeStripe
from .helpers import apay_now, pay_now

# The SDK's httpx client (used by apay) posts its form body with ``data=``,
# which httpx deprecates; that is the SDK's business, not a failure here.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")

SECRET = "sk_test_51AbCdEfGhIjKlMnOpQrStUvWxYz0123456789SECRET"
PROFILE = "profile_1MqDcVKA5fEO2tZvKQm9g8Yj"


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe(api_key=SECRET) as server:
        yield server


def challenge(
    amount: str = "5000",
    *,
    id: str = "ch_1a2b3c4d5e",
    expires: datetime | str | None = "default",
    request: dict[str, Any] | None = None,
    **details: Any,
) -> Challenge:
    details.setdefault("networkId", PROFILE)
    details.setdefault("paymentMethodTypes", ["card", "link"])
    body: dict[str, Any] = {
        "amount": amount,
        "currency": "usd",
        "description": "Premium API access",
        "externalId": "order_12345",
        "methodDetails": {k: v for k, v in details.items() if v is not None},
    }
    body.update(request or {})
    body = {k: v for k, v in body.items() if v is not None}
    when = datetime.now(UTC) + timedelta(minutes=5) if expires == "default" else expires
    assert not isinstance(when, str)
    return Challenge.create(
        id=id, realm="api.example.com", method="stripe", intent="charge", request=body, expires=when
    )


def wallet(fake: FakeStripe, **options: Any) -> StripeWallet:
    options.setdefault("payment_method", "pm_1Rga")
    options.setdefault("max_network_retries", 0)
    return StripeWallet(SECRET, api_base=fake.url, **options)


def expected_form(expires_at: int, amount: str = "5000") -> list[tuple[str, str]]:
    return [
        ("payment_method", "pm_1Rga"),
        ("usage_limits[currency]", "usd"),
        ("usage_limits[max_amount]", amount),
        ("usage_limits[expires_at]", str(expires_at)),
        ("seller_details[network_business_profile]", PROFILE),
    ]


# -- the token request ---------------------------------------------------------------


def test_pay_issues_a_token_limited_to_exactly_this_payment(fake: FakeStripe) -> None:
    ch = challenge()
    assert ch.expires is not None
    payload = pay_now(wallet(fake), ch)
    [request] = fake.requests
    assert request.method == "POST" and request.path == SPT_PATH
    # Exactly these parameters, nothing else: the amount, the currency, an
    # expiry no later than the challenge's, and the seller's profile.
    assert request.pairs == expected_form(math.floor(ch.expires.timestamp()))
    assert request.header("authorization") == f"Bearer {SECRET}"
    assert request.header("stripe-version") == DEFAULT_STRIPE_VERSION
    assert request.header("content-type") == "application/x-www-form-urlencoded"
    key = request.header("idempotency-key")
    assert key is not None and key.startswith("mpp-spt-")
    assert request.header("stripe-account") is None
    [token] = fake.tokens.values()
    assert token["status"] == "active"
    assert payload == {"spt": token["id"], "externalId": "order_12345"}
    assert payload["spt"].startswith("spt_")


def test_token_expiry_is_the_sooner_of_the_challenge_and_the_lifetime(fake: FakeStripe) -> None:
    w = wallet(fake, token_lifetime=timedelta(minutes=2))
    for expires in (datetime.now(UTC) + timedelta(hours=1), None):
        before = time.time()
        pay_now(w, challenge(expires=expires, id=f"c-{expires is None}"))
        expires_at = int(fake.requests[-1].form["usage_limits[expires_at]"])
        assert math.floor(before + 120) <= expires_at <= math.floor(time.time() + 120)
    soon = datetime.now(UTC) + timedelta(seconds=30, microseconds=700_000)
    pay_now(w, challenge(expires=soon, id="c-soon"))
    assert fake.requests[-1].form["usage_limits[expires_at]"] == str(math.floor(soon.timestamp()))


def test_without_external_id_the_payload_is_the_token_alone(fake: FakeStripe) -> None:
    payload = pay_now(wallet(fake), challenge(request={"externalId": None}))
    assert set(payload) == {"spt"}


def test_currency_is_sent_lowercase_and_quoted_in_its_decimals(fake: FakeStripe) -> None:
    w = wallet(fake, currencies={"usd": 2, "JPY": 0})
    quote = w.quote(challenge("1500", request={"currency": "JPY"}))
    assert (quote.amount.units, quote.amount.currency, quote.amount.decimals) == (1500, "JPY", 0)
    assert quote.payee == PROFILE and quote.method == "stripe" and quote.chain_id is None
    assert quote.currency == "jpy"
    pay_now(w, challenge("1500", request={"currency": "JPY"}))
    assert fake.requests[-1].form["usage_limits[currency]"] == "jpy"


def test_quote_reads_the_terms_and_issues_nothing(fake: FakeStripe) -> None:
    w = wallet(fake)
    quote = w.quote(challenge())
    assert (quote.amount.units, quote.amount.currency, quote.amount.decimals) == (5000, "USD", 2)
    assert quote.details["networkId"] == PROFILE
    assert quote.details["paymentMethodTypes"] == ("card", "link")
    assert fake.requests == []
    assert quote.moves_funds is False  # a token the seller charges: nothing moves at pay


def test_stripe_account_is_sent_when_configured(fake: FakeStripe) -> None:
    pay_now(wallet(fake, stripe_account="acct_123"), challenge())
    assert fake.requests[-1].header("stripe-account") == "acct_123"


def test_the_sdk_retries_with_the_same_idempotency_key(fake: FakeStripe) -> None:
    fake.script(
        500, {"error": {"type": "api_error", "message": "try again"}}, Stripe_Should_Retry="true"
    )
    payload = pay_now(wallet(fake, max_network_retries=1), challenge())
    first, second = fake.posts()
    assert first.header("idempotency-key") == second.header("idempotency-key")
    assert first.pairs == second.pairs
    assert payload["spt"] in fake.tokens


def test_paying_the_same_challenge_again_returns_the_same_token(fake: FakeStripe) -> None:
    w = wallet(fake, token_lifetime=timedelta(hours=1))
    ch = challenge()
    assert pay_now(w, ch) == pay_now(w, ch)
    assert len(fake.tokens) == 1
    other = pay_now(w, challenge(id="ch_other"))
    assert len(fake.tokens) == 2 and other["spt"] != pay_now(w, ch)["spt"]


# -- async ----------------------------------------------------------------------------


async def test_apay_sends_the_same_request_without_blocking_the_loop() -> None:
    with FakeStripe(api_key=SECRET, delay=0.4) as fake:
        w = wallet(fake)
        ch = challenge()
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.02)

        task = asyncio.create_task(ticker())
        try:
            payload = await apay_now(w, ch)
        finally:
            done.set()
            await task
    # The loop kept running while the SDK waited for the (slow) fake.
    assert ticks >= 5
    [request] = fake.requests
    assert ch.expires is not None
    assert request.pairs == expected_form(math.floor(ch.expires.timestamp()))
    assert request.header("stripe-version") == DEFAULT_STRIPE_VERSION
    assert payload == {"spt": next(iter(fake.tokens)), "externalId": "order_12345"}


# -- refusals before anything is created ---------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "options", "message"),
    [
        ({"request": {"currency": "eur"}}, {}, "the wallet pays usd"),
        ({"request": {"currency": "dollars"}}, {}, "three-letter"),
        ({"amount": "0"}, {}, "must be positive"),
        ({"amount": "12.50"}, {}, "digits"),
        ({"networkId": ""}, {}, "networkId"),
        ({"request": {"methodDetails": {"paymentMethodTypes": ["card"]}}}, {}, "networkId"),
        ({"paymentMethodTypes": []}, {}, "paymentMethodTypes"),
        ({"paymentMethodTypes": "card"}, {}, "paymentMethodTypes"),
        ({"paymentMethodTypes": ["link"]}, {}, "accepts link"),
        ({"metadata": {"a": 1}}, {}, "metadata"),
        ({"request": {"externalId": 7}}, {}, "externalId"),
        ({}, {"network_ids": ["profile_other"]}, "not one the wallet pays"),
        ({"expires": datetime.now(UTC) - timedelta(seconds=1)}, {}, "expired"),
    ],
)
def test_unusable_terms_are_refused_before_creating_a_token(
    fake: FakeStripe, kwargs: dict[str, Any], options: dict[str, Any], message: str
) -> None:
    w = wallet(fake, **options)
    ch = challenge(**kwargs)
    with pytest.raises(ChallengeError, match=message):
        w.quote(ch)
    # pay() checks again when it is not handed the wallet's own prepared quote.
    unprepared = Quote(Amount(1, "USD", 2), PROFILE, "stripe", "charge")
    with pytest.raises(TermsRefused, match=message) as info:
        w.pay(ch, unprepared)
    assert isinstance(info.value, ChallengeError)
    assert isinstance(info.value, PaymentFailed)  # the flow releases the reservation
    assert fake.requests == []


def test_expired_is_challenge_expired(fake: FakeStripe) -> None:
    ch = challenge(expires=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(ChallengeExpired):
        pay_now(wallet(fake), ch)


def test_only_the_charge_intent(fake: FakeStripe) -> None:
    ch = Challenge.create(
        id="x", realm="r", method="stripe", intent="subscription", request={"amount": "1"}
    )
    with pytest.raises(ChallengeError, match="only charge"):
        wallet(fake).quote(ch)


# -- Stripe's answers ----------------------------------------------------------------


def test_a_declined_token_request_fails_without_paying(fake: FakeStripe) -> None:
    fake.script(
        402,
        {
            "error": {
                "type": "card_error",
                "code": "card_declined",
                "message": "Your card was declined.",
            }
        },
    )
    with pytest.raises(PaymentFailed, match="card_declined") as info:
        pay_now(wallet(fake), challenge())
    assert "nothing was paid" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_stripe_errors_never_repeat_the_key(fake: FakeStripe) -> None:
    fake.script(
        401,
        {
            "error": {
                "type": "invalid_request_error",
                "message": f"Invalid API Key provided: {SECRET}",
            }
        },
    )
    with pytest.raises(PaymentFailed) as info:
        pay_now(wallet(fake), challenge())
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert "[redacted]" in str(info.value)


@pytest.mark.parametrize(
    "change",
    [
        {"status": "requires_action", "next_action": {"type": "use_stripe_sdk"}},
        {"usage_limits": {"currency": "usd", "max_amount": 999999, "expires_at": 1}},
        {"id": "pm_not_a_token"},
        {"seller_details": {"network_business_profile": "profile_someone_else"}},
    ],
)
def test_a_token_that_cannot_be_sent_is_revoked(fake: FakeStripe, change: dict[str, Any]) -> None:
    ch = challenge()
    assert ch.expires is not None
    body = {
        "id": "spt_bad",
        "object": "shared_payment.issued_token",
        "status": "active",
        "usage_limits": {
            "currency": "usd",
            "max_amount": 5000,
            "expires_at": math.floor(ch.expires.timestamp()),
        },
        **change,
    }
    fake.script(200, body)
    fake.tokens[body["id"]] = dict(body)
    with pytest.raises(PaymentFailed, match="nothing was paid"):
        pay_now(wallet(fake), ch)
    paths = [r.path for r in fake.requests]
    if body["id"].startswith("spt_"):
        assert paths == [SPT_PATH, f"{SPT_PATH}/spt_bad/revoke"]
        assert fake.requests[1].header("stripe-version") == DEFAULT_STRIPE_VERSION
        assert fake.tokens["spt_bad"]["deactivated_reason"] == "revoked"
    else:
        assert paths[0] == SPT_PATH


async def test_apay_revokes_too(fake: FakeStripe) -> None:
    fake.script(200, {"id": "spt_x", "status": "requires_action"})
    fake.tokens["spt_x"] = {"id": "spt_x"}
    with pytest.raises(PaymentFailed, match="requires_action"):
        await apay_now(wallet(fake), challenge())
    assert [r.path for r in fake.requests] == [SPT_PATH, f"{SPT_PATH}/spt_x/revoke"]


def test_an_unreachable_stripe_fails_without_paying() -> None:
    with FakeStripe() as fake:
        url = fake.url
    w = StripeWallet(SECRET, payment_method="pm_1", api_base=url, max_network_retries=0)
    with pytest.raises(PaymentFailed, match="APIConnectionError") as info:
        pay_now(w, challenge())
    assert SECRET not in str(info.value)


# -- the key ---------------------------------------------------------------------------


def test_the_secret_key_never_shows(
    fake: FakeStripe, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stripe, "log", "debug")  # the SDK's own request logging, at its loudest
    caplog.set_level(logging.DEBUG)
    w = wallet(fake)
    pay_now(w, challenge())
    with pytest.raises(ChallengeError) as refused:
        pay_now(w, challenge(request={"currency": "eur"}))
    fake.script(400, {"error": {"type": "invalid_request_error", "message": "bad"}})
    with pytest.raises(PaymentFailed) as failed:
        pay_now(w, challenge(id="other"))
    assert "Request to Stripe api" in caplog.text  # the SDK did log
    for text in (
        repr(w),
        str(w),
        caplog.text,
        str(refused.value),
        repr(refused.value),
        str(failed.value),
        repr(failed.value),
    ):
        assert SECRET not in text
        assert SECRET[len("sk_test_") :] not in text
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(w)


def test_only_secret_or_restricted_keys_are_accepted() -> None:
    publishable = "pk_test_51AbCdEfPUBLISHABLE"
    with pytest.raises(ValueError) as info:
        StripeWallet(publishable, payment_method="pm_1")
    assert publishable not in str(info.value)
    StripeWallet("rk_test_restricted", payment_method="pm_1")
    with pytest.raises(ValueError, match="payment_method"):
        StripeWallet(SECRET, payment_method="")


# -- in the payment flow ---------------------------------------------------------------


def _server(ch: Challenge, seen: list[Credential]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        header = request.headers.get("authorization")
        if header is None:
            return httpx.Response(402, headers={"www-authenticate": ch.to_header()})
        seen.append(Credential.parse(header))
        receipt = Receipt(
            status="success", method="stripe", reference="pi_1", timestamp=datetime.now(UTC)
        )
        return httpx.Response(200, headers={"payment-receipt": receipt.to_header()}, text="ok")

    return httpx.MockTransport(handler)


POLICY = SimplePolicy(max_per_call="60.00 USD", budget="100.00 USD")


def test_the_flow_pays_with_the_token(fake: FakeStripe) -> None:
    ch = challenge()
    seen: list[Credential] = []
    with Client(
        methods=[wallet(fake)], policy=POLICY, ledger=MemoryLedger(), transport=_server(ch, seen)
    ) as client:
        response = client.get("https://api.example.com/generate")
    assert response.status_code == 200
    record = payment_record(response)
    assert record is not None and record.status == "committed"
    [credential] = seen
    assert credential.payload == {"spt": next(iter(fake.tokens)), "externalId": "order_12345"}
    assert credential.echo["id"] == ch.id and credential.source is None
    assert len(fake.posts()) == 1


async def test_the_async_flow_pays_with_the_token(fake: FakeStripe) -> None:
    ch = challenge()
    seen: list[Credential] = []
    async with AsyncClient(
        methods=[wallet(fake)], policy=POLICY, ledger=MemoryLedger(), transport=_server(ch, seen)
    ) as client:
        response = await client.get("https://api.example.com/generate")
    assert response.status_code == 200
    [credential] = seen
    assert credential.payload["spt"] in fake.tokens


def test_the_policy_refuses_before_a_token_exists(fake: FakeStripe) -> None:
    ch = challenge("9000")  # 90.00 USD, over the per-call limit
    with Client(
        methods=[wallet(fake)], policy=POLICY, ledger=MemoryLedger(), transport=_server(ch, [])
    ) as client:
        with pytest.raises(PolicyDenied):
            client.get("https://api.example.com/generate")
    assert fake.requests == []
