"""Interop: ``mpp_client`` pays a server built with the reference Python SDK (pympp).

The server is a Starlette app using pympp's own engine (``mpp.server.Mpp``) and
its ``@pay`` decorator, with a custom ``dev``/``charge`` method defined through
pympp's public method contract (``mpp.Method`` + ``mpp.server.ServerMethod``).
Its ``verify`` hook checks our Ed25519 voucher with
``mpp_client.methods.dev.verify_voucher`` against the challenge echo that pympp
authenticated (HMAC-bound id, raw base64url ``request``), so a passing test means
real cryptographic verification on the server, over a real socket (uvicorn).

pympp's engine is stateless (HMAC-bound challenge ids): single use of a
credential is a payment method's job, as pympp's own Tempo method does with a
``Store`` and ``CredentialReplayedError``. The ``dev`` method below does the same.

The other direction, pympp's client engine paying our ``PaidServer``, and the
EVM rail both ways on a local chain, are in ``test_interop_pympp_evm.py``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Literal

import httpx
import pytest
import uvicorn
from mpp import Challenge as PymppChallenge
from mpp import MemoryStore, Method, Receipt, Store
from mpp.errors import CredentialReplayedError, VerificationFailedError
from mpp.server import Mpp, ServerMethod, VerifyContext, pay
from mpp.server import Request as PymppRequest
from pydantic import BaseModel, ConfigDict, model_serializer, model_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import mpp_client
from mpp_client import Amount, AsyncClient, Client, DevWallet, SimplePolicy, payment_record
from mpp_client.methods.dev import verify_voucher
from mpp_client.protocol import Credential, Problem, b64url_decode, b64url_encode

from .helpers import pay_now

REALM = "pympp-interop.test"
UNGUARDED_REALM = "pympp-interop-unguarded.test"
SECRET = "pympp-interop-secret-0123456789abcdef"
RECIPIENT = "did:web:merchant.pympp-interop.test"

REPORT_PRICE = Amount(25, "USD", 2)  # route option amount="0.25" -> wire "25"
ORDER_PRICE = Amount(40, "USD", 2)  # route option amount="0.40" -> wire "40"
REPORT = {"report": "quarterly numbers", "rows": [1, 2, 3]}

PROBLEMS = "https://paymentauth.org/problems/"
# Characters above U+00FF: pympp writes them as \\uXXXX escapes in the header.
# (Latin-1 characters such as "é" make pympp 0.16 itself fail: httpx.Headers is ASCII.)
ACCOUNT_DESCRIPTION = 'Account \u2014 \u2615 "premium"'
# Application metadata pympp sends in `opaque` (next to its own `_mpp_nonce`)
# and checks on the way back against the route's.
ORDER_META = {"order": "A-1", "channel": "caf\u00e9 \u2615"}


# -- the custom pympp method -------------------------------------------------------


class DevChargeRequest(BaseModel):
    """Route input of the ``dev`` charge; serializes to the wire request.

    Routes name a display amount (``"0.25"``); the wire carries base units
    (``"25"``), as pympp's Stripe method does with its ``decimals``.
    """

    model_config = ConfigDict(extra="forbid")

    amount: str
    currency: str = "usd"
    recipient: str
    decimals: int = 2

    @model_validator(mode="after")
    def _check(self) -> DevChargeRequest:
        self._base_units()
        return self

    def _base_units(self) -> int:
        scaled = Decimal(self.amount).scaleb(self.decimals)
        if scaled < 0 or scaled != scaled.to_integral_value():
            raise ValueError(f"amount {self.amount!r} is not a whole number of base units")
        return int(scaled)

    @model_serializer
    def _wire(self) -> dict[str, Any]:
        return {
            "amount": str(self._base_units()),
            "currency": self.currency,
            "recipient": self.recipient,
        }


class DevVoucherPayload(BaseModel):
    """The credential payload ``mpp_client.DevWallet`` sends."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["voucher"]
    payer: str
    signature: str


DEV_CHARGE: Method[DevChargeRequest, DevVoucherPayload] = Method(
    name="dev",
    intent="charge",
    request_model=DevChargeRequest,
    payload_model=DevVoucherPayload,
)


