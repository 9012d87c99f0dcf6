"""The payment flow end to end: real loopback sockets (sync) and ASGI transport (async)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

import mpp_client
from mpp_client import (
    Amount,
    AsyncClient,
    BudgetExceeded,
    ChallengeError,
    ChallengeExpired,
    Client,
    DevWallet,
    InsecureTransport,
    MemoryLedger,
    NoAcceptableChallenge,
    PaymentError,
    PaymentFailed,
    PaymentOutcomeUnknown,
    PaymentRejected,
    PolicyDenied,
    SimplePolicy,
    payment_record,
)
from mpp_client.protocol import Credential, Receipt, b64url_encode, content_digest
from mpp_client.testing import PaidServer

from .apps import Recorder, Scripted, Seen, challenge_402, charge

POLICY = SimplePolicy(max_per_call="1.00 USD", budget="10.00 USD")


def make_client(**kwargs: Any) -> Client:
    kwargs.setdefault("methods", [DevWallet()])
    kwargs.setdefault("policy", POLICY)
    kwargs.setdefault("allow_insecure_localhost", True)
    return Client(**kwargs)


def make_async(app: Any, base_url: str = "https://api.test", **kwargs: Any) -> AsyncClient:
    kwargs.setdefault("methods", [DevWallet()])
    kwargs.setdefault("policy", POLICY)
    return AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url, **kwargs)


def receipt_header(reference: str = "ref-1", method: str = "dev") -> tuple[str, str]:
    receipt = Receipt(
        status="success", method=method, reference=reference, timestamp=datetime.now(UTC)
    )
    return ("payment-receipt", receipt.to_header())


def paid_after(first: Any = None) -> Scripted:
    """402 with one dev challenge, then whatever ``first`` says for the retry (200 by default)."""
    challenge = charge()

    def handler(seen: Seen, index: int) -> tuple[int, list[tuple[str, str]], bytes]:
        if "authorization" not in seen.headers:
            return challenge_402(challenge)
        if first is not None:
            return first(seen, index)
        return 200, [receipt_header()], b"resource"

    return Scripted(handler)


# -- the happy path ---------------------------------------------------------------------


def test_paid_get_over_a_real_socket(live: Any) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    recorder = Recorder(server)
    url = live(recorder)
    with make_client(base_url=url) as client:
        response = client.get("/paid")
    assert response.status_code == 200
    record = payment_record(response)
    assert record is response.extensions["mpp"]
    assert record is not None
    assert record.status == "committed"
    assert record.amount == Amount(25, "USD", 2)
    assert record.method == "dev" and record.intent == "charge"
    assert record.payee == "merchant-1"
    assert record.receipt is not None and record.receipt.reference.startswith("dev:")
    assert record.challenge_id == server.payments[0].challenge_id
    assert len(server.payments) == 1
    first, retry = recorder.seen
    assert first.headers["accept-payment"] == "dev/charge"
    assert "authorization" not in first.headers
    assert retry.headers["authorization"].startswith("Payment ")
    assert client.ledger is not None
    assert client.ledger.spent("USD") == Amount.parse("0.25 USD")


async def test_paid_get_async() -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    async with make_async(server) as client:
        response = await client.get("/paid")
        assert response.status_code == 200
        record = payment_record(response)
        assert record is not None and record.status == "committed"
        assert client.ledger is not None
        assert client.ledger.spent("USD") == Amount.parse("0.25 USD")
    assert [p.path for p in server.payments] == ["/paid"]


def test_free_route_is_not_paid_and_has_no_record(live: Any) -> None:
    url = live(PaidServer({"/paid": "0.25 USD"}))
    with make_client(base_url=url) as client:
        response = client.get("/free")
    assert response.status_code == 200
    assert payment_record(response) is None
    assert "mpp" not in response.extensions


def test_without_methods_client_is_plain_httpx(live: Any) -> None:
    recorder = Recorder(PaidServer({"/paid": "0.25 USD"}))
    url = live(recorder)
    with Client(base_url=url) as client:
        response = client.get("/paid")
    assert response.status_code == 402
    assert "accept-payment" not in recorder.seen[0].headers
    assert len(recorder.seen) == 1
    assert client.payment_auth is None and client.ledger is None


def test_policy_or_ledger_without_methods_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="methods"):
        Client(policy=POLICY)


def test_post_sends_idempotency_key_and_body_intact_and_digest_matches(live: Any) -> None:
    server = PaidServer({"/orders": "0.50 USD"})
    recorder = Recorder(server)
    url = live(recorder)
    with make_client(base_url=url) as client:
        response = client.post("/orders", json={"sku": "a", "qty": 2})
    assert response.status_code == 200
    first, retry = recorder.seen
    assert first.body == retry.body == b'{"sku":"a","qty":2}'
    assert first.headers["idempotency-key"] == retry.headers["idempotency-key"]
    assert len(first.headers["idempotency-key"]) >= 16
    credential = Credential.parse(retry.headers["authorization"])
    assert credential.echo["digest"] == content_digest(first.body)


def test_user_idempotency_key_is_kept(live: Any) -> None:
    recorder = Recorder(PaidServer({"/orders": "0.50 USD"}))
    url = live(recorder)
    with make_client(base_url=url) as client:
        client.put("/orders", content=b"x", headers={"Idempotency-Key": "mine-1"})
    assert [s.headers["idempotency-key"] for s in recorder.seen] == ["mine-1", "mine-1"]


def test_get_has_no_idempotency_key(live: Any) -> None:
    recorder = Recorder(PaidServer({"/paid": "0.25 USD"}))
    url = live(recorder)
    with make_client(base_url=url) as client:
        client.get("/paid")
    assert all("idempotency-key" not in s.headers for s in recorder.seen)


def test_streaming_response_is_paid_and_recorded(live: Any) -> None:
    url = live(PaidServer({"/paid": "0.25 USD"}))
    with make_client(base_url=url) as client, client.stream("GET", "/paid") as response:
        assert response.read() == b'{"ok":true}'
        record = payment_record(response)
        assert record is not None and record.status == "committed"


# -- refusals before paying -------------------------------------------------------------


def test_digest_mismatch_is_refused_before_paying(live: Any) -> None:
    wrong = content_digest(b"another body")
    app = Scripted(lambda seen, i: challenge_402(charge(digest=wrong)))
    url = live(app)
    with make_client(base_url=url) as client, pytest.raises(ChallengeError, match="digest"):
        client.post("/x", content=b"my body")
    assert len(app.seen) == 1
    assert client.ledger is not None and client.ledger.records() == []


def test_expired_challenge_is_refused(live: Any) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    app = Scripted(lambda seen, i: challenge_402(charge(expires=past)))
    url = live(app)
    with make_client(base_url=url) as client, pytest.raises(ChallengeExpired):
        client.get("/x")
    assert len(app.seen) == 1


@pytest.mark.parametrize(
    ("expires_in", "skew", "paid"),
    [
        (timedelta(seconds=-1), timedelta(seconds=5), False),  # expired a second ago
        (timedelta(seconds=-1), timedelta(0), False),  # ...even with no tolerance
        (timedelta(seconds=3), timedelta(seconds=10), False),  # expires inside the skew
        (timedelta(minutes=5), timedelta(seconds=5), True),  # comfortably valid
    ],
    ids=["expired", "expired-no-skew", "expires-within-skew", "valid"],
)
def test_clock_skew_only_makes_expiry_stricter(
    live: Any, expires_in: timedelta, skew: timedelta, paid: bool
) -> None:
    app_challenge = charge(expires=datetime.now(UTC) + expires_in)
    app = Scripted(
        lambda seen, i: (
            challenge_402(app_challenge)
            if "authorization" not in seen.headers
            else (200, [receipt_header()], b"ok")
        )
    )
    url = live(app)
    with make_client(base_url=url, clock_skew=skew) as client:
        if paid:
            assert client.get("/x").status_code == 200
            assert len(app.seen) == 2
        else:
            with pytest.raises(ChallengeExpired):
                client.get("/x")
            # Nothing was sent for it: the only request is the one that got the 402.
            assert len(app.seen) == 1
            assert client.ledger is not None and client.ledger.records() == []


def test_request_level_expiry_is_checked_too(live: Any) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    challenge = charge()
    request = dict(challenge.request, expires=past)
    bad = mpp_client.Challenge.create(
        id="c1", realm="r", method="dev", intent="charge", request=request
    )
    app = Scripted(lambda seen, i: challenge_402(bad))
    url = live(app)
    with make_client(base_url=url) as client, pytest.raises(ChallengeExpired):
        client.get("/x")


@pytest.mark.parametrize(
    ("base_url", "opt_in", "ok"),
    [
        ("http://api.example.com", True, False),
        ("http://10.0.0.8", True, False),
        ("http://127.0.0.1", False, False),
        ("http://localhost", False, False),
        ("http://127.0.0.1", True, True),
        ("http://[::1]", True, True),
        ("https://api.example.com", False, True),
    ],
)
async def test_credentials_only_over_https_or_opted_in_loopback(
    base_url: str, opt_in: bool, ok: bool
) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    async with make_async(server, base_url, allow_insecure_localhost=opt_in) as client:
        if ok:
            assert (await client.get("/paid")).status_code == 200
        else:
            with pytest.raises(InsecureTransport):
                await client.get("/paid")
    assert len(server.payments) == (1 if ok else 0)


async def test_policy_refusal_names_the_reason_and_pays_nothing() -> None:
    server = PaidServer({"/expensive": "5.00 USD"})
    async with make_async(server) as client:
        with pytest.raises(PolicyDenied) as info:
            await client.get("/expensive")
    assert "5.00 USD exceeds the per-call cap 1.00 USD" in str(info.value)
    assert info.value.response is not None and info.value.response.status_code == 402
    assert info.value.decision is not None and not info.value.decision.allowed
    assert server.payments == []


async def test_budget_exceeded_after_spending() -> None:
    server = PaidServer({"/paid": "0.40 USD"})
    policy = SimplePolicy(max_per_call="1.00 USD", budget="1.00 USD")
    async with make_async(server, policy=policy) as client:
        await client.get("/paid")
        await client.get("/paid")
        with pytest.raises(BudgetExceeded, match=r"0\.80 USD already spent or held, 0\.20 USD"):
            await client.get("/paid")
    assert len(server.payments) == 2


async def test_no_policy_denies_by_default() -> None:
    server = PaidServer({"/paid": "0.01 USD"})
    async with AsyncClient(
        transport=httpx.ASGITransport(app=server), base_url="https://a.test", methods=[DevWallet()]
    ) as client:
        with pytest.raises(PolicyDenied, match="no spending policy"):
            await client.get("/paid")
    assert server.payments == []


async def test_unknown_asset_is_refused() -> None:
    server = PaidServer({"/paid": "0.25 EUR"}, asset="EUR", currency="eur")
    wallet = DevWallet(currency="eur", asset="EUR")
    async with make_async(server, methods=[wallet]) as client:
        with pytest.raises(PolicyDenied, match="asset EUR is not covered"):
            await client.get("/paid")


def test_no_configured_method_for_the_offer(live: Any) -> None:
    app = Scripted(lambda seen, i: challenge_402(charge(method="tempo"), charge(method="stripe")))
    url = live(app)
    with make_client(base_url=url) as client, pytest.raises(NoAcceptableChallenge) as info:
        client.get("/x")
    assert "stripe/charge, tempo/charge" in str(info.value)
    assert len(info.value.reasons) == 2


def test_second_offer_is_paid_when_first_is_unsupported(live: Any) -> None:
    dev = charge(amount="30")

    def handler(seen: Seen, index: int) -> Any:
        if "authorization" not in seen.headers:
            return challenge_402(charge(method="tempo"), dev)
        assert Credential.parse(seen.headers["authorization"]).echo["id"] == dev.id
        return 200, [receipt_header()], b"ok"

    url = live(Scripted(handler))
    with make_client(base_url=url) as client:
        record = payment_record(client.get("/x"))
    assert record is not None and record.amount == Amount(30, "USD", 2)


def test_cheaper_offer_is_paid_when_first_exceeds_the_cap(live: Any) -> None:
    pricey, cheap = charge(amount="500"), charge(amount="50")

    def handler(seen: Seen, index: int) -> Any:
        if "authorization" not in seen.headers:
            return challenge_402(pricey, cheap)
        assert Credential.parse(seen.headers["authorization"]).echo["id"] == cheap.id
        return 200, [receipt_header()], b"ok"

    url = live(Scripted(handler))
    with make_client(base_url=url) as client:
        assert client.get("/x").status_code == 200


def test_broken_challenge_next_to_a_good_one_pays_the_good_one(live: Any) -> None:
    good = charge()

    def handler(seen: Seen, index: int) -> Any:
        if "authorization" not in seen.headers:
            status, headers, body = challenge_402(good)
            headers.insert(0, ("www-authenticate", 'Payment id="", realm="r"'))
            return status, headers, body
        return 200, [receipt_header()], b"ok"

    url = live(Scripted(handler))
    with make_client(base_url=url) as client:
        assert client.get("/x").status_code == 200


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ('Payment id="a", realm="r", method="dev", intent="charge"', "request"),
        ('Payment id="a", realm="r", method="Dev", intent="charge", request="e30"', "method"),
        ('Payment id="a", realm="r", method="dev", intent="charge", request="W10"', "JSON object"),
        ('Payment id="a", realm="r", method="dev", intent="charge", request="e30="', "base64url"),
        ("Basic realm=x", "no usable Payment challenge"),
        ("Payment " + "x" * 17_000, "byte limit"),
    ],
)
def test_malformed_challenges_are_typed_errors_and_pay_nothing(
    live: Any, header: str, message: str
) -> None:
    app = Scripted(lambda seen, i: (402, [("www-authenticate", header)], b""))
    url = live(app)
    with make_client(base_url=url) as client, pytest.raises(ChallengeError, match=message):
        client.get("/x")
    assert len(app.seen) == 1


@pytest.mark.parametrize(
    ("amount", "message"),
    [(25, "string of base-unit digits"), ("-5", "digits"), ("2.5", "digits"), ("9" * 80, "digits")],
)
def test_bad_amounts_are_refused(live: Any, amount: Any, message: str) -> None:
    bad = mpp_client.Challenge.create(
        id="c",
        realm="r",
        method="dev",
        intent="charge",
        request={"amount": amount, "currency": "usd", "recipient": "m"},
    )
    app = Scripted(lambda seen, i: challenge_402(bad))
    url = live(app)
    with make_client(base_url=url) as client, pytest.raises(ChallengeError, match=message):
        client.get("/x")
    assert len(app.seen) == 1


def test_402_without_any_challenge_is_a_challenge_error(live: Any) -> None:
    url = live(Scripted(lambda seen, i: (402, [], b"pay me")))
    with make_client(base_url=url) as client, pytest.raises(ChallengeError):
        client.get("/x")


def test_oversized_402_body_is_refused_without_paying(live: Any) -> None:
    app = Scripted(
        lambda seen, i: (402, [("www-authenticate", charge().to_header())], b"x" * 70_000)
    )
    url = live(app)
    with make_client(base_url=url) as client, pytest.raises(ChallengeError, match="over 65536"):
        client.get("/x")
    assert len(app.seen) == 1


def test_reused_challenge_id_is_not_paid_twice(live: Any) -> None:
    same = charge(id="fixed-id")

    def handler(seen: Seen, index: int) -> Any:
        if "authorization" not in seen.headers:
            return challenge_402(same)
        return 200, [receipt_header()], b"ok"

    app = Scripted(handler)
    url = live(app)
    with make_client(base_url=url) as client:
        assert client.get("/x").status_code == 200
        with pytest.raises(ChallengeError, match="already answered"):
            client.get("/x")
    assert sum("authorization" in s.headers for s in app.seen) == 1


# -- after paying -----------------------------------------------------------------------


def test_402_after_payment_is_a_typed_error_not_a_loop(live: Any) -> None:
    app = Scripted(lambda seen, i: challenge_402(charge(), problem="verification-failed"))
    url = live(app)
    with make_client(base_url=url) as client, pytest.raises(PaymentRejected) as info:
        client.get("/x")
    assert len(app.seen) == 2
    assert info.value.problem is not None and info.value.problem.code == "verification-failed"
    assert client.ledger is not None
    (record,) = client.ledger.records()
    # A refused voucher moved no money: the reservation is released.
    assert record.status == "released"
    assert client.ledger.spent("USD") == Amount(0, "USD")


def test_max_payments_allows_a_second_attempt_after_a_refused_voucher(live: Any) -> None:
    def handler(seen: Seen, index: int) -> Any:
        if index < 2:
            return challenge_402(charge())
        return 200, [receipt_header()], b"ok"

    app = Scripted(handler)
    url = live(app)
    with make_client(base_url=url, max_payments=2) as client:
        response = client.get("/x")
    assert response.status_code == 200
    assert len(app.seen) == 3
    assert client.ledger is not None
    assert [r.status for r in client.ledger.records()] == ["released", "committed"]


def test_server_error_after_payment_is_outcome_unknown_and_stays_counted(live: Any) -> None:
    url = live(paid_after(lambda seen, i: (500, [], b"boom")))
    with make_client(base_url=url) as client, pytest.raises(PaymentOutcomeUnknown) as info:
        client.get("/x")
    assert client.ledger is not None
    (record,) = client.ledger.records()
    assert record.status == "unknown" and "HTTP 500" in (record.reason or "")
    assert info.value.record == record
    assert client.ledger.spent("USD") == Amount(25, "USD", 2)


def test_403_after_payment_is_outcome_unknown_not_a_second_payment(live: Any) -> None:
    app = paid_after(lambda seen, i: (403, [], b"denied"))
    url = live(app)
    with make_client(base_url=url, max_payments=3) as client, pytest.raises(PaymentOutcomeUnknown):
        client.get("/x")
    assert len(app.seen) == 2


def test_transport_error_on_the_paid_retry_is_outcome_unknown() -> None:
    challenge = charge()
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if "authorization" not in request.headers:
            status, headers, body = challenge_402(challenge)
            return httpx.Response(status, headers=headers, content=body)
        raise httpx.ReadTimeout("the server went away", request=request)

    # MockTransport: a dropped connection mid-retry cannot be staged on a real socket reliably.
    with (
        Client(
            transport=httpx.MockTransport(handler),
            methods=[DevWallet()],
            policy=POLICY,
        ) as client,
        pytest.raises(PaymentOutcomeUnknown) as info,
    ):
        client.get("https://api.test/x")
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert client.ledger is not None
    (record,) = client.ledger.records()
    assert record.status == "unknown"
    assert len(calls) == 2


async def test_transport_error_on_the_paid_retry_is_outcome_unknown_async() -> None:
    challenge = charge()

    def handler(request: httpx.Request) -> httpx.Response:
        if "authorization" not in request.headers:
            status, headers, body = challenge_402(challenge)
            return httpx.Response(status, headers=headers, content=body)
        raise httpx.ConnectError("refused", request=request)

    async with AsyncClient(
        transport=httpx.MockTransport(handler), methods=[DevWallet()], policy=POLICY
    ) as client:
        with pytest.raises(PaymentOutcomeUnknown, match="failed before a response arrived"):
            await client.get("https://api.test/x")
        assert client.ledger is not None
        assert [r.status for r in client.ledger.records()] == ["unknown"]


def test_malformed_receipt_still_commits(live: Any, caplog: pytest.LogCaptureFixture) -> None:
    url = live(paid_after(lambda seen, i: (200, [("payment-receipt", "%%%")], b"ok")))
    with make_client(base_url=url) as client:
        record = payment_record(client.get("/x"))
    assert record is not None and record.status == "committed" and record.receipt is None
    assert "malformed Payment-Receipt" in caplog.text


class Exploding(DevWallet):
    def pay(self, challenge: Any) -> Any:
        raise RuntimeError("hardware wallet unplugged")

    async def apay(self, challenge: Any) -> Any:
        raise RuntimeError("hardware wallet unplugged")


class ExplodingPush(Exploding):
    moves_funds_on_pay = True


def test_method_failure_releases_the_reservation(live: Any) -> None:
    url = live(paid_after())
    with make_client(base_url=url, methods=[Exploding()]) as client, pytest.raises(PaymentFailed):
        client.get("/x")
    assert client.ledger is not None
    assert [r.status for r in client.ledger.records()] == ["released"]


async def test_push_method_failure_is_outcome_unknown() -> None:
    async with make_async(paid_after(), methods=[ExplodingPush()]) as client:
        with pytest.raises(PaymentOutcomeUnknown):
            await client.get("/x")
        assert client.ledger is not None
        assert [r.status for r in client.ledger.records()] == ["unknown"]


# -- per-call options -------------------------------------------------------------------


async def test_call_max_amount_only_narrows() -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    async with make_async(server) as client:
        with pytest.raises(PolicyDenied, match=r"max_amount 0\.10 USD"):
            await client.get("/paid", extensions={"mpp": {"max_amount": "0.10 USD"}})
        # A larger per-call limit does not widen the policy's cap.
        server.price("/big", "2.00 USD")
        with pytest.raises(PolicyDenied, match="per-call cap"):
            await client.get("/big", extensions={"mpp": {"max_amount": "5.00 USD"}})
        ok = await client.get("/paid", extensions={"mpp": {"max_amount": "0.30 USD"}})
        assert ok.status_code == 200


async def test_call_expected_payee_and_purpose() -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    async with make_async(server) as client:
        with pytest.raises(PolicyDenied, match="not the payee the call expected"):
            await client.get("/paid", extensions={"mpp": {"payee": "someone-else"}})
        response = await client.get(
            "/paid",
            extensions={"mpp": {"payee": "merchant-1", "purpose": "lookup", "tags": {"job": "7"}}},
        )
    record = payment_record(response)
    assert record is not None and record.purpose == "lookup" and record.tags == {"job": "7"}


async def test_pay_false_returns_the_402() -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    async with make_async(server) as client:
        response = await client.get("/paid", extensions={"mpp": {"pay": False}})
    assert response.status_code == 402
    assert server.payments == []


@pytest.mark.parametrize(
    "options",
    [{"max_amount": 0.1}, {"tags": {"a": 1}}, {"bogus": 1}, {"pay": "yes"}, "not a dict"],
)
async def test_bad_call_options_are_typed_errors(options: Any) -> None:
    async with make_async(PaidServer({"/paid": "0.25 USD"})) as client:
        with pytest.raises(PaymentError):
            await client.get("/paid", extensions={"mpp": options})


# -- headers, auth and redirects --------------------------------------------------------


class Bearer(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = "Bearer api-token"
        yield request


def test_payment_authorization_header_keeps_the_requests_own_auth(live: Any) -> None:
    server = PaidServer({"/paid": "0.25 USD"}, header="Payment-Authorization")
    recorder = Recorder(server)
    url = live(recorder)
    with make_client(base_url=url, auth=Bearer()) as client:
        response = client.get("/paid")
    assert response.status_code == 200
    first, retry = recorder.seen
    assert first.headers["authorization"] == "Bearer api-token"
    assert retry.headers["authorization"] == "Bearer api-token"
    assert retry.headers["payment-authorization"].startswith("Payment ")


async def test_per_request_auth_is_wrapped_too() -> None:
    server = PaidServer({"/paid": "0.25 USD"}, header="Payment-Authorization")
    recorder = Recorder(server)
    async with make_async(recorder) as client:
        response = await client.get("/paid", auth=Bearer())
    assert response.status_code == 200
    assert recorder.seen[1].headers["authorization"] == "Bearer api-token"


async def test_credential_never_follows_a_redirect() -> None:
    """The paid retry is redirected to another origin: the credential must stay behind."""
    server = PaidServer({"/paid": "0.25 USD"})
    seen: list[tuple[str, dict[str, str]]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        seen.append((headers["host"], headers))
        if headers["host"] == "other.test":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"elsewhere"})
            return
        if "authorization" in headers:
            await send(
                {
                    "type": "http.response.start",
                    "status": 307,
                    "headers": [
                        (b"location", b"https://other.test/landing"),
                        tuple(v.encode() for v in receipt_header("on-the-redirect")),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await server(scope, receive, send)

    async with make_async(app, follow_redirects=True) as client:
        response = await client.get("/paid")
    assert response.text == "elsewhere"
    record = payment_record(response)
    assert record is not None and record.status == "committed"
    assert record.receipt is not None and record.receipt.reference == "on-the-redirect"
    hosts = [host for host, _ in seen]
    assert hosts == ["api.test", "api.test", "other.test"]
    assert "authorization" not in seen[2][1]


def test_same_origin_redirect_does_not_resend_the_credential(live: Any) -> None:
    server = PaidServer({"/paid": "0.25 USD"})

    def inner(seen: Seen, index: int) -> Any:
        return 200, [], b"landed"

    landing = Scripted(inner)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/landing":
            await landing(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if "authorization" in headers:
            await send(
                {
                    "type": "http.response.start",
                    "status": 302,
                    "headers": [(b"location", b"/landing")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await server(scope, receive, send)

    url = live(app)
    with make_client(base_url=url, follow_redirects=True) as client:
        assert client.get("/paid").text == "landed"
    assert "authorization" not in landing.seen[0].headers


# -- secrets never leak -----------------------------------------------------------------


def test_no_secret_in_logs_reprs_or_errors(live: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    seed = bytes(range(32))
    wallet = DevWallet(seed)
    server = PaidServer({"/paid": "0.25 USD"})
    recorder = Recorder(server)
    url = live(recorder)
    with make_client(base_url=url, methods=[wallet]) as client:
        response = client.get("/paid")
        with pytest.raises(PolicyDenied) as denied:
            client.get("/paid", extensions={"mpp": {"max_amount": "0.01 USD"}})
    credential_value = recorder.seen[1].headers["authorization"]
    token = credential_value.split(" ", 1)[1]
    signature = Credential.parse(credential_value).payload["signature"]
    record = payment_record(response)
    texts = [
        caplog.text,
        repr(record),
        str(record),
        repr(wallet),
        repr(client),
        repr(client.payment_auth),
        str(denied.value),
        repr(denied.value),
        repr(Credential.parse(credential_value)),
    ]
    secrets_ = [token, signature, seed.hex(), b64url_encode(seed), credential_value]
    for text in texts:
        for secret in secrets_:
            assert secret not in text
    assert "paying 0.25 USD" in caplog.text  # the logs do say what was paid


def test_response_history_holds_the_402(live: Any) -> None:
    url = live(PaidServer({"/paid": "0.25 USD"}))
    with make_client(base_url=url) as client:
        response = client.get("/paid")
    assert [r.status_code for r in response.history] == [402]
    assert json.loads(response.history[0].content)["type"].endswith("/payment-required")


# -- concurrency ------------------------------------------------------------------------


def test_threads_never_overspend(live: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    server = PaidServer({"/paid": "0.10 USD"})
    url = live(server)
    policy = SimplePolicy(max_per_call="1.00 USD", budget="1.00 USD")
    ledger = MemoryLedger()
    with make_client(base_url=url, policy=policy, ledger=ledger) as client:

        def one(_: int) -> str:
            try:
                client.get("/paid")
                return "paid"
            except BudgetExceeded:
                return "refused"

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(one, range(30)))
    assert outcomes.count("paid") == 10
    assert server.total_received == Amount.parse("1.00 USD")
    assert ledger.spent("USD") == Amount.parse("1.00 USD")


async def test_tasks_never_overspend() -> None:
    import asyncio

    server = PaidServer({"/paid": "0.10 USD"})
    policy = SimplePolicy(max_per_call="1.00 USD", budget="0.50 USD")
    async with make_async(server, policy=policy) as client:

        async def one() -> str:
            try:
                await client.get("/paid")
                return "paid"
            except BudgetExceeded:
                return "refused"

        outcomes = await asyncio.gather(*(one() for _ in range(25)))
    assert outcomes.count("paid") == 5
    assert server.total_received == Amount.parse("0.50 USD")


class Tempoish(DevWallet):
    name = "tempo"


async def test_accept_payment_states_method_preferences() -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    recorder = Recorder(server)
    async with make_async(recorder, methods=[Tempoish(), DevWallet()]) as client:
        await client.get("/paid")
    assert recorder.seen[0].headers["accept-payment"] == "tempo/charge, dev/charge;q=0.9"
    async with make_async(recorder, accept_payment=False) as client:
        await client.get("/free")
    assert "accept-payment" not in recorder.seen[-1].headers
    async with make_async(recorder, accept_payment="dev/*") as client:
        await client.get("/free", headers={"Accept-Payment": "mine/charge"})
        await client.get("/free")
    assert recorder.seen[-2].headers["accept-payment"] == "mine/charge"
    assert recorder.seen[-1].headers["accept-payment"] == "dev/*"


# -- cancellation -----------------------------------------------------------------------


class SlowWallet(DevWallet):
    async def apay(self, challenge: Any) -> Any:
        import asyncio

        await asyncio.sleep(5)
        return await super().apay(challenge)


async def test_cancelled_while_paying_releases_the_reservation(tmp_path: Any) -> None:
    import asyncio

    server = PaidServer({"/paid": "0.25 USD"})
    ledger = mpp_client.ledger.SqliteLedger(tmp_path / "l.sqlite3")
    async with make_async(server, methods=[SlowWallet()], ledger=ledger) as client:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get("/paid"), timeout=0.5)
    assert [r.status for r in ledger.records()] == ["released"]
    assert ledger.spent("USD") == Amount(0, "USD")
    assert server.payments == []


async def test_cancelled_during_the_paid_retry_stays_counted(tmp_path: Any) -> None:
    import asyncio

    server = PaidServer({"/paid": "0.25 USD"})

    async def slow_after_payment(scope: Any, receive: Any, send: Any) -> None:
        if any(name == b"authorization" for name, _ in scope["headers"]):
            await asyncio.sleep(5)
        await server(scope, receive, send)

    ledger = mpp_client.ledger.SqliteLedger(tmp_path / "l.sqlite3")
    async with make_async(slow_after_payment, ledger=ledger) as client:
        # The cancellation itself comes through (not swallowed by our own error)...
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get("/paid"), timeout=0.5)
    # ...and the payment, already sent, stays counted as unknown.
    assert [r.status for r in ledger.records()] == ["unknown"]
    assert ledger.spent("USD") == Amount.parse("0.25 USD")
