"""Small ASGI apps for tests: a recorder, a scripted server, a switchboard."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mpp_client.protocol import Challenge, Problem


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


async def read_body(receive: Any) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def header_dict(scope: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key = name.decode("latin-1").lower()
        out[key] = (
            f"{out[key]}, {value.decode('latin-1')}" if key in out else value.decode("latin-1")
        )
    return out


async def respond(send: Any, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Recorder:
    """Wraps an ASGI app and records every HTTP request it receives."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[Seen] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        self.seen.append(Seen(scope["method"], scope["path"], header_dict(scope), body))
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        await self.app(scope, replay, send)


def charge(
    amount: str = "25",
    *,
    currency: str = "usd",
    recipient: str = "merchant-1",
    id: str | None = None,
    method: str = "dev",
    expires: datetime | None = None,
    digest: str | None = None,
    **extra: Any,
) -> Challenge:
    """A challenge as a hand-written (unbound) server would issue it."""
    request: dict[str, Any] = {"amount": amount, "currency": currency, "recipient": recipient}
    request.update(extra)
    return Challenge.create(
        id=id or secrets.token_urlsafe(16),
        realm="scripted.test",
        method=method,
        intent="charge",
        request=request,
        expires=expires if expires is not None else datetime.now(UTC) + timedelta(minutes=5),
        digest=digest,
    )


Handler = Callable[[Seen, int], tuple[int, list[tuple[str, str]], bytes]]


@dataclass
class Scripted:
    """An ASGI app answering with ``handler(request, index)``; records requests."""

    handler: Handler
    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        body = await read_body(receive)
        seen = Seen(scope["method"], scope["path"], header_dict(scope), body)
        self.seen.append(seen)
        status, headers, out = self.handler(seen, len(self.seen) - 1)
        await respond(send, status, headers, out)


def challenge_402(
    *challenges: Challenge, problem: str = "payment-required"
) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [("www-authenticate", c.to_header()) for c in challenges]
    headers += [("content-type", "application/problem+json"), ("cache-control", "no-store")]
    body = Problem.build(problem, title=problem, detail="pay please").to_json()
    return 402, headers, body


class Switchboard:
    """One live uvicorn server for the session; each test plugs in its own app."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        assert self.app is not None, "no app plugged into the switchboard"
        await self.app(scope, receive, send)


def receipt_header_value(reference: str = "ref-1", method: str = "dev") -> str:
    from mpp_client.protocol import Receipt

    receipt = Receipt(
        status="success", method=method, reference=reference, timestamp=datetime.now(UTC)
    )
    return receipt.to_header()