@dataclass
class VerifyCall:
    realm: str
    challenge_id: str
    request: dict[str, Any]
    outcome: str
    payer: str | None = None
    reference: str | None = None
    #: The ``opaque`` of the echo, as the credential carried it (base64url), if any.
    opaque_b64: str | None = None


@dataclass
class ServerState:
    calls: list[VerifyCall] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, call: VerifyCall) -> None:
        with self.lock:
            self.calls.append(call)

    def snapshot(self) -> list[VerifyCall]:
        with self.lock:
            return list(self.calls)


def dev_server_method(state: ServerState, store: Store | None) -> ServerMethod:
    """A pympp server method verifying dev vouchers; ``store`` makes them single use."""

    async def verify(context: VerifyContext) -> Receipt:
        echo = context.credential.challenge  # mpp.ChallengeEcho, authenticated by pympp
        # pympp hands the hook the echo's raw base64url request, as the client sent it.
        assert context.challenge.request_b64 == echo.request
        wire_echo = {
            "id": echo.id,
            "realm": echo.realm,
            "method": echo.method,
            "intent": echo.intent,
            "request": echo.request,
        }
        call = VerifyCall(
            echo.realm, echo.id, dict(context.challenge.request), "pending", opaque_b64=echo.opaque
        )
        state.record(call)
        payload = context.credential.payload.model_dump()  # parsed by DevVoucherPayload
        try:
            payer = verify_voucher(wire_echo, payload)
        except ValueError as exc:
            call.outcome = "bad-voucher"
            raise VerificationFailedError(str(exc)) from None
        if context.credential.source not in (None, payer):
            call.outcome = "source-mismatch"
            raise VerificationFailedError("credential source is not the voucher's payer")
        if store is not None and not await store.put_if_absent(f"dev-voucher:{echo.id}", payer):
            call.outcome = "replayed"
            raise CredentialReplayedError("dev voucher already redeemed")
        receipt = replace(
            Receipt.success(reference=f"voucher:{echo.id}", method="dev"), payer=payer
        )
        call.outcome, call.payer, call.reference = "accepted", payer, receipt.reference
        return receipt

    return ServerMethod(method=DEV_CHARGE, verify=verify, defaults={"recipient": RECIPIENT})


def request_body(request: PymppRequest) -> bytes | None:
    """Bind POST challenges to the request body (pympp adds a ``digest``)."""
    return request.body


def build_app(state: ServerState) -> Starlette:
    guarded = Mpp(methods=dev_server_method(state, MemoryStore()), realm=REALM, secret_key=SECRET)
    # Credentials in Payment-Authorization, leaving Authorization to the application.
    with_app_auth = Mpp(
        methods=dev_server_method(state, MemoryStore()),
        realm=REALM,
        secret_key=SECRET,
        requires_auth=True,
    )
    unguarded = Mpp(
        methods=dev_server_method(state, None), realm=UNGUARDED_REALM, secret_key=SECRET
    )

    @pay(guarded.dev.charge(amount="0.25", description="Quarterly report"))
    async def report(request: Request, credential: Any, receipt: Any) -> JSONResponse:
        return JSONResponse({**REPORT, "payer": receipt.payer})

    @pay(guarded["dev/charge"](amount="0.40", body=request_body))
    async def orders(request: Request, credential: Any, receipt: Any) -> JSONResponse:
        return JSONResponse({"ordered": await request.json(), "payer": receipt.payer})

    @pay(guarded.dev.charge(amount="0.25", meta=ORDER_META))
    async def tagged(request: Request, credential: Any, receipt: Any) -> JSONResponse:
        return JSONResponse({**REPORT, "payer": receipt.payer})

    @pay(with_app_auth.dev.charge(amount="0.25", description=ACCOUNT_DESCRIPTION))
    async def account(request: Request, credential: Any, receipt: Any) -> JSONResponse:
        return JSONResponse({"app_auth": request.headers.get("authorization")})

    @pay(unguarded.dev.charge(amount="0.25"))
    async def unguarded_report(request: Request, credential: Any, receipt: Any) -> JSONResponse:
        return JSONResponse(REPORT)

    return Starlette(
        routes=[
            Route("/report", report),
            Route("/orders", orders, methods=["POST"]),
            Route("/tagged", tagged),
            Route("/account", account),
            Route("/unguarded", unguarded_report),
        ]
    )


