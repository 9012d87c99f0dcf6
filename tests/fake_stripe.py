"""A local stand-in for Stripe's API, for tests: the real one cannot be reached here.

:class:`FakeStripe` is an HTTP server on 127.0.0.1 (a random port) that speaks
the small part of the Stripe API the ``stripe`` payment method uses, and
records every request exactly as it arrived: method, path, headers and the
form-encoded body, both as the list of ``(key, value)`` pairs and as a dict.
Tests point the ``stripe`` SDK at it (``api_base=fake.url``) and assert the
exact requests the SDK sent.

By default it issues Shared Payment Tokens (``POST
/v1/shared_payment/issued_tokens``) the way Stripe's API reference describes
them: an ``spt_`` id, ``status: active``, and the requested ``usage_limits``
and ``seller_details`` echoed back; the same ``Idempotency-Key`` returns the
same token. It revokes them (``POST .../{id}/revoke``). ``script`` queues
canned responses that are answered before the default behaviour.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

SPT_PATH = "/v1/shared_payment/issued_tokens"


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    pairs: list[tuple[str, str]]
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return dict(self.pairs)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Canned:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class FakeStripe:
    """``with FakeStripe() as fake: ...``; ``fake.url`` is its API base."""

    def __init__(self, *, api_key: str | None = None, delay: float = 0.0) -> None:
        self.api_key = api_key
        #: Seconds each answer is held back (to show a caller is not blocked meanwhile).
        self.delay = delay
        self.requests: list[Recorded] = []
        self.tokens: dict[str, dict[str, Any]] = {}
        self._by_key: dict[str, str] = {}
        self._script: list[Canned] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake._handle(self)

            def do_GET(self) -> None:
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeStripe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def script(self, status: int, body: dict[str, Any], **headers: str) -> None:
        """Answer the next request with ``status`` and ``body`` (then go back to normal)."""
        self._script.append(
            Canned(status, body, {k.replace("_", "-"): v for k, v in headers.items()})
        )

    def posts(self, path: str = SPT_PATH) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path == path]

    def __iter__(self) -> Iterator[Recorded]:
        return iter(self.requests)

    # -- serving ------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        record = Recorded(
            method=handler.command,
            path=handler.path,
            headers={k.lower(): v for k, v in handler.headers.items()},
            pairs=pairs,
            body=body,
        )
        with self._lock:
            self.requests.append(record)
            canned = self._script.pop(0) if self._script else None
            if canned is None:
                canned = self._default(record)
        if self.delay:
            time.sleep(self.delay)
        payload = json.dumps(canned.body).encode()
        handler.send_response(canned.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Request-Id", f"req_fake_{len(self.requests)}")
        for name, value in canned.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)

    def _error(self, status: int, message: str, **extra: str) -> Canned:
        return Canned(
            status, {"error": {"type": "invalid_request_error", "message": message, **extra}}
        )

    def _default(self, record: Recorded) -> Canned:
        if self.api_key is not None and record.header("authorization") != f"Bearer {self.api_key}":
            return Canned(
                401,
                {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}},
            )
        if record.method == "POST" and record.path == SPT_PATH:
            return self._issue(record)
        if (
            record.method == "POST"
            and record.path.startswith(SPT_PATH + "/")
            and record.path.endswith("/revoke")
        ):
            token_id = record.path[len(SPT_PATH) + 1 : -len("/revoke")]
            token = self.tokens.get(token_id)
            if token is None:
                return self._error(404, f"No such shared payment token: '{token_id}'")
            token.update(status="deactivated", deactivated_reason="revoked")
            return Canned(200, token)
        return self._error(404, f"Unrecognized request URL ({record.method}: {record.path})")

    def _issue(self, record: Recorded) -> Canned:
        form = record.form
        key = record.header("idempotency-key")
        if key is not None and key in self._by_key:
            return Canned(200, self.tokens[self._by_key[key]], {"Idempotent-Replayed": "true"})
        required = (
            "payment_method",
            "usage_limits[currency]",
            "usage_limits[max_amount]",
            "seller_details[network_business_profile]",
        )
        missing = [name for name in required if not form.get(name)]
        if missing:
            return self._error(400, f"Missing required param: {missing[0]}.", param=missing[0])
        token_id = f"spt_fake{next(self._ids):06d}"
        expires = form.get("usage_limits[expires_at]")
        token: dict[str, Any] = {
            "id": token_id,
            "object": "shared_payment.issued_token",
            "livemode": False,
            "created": 1_751_500_820,
            "deactivated_at": None,
            "deactivated_reason": None,
            "payment_method": form["payment_method"],
            "seller_details": {
                "external_id": form.get("seller_details[external_id]"),
                "network_business_profile": form["seller_details[network_business_profile]"],
            },
            "setup_future_usage": None,
            "shared_metadata": {},
            "status": "active",
            "usage_details": {
                "amount_captured": {"value": 0, "currency": form["usage_limits[currency]"]}
            },
            "usage_limits": {
                "currency": form["usage_limits[currency]"],
                "expires_at": int(expires) if expires else None,
                "max_amount": int(form["usage_limits[max_amount]"]),
            },
        }
        self.tokens[token_id] = token
        if key is not None:
            self._by_key[key] = token_id
        return Canned(200, token)
