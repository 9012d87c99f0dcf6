"""A spec-conformant paid HTTP server, as a plain ASGI app.

It prices routes, answers unpaid requests with 402 challenges whose ids are
HMAC-bound to their parameters (the draft's seven slots), and accepts a ``dev``
voucher once per challenge. Run it with uvicorn for real-socket tests and
demos (:class:`~mpp_client.testing.LocalServer`), or mount it in
``httpx.ASGITransport`` for fast unit tests.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

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

__all__ = ["PaidServer", "Payment", "Route"]

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
    lists what was accepted, for assertions.
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
    ) -> None:
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
        request = {
            "amount": str(self._units(route.price)),
            "currency": self.currency,
            "recipient": self.recipient,
        }
        if route.description:
            request["description"] = route.description
        expires = self.clock() + self.ttl
        digest = content_digest(body) if body else None
        unbound = Challenge.create(
            id="-",
            realm=self.realm,
            method="dev",
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
            method="dev",
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
            or echo["method"] != "dev"
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
        try:
            payer = verify_voucher(echo, credential.payload)
        except ValueError as exc:
            return refuse("verification-failed", str(exc))
        with self._lock:
            if echo["id"] in self._used:
                used = True
            else:
                used = False
                self._used.add(echo["id"])
        if used:
            return refuse("invalid-challenge", "challenge already used")
        reference = f"dev:{echo['id']}"
        payment = Payment(
            challenge_id=echo["id"],
            path=path,
            http_method=http_method,
            amount=route.price,
            payer=payer,
            reference=reference,
            idempotency_key=idempotency_key,
        )
        receipt = Receipt(
            status="success",
            method="dev",
            reference=reference,
            timestamp=self.clock(),
            data={"challengeId": echo["id"], "payer": payer},
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
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":  # pragma: no cover - websockets are not served
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > _MAX_BODY:
                await _respond(send, _Outcome(413, [("content-type", "text/plain")], b"too large"))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        headers = _headers(scope.get("headers", ()))
        outcome = self.handle(scope["method"], scope["path"], headers, b"".join(chunks))
        await _respond(send, outcome)


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