# -- the server fixture --------------------------------------------------------------


@dataclass
class RunningServer:
    base_url: str
    state: ServerState


@pytest.fixture
def pympp_server() -> Iterator[RunningServer]:
    state = ServerState()
    # IPPROTO_TCP explicitly, or asyncio leaves Nagle on for the accepted sockets.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    config = uvicorn.Config(build_app(state), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("uvicorn did not start")
            time.sleep(0.01)
        with socket.create_connection((host, port), timeout=5):
            pass
        yield RunningServer(f"http://{host}:{port}", state)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop"


def paying_client_with(wallet: DevWallet, **kwargs: Any) -> Client:
    return Client(
        methods=[wallet],
        policy=SimplePolicy(max_per_call="1.00 USD", budget="5.00 USD"),
        allow_insecure_localhost=True,
        **kwargs,
    )


def assert_paid(
    response: httpx.Response,
    server: RunningServer,
    price: Amount,
    payer: str,
) -> mpp_client.PaymentRecord:
    """The common checks on a response our client paid for."""
    assert response.status_code == 200
    record = payment_record(response)
    assert record is not None
    assert record.status == "committed"
    assert record.method == "dev"
    assert record.intent == "charge"
    assert record.realm == REALM
    assert record.payee == RECIPIENT
    assert record.amount == price
    assert record.receipt is not None
    assert record.receipt.method == "dev"
    assert record.receipt.status == "success"
    assert record.receipt.reference == f"voucher:{record.challenge_id}"

    # The receipt pympp wrote, decoded by pympp itself, is the one we recorded.
    server_receipt = Receipt.from_payment_receipt(response.headers["payment-receipt"])
    assert server_receipt.reference == record.receipt.reference
    assert server_receipt.method == "dev"

    (call,) = server.state.snapshot()  # verify ran exactly once
    assert call.outcome == "accepted"
    assert call.payer == payer
    assert call.challenge_id == record.challenge_id
    assert call.reference == record.receipt.reference
    assert call.request["amount"] == str(price.units)
    return record


def _statuses(seen: list[httpx.Response]) -> list[int]:
    return [r.status_code for r in seen]


# -- tests ---------------------------------------------------------------------------


@dataclass
class Paid:
    """One request through our client: the final response, every response seen, the spend."""

    response: httpx.Response
    seen: list[httpx.Response]
    spent: Amount


async def request_through(
    mode: str, wallet: DevWallet, http_method: str, url: str, **kwargs: Any
) -> Paid:
    """Send one request with our ``Client`` (``"sync"``) or ``AsyncClient`` (``"async"``)."""
    seen: list[httpx.Response] = []
    options: dict[str, Any] = {
        "methods": [wallet],
        "policy": SimplePolicy(max_per_call="1.00 USD", budget="5.00 USD"),
        "allow_insecure_localhost": True,
    }
    if mode == "sync":
        with Client(**options, event_hooks={"response": [seen.append]}) as client:
            response = client.request(http_method, url, **kwargs)
            assert client.ledger is not None
            spent = client.ledger.spent("USD")
    else:

        async def hook(response: httpx.Response) -> None:
            seen.append(response)

        async with AsyncClient(**options, event_hooks={"response": [hook]}) as client:
            response = await client.request(http_method, url, **kwargs)
            assert client.ledger is not None
            spent = client.ledger.spent("USD")
    return Paid(response, seen, spent)


MODES = pytest.mark.parametrize("mode", ["sync", "async"])


@MODES
async def test_client_pays_pympp_route(pympp_server: RunningServer, mode: str) -> None:
    wallet = DevWallet()
    paid = await request_through(mode, wallet, "GET", f"{pympp_server.base_url}/report")
    response = paid.response

    assert response.json() == {**REPORT, "payer": wallet.source}
    assert _statuses(paid.seen) == [402, 200]
    assert paid.seen[0].headers["www-authenticate"].startswith("Payment ")
    assert "private" in response.headers["cache-control"]
    assert_paid(response, pympp_server, REPORT_PRICE, wallet.source)
    assert paid.spent == REPORT_PRICE


