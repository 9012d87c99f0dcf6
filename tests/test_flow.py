"""The payment flow end to end, over both drivers of the one payment loop.

Every test that takes ``driver`` runs twice: through ``mpp_client.Client``
(the sync driver) and ``mpp_client.AsyncClient`` (the async driver, on a real
event loop), against real loopback sockets unless it says otherwise (see
``tests/drivers.py``). The few behaviours one driver alone has say why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

import mpp_client
from mpp_client import (
    Amount,
    ApprovalRequest,
    ApprovalRequired,
    BudgetExceeded,
    ChallengeError,
    ChallengeExpired,
    DevWallet,
    InsecureTransport,
    MemoryLedger,
    NoAcceptableChallenge,
    PaymentError,
    PaymentFailed,
    PaymentOutcomeUnknown,
    PaymentRejected,
    Policy,
    PolicyDenied,
    SimplePolicy,
    payment_record,
)
from mpp_client.protocol import Credential, Receipt, b64url_encode, content_digest
from mpp_client.testing import PaidServer

from .apps import Recorder, Scripted, Seen, challenge_402, charge, read_body
from .drivers import Driver, Paying, Via

POLICY = SimplePolicy(max_per_call="1.00 USD", budget="10.00 USD")


def make(driver: Driver, target: Any = None, /, *, via: Via = "socket", **kwargs: Any) -> Paying:
    """A paying client with the dev wallet and ``POLICY`` unless told otherwise."""
    kwargs.setdefault("methods", [DevWallet()])
    kwargs.setdefault("policy", POLICY)
    kwargs.setdefault("allow_insecure_localhost", True)
    return driver.client(target, via=via, **kwargs)


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


def statuses(pay: Paying) -> list[str]:
    assert pay.ledger is not None
    return [r.status for r in pay.ledger.records()]


# -- the happy path ---------------------------------------------------------------------


@pytest.mark.parametrize("via", ["socket", "asgi"])
def test_paid_get(driver: Driver, via: Via) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    recorder = Recorder(server)
    with make(driver, recorder, via=via) as pay:
        response = pay.get("/paid")
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
    assert [p.path for p in server.payments] == ["/paid"]
    first, retry = recorder.seen
    assert first.headers["accept-payment"] == "dev/charge"
    assert "authorization" not in first.headers
    assert retry.headers["authorization"].startswith("Payment ")
    assert pay.ledger is not None
    assert pay.ledger.spent("USD") == Amount.parse("0.25 USD")


def test_free_route_is_not_paid_and_has_no_record(driver: Driver) -> None:
    with make(driver, PaidServer({"/paid": "0.25 USD"})) as pay:
        response = pay.get("/free")
    assert response.status_code == 200
    assert payment_record(response) is None
    assert "mpp" not in response.extensions


def test_without_methods_client_is_plain_httpx(driver: Driver) -> None:
    recorder = Recorder(PaidServer({"/paid": "0.25 USD"}))
    with driver.client(recorder) as pay:
        response = pay.get("/paid")
    assert response.status_code == 402
    assert "accept-payment" not in recorder.seen[0].headers
    assert len(recorder.seen) == 1
    assert pay.payment_auth is None and pay.ledger is None


@pytest.mark.parametrize("options", [{"policy": POLICY}, {"ledger": "memory:"}])
def test_policy_or_ledger_without_methods_is_a_type_error(
    driver: Driver, options: dict[str, Any]
) -> None:
    with pytest.raises(TypeError, match="methods"):
        driver.Client(**options)


def test_post_sends_idempotency_key_and_body_intact_and_digest_matches(driver: Driver) -> None:
    recorder = Recorder(PaidServer({"/orders": "0.50 USD"}))
    with make(driver, recorder) as pay:
        response = pay.post("/orders", json={"sku": "a", "qty": 2})
    assert response.status_code == 200
    first, retry = recorder.seen
    assert first.body == retry.body == b'{"sku":"a","qty":2}'
    assert first.headers["idempotency-key"] == retry.headers["idempotency-key"]
    assert len(first.headers["idempotency-key"]) >= 16
    credential = Credential.parse(retry.headers["authorization"])
    assert credential.echo["digest"] == content_digest(first.body)


def test_user_idempotency_key_is_kept(driver: Driver) -> None:
    recorder = Recorder(PaidServer({"/orders": "0.50 USD"}))
    with make(driver, recorder) as pay:
        pay.put("/orders", content=b"x", headers={"Idempotency-Key": "mine-1"})
    assert [s.headers["idempotency-key"] for s in recorder.seen] == ["mine-1", "mine-1"]


def test_get_has_no_idempotency_key(driver: Driver) -> None:
    recorder = Recorder(PaidServer({"/paid": "0.25 USD"}))
    with make(driver, recorder) as pay:
        pay.get("/paid")
    assert len(recorder.seen) == 2
    assert all("idempotency-key" not in s.headers for s in recorder.seen)


def test_streaming_response_is_paid_and_recorded(driver: Driver) -> None:
    with make(driver, PaidServer({"/paid": "0.25 USD"})) as pay:
        response, body = pay.stream("GET", "/paid")
    assert body == b'{"ok":true}'
    record = payment_record(response)
    assert record is not None and record.status == "committed"


# -- refusals before paying -------------------------------------------------------------


def test_digest_mismatch_is_refused_before_paying(driver: Driver) -> None:
    wrong = content_digest(b"another body")
    app = Scripted(lambda seen, i: challenge_402(charge(digest=wrong)))
    with make(driver, app) as pay, pytest.raises(ChallengeError, match="digest"):
        pay.post("/x", content=b"my body")
    assert len(app.seen) == 1
    assert pay.ledger is not None and pay.ledger.records() == []


def test_expired_challenge_is_refused(driver: Driver) -> None:
    past = datetime.now(UTC) - timedelta(minutes=1)
    app = Scripted(lambda seen, i: challenge_402(charge(expires=past)))
    with make(driver, app) as pay, pytest.raises(ChallengeExpired):
        pay.get("/x")
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
    driver: Driver, expires_in: timedelta, skew: timedelta, paid: bool
) -> None:
    app_challenge = charge(expires=datetime.now(UTC) + expires_in)
    app = Scripted(
        lambda seen, i: (
            challenge_402(app_challenge)
            if "authorization" not in seen.headers
            else (200, [receipt_header()], b"ok")
        )
    )
    with make(driver, app, clock_skew=skew) as pay:
        if paid:
            assert pay.get("/x").status_code == 200
            assert len(app.seen) == 2
        else:
            with pytest.raises(ChallengeExpired):
                pay.get("/x")
            # Nothing was sent for it: the only request is the one that got the 402.
            assert len(app.seen) == 1
            assert pay.ledger is not None and pay.ledger.records() == []


def test_request_level_expiry_is_checked_too(driver: Driver) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    challenge = charge()
    request = dict(challenge.request, expires=past)
    bad = mpp_client.Challenge.create(
        id="c1", realm="r", method="dev", intent="charge", request=request
    )
    app = Scripted(lambda seen, i: challenge_402(bad))
    with make(driver, app) as pay, pytest.raises(ChallengeExpired):
        pay.get("/x")
    assert len(app.seen) == 1


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
def test_credentials_only_over_https_or_opted_in_loopback(
    driver: Driver, base_url: str, opt_in: bool, ok: bool
) -> None:
    # Every host is pinned to the loopback server: the flow judges the URL it was given.
    server = PaidServer({"/paid": "0.25 USD"})
    recorder = Recorder(server)
    with make(driver, recorder, base_url=base_url, allow_insecure_localhost=opt_in) as pay:
        if ok:
            assert pay.get("/paid").status_code == 200
        else:
            with pytest.raises(InsecureTransport):
                pay.get("/paid")
    assert len(server.payments) == (1 if ok else 0)
    assert len(recorder.seen) == (2 if ok else 1)
    assert all("authorization" not in s.headers for s in recorder.seen[: 1 if ok else None])


def test_policy_refusal_names_the_reason_and_pays_nothing(driver: Driver) -> None:
    server = PaidServer({"/expensive": "5.00 USD"})
    with make(driver, server) as pay, pytest.raises(PolicyDenied) as info:
        pay.get("/expensive")
    assert "5.00 USD exceeds the per-call cap 1.00 USD" in str(info.value)
    assert info.value.response is not None and info.value.response.status_code == 402
    assert info.value.decision is not None and not info.value.decision.allowed
    assert server.payments == []


def test_budget_exceeded_after_spending(driver: Driver) -> None:
    server = PaidServer({"/paid": "0.40 USD"})
    policy = SimplePolicy(max_per_call="1.00 USD", budget="1.00 USD")
    with make(driver, server, policy=policy) as pay:
        pay.get("/paid")
        pay.get("/paid")
        with pytest.raises(BudgetExceeded, match=r"0\.80 USD already spent or held, 0\.20 USD"):
            pay.get("/paid")
    assert len(server.payments) == 2


def test_no_policy_denies_by_default(driver: Driver) -> None:
    server = PaidServer({"/paid": "0.01 USD"})
    with make(driver, server, policy=None) as pay:
        with pytest.raises(PolicyDenied, match="no spending policy"):
            pay.get("/paid")
        assert pay.client.policy is None
    assert server.payments == []


def test_unknown_asset_is_refused(driver: Driver) -> None:
    server = PaidServer({"/paid": "0.25 EUR"}, asset="EUR", currency="eur")
    wallet = DevWallet(currency="eur", asset="EUR")
    with make(driver, server, methods=[wallet]) as pay:
        with pytest.raises(PolicyDenied, match="asset EUR is not covered"):
            pay.get("/paid")
    assert server.payments == []


def test_no_configured_method_for_the_offer(driver: Driver) -> None:
    app = Scripted(lambda seen, i: challenge_402(charge(method="tempo"), charge(method="stripe")))
    with make(driver, app) as pay, pytest.raises(NoAcceptableChallenge) as info:
        pay.get("/x")
    assert "stripe/charge, tempo/charge" in str(info.value)
    assert len(info.value.reasons) == 2


def test_second_offer_is_paid_when_first_is_unsupported(driver: Driver) -> None:
    dev = charge(amount="30")

    def handler(seen: Seen, index: int) -> Any:
        if "authorization" not in seen.headers:
            return challenge_402(charge(method="tempo"), dev)
        assert Credential.parse(seen.headers["authorization"]).echo["id"] == dev.id
        return 200, [receipt_header()], b"ok"

    with make(driver, Scripted(handler)) as pay:
        record = payment_record(pay.get("/x"))
    assert record is not None and record.amount == Amount(30, "USD", 2)


def test_cheaper_offer_is_paid_when_first_exceeds_the_cap(driver: Driver) -> None:
    pricey, cheap = charge(amount="500"), charge(amount="50")

    def handler(seen: Seen, index: int) -> Any:
        if "authorization" not in seen.headers:
            return challenge_402(pricey, cheap)
        assert Credential.parse(seen.headers["authorization"]).echo["id"] == cheap.id
        return 200, [receipt_header()], b"ok"

    with make(driver, Scripted(handler)) as pay:
        assert pay.get("/x").status_code == 200


def test_broken_challenge_next_to_a_good_one_pays_the_good_one(driver: Driver) -> None:
    good = charge()

    def handler(seen: Seen, index: int) -> Any:
        if "authorization" not in seen.headers:
            status, headers, body = challenge_402(good)
            headers.insert(0, ("www-authenticate", 'Payment id="", realm="r"'))
            return status, headers, body
        return 200, [receipt_header()], b"ok"

    with make(driver, Scripted(handler)) as pay:
        assert pay.get("/x").status_code == 200


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
    driver: Driver, header: str, message: str
) -> None:
    app = Scripted(lambda seen, i: (402, [("www-authenticate", header)], b""))
    with make(driver, app) as pay, pytest.raises(ChallengeError, match=message):
        pay.get("/x")
    assert len(app.seen) == 1


@pytest.mark.parametrize(
    ("amount", "message"),
    [(25, "string of base-unit digits"), ("-5", "digits"), ("2.5", "digits"), ("9" * 80, "digits")],
)
def test_bad_amounts_are_refused(driver: Driver, amount: Any, message: str) -> None:
    bad = mpp_client.Challenge.create(
        id="c",
        realm="r",
        method="dev",
        intent="charge",
        request={"amount": amount, "currency": "usd", "recipient": "m"},
    )
    app = Scripted(lambda seen, i: challenge_402(bad))
    with make(driver, app) as pay, pytest.raises(ChallengeError, match=message):
        pay.get("/x")
    assert len(app.seen) == 1


def test_402_without_any_challenge_is_a_challenge_error(driver: Driver) -> None:
    app = Scripted(lambda seen, i: (402, [], b"pay me"))
    with make(driver, app) as pay, pytest.raises(ChallengeError):
        pay.get("/x")
    assert len(app.seen) == 1


def test_oversized_402_body_is_refused_without_paying(driver: Driver) -> None:
    app = Scripted(
        lambda seen, i: (402, [("www-authenticate", charge().to_header())], b"x" * 70_000)
    )
    with make(driver, app) as pay, pytest.raises(ChallengeError, match="over 65536"):
        pay.get("/x")
    assert len(app.seen) == 1


def test_reused_challenge_id_is_not_paid_twice(driver: Driver) -> None:
    same = charge(id="fixed-id")

    def handler(seen: Seen, index: int) -> Any:
        if "authorization" not in seen.headers:
            return challenge_402(same)
        return 200, [receipt_header()], b"ok"

    app = Scripted(handler)
    with make(driver, app) as pay:
        assert pay.get("/x").status_code == 200
        with pytest.raises(ChallengeError, match="already answered"):
            pay.get("/x")
    assert sum("authorization" in s.headers for s in app.seen) == 1


# -- after paying -----------------------------------------------------------------------


def test_402_after_payment_is_a_typed_error_not_a_loop(driver: Driver) -> None:
    app = Scripted(lambda seen, i: challenge_402(charge(), problem="verification-failed"))
    with make(driver, app) as pay, pytest.raises(PaymentRejected) as info:
        pay.get("/x")
    assert len(app.seen) == 2
    assert info.value.problem is not None and info.value.problem.code == "verification-failed"
    assert pay.ledger is not None
    (record,) = pay.ledger.records()
    # A refused voucher moved no money: the reservation is released.
    assert record.status == "released"
    assert pay.ledger.spent("USD") == Amount(0, "USD")


def test_max_payments_allows_a_second_attempt_after_a_refused_voucher(driver: Driver) -> None:
    def handler(seen: Seen, index: int) -> Any:
        if index < 2:
            return challenge_402(charge())
        return 200, [receipt_header()], b"ok"

    app = Scripted(handler)
    with make(driver, app, max_payments=2) as pay:
        response = pay.get("/x")
    assert response.status_code == 200
    assert len(app.seen) == 3
    assert statuses(pay) == ["released", "committed"]


def test_server_error_after_payment_is_outcome_unknown_and_stays_counted(driver: Driver) -> None:
    with (
        make(driver, paid_after(lambda seen, i: (500, [], b"boom"))) as pay,
        pytest.raises(PaymentOutcomeUnknown) as info,
    ):
        pay.get("/x")
    assert pay.ledger is not None
    (record,) = pay.ledger.records()
    assert record.status == "unknown" and "HTTP 500" in (record.reason or "")
    assert info.value.record == record
    assert pay.ledger.spent("USD") == Amount(25, "USD", 2)


def test_403_after_payment_is_outcome_unknown_not_a_second_payment(driver: Driver) -> None:
    app = paid_after(lambda seen, i: (403, [], b"denied"))
    with make(driver, app, max_payments=3) as pay, pytest.raises(PaymentOutcomeUnknown):
        pay.get("/x")
    assert len(app.seen) == 2
    assert statuses(pay) == ["unknown"]


def lost_retry(error: type[httpx.TransportError]) -> tuple[httpx.MockTransport, list[Any]]:
    """A transport whose paid retry fails with ``error``: the 402 comes, the answer never does.

    MockTransport: a dropped connection mid-retry cannot be staged on a real socket reliably.
    """
    challenge = charge()
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if "authorization" not in request.headers:
            status, headers, body = challenge_402(challenge)
            return httpx.Response(status, headers=headers, content=body)
        raise error("the server went away", request=request)

    return httpx.MockTransport(handler), calls


@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.ConnectError])
def test_transport_error_on_the_paid_retry_is_outcome_unknown(
    driver: Driver, error: type[httpx.TransportError]
) -> None:
    transport, calls = lost_retry(error)
    with (
        make(driver, transport=transport, allow_insecure_localhost=False) as pay,
        pytest.raises(PaymentOutcomeUnknown, match="failed before a response arrived") as info,
    ):
        pay.get("https://api.test/x")
    assert pay.ledger is not None
    (record,) = pay.ledger.records()
    assert record.status == "unknown"
    assert info.value.record == record
    assert pay.ledger.spent("USD") == Amount(25, "USD", 2)
    assert len(calls) == 2
    assert "authorization" in calls[1].headers


# The async driver cannot read the transport error off httpx's GeneratorExit
# (CPython does not chain it for async generators); AsyncClient leaves it
# on the failed paid request instead, so both drivers name it as the cause.
@pytest.mark.parametrize("error", [httpx.ReadTimeout, httpx.ConnectError])
@pytest.mark.parametrize("driver", ["sync", "async"], indirect=True)
def test_transport_error_on_the_paid_retry_is_the_cause(
    driver: Driver, error: type[httpx.TransportError]
) -> None:
    transport, _ = lost_retry(error)
    with (
        make(driver, transport=transport, allow_insecure_localhost=False) as pay,
        pytest.raises(PaymentOutcomeUnknown) as info,
    ):
        pay.get("https://api.test/x")
    assert isinstance(info.value.__cause__, error)


def test_malformed_receipt_still_commits(driver: Driver, caplog: pytest.LogCaptureFixture) -> None:
    app = paid_after(lambda seen, i: (200, [("payment-receipt", "%%%")], b"ok"))
    with make(driver, app) as pay:
        record = payment_record(pay.get("/x"))
    assert record is not None and record.status == "committed" and record.receipt is None
    assert "malformed Payment-Receipt" in caplog.text


class Exploding(DevWallet):
    def pay(self, challenge: Any, quote: Any = None) -> Any:
        raise RuntimeError("hardware wallet unplugged")

    async def apay(self, challenge: Any, quote: Any = None) -> Any:
        raise RuntimeError("hardware wallet unplugged")


class ExplodingPush(Exploding):
    """Its quotes say paying moves funds (a broadcast): a failure leaves it unknown."""

    def quote(self, challenge: Any) -> Any:
        return dataclasses.replace(super().quote(challenge), moves_funds=True)


def test_method_failure_releases_the_reservation(driver: Driver) -> None:
    app = paid_after()
    with make(driver, app, methods=[Exploding()]) as pay, pytest.raises(PaymentFailed):
        pay.get("/x")
    assert statuses(pay) == ["released"]
    assert len(app.seen) == 1


def test_push_method_failure_is_outcome_unknown(driver: Driver) -> None:
    app = paid_after()
    with make(driver, app, methods=[ExplodingPush()]) as pay, pytest.raises(PaymentOutcomeUnknown):
        pay.get("/x")
    assert statuses(pay) == ["unknown"]
    assert len(app.seen) == 1


class Interrupted(DevWallet):
    """Ctrl-C lands while the wallet pays: the sync analogue of a cancellation."""

    def pay(self, challenge: Any, quote: Any = None) -> Any:
        raise KeyboardInterrupt

    async def apay(self, challenge: Any, quote: Any = None) -> Any:
        raise KeyboardInterrupt


class InterruptedPush(Interrupted):
    def quote(self, challenge: Any) -> Any:
        return dataclasses.replace(super().quote(challenge), moves_funds=True)


@pytest.mark.parametrize(
    ("wallet", "settled"), [(Interrupted, "released"), (InterruptedPush, "unknown")]
)
def test_interrupt_inside_pay_settles_the_reservation_and_goes_on(
    driver: Driver, wallet: type[DevWallet], settled: str
) -> None:
    """A KeyboardInterrupt from the wallet is not swallowed, and leaves no reservation held."""
    app = paid_after()
    pay = make(driver, app, methods=[wallet()])
    with pytest.raises(KeyboardInterrupt):
        pay.get("/x")
    assert statuses(pay) == [settled]
    assert len(app.seen) == 1


# -- per-call options -------------------------------------------------------------------


def test_call_max_amount_only_narrows(driver: Driver) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    with make(driver, server) as pay:
        with pytest.raises(PolicyDenied, match=r"max_amount 0\.10 USD"):
            pay.get("/paid", extensions={"mpp": {"max_amount": "0.10 USD"}})
        # A larger per-call limit does not widen the policy's cap.
        server.price("/big", "2.00 USD")
        with pytest.raises(PolicyDenied, match="per-call cap"):
            pay.get("/big", extensions={"mpp": {"max_amount": "5.00 USD"}})
        ok = pay.get("/paid", extensions={"mpp": {"max_amount": "0.30 USD"}})
        assert ok.status_code == 200
    assert [p.path for p in server.payments] == ["/paid"]


def test_call_expected_payee_and_purpose(driver: Driver) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    with make(driver, server) as pay:
        with pytest.raises(PolicyDenied, match="not the payee the call expected"):
            pay.get("/paid", extensions={"mpp": {"payee": "someone-else"}})
        response = pay.get(
            "/paid",
            extensions={"mpp": {"payee": "merchant-1", "purpose": "lookup", "tags": {"job": "7"}}},
        )
    record = payment_record(response)
    assert record is not None and record.purpose == "lookup" and record.tags == {"job": "7"}
    assert len(server.payments) == 1


def test_pay_false_returns_the_402(driver: Driver) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    with make(driver, server) as pay:
        response = pay.get("/paid", extensions={"mpp": {"pay": False}})
    assert response.status_code == 402
    assert server.payments == []
    assert statuses(pay) == []


@pytest.mark.parametrize(
    "options",
    [{"max_amount": 0.1}, {"tags": {"a": 1}}, {"bogus": 1}, {"pay": "yes"}, "not a dict"],
)
def test_bad_call_options_are_typed_errors(driver: Driver, options: Any) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    with make(driver, server) as pay, pytest.raises(PaymentError):
        pay.get("/paid", extensions={"mpp": options})
    assert server.payments == []


# -- approval ---------------------------------------------------------------------------

APPROVAL = {
    "currency": "USD",
    "per_call": "1.00 USD",
    "allow": {
        "hosts": ["127.0.0.1"],
        "realms": ["*"],
        "payees": ["*"],
        "methods": ["dev"],
        "intents": ["charge"],
        "assets": ["*"],
    },
    "approval": {"above": "0.50 USD", "timeout": "1s"},
}


@pytest.fixture
def never() -> Iterator[threading.Event]:
    """An event set only at teardown: an approver blocked on it never answers in time."""
    event = threading.Event()
    yield event
    event.set()


@pytest.mark.parametrize(
    ("kind", "paid", "message"),
    [
        pytest.param(kind, paid, message, id=kind)
        for kind, paid, message in [
            ("sync-yes", True, None),
            ("async-yes", True, None),
            ("sync-no", False, "the approver declined"),
            ("async-no", False, "the approver declined"),
            ("broken", False, r"the approver failed \(RuntimeError\)"),
            ("silent", False, "no answer from the approver in time"),
            ("none", False, r"approval required .* no approver is configured"),
        ]
    ],
)
def test_approval_is_asked_and_obeyed(
    driver: Driver, never: threading.Event, kind: str, paid: bool, message: str | None
) -> None:
    asked: list[ApprovalRequest] = []

    def sync_approver(answer: bool) -> Any:
        def approver(request: ApprovalRequest) -> bool:
            asked.append(request)
            return answer

        return approver

    def async_approver(answer: bool) -> Any:
        async def approver(request: ApprovalRequest) -> bool:
            asked.append(request)
            await asyncio.sleep(0)
            return answer

        return approver

    def broken(request: ApprovalRequest) -> bool:
        asked.append(request)
        raise RuntimeError("pager offline")

    def silent(request: ApprovalRequest) -> bool:
        asked.append(request)
        never.wait(30)
        return True

    approvers: dict[str, Any] = {
        "sync-yes": sync_approver(True),
        "async-yes": async_approver(True),
        "sync-no": sync_approver(False),
        "async-no": async_approver(False),
        "broken": broken,
        "silent": silent,
        "none": None,
    }
    server = PaidServer({"/paid": "0.60 USD", "/cheap": "0.25 USD"})
    policy = Policy.from_mapping(APPROVAL)
    with make(driver, server, policy=policy, approver=approvers[kind]) as pay:
        # Under the threshold nobody is asked.
        assert pay.get("/cheap").status_code == 200
        assert asked == []
        if paid:
            response = pay.get("/paid", extensions={"mpp": {"purpose": "report"}})
            assert response.status_code == 200
            record = payment_record(response)
            assert record is not None and record.decision is not None
            assert record.decision.rules[-1].rule == "approval"
            assert record.decision.rules[-1].passed
        else:
            with pytest.raises(ApprovalRequired, match=message) as info:
                pay.get("/paid", extensions={"mpp": {"purpose": "report"}})
            assert info.value.response is not None and info.value.response.status_code == 402
    assert [p.path for p in server.payments] == ["/cheap", *(["/paid"] if paid else [])]
    if kind == "none":
        assert asked == []
        return
    (request,) = asked
    assert request.charge == Amount.parse("0.60 USD")
    assert request.payee == "merchant-1" and request.purpose == "report"
    assert request.reasons == ("0.60 USD is above the approval threshold 0.50 USD",)


# -- headers, auth and redirects --------------------------------------------------------


class Bearer(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = "Bearer api-token"
        yield request


def test_payment_authorization_header_keeps_the_requests_own_auth(driver: Driver) -> None:
    server = PaidServer({"/paid": "0.25 USD"}, header="Payment-Authorization")
    recorder = Recorder(server)
    with make(driver, recorder, auth=Bearer()) as pay:
        response = pay.get("/paid")
    assert response.status_code == 200
    first, retry = recorder.seen
    assert first.headers["authorization"] == "Bearer api-token"
    assert retry.headers["authorization"] == "Bearer api-token"
    assert retry.headers["payment-authorization"].startswith("Payment ")


def test_per_request_auth_is_wrapped_too(driver: Driver) -> None:
    server = PaidServer({"/paid": "0.25 USD"}, header="Payment-Authorization")
    recorder = Recorder(server)
    with make(driver, recorder) as pay:
        response = pay.get("/paid", auth=Bearer())
    assert response.status_code == 200
    first, retry = recorder.seen
    assert first.headers["authorization"] == "Bearer api-token"
    assert retry.headers["authorization"] == "Bearer api-token"
    assert retry.headers["payment-authorization"].startswith("Payment ")
    assert len(server.payments) == 1


async def _redirect(send: Any, status: int, location: bytes, *extra: tuple[str, str]) -> None:
    headers = [(b"location", location), *(tuple(v.encode() for v in h) for h in extra)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def test_credential_never_follows_a_redirect(driver: Driver) -> None:
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
            await _redirect(
                send, 307, b"https://other.test/landing", receipt_header("on-the-redirect")
            )
            return
        await server(scope, receive, send)

    # Both hosts are pinned to the loopback server, which answers by Host header.
    with make(driver, app, base_url="https://api.test", follow_redirects=True) as pay:
        response = pay.get("/paid")
    assert response.text == "elsewhere"
    record = payment_record(response)
    assert record is not None and record.status == "committed"
    assert record.receipt is not None and record.receipt.reference == "on-the-redirect"
    hosts = [host for host, _ in seen]
    assert hosts == ["api.test", "api.test", "other.test"]
    assert "authorization" not in seen[2][1]


def test_same_origin_redirect_does_not_resend_the_credential(driver: Driver) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    landing = Scripted(lambda seen, i: (200, [], b"landed"))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/landing":
            await landing(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if "authorization" in headers:
            await _redirect(send, 302, b"/landing")
            return
        await server(scope, receive, send)

    with make(driver, app, follow_redirects=True) as pay:
        assert pay.get("/paid").text == "landed"
    assert len(landing.seen) == 1
    assert "authorization" not in landing.seen[0].headers


def test_accept_payment_states_method_preferences(driver: Driver) -> None:
    class Tempoish(DevWallet):
        name = "tempo"

    recorder = Recorder(PaidServer({"/paid": "0.25 USD"}))
    with make(driver, recorder, methods=[Tempoish(), DevWallet()]) as pay:
        pay.get("/paid")
    assert recorder.seen[0].headers["accept-payment"] == "tempo/charge, dev/charge;q=0.9"
    with make(driver, recorder, accept_payment=False) as pay:
        pay.get("/free")
    assert "accept-payment" not in recorder.seen[-1].headers
    with make(driver, recorder, accept_payment="dev/*") as pay:
        pay.get("/free", headers={"Accept-Payment": "mine/charge"})
        pay.get("/free")
    assert recorder.seen[-2].headers["accept-payment"] == "mine/charge"
    assert recorder.seen[-1].headers["accept-payment"] == "dev/*"


# -- secrets never leak -----------------------------------------------------------------


def test_no_secret_in_logs_reprs_or_errors(
    driver: Driver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    seed = bytes(range(32))
    wallet = DevWallet(seed)
    recorder = Recorder(PaidServer({"/paid": "0.25 USD"}))
    with make(driver, recorder, methods=[wallet]) as pay:
        response = pay.get("/paid")
        with pytest.raises(PolicyDenied) as denied:
            pay.get("/paid", extensions={"mpp": {"max_amount": "0.01 USD"}})
    credential_value = recorder.seen[1].headers["authorization"]
    token = credential_value.split(" ", 1)[1]
    signature = Credential.parse(credential_value).payload["signature"]
    record = payment_record(response)
    texts = [
        caplog.text,
        repr(record),
        str(record),
        repr(wallet),
        repr(pay.client),
        repr(pay.payment_auth),
        str(denied.value),
        repr(denied.value),
        repr(Credential.parse(credential_value)),
    ]
    secrets_ = [token, signature, seed.hex(), b64url_encode(seed), credential_value]
    for text in texts:
        for secret in secrets_:
            assert secret not in text
    assert "paying 0.25 USD" in caplog.text  # the logs do say what was paid


def test_response_history_holds_the_402(driver: Driver) -> None:
    with make(driver, PaidServer({"/paid": "0.25 USD"})) as pay:
        response = pay.get("/paid")
    assert [r.status_code for r in response.history] == [402]
    assert json.loads(response.history[0].content)["type"].endswith("/payment-required")


# -- concurrency ------------------------------------------------------------------------


def test_concurrent_calls_never_overspend(driver: Driver) -> None:
    """30 calls at once (8 threads for sync, 30 tasks for async) against room for 10."""
    server = PaidServer({"/paid": "0.10 USD"})
    policy = SimplePolicy(max_per_call="1.00 USD", budget="1.00 USD")
    ledger = MemoryLedger()
    with make(driver, server, policy=policy, ledger=ledger) as pay:
        results = pay.gather([("GET", "/paid", {})] * 30, threads=8)
    paid = [r for r in results if isinstance(r, httpx.Response)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(paid) + len(refused) == 30, [r for r in results if isinstance(r, Exception)]
    assert len(paid) == 10
    assert all(r.status_code == 200 and payment_record(r) is not None for r in paid)
    assert server.total_received == Amount.parse("1.00 USD")
    assert ledger.spent("USD") == Amount.parse("1.00 USD")
    assert [r.status for r in ledger.records()] == ["committed"] * 10


# -- cancellation -----------------------------------------------------------------------
# Async only: a sync call cannot be cancelled from outside its thread. The sync
# analogue, an interruption raised inside the wallet's pay, is
# test_interrupt_inside_pay_settles_the_reservation_and_goes_on (both drivers).


class SlowWallet(DevWallet):
    async def apay(self, challenge: Any, quote: Any = None) -> Any:
        await asyncio.sleep(5)
        return await super().apay(challenge, quote)


@pytest.mark.parametrize("via", ["asgi", "socket"])
@pytest.mark.parametrize("driver", ["async"], indirect=True)
def test_cancelled_while_paying_releases_the_reservation(
    driver: Driver, via: Via, tmp_path: Any
) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    ledger = mpp_client.ledger.SqliteLedger(tmp_path / "l.sqlite3")
    with make(driver, server, via=via, methods=[SlowWallet()], ledger=ledger) as pay:
        with pytest.raises(TimeoutError):
            pay.run(lambda client: asyncio.wait_for(client.get("/paid"), timeout=0.5))
    assert [r.status for r in ledger.records()] == ["released"]
    assert ledger.spent("USD") == Amount(0, "USD")
    assert server.payments == []


class HeldReserve(mpp_client.ledger.SqliteLedger):
    """A SQLite ledger whose reserve, once written, waits for the test to say go."""

    def __init__(self, path: Any) -> None:
        super().__init__(path)
        self.reserving = threading.Event()
        self.go = threading.Event()

    def reserve(self, record: Any, limits: Any) -> Any:
        held = super().reserve(record, limits)
        self.reserving.set()
        self.go.wait(30)
        return held


class CheckpointWallet(DevWallet):
    """Pays after one event-loop checkpoint, where a pending cancellation lands."""

    async def apay(self, challenge: Any, quote: Any = None) -> Any:
        await asyncio.sleep(0)
        return await super().apay(challenge, quote)


# Ledger work is shielded from both kinds of cancellation: an anyio cancel
# scope, and asyncio's own task.cancel() (wait_for, asyncio.timeout, task
# groups), which a shielded anyio scope alone does not hold off.
@pytest.mark.parametrize("cancel", ["anyio", "asyncio"])
@pytest.mark.parametrize("driver", ["async"], indirect=True)
def test_cancelled_while_reserving_settles_the_reservation(
    driver: Driver, cancel: str, tmp_path: Any
) -> None:
    """The ledger work runs in a thread, shielded: a cancellation cannot lose its result.

    (Sync code has nothing to shield from: see the ``Record`` effect's docstring.)
    """
    server = PaidServer({"/paid": "0.25 USD"})
    ledger = HeldReserve(tmp_path / "l.sqlite3")

    async def native(client: Any) -> None:
        task = asyncio.ensure_future(client.get("/paid"))
        await asyncio.to_thread(ledger.reserving.wait, 30)
        task.cancel()  # lands while the reservation's thread is still running
        ledger.go.set()
        await task

    async def scoped(client: Any) -> bool:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(client.get, "/paid")
                await anyio.to_thread.run_sync(ledger.reserving.wait, 30)
                scope.cancel()  # lands while the reservation's thread is still running
                ledger.go.set()
        return scope.cancelled_caught

    with make(driver, server, methods=[CheckpointWallet()], ledger=ledger) as pay:
        if cancel == "asyncio":
            with pytest.raises(asyncio.CancelledError):
                pay.run(native)
        else:
            assert pay.run(scoped) is True
    # The reservation made in the thread was not lost: it was settled, nothing was paid.
    assert ledger.reserving.is_set()
    assert [r.status for r in ledger.records()] == ["released"]
    assert ledger.spent("USD") == Amount(0, "USD")
    assert server.payments == []


@pytest.mark.parametrize("via", ["asgi", "socket"])
@pytest.mark.parametrize("driver", ["async"], indirect=True)
def test_cancelled_during_the_paid_retry_stays_counted(
    driver: Driver, via: Via, tmp_path: Any
) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    reached: list[str] = []

    async def hangs_after_payment(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and any(n == b"authorization" for n, _ in scope["headers"]):
            # The credential arrived; never answer: wait until the client goes away.
            await read_body(receive)
            reached.append(scope["path"])
            await receive()
            return
        await server(scope, receive, send)

    ledger = mpp_client.ledger.SqliteLedger(tmp_path / "l.sqlite3")
    with make(driver, hangs_after_payment, via=via, ledger=ledger) as pay:
        # The cancellation itself comes through (not swallowed by our own error)...
        with pytest.raises(TimeoutError):
            pay.run(lambda client: asyncio.wait_for(client.get("/paid"), timeout=0.5))
    assert reached == ["/paid"]
    # ...and the payment, already sent, stays counted as unknown.
    assert [r.status for r in ledger.records()] == ["unknown"]
    assert ledger.spent("USD") == Amount.parse("0.25 USD")
