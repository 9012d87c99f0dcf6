"""A spec-conformant paid HTTP server, as a plain ASGI app.

It prices routes, answers unpaid requests with 402 challenges whose ids are
HMAC-bound to their parameters (the draft's seven slots), and accepts a ``dev``
voucher once per challenge. Run it with uvicorn for real-socket tests and
demos (:class:`~mpp_client.testing.LocalServer`), or mount it in
``httpx.ASGITransport`` for fast unit tests.

Other payment methods plug in as a :class:`Verifier` (``verifier=``): it adds
its fields to each charge request and redeems credentials, while the server
keeps issuing, binding, expiry, route and amount checks and single use.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import anyio.to_thread

from .._exceptions import ProtocolError
from ..methods.dev import verify_voucher
from ..money import Amount
from ..protocol import (
    Challenge,
    Credential,
    Problem,
    Receipt,
    b64url_decode,
    challenge_id,
    content_digest,
    digest_matches,
    parse_rfc3339,
)

__all__ = [
    "DevVoucherVerifier",
    "PaidServer",
    "Payment",
    "Route",
    "Settlement",
    "VerificationFailed",
    "Verifier",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_MAX_BODY = 1024 * 1024


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Route:
    """A priced route: ``price`` in the server's asset, and what it returns when paid."""

    price: Amount
    body: bytes = b'{"ok":true}'
    content_type: str = "application/json"
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Payment:
    """A payment the server accepted."""

    challenge_id: str
    path: str
    http_method: str
    amount: Amount
    payer: str
    reference: str
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a verifier reports for a credential it accepted and settled."""

    payer: str
    #: The receipt's ``reference`` (a transaction hash, a voucher id).
    reference: str
    #: Extra ``Payment-Receipt`` fields (``challengeId``, ``chainId``...).
    receipt: Mapping[str, Any] = field(default_factory=dict)


class VerificationFailed(Exception):
    """A verifier's refusal: ``code`` is the problem type (``verification-failed``...).

    With ``status`` 402 (the default) the server answers with a fresh
    challenge; any other status (say 500, when a settlement's outcome is
    unknown) is answered as a plain problem, with no new challenge to pay.
    """

    def __init__(self, code: str, detail: str, *, status: int = 402) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


def echoed_challenge(echo: Mapping[str, str], request: Mapping[str, Any]) -> Challenge:
    """The challenge a credential's echo names, rebuilt for a verifier's checks.

    ``request`` is the decoded request the server bound the id to; the echo
    gives the rest as the client sent it (the server has checked its binding).
    """
    expires = echo.get("expires")
    return Challenge(
        id=echo["id"],
        realm=echo["realm"],
        method=echo["method"],
        intent=echo["intent"],
        request=request,
        request_b64=echo["request"],
        expires=parse_rfc3339(expires) if expires is not None else None,
        expires_raw=expires,
    )


class Verifier(Protocol):
    """How :class:`PaidServer` accepts payment by one method.

    ``request_fields()`` returns what the method adds to every charge request
    (e.g. ``{"methodDetails": {...}}``). ``redeem`` checks a credential whose
    challenge the server has already authenticated (id binding, realm, expiry,
    route and amount), calls ``claim()`` once it is valid and before moving
    any money (``False`` means the challenge was already used: refuse), then
    settles. It raises :class:`VerificationFailed` to refuse. ``blocking``
    verifiers (network I/O) are run in a worker thread under ASGI.
    """

    method: str
    blocking: bool

    def request_fields(self) -> Mapping[str, Any]: ...

    def redeem(
        self,
        echo: Mapping[str, str],
        request: Mapping[str, Any],
        credential: Credential,
        claim: Callable[[], bool],
    ) -> Settlement: ...


class DevVoucherVerifier:
    """The default verifier: ``dev`` vouchers (Ed25519 signatures, no money)."""

    method = "dev"
    blocking = False

    def request_fields(self) -> Mapping[str, Any]:
        return {}

    def redeem(
        self,
        echo: Mapping[str, str],
        request: Mapping[str, Any],
        credential: Credential,
        claim: Callable[[], bool],
    ) -> Settlement:
        try:
            payer = verify_voucher(echo, credential.payload)
        except ValueError as exc:
            raise VerificationFailed("verification-failed", str(exc)) from None
        if not claim():
            raise VerificationFailed("invalid-challenge", "challenge already used")
        return Settlement(
            payer=payer,
            reference=f"dev:{echo['id']}",
            receipt={"challengeId": echo["id"], "payer": payer},
        )


@dataclass(slots=True)
class _Outcome:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class PaidServer:
    """An ASGI app that sells routes for ``dev`` vouchers.

    ::

        server = PaidServer({"/weather": "0.25 USD", "/report": "2.00 USD"})

    Unpriced paths answer 200 for free. ``recipient`` is the payee written in
    every charge request; ``currency``/``decimals`` tie the wire currency to
    the price's asset. ``header="Payment-Authorization"`` asks clients to send
    the credential in that header instead of ``Authorization``. ``payments``
    lists what was accepted, for assertions. ``verifier`` sells for another
    payment method (see :class:`Verifier`); the default takes ``dev`` vouchers.
    """

    def __init__(
        self,
        routes: Mapping[str, Route | Amount | str] | None = None,
        *,
        realm: str = "mpp-client.test",
        recipient: str = "merchant-1",
        currency: str = "usd",
        asset: str = "USD",
        decimals: int = 2,
        ttl: timedelta = timedelta(minutes=5),
        secret: bytes | None = None,
        header: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
        verifier: Verifier | None = None,
    ) -> None:
        self.verifier: Verifier = verifier if verifier is not None else DevVoucherVerifier()
        self.method = self.verifier.method
        self.realm = realm
        self.recipient = recipient
        self.currency = currency
        self.asset = asset
        self.decimals = decimals
        self.ttl = ttl
        self.header = header
        self.clock = clock
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._used: set[str] = set()
        self._idempotent: dict[tuple[str, str], _Outcome] = {}
        self.payments: list[Payment] = []
        #: Every challenge id issued, for assertions.
        self.issued: list[str] = []
        for path, route in (routes or {}).items():
            self.price(path, route)

    def price(self, path: str, route: Route | Amount | str) -> None:
        """Price ``path``; a string like ``"0.25 USD"`` or an Amount sets only the price."""
        if not isinstance(route, Route):
            route = Route(Amount.coerce(route))
        if route.price.currency != self.asset:
            raise ValueError(f"route {path} is priced in {route.price.currency}, not {self.asset}")
        self._routes[path] = route

    def __repr__(self) -> str:
        return f"<PaidServer realm={self.realm!r} routes={sorted(self._routes)}>"

    @property
    def total_received(self) -> Amount:
        total = Amount.zero(self.asset, self.decimals)
        for payment in self.payments:
            total = total + payment.amount
        return total

    # -- challenges ---------------------------------------------------------------

    def _units(self, price: Amount) -> int:
        return price.rescale(self.decimals).units

    def issue(self, http_method: str, path: str, body: bytes, route: Route) -> Challenge:
        """A fresh challenge for one request to ``path``."""
        request: dict[str, Any] = {
            "amount": str(self._units(route.price)),
            "currency": self.currency,
            "recipient": self.recipient,
            **self.verifier.request_fields(),
        }
        if route.description:
            request["description"] = route.description
        expires = self.clock() + self.ttl
        digest = content_digest(body) if body else None
        unbound = Challenge.create(
            id="-",
            realm=self.realm,
            method=self.method,
            intent="charge",
            request=request,
            expires=expires,
            digest=digest,
            description=route.description,
            opaque={"route": f"{http_method} {path}"},
            header=self.header,
        )
        cid = self._bind(unbound.request_b64, unbound.expires_raw, digest, unbound.opaque_b64)
        self.issued.append(cid)
        return dataclasses.replace(unbound, id=cid)

    def _bind(
        self, request_b64: str, expires: str | None, digest: str | None, opaque_b64: str | None
    ) -> str:
        return challenge_id(
            self._secret,
            realm=self.realm,
            method=self.method,
            intent="charge",
            request_b64=request_b64,
            expires=expires,
            digest=digest,
            opaque_b64=opaque_b64,
            header=self.header,
        )

    def _challenge_response(
        self, http_method: str, path: str, body: bytes, route: Route, problem: Problem
    ) -> _Outcome:
        challenge = self.issue(http_method, path, body, route)
        return _Outcome(
            402,
            [
                ("www-authenticate", challenge.to_header()),
                ("cache-control", "no-store"),
                ("content-type", "application/problem+json"),
            ],
            problem.to_json(),
        )

    # -- verification -------------------------------------------------------------

    def _verify(
        self,
        *,
        http_method: str,
        path: str,
        body: bytes,
        route: Route,
        value: str,
        idempotency_key: str | None,
    ) -> _Outcome:
        def refuse(code: str, detail: str) -> _Outcome:
            title = code.replace("-", " ").capitalize()
            problem = Problem.build(code, title=title, detail=detail)
            return self._challenge_response(http_method, path, body, route, problem)

        try:
            credential = Credential.parse(value)
        except ProtocolError as exc:
            return refuse("malformed-credential", exc.message)
        echo = credential.echo
        expected_id = self._bind(
            echo["request"], echo.get("expires"), echo.get("digest"), echo.get("opaque")
        )
        if (
            echo["realm"] != self.realm
            or echo["method"] != self.method
            or echo["intent"] != "charge"
            or not secrets.compare_digest(expected_id.encode(), echo["id"].encode())
        ):
            return refuse("invalid-challenge", "challenge id does not match its parameters")
        try:
            terms = json.loads(b64url_decode(echo["request"]))
            opaque = json.loads(b64url_decode(echo.get("opaque", "")) or b"{}")
            expires = parse_rfc3339(echo["expires"]) if "expires" in echo else None
        except ValueError:
            return refuse("malformed-credential", "echoed challenge does not decode")
        if expires is not None and expires < self.clock():
            return refuse("payment-expired", "challenge expired")
        if opaque.get("route") != f"{http_method} {path}":
            return refuse("invalid-challenge", "challenge was issued for another route")
        if terms.get("amount") != str(self._units(route.price)):
            return refuse("payment-insufficient", "amount does not match the route's price")
        digest = echo.get("digest")
        if digest is not None and not digest_matches(digest, body):
            return refuse("verification-failed", "request body does not match the challenge digest")

        def claim() -> bool:
            with self._lock:
                if echo["id"] in self._used:
                    return False
                self._used.add(echo["id"])
                return True

        try:
            settled = self.verifier.redeem(echo, terms, credential, claim)
        except VerificationFailed as exc:
            if exc.status == 402:
                return refuse(exc.code, exc.detail)
            title = exc.code.replace("-", " ").capitalize()
            problem = Problem.build(exc.code, status=exc.status, title=title, detail=exc.detail)
            return _Outcome(
                exc.status, [("content-type", "application/problem+json")], problem.to_json()
            )
        payment = Payment(
            challenge_id=echo["id"],
            path=path,
            http_method=http_method,
            amount=route.price,
            payer=settled.payer,
            reference=settled.reference,
            idempotency_key=idempotency_key,
        )
        receipt = Receipt(
            status="success",
            method=self.method,
            reference=settled.reference,
            timestamp=self.clock(),
            data=dict(settled.receipt),
        )
        with self._lock:
            self.payments.append(payment)
        return _Outcome(
            200,
            [
                ("content-type", route.content_type),
                ("payment-receipt", receipt.to_header()),
                ("cache-control", "private"),
            ],
            route.body,
        )

    def handle(
        self, http_method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> _Outcome:
        """Answer one request (no I/O: the ASGI wrapper does that)."""
        route = self._routes.get(path)
        if route is None:
            return _Outcome(200, [("content-type", "application/json")], b'{"free":true}')
        key = headers.get("idempotency-key")
        credential_header = (self.header or "authorization").lower()
        value = headers.get(credential_header)
        if key is not None and value is not None:
            # A retried paid request gets the original response, not a second charge.
            with self._lock:
                cached = self._idempotent.get((path, key))
            if cached is not None:
                return cached
        if value is None or value[:8].lower() != "payment ":
            problem = Problem.build(
                "payment-required", title="Payment Required", detail=f"{path} costs {route.price}"
            )
            return self._challenge_response(http_method, path, body, route, problem)
        outcome = self._verify(
            http_method=http_method,
            path=path,
            body=body,
            route=route,
            value=value,
            idempotency_key=key,
        )
        if key is not None and outcome.status == 200:
            with self._lock:
                self._idempotent[(path, key)] = outcome
        return outcome

    # -- ASGI ---------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await http_body(scope, receive, send)
        if body is None:
            return
        headers = _headers(scope.get("headers", ()))
        if getattr(self.verifier, "blocking", False):
            outcome = await anyio.to_thread.run_sync(
                self.handle, scope["method"], scope["path"], headers, body
            )
        else:
            outcome = self.handle(scope["method"], scope["path"], headers, body)
        await _respond(send, outcome)


async def http_body(scope: Scope, receive: Receive, send: Send) -> bytes | None:
    """The body of an HTTP request, read bounded; None when there is nothing to answer.

    Serves the lifespan protocol, ignores other scopes, and answers 413 to a
    body over the test servers' limit.
    """
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return None
    if scope["type"] != "http":  # pragma: no cover - websockets are not served
        return None
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            await _respond(send, _Outcome(413, [("content-type", "text/plain")], b"too large"))
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


async def _respond(send: Send, outcome: _Outcome) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in outcome.headers]
    headers.append((b"content-length", str(len(outcome.body)).encode()))
    await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
    await send({"type": "http.response.body", "body": outcome.body})