async def test_async_client_pays_concurrent_requests(pympp_server: RunningServer) -> None:
    wallet = DevWallet()
    async with AsyncClient(
        methods=[wallet],
        policy=SimplePolicy(max_per_call="1.00 USD", budget="5.00 USD"),
        allow_insecure_localhost=True,
    ) as client:
        responses = await asyncio.gather(
            *(client.get(f"{pympp_server.base_url}/report") for _ in range(3))
        )
        assert client.ledger is not None
        spent = client.ledger.spent("USD")

    records = [payment_record(r) for r in responses]
    assert all(r.status_code == 200 for r in responses)
    assert all(rec is not None and rec.status == "committed" for rec in records)
    assert len({rec.challenge_id for rec in records if rec is not None}) == 3
    calls = pympp_server.state.snapshot()
    assert [c.outcome for c in calls] == ["accepted"] * 3
    assert spent == REPORT_PRICE + REPORT_PRICE + REPORT_PRICE


@MODES
async def test_post_with_json_body_pays_digest_bound_challenge(
    pympp_server: RunningServer, mode: str
) -> None:
    wallet = DevWallet()
    order = {"sku": "A-1", "qty": 2, "note": "café"}
    paid = await request_through(
        mode, wallet, "POST", f"{pympp_server.base_url}/orders", json=order
    )
    response, seen = paid.response, paid.seen

    assert _statuses(seen) == [402, 200]
    # pympp bound the challenge to the exact body bytes we sent (sha-256=<base64>).
    (challenge,) = mpp_client.parse_challenges(seen[0].headers.get_list("www-authenticate"))
    body = seen[0].request.content
    assert json.loads(body) == order
    expected = "sha-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert challenge.digest == expected
    # The paid retry carried the same body, an Idempotency-Key and the digest echoed.
    assert response.request.content == body
    assert response.request.headers["idempotency-key"]
    assert Credential.parse(response.request.headers["authorization"]).echo["digest"] == expected

    assert response.json() == {"ordered": order, "payer": wallet.source}
    record = assert_paid(response, pympp_server, ORDER_PRICE, wallet.source)
    assert record.http_method == "POST"
    assert paid.spent == ORDER_PRICE


@MODES
async def test_opaque_metadata_is_echoed_byte_for_byte(
    pympp_server: RunningServer, mode: str
) -> None:
    wallet = DevWallet()
    paid = await request_through(mode, wallet, "GET", f"{pympp_server.base_url}/tagged")
    response, seen = paid.response, paid.seen
    assert _statuses(seen) == [402, 200]

    (value,) = seen[0].headers.get_list("www-authenticate")
    (challenge,) = mpp_client.parse_challenges(value)
    wire_opaque = challenge.params["opaque"]  # the auth-param exactly as pympp wrote it
    assert f'opaque="{wire_opaque}"' in value
    # pympp sent the route's metadata plus its own issuance nonce.
    assert challenge.opaque is not None
    assert {k: v for k, v in challenge.opaque.items() if k != "_mpp_nonce"} == ORDER_META
    assert len(challenge.opaque["_mpp_nonce"]) == 64

    # Our credential carries that string unchanged, and so did the echo pympp verified.
    echo = Credential.parse(response.request.headers["authorization"]).echo
    assert echo["opaque"] == wire_opaque
    assert echo["request"] == challenge.request_b64
    (call,) = pympp_server.state.snapshot()
    assert call.opaque_b64 == wire_opaque
    # pympp checked the echoed metadata against the route's before calling verify.
    assert response.json() == {**REPORT, "payer": wallet.source}
    assert_paid(response, pympp_server, REPORT_PRICE, wallet.source)
    assert paid.spent == REPORT_PRICE


