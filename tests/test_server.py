"""The embedded paid server: challenges, binding, verification, single use."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from mpp_client import Amount, Client, DevWallet, SimplePolicy
from mpp_client.protocol import (
    Challenge,
    Credential,
    Problem,
    Receipt,
    b64url_encode,
    canonical_json,
    content_digest,
    parse_challenges,
)
from mpp_client.testing import PaidServer, Payment, Route

from .helpers import pay_now


def challenge_for(server: PaidServer, method: str = "GET", path: str = "/paid", body: bytes = b""):
    outcome = server.handle(method, path, {}, body)
    assert outcome.status == 402
    headers = dict(outcome.headers)
    return parse_challenges(headers["www-authenticate"])[0], outcome


def pay(server: PaidServer, challenge: Challenge, wallet: DevWallet, **kw: Any):
    credential = Credential.for_challenge(
        challenge, pay_now(wallet, challenge), source=wallet.source
    )
    return credential.to_header()


def code(outcome: Any) -> str | None:
    problem = Problem.parse(outcome.body, dict(outcome.headers)["content-type"])
    assert problem is not None
    return problem.code


def test_402_is_spec_conformant() -> None:
    server = PaidServer({"/paid": Route(Amount.parse("0.25 USD"), description="Weather")})
    challenge, outcome = challenge_for(server)
    headers = dict(outcome.headers)
    assert headers["cache-control"] == "no-store"
    assert headers["content-type"] == "application/problem+json"
    assert code(outcome) == "payment-required"
    assert challenge.method == "dev" and challenge.intent == "charge"
    assert challenge.request == {
        "amount": "25",
        "currency": "usd",
        "recipient": "merchant-1",
        "description": "Weather",
    }
    # request is JCS, as the draft requires.
    assert challenge.request_b64 == b64url_encode(canonical_json(challenge.request))
    assert challenge.opaque == {"route": "GET /paid"}
    assert challenge.expires is not None and challenge.expires > datetime.now(UTC)
    assert challenge.digest is None
    assert server.issued == [challenge.id]


def test_fresh_challenge_each_time() -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    first, _ = challenge_for(server)
    second, _ = challenge_for(server)
    assert first.id != second.id


def test_body_gets_a_digest() -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    challenge, _ = challenge_for(server, "POST", body=b'{"a":1}')
    assert challenge.digest == content_digest(b'{"a":1}')


def test_valid_voucher_is_accepted_once() -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    wallet = DevWallet()
    challenge, _ = challenge_for(server)
    header = pay(server, challenge, wallet)
    ok = server.handle("GET", "/paid", {"authorization": header}, b"")
    assert ok.status == 200
    receipt = Receipt.parse(dict(ok.headers)["payment-receipt"])
    assert receipt.method == "dev" and receipt.reference == f"dev:{challenge.id}"
    assert receipt.data["payer"] == wallet.source
    assert dict(ok.headers)["cache-control"] == "private"
    assert server.payments == [
        Payment(
            challenge.id, "/paid", "GET", Amount.parse("0.25 USD"), wallet.source, receipt.reference
        )
    ]
    again = server.handle("GET", "/paid", {"authorization": header}, b"")
    assert again.status == 402 and code(again) == "invalid-challenge"
    assert len(server.payments) == 1


def tampered(challenge: Challenge, **request: Any) -> Challenge:
    new_request = dict(challenge.request, **request)
    return dataclasses.replace(
        challenge,
        request=new_request,
        request_b64=b64url_encode(canonical_json(new_request)),
    )


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda c: tampered(c, amount="1"), "invalid-challenge"),
        (lambda c: dataclasses.replace(c, id="forged"), "invalid-challenge"),
        (lambda c: dataclasses.replace(c, realm="elsewhere"), "invalid-challenge"),
        (
            lambda c: dataclasses.replace(c, opaque_b64=b64url_encode(b'{"route":"GET /x"}')),
            "invalid-challenge",
        ),
    ],
)
def test_tampered_challenges_are_refused(mutate: Any, problem: str) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    wallet = DevWallet()
    challenge, _ = challenge_for(server)
    header = pay(server, mutate(challenge), wallet)
    outcome = server.handle("GET", "/paid", {"authorization": header}, b"")
    assert outcome.status == 402 and code(outcome) == problem
    assert server.payments == []


def test_voucher_signed_for_another_challenge_is_refused() -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    wallet = DevWallet()
    first, _ = challenge_for(server)
    second, _ = challenge_for(server)
    payload = pay_now(wallet, first)
    header = Credential.for_challenge(second, payload).to_header()
    outcome = server.handle("GET", "/paid", {"authorization": header}, b"")
    assert code(outcome) == "verification-failed"


def test_challenge_for_another_route_is_refused() -> None:
    server = PaidServer({"/a": "0.25 USD", "/b": "0.25 USD"})
    challenge, _ = challenge_for(server, path="/a")
    outcome = server.handle(
        "GET", "/b", {"authorization": pay(server, challenge, DevWallet())}, b""
    )
    assert code(outcome) == "invalid-challenge"


def test_repriced_route_refuses_old_challenges() -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    challenge, _ = challenge_for(server)
    server.price("/paid", "0.50 USD")
    outcome = server.handle(
        "GET", "/paid", {"authorization": pay(server, challenge, DevWallet())}, b""
    )
    assert code(outcome) == "payment-insufficient"


def test_expired_challenge_is_refused() -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    server = PaidServer({"/paid": "0.25 USD"}, clock=lambda: now[0], ttl=timedelta(seconds=30))
    challenge, _ = challenge_for(server)
    now[0] += timedelta(seconds=31)
    outcome = server.handle(
        "GET", "/paid", {"authorization": pay(server, challenge, DevWallet())}, b""
    )
    assert code(outcome) == "payment-expired"


def test_body_must_match_the_digest() -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    challenge, _ = challenge_for(server, "POST", body=b"one")
    header = pay(server, challenge, DevWallet())
    outcome = server.handle("POST", "/paid", {"authorization": header}, b"two")
    assert code(outcome) == "verification-failed"
    assert server.handle("POST", "/paid", {"authorization": header}, b"one").status == 200


@pytest.mark.parametrize("value", ["Payment !!!", "Payment e30", "Payment " + "A" * 70000])
def test_malformed_credentials_get_a_problem_and_a_fresh_challenge(value: str) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    outcome = server.handle("GET", "/paid", {"authorization": value}, b"")
    assert outcome.status == 402 and code(outcome) == "malformed-credential"
    assert parse_challenges(dict(outcome.headers)["www-authenticate"])


def test_idempotent_retry_returns_the_original_response() -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    challenge, _ = challenge_for(server, "POST", body=b"x")
    header = pay(server, challenge, DevWallet())
    headers = {"authorization": header, "idempotency-key": "k1"}
    first = server.handle("POST", "/paid", headers, b"x")
    second = server.handle("POST", "/paid", headers, b"x")
    assert first.status == second.status == 200
    assert first.headers == second.headers
    assert len(server.payments) == 1
    # Without a credential the key alone buys nothing.
    assert server.handle("POST", "/paid", {"idempotency-key": "k1"}, b"x").status == 402


def test_payment_authorization_header_mode() -> None:
    server = PaidServer({"/paid": "0.25 USD"}, header="Payment-Authorization")
    challenge, _ = challenge_for(server)
    assert challenge.header == "Payment-Authorization"
    header = pay(server, challenge, DevWallet())
    assert server.handle("GET", "/paid", {"authorization": header}, b"").status == 402
    ok = server.handle("GET", "/paid", {"payment-authorization": header}, b"")
    assert ok.status == 200


def test_price_in_another_asset_is_refused() -> None:
    with pytest.raises(ValueError, match="priced in EUR"):
        PaidServer({"/paid": "1 EUR"})


async def test_asgi_app_over_httpx_transport() -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    transport = httpx.ASGITransport(app=server)
    async with httpx.AsyncClient(transport=transport, base_url="https://s.test") as client:
        response = await client.get("/paid")
        assert response.status_code == 402
        assert json.loads(response.content)["type"].endswith("payment-required")
        assert (await client.get("/free")).json() == {"free": True}
        too_big = await client.post("/paid", content=b"x" * (1024 * 1024 + 1))
        assert too_big.status_code == 413


def test_pytest_fixtures(
    mpp_server: PaidServer, mpp_server_url: str, mpp_wallet: DevWallet
) -> None:
    policy = SimplePolicy(max_per_call="1.00 USD")
    with Client(methods=[mpp_wallet], policy=policy, allow_insecure_localhost=True) as client:
        assert client.get(mpp_server_url + "/paid").status_code == 200
    assert [p.payer for p in mpp_server.payments] == [mpp_wallet.source]
