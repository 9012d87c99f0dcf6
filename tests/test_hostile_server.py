"""What a hostile or broken server cannot make the client do.

Each test here stands for a fault a hostile-server review found: server
strings forging log lines, a challenge id paid twice across restarts, an
expired challenge paid inside the clock skew, a credential visible in a repr,
per-call narrowing left to the policy, and receipts that contradict the
payment. Real loopback sockets for the sync client, the ASGI transport for
the async one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mpp_client import (
    Amount,
    AsyncClient,
    ChallengeReused,
    Client,
    Decision,
    DevWallet,
    Ledger,
    MemoryLedger,
    NoAcceptableChallenge,
    PaymentContext,
    PaymentError,
    PaymentOutcomeUnknown,
    PaymentRejected,
    Policy,
    PolicyDenied,
    RuleResult,
    SimplePolicy,
    SpendPolicy,
    payment_record,
)
from mpp_client.ledger import SqliteLedger
from mpp_client.protocol import Problem, Receipt, b64url_encode, canonical_json

from .apps import Scripted, Seen, challenge_402, charge, receipt_header_value
from .ledger_fixtures import PG_URL, postgres_unavailable

POLICY = SimplePolicy(max_per_call="1.00 USD", budget="10.00 USD")
Reply = tuple[int, list[tuple[str, str]], bytes]

CONTROL = "\n2026-12-01 CRITICAL forged line \x1b[31mred\x1b[0m \u202egnp.exe"


def unsafe(text: str) -> bool:
    """True when ``text`` holds a character that could forge or repaint a line."""
    return any(ch in text for ch in ("\n", "\r", "\x1b", "\u202e"))


def pays_once(challenge: Any, answer: Reply | None = None) -> Scripted:
    """402 with ``challenge``; the paid retry gets ``answer`` (200 with a receipt by default)."""

    def handler(seen: Seen, index: int) -> Reply:
        if not any(h in seen.headers for h in ("authorization", "payment-authorization")):
            return challenge_402(challenge)
        if answer is not None:
            return answer
        return 200, [("payment-receipt", receipt_header_value())], b"resource"

    return Scripted(handler)


def make_client(url: str, **kwargs: Any) -> Client:
    kwargs.setdefault("methods", [DevWallet()])
    kwargs.setdefault("policy", POLICY)
    return Client(base_url=url, allow_insecure_localhost=True, **kwargs)


# -- server strings never forge a log line or an error message -------------------------


def test_server_strings_are_escaped_in_logs_and_errors(
    live: Any, caplog: pytest.LogCaptureFixture
) -> None:
    hostile = charge(recipient="merchant" + CONTROL, id="id-with-controls")
    url = live(pays_once(hostile))
    caplog.set_level(logging.DEBUG, logger="mpp_client")
    with make_client(url) as client:
        response = client.get("/x")
    assert response.status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("mpp_client")]
    assert any("paying" in line for line in lines)
    assert not any(unsafe(line) for line in lines), lines
    # The escaped form is still readable: the operator sees what the server sent.
    assert any("\\n2026-12-01 CRITICAL" in line and "\\x1b[31m" in line for line in lines)


def test_refusal_messages_escape_the_payee(live: Any) -> None:
    hostile = charge(amount="500", recipient="merchant" + CONTROL)
    url = live(pays_once(hostile))
    with make_client(url) as client, pytest.raises(PolicyDenied) as caught:
        client.get("/x")
    error = caught.value
    for text in (str(error), error.message, repr(error), *error.reasons):
        assert not unsafe(text), text
    assert "\\x1b[31m" in error.message


def test_problem_detail_is_escaped_in_payment_rejected(live: Any) -> None:
    problem = Problem.build(
        "verification-failed", title="nope", detail="bad voucher" + CONTROL
    ).to_json()
    first = charge()
    again = charge()

    def handler(seen: Seen, index: int) -> Reply:
        if "authorization" not in seen.headers:
            return challenge_402(first)
        status, headers, _ = challenge_402(again)
        return status, headers, problem

    url = live(Scripted(handler))
    with make_client(url) as client, pytest.raises(PaymentRejected) as caught:
        client.get("/x")
    assert not unsafe(str(caught.value))
    assert "bad voucher\\n2026-12-01" in caught.value.message


def test_no_acceptable_challenge_reasons_are_escaped(live: Any) -> None:
    offer = charge(method="other", id="x" * 8)
    # A malformed offer whose id carries escapes that decode to control characters.
    broken = 'Payment id="\\u001b[2J", realm="r"'
    url = live(
        Scripted(
            lambda seen, i: (
                402,
                [("www-authenticate", offer.to_header()), ("www-authenticate", broken)],
                b"",
            )
        )
    )
    with make_client(url) as client, pytest.raises(NoAcceptableChallenge) as caught:
        client.get("/x")
    for text in (caught.value.message, *caught.value.reasons):
        assert not unsafe(text), text


def test_shadow_mode_warning_is_escaped(live: Any, caplog: pytest.LogCaptureFixture) -> None:
    policy = Policy.from_mapping(
        {
            "currency": "USD",
            "mode": "shadow",
            "per_call": "0.10 USD",
            "allow": {
                "hosts": ["*"],
                "realms": ["*"],
                "payees": ["*"],
                "methods": ["dev"],
                "intents": ["charge"],
                "assets": ["*"],
            },
        }
    )
    hostile = charge(recipient="merchant" + CONTROL)
    url = live(pays_once(hostile))
    caplog.set_level(logging.INFO, logger="mpp_client")
    with make_client(url, policy=policy) as client:
        assert client.get("/x").status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("shadow policy" in w for w in warnings), warnings
    assert not any(unsafe(w) for w in warnings)


# -- a challenge id is single use across processes and restarts ---------------------------


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def ledger_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """``factory()`` opens the same ledger again, as a restarted process would."""
    kind = request.param
    if kind == "memory":
        shared = MemoryLedger()
        yield lambda: shared
        return
    if kind == "sqlite":
        path = tmp_path / "ledger.sqlite3"
        opened: list[Ledger] = []

        def sqlite() -> Ledger:
            ledger = SqliteLedger(path)
            opened.append(ledger)
            return ledger

        yield sqlite
        for ledger in opened:
            ledger.close()  # type: ignore[attr-defined]
        return
    reason = postgres_unavailable()
    if reason:
        pytest.fail(reason)
    from mpp_client.ledger import PostgresLedger

    prefix = f"t{abs(hash(tmp_path)) % 10**8}_"
    made: list[Any] = []

    def postgres() -> Ledger:
        ledger = PostgresLedger(PG_URL, prefix=prefix)
        made.append(ledger)
        return ledger

    yield postgres
    made[0].drop()
    for ledger in made:
        ledger.close()


def test_replayed_challenge_id_is_refused_after_a_restart(live: Any, ledger_factory: Any) -> None:
    replayed = charge(id="the-same-id-every-time")
    app = pays_once(replayed)
    url = live(app)
    with make_client(url, ledger=ledger_factory()) as first:
        assert first.get("/x").status_code == 200
    paid_requests = len(app.seen)
    # A new client on the same ledger (a restarted process) gets the same challenge.
    with make_client(url, ledger=ledger_factory()) as second:
        with pytest.raises(ChallengeReused) as caught:
            second.get("/x")
        assert "already answered" in caught.value.message
        assert second.ledger is not None
        assert second.ledger.spent("USD") == Amount.parse("0.25 USD")
    # Only the request that got the 402 was sent: no credential for the replay.
    assert len(app.seen) == paid_requests + 1
    assert "authorization" not in app.seen[-1].headers


def test_same_id_in_another_realm_is_a_different_challenge(live: Any) -> None:
    ledger = MemoryLedger()
    url_a = live(pays_once(charge(id="shared-id")))
    with make_client(url_a, ledger=ledger) as client:
        assert client.get("/x").status_code == 200
    other = charge(id="shared-id")
    other = type(other).create(
        id="shared-id",
        realm="another.realm",
        method=other.method,
        intent=other.intent,
        request=other.request,
        expires=other.expires,
    )
    url_b = live(pays_once(other))
    with make_client(url_b, ledger=ledger) as client:
        assert client.get("/x").status_code == 200
    assert len(ledger.records()) == 2


# -- a credential never shows, whatever header carries it ----------------------------------


def _asks_payment_authorization() -> str:
    """A challenge asking for the credential in ``Payment-Authorization``."""
    return charge().to_header() + ', header="Payment-Authorization"'


@pytest.mark.parametrize("outcome", ["paid", "rejected"])
def test_payment_authorization_header_is_hidden_in_reprs(live: Any, outcome: str) -> None:
    raw = _asks_payment_authorization()
    sent: list[str] = []

    def handler(seen: Seen, index: int) -> Reply:
        credential = seen.headers.get("payment-authorization")
        if credential is None:
            return 402, [("www-authenticate", raw)], b""
        sent.append(credential)
        if outcome == "rejected":
            return 402, [("www-authenticate", charge().to_header())], b""
        return 200, [("payment-receipt", receipt_header_value())], b"ok"

    url = live(Scripted(handler))
    with make_client(url, headers={"Authorization": "Bearer app-token"}) as client:
        if outcome == "paid":
            response = client.get("/x")
        else:
            with pytest.raises(PaymentRejected) as caught:
                client.get("/x")
            assert caught.value.response is not None
            response = caught.value.response
            assert sent[0] not in str(caught.value) + repr(caught.value)
    assert sent, "the server never saw a credential"
    secret = sent[0].split(" ", 1)[1]
    shown = repr(response.request.headers) + repr(response.request) + repr(response)
    assert secret not in shown
    assert "[secure]" in repr(response.request.headers)
    # The application's own Authorization stays hidden too, as httpx hides it.
    assert "app-token" not in shown


def test_credential_hidden_after_a_redirect_with_plain_httpx(live: Any) -> None:
    from mpp_client import PaymentAuth

    raw = _asks_payment_authorization()
    sent: list[str] = []

    def handler(seen: Seen, index: int) -> Reply:
        if seen.path == "/done":
            return 200, [("payment-receipt", receipt_header_value())], b"ok"
        credential = seen.headers.get("payment-authorization")
        if credential is None:
            return 402, [("www-authenticate", raw)], b""
        sent.append(credential)
        return 307, [("location", "/done")], b""

    url = live(Scripted(handler))
    auth = PaymentAuth(
        [DevWallet()], policy=POLICY, ledger="memory:", allow_insecure_localhost=True
    )
    with httpx.Client(base_url=url, auth=auth, follow_redirects=True) as client:
        response = client.get("/x")
    assert response.status_code == 200
    secret = sent[0].split(" ", 1)[1]
    for each in (*response.history, response):
        assert secret not in repr(each.request.headers)


# -- the call's own limits hold whatever the policy says -------------------------------------


class CarelessPolicy(SpendPolicy):
    """A user's policy that allows everything and ignores the call's narrowing."""

    def decide(self, context: PaymentContext) -> Decision:
        return Decision(
            "allow",
            (RuleResult("careless", True, "anything goes"),),
            charge=Amount(context.quote.amount.units, "USD", context.quote.amount.decimals),
        )


@pytest.mark.parametrize(
    ("options", "rule"),
    [
        ({"max_amount": "0.10 USD"}, "call.max_amount"),
        ({"payee": "someone-else"}, "call.payee"),
        ({"max_amount": "0.10 EUR"}, "call.max_amount"),  # cannot compare: refused
    ],
    ids=["max_amount", "payee", "incomparable-currency"],
)
def test_flow_enforces_call_narrowing_for_any_policy(
    live: Any, options: dict[str, Any], rule: str
) -> None:
    app = pays_once(charge(amount="25"))
    url = live(app)
    with make_client(url, policy=CarelessPolicy()) as client:
        with pytest.raises(PolicyDenied) as caught:
            client.get("/x", extensions={"mpp": options})
        assert caught.value.decision is not None
        refused = [r.rule for r in caught.value.decision.rules if not r.passed]
        assert rule in refused
        assert client.ledger is not None and client.ledger.spent("USD").units == 0
    assert len(app.seen) == 1  # nothing was paid


def test_narrowing_that_holds_lets_the_payment_through(live: Any) -> None:
    url = live(pays_once(charge(amount="25")))
    with make_client(url, policy=CarelessPolicy()) as client:
        response = client.get(
            "/x", extensions={"mpp": {"max_amount": "0.25 USD", "payee": "merchant-1"}}
        )
    assert response.status_code == 200


# -- receipts that contradict the payment ------------------------------------------------------


def _receipt(**fields: Any) -> str:
    data = {"status": "success", "method": "dev", "reference": "ref-1"}
    data.update(fields)
    return b64url_encode(canonical_json({k: v for k, v in data.items() if v is not None}))


def test_receipt_saying_failed_leaves_the_outcome_unknown(live: Any) -> None:
    answer = (200, [("payment-receipt", _receipt(status="failed"))], b"resource anyway")
    url = live(pays_once(charge(), answer))
    with make_client(url) as client:
        with pytest.raises(PaymentOutcomeUnknown) as caught:
            client.get("/x")
        record = caught.value.record
        assert record is not None and record.status == "unknown"
        assert record.reason is not None and "'failed'" in record.reason
        assert caught.value.response is not None
        assert caught.value.response.status_code == 200
        assert client.ledger is not None
        # Still counted until someone resolves it.
        assert client.ledger.spent("USD") == Amount.parse("0.25 USD")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"method": "tempo"}, "names method 'tempo'"),
        ({"challengeId": "another-challenge"}, "for challenge 'another-challenge'"),
        ({"reference": None}, "malformed"),
    ],
    ids=["other-method", "other-challenge", "malformed"],
)
def test_receipt_for_something_else_is_not_kept(
    live: Any, fields: dict[str, Any], words: str
) -> None:
    answer = (200, [("payment-receipt", _receipt(**fields))], b"resource")
    url = live(pays_once(charge(), answer))
    with make_client(url) as client:
        response = client.get("/x")
        record = payment_record(response)
        assert record is not None and record.status == "committed"
        assert record.receipt is None
        assert record.reason is not None and words in record.reason
        assert client.ledger is not None
        stored = client.ledger.records()[0]
        assert stored.reason == record.reason  # the ledger keeps the note


def test_matching_receipt_is_kept_without_a_note(live: Any) -> None:
    challenge = charge()
    answer = (200, [("payment-receipt", _receipt(challengeId=challenge.id))], b"ok")
    url = live(pays_once(challenge, answer))
    with make_client(url) as client:
        record = payment_record(client.get("/x"))
    assert record is not None and record.receipt is not None and record.reason is None


def test_receipt_status_is_readable_even_when_the_receipt_is_not() -> None:
    assert Receipt.peek_status(_receipt(status="failed", reference=None)) == "failed"
    assert Receipt.peek_status("not base64 !") is None
    assert Receipt.peek_status(b64url_encode(json.dumps({"status": 3}).encode())) is None


# -- the async client gets the same protections --------------------------------------------


async def test_async_client_escapes_and_enforces_narrowing() -> None:
    hostile = charge(amount="25", recipient="merchant" + CONTROL)
    app = pays_once(hostile)
    async with AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="https://api.test",
        methods=[DevWallet()],
        policy=CarelessPolicy(),
        ledger="memory:",
    ) as client:
        with pytest.raises(PaymentError) as caught:
            await client.get("/x", extensions={"mpp": {"max_amount": "0.10 USD"}})
    assert isinstance(caught.value, PolicyDenied)
    assert not unsafe(str(caught.value))
    assert len(app.seen) == 1


# -- an error after payment can be read ---------------------------------------------------------


@pytest.mark.parametrize("status", [403, 500])
def test_error_after_payment_keeps_its_problem_readable(live: Any, status: int) -> None:
    problem = Problem.build("verification-failed", title="no", detail="already used").to_json()
    answer = (status, [("content-type", "application/problem+json")], problem)
    url = live(pays_once(charge(), answer))
    with make_client(url) as client, pytest.raises(PaymentOutcomeUnknown) as caught:
        client.get("/x")
    assert caught.value.response is not None
    assert caught.value.response.json()["detail"] == "already used"
    assert caught.value.record is not None and caught.value.record.status == "unknown"


def test_oversize_error_after_payment_is_still_recorded_as_unknown(live: Any) -> None:
    answer = (500, [("content-type", "text/plain")], b"x" * (65 * 1024))
    url = live(pays_once(charge(), answer))
    with make_client(url) as client:
        with pytest.raises(PaymentOutcomeUnknown) as caught:
            client.get("/x")
        assert client.ledger is not None
        assert [r.status for r in client.ledger.records()] == ["unknown"]
    assert caught.value.record is not None