def test_tampered_opaque_is_refused_by_pympp(pympp_server: RunningServer) -> None:
    """pympp binds the metadata into the challenge id: a changed opaque is not paid for."""
    unpaid = httpx.get(f"{pympp_server.base_url}/tagged")
    (challenge,) = mpp_client.parse_challenges(unpaid.headers.get_list("www-authenticate"))
    assert challenge.opaque is not None
    forged_opaque = {**challenge.opaque, "order": "Z-9"}
    forged = replace(
        challenge,
        opaque=forged_opaque,
        opaque_b64=b64url_encode(json.dumps(forged_opaque, separators=(",", ":")).encode()),
    )
    wallet = DevWallet()
    header = Credential.for_challenge(forged, pay_now(wallet, forged), source=wallet.source)
    response = httpx.get(
        f"{pympp_server.base_url}/tagged", headers={"Authorization": header.to_header()}
    )
    assert response.status_code == 402
    problem = Problem.parse(response.content, response.headers.get("content-type"))
    assert problem is not None
    # pympp matches no offer to the altered echo and answers with a fresh challenge.
    assert problem.code == "payment-required"
    (fresh,) = mpp_client.parse_challenges(response.headers.get_list("www-authenticate"))
    assert fresh.id != challenge.id
    assert "payment-receipt" not in response.headers
    assert pympp_server.state.snapshot() == []  # verify never ran


def test_pympp_challenge_parses(pympp_server: RunningServer) -> None:
    response = httpx.get(f"{pympp_server.base_url}/report")
    assert response.status_code == 402
    values = response.headers.get_list("www-authenticate")
    assert len(values) == 1

    (challenge,) = mpp_client.parse_challenges(values)
    reference = PymppChallenge.from_www_authenticate(values[0])  # pympp's own parser

    assert challenge.id == reference.id
    assert challenge.id
    assert challenge.realm == REALM
    assert challenge.method == "dev"
    assert challenge.intent == "charge"
    assert challenge.description == "Quarterly report"
    assert challenge.header is None  # credential goes in Authorization
    assert challenge.digest is None  # GET: no body to bind
    assert challenge.request_b64 == reference.request_b64
    assert challenge.request["amount"] == "25"
    assert challenge.request["currency"] == "usd"
    assert challenge.request["recipient"] == RECIPIENT
    # pympp binds the route scope into the request; we keep it byte for byte.
    assert challenge.request["_mppx_scope"] == {
        "http_method": "GET",
        "route": "/report",
        "resource": "/report",
    }
    assert dict(challenge.request) == reference.request

    # pympp's per-challenge nonce travels in `opaque`; both are kept.
    assert challenge.opaque is not None
    assert set(challenge.opaque) == {"_mpp_nonce"}
    assert challenge.opaque == reference.opaque
    assert challenge.opaque_b64 == challenge.params["opaque"]
    assert challenge.expires_raw == reference.expires
    assert challenge.expires_raw is not None
    assert challenge.expires is not None
    lifetime = challenge.expires.timestamp() - time.time()
    assert 200 < lifetime <= 300  # pympp's default: five minutes

    # The dev wallet reads pympp's terms as 0.25 USD to the merchant.
    quote = DevWallet().quote(challenge)
    assert quote.amount == REPORT_PRICE
    assert quote.payee == RECIPIENT

    # The 402 body is an RFC 9457 problem pointing at this challenge.
    problem = Problem.parse(response.content, response.headers.get("content-type"))
    assert problem is not None
    assert problem.code == "payment-required"
    assert problem.data["challengeId"] == challenge.id
    assert pympp_server.state.snapshot() == []  # nothing was verified


def test_replayed_credential_is_refused(pympp_server: RunningServer) -> None:
    sent: list[str] = []

    def capture(request: httpx.Request) -> None:
        if "authorization" in request.headers:
            sent.append(request.headers["authorization"])

    wallet = DevWallet()
    with paying_client_with(wallet, event_hooks={"request": [capture]}) as client:
        first = client.get(f"{pympp_server.base_url}/report")
        assert client.ledger is not None
        spent = client.ledger.spent("USD")
    assert_paid(first, pympp_server, REPORT_PRICE, wallet.source)
    (authorization,) = sent
    assert authorization.startswith("Payment ")

    with httpx.Client() as plain:
        replay = plain.get(
            f"{pympp_server.base_url}/report", headers={"Authorization": authorization}
        )

    # pympp answers CredentialReplayedError with a final 403, not a new 402
    # challenge (which would invite an auto-paying client to pay again).
    assert replay.status_code == 403
    assert "www-authenticate" not in replay.headers
    assert "payment-receipt" not in replay.headers
    assert replay.headers["content-type"] == "application/problem+json"
    problem = Problem.parse(replay.content, replay.headers["content-type"])
    assert problem is not None
    assert problem.type == PROBLEMS + "verification-failed"
    assert problem.code == "verification-failed"
    assert problem.status == 403
    assert problem.detail == "Payment verification failed: dev voucher already redeemed."

    calls = pympp_server.state.snapshot()
    assert [c.outcome for c in calls] == ["accepted", "replayed"]
    assert calls[0].challenge_id == calls[1].challenge_id
    assert spent == REPORT_PRICE


def test_pympp_engine_alone_does_not_stop_replays(pympp_server: RunningServer) -> None:
    """Documents pympp: without a method-level store, a credential pays twice."""
    sent: list[str] = []
    wallet = DevWallet()
    with paying_client_with(
        wallet,
        event_hooks={"request": [lambda r: sent.extend(r.headers.get_list("authorization"))]},
    ) as client:
        first = client.get(f"{pympp_server.base_url}/unguarded")
    assert first.status_code == 200
    record = payment_record(first)
    assert record is not None
    assert record.status == "committed"
    assert record.realm == UNGUARDED_REALM
    (authorization,) = sent

    replay = httpx.get(
        f"{pympp_server.base_url}/unguarded", headers={"Authorization": authorization}
    )
    assert replay.status_code == 200
    assert [c.outcome for c in pympp_server.state.snapshot()] == ["accepted", "accepted"]


def test_forged_voucher_is_refused_by_server(pympp_server: RunningServer) -> None:
    """The server hook really checks the signature: a tampered voucher fails."""
    unpaid = httpx.get(f"{pympp_server.base_url}/report")
    (challenge,) = mpp_client.parse_challenges(unpaid.headers.get_list("www-authenticate"))
    wallet = DevWallet()
    payload = dict(pay_now(wallet, challenge))
    signature = bytearray(b64url_decode(payload["signature"]))
    signature[0] ^= 0x01
    forged = {**payload, "signature": b64url_encode(bytes(signature))}
    header = Credential.for_challenge(challenge, forged, source=wallet.source).to_header()

    response = httpx.get(f"{pympp_server.base_url}/report", headers={"Authorization": header})

    assert response.status_code == 402
    problem = Problem.parse(response.content, response.headers.get("content-type"))
    assert problem is not None
    assert problem.code == "verification-failed"
    assert "payment-receipt" not in response.headers
    (call,) = pympp_server.state.snapshot()
    assert call.outcome == "bad-voucher"

    # The genuine voucher for the same challenge is still accepted afterwards.
    genuine = Credential.for_challenge(challenge, payload, source=wallet.source).to_header()
    ok = httpx.get(f"{pympp_server.base_url}/report", headers={"Authorization": genuine})
    assert ok.status_code == 200
    assert [c.outcome for c in pympp_server.state.snapshot()] == ["bad-voucher", "accepted"]


def test_payment_authorization_header_keeps_application_auth(
    pympp_server: RunningServer,
) -> None:
    """pympp ``requires_auth=True`` asks for the credential in Payment-Authorization."""
    wallet = DevWallet()
    seen: list[httpx.Response] = []
    with paying_client_with(wallet, event_hooks={"response": [seen.append]}) as client:
        response = client.get(
            f"{pympp_server.base_url}/account", headers={"Authorization": "Bearer app-token"}
        )

    assert _statuses(seen) == [402, 200]
    (challenge,) = mpp_client.parse_challenges(seen[0].headers.get_list("www-authenticate"))
    assert challenge.header == "Payment-Authorization"
    assert challenge.credential_header == "Payment-Authorization"
    assert challenge.description == ACCOUNT_DESCRIPTION
    assert "\\u2615" in seen[0].headers["www-authenticate"]  # escaped on the wire

    paid_request = response.request
    assert paid_request.headers["payment-authorization"].startswith("Payment ")
    assert paid_request.headers["authorization"] == "Bearer app-token"
    assert response.json() == {"app_auth": "Bearer app-token"}
    assert_paid(response, pympp_server, REPORT_PRICE, wallet.source)
