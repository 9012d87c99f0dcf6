"""Selling over x402 in tests and demos: a small x402 server, as a plain ASGI app.

:class:`X402Server` prices paths and answers an unpaid request with 402 and
x402 payment requirements for the ``exact`` scheme on one EVM network: a
``PAYMENT-REQUIRED`` header (version 2) or a JSON body with ``accepts``
(``version=1``). It takes the payment from ``PAYMENT-SIGNATURE``
(``X-PAYMENT``) and checks what an x402 facilitator checks before it
settles: the payment names exactly the requirement offered and this
resource, the EIP-3009 authorization pays ``payTo`` exactly the price, its
window is open now and no longer than ``maxTimeoutSeconds``, its signature
recovers the payer (computed with eth-account's EIP-712 encoder,
independently of the client's code), and its nonce was never used.

Settlement is yours to plug in: ``settle(authorization, signature)`` submits
``transferWithAuthorization`` and returns the transaction hash
(:func:`settle_with` does that on a node through a
:class:`~mpp_client.testing.evm.ChainClient`, as a facilitator would).
Without it the server only verifies the signature and answers with a
``PAYMENT-RESPONSE`` that names no transaction: nothing moves on any chain,
which is what a demo without a chain needs, and says so.

``mpp=`` puts a :class:`~mpp_client.testing.PaidServer` behind it: a request
without an x402 payment goes to that server, whose 402s then offer both
protocols (``WWW-Authenticate: Payment`` and ``PAYMENT-REQUIRED``), as a
server that sells through MPP and x402 at once does.

Needs the ``evm`` extra (eth-account).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address

from ..money import Amount
from ..protocol import (
    X402_PAYMENT_REQUIRED,
    X402_PAYMENT_RESPONSE,
    X402_PAYMENT_SIGNATURE,
    X402_V1_PAYMENT,
    X402_V1_PAYMENT_RESPONSE,
)
from ._evm_verifier import authorization_typed_data
from ._server import PaidServer, Scope, _headers, _Outcome, _respond, http_body

__all__ = ["Settle", "X402Paid", "X402Server", "settle_with"]

#: ``settle(authorization, signature) -> transaction hash``; raise to refuse.
Settle = Callable[[Mapping[str, str], str], str]
#: The official facilitator's margin: a ``validBefore`` closer than this is refused.
_MIN_VALID_SECONDS = 6
_MAX_HEADER = 64 * 1024


@dataclass(frozen=True, slots=True)
class X402Paid:
    """A payment the server accepted."""

    path: str
    amount: int
    payer: str
    nonce: str
    transaction: str
    version: int


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _b64(document: Mapping[str, Any]) -> str:
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


def _unb64(value: str) -> Any:
    if len(value) > _MAX_HEADER:
        raise _Refused("invalid_payload")
    try:
        return json.loads(base64.b64decode(value + "=" * (-len(value) % 4), validate=True))
    except ValueError:
        raise _Refused("invalid_payload") from None


def settle_with(chain: Any, token: str) -> Settle:
    """A ``settle`` that submits the authorization to ``token`` through ``chain``.

    ``chain`` is a :class:`~mpp_client.testing.evm.ChainClient` with a funded
    key (it pays the gas, as a facilitator does).
    """

    def settle(authorization: Mapping[str, str], signature: str) -> str:
        receipt = chain.submit_authorization(token, {**authorization, "signature": signature})
        if receipt.get("status") != "0x1":
            raise _Refused("transaction_failed")
        return str(receipt["transactionHash"])

    return settle


class X402Server:
    """An x402 seller of ``exact`` EIP-3009 payments in one token on one EVM network.

    ::

        server = X402Server({"/weather": "0.25 USD"}, pay_to=merchant, asset=token,
                            chain_id=84532, token_name="USD Coin", token_version="2")

    ``routes`` maps a path to its price: base units (an int) or an amount in
    the token's asset (``"0.25 USD"``, ``decimals`` digits). ``network`` is
    ``eip155:<chain_id>`` in version 2; version 1 needs its name
    (``network="base-sepolia"``). The resource URL of each requirement is
    the request's own (its ``Host``, its path), or ``base_url`` plus the path
    behind a proxy that speaks HTTPS for it. ``payments`` lists what was accepted.
    """

    def __init__(
        self,
        routes: Mapping[str, int | str | Amount],
        *,
        pay_to: str,
        asset: str,
        chain_id: int,
        token_name: str,
        token_version: str,
        decimals: int = 6,
        version: int = 2,
        network: str | None = None,
        max_timeout_seconds: int = 60,
        settle: Settle | None = None,
        mpp: PaidServer | None = None,
        description: str | None = None,
        base_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if version not in (1, 2):
            raise ValueError("x402 version is 1 or 2")
        if version == 1 and network is None:
            raise ValueError("version 1 names its network: pass network= (like 'base-sepolia')")
        if version == 1 and mpp is not None:
            raise ValueError("a version 1 402 states its terms in the body: it cannot share one")
        self.pay_to = to_checksum_address(pay_to)
        self.asset = to_checksum_address(asset)
        self.chain_id = chain_id
        self.token_name = token_name
        self.token_version = token_version
        self.decimals = decimals
        self.version = version
        self.network = network or f"eip155:{chain_id}"
        self.max_timeout_seconds = max_timeout_seconds
        self.settle = settle
        self.mpp = mpp
        self.description = description
        self.base_url = base_url.rstrip("/") if base_url else None
        self.clock = clock
        self._prices: dict[str, int] = {}
        for path, price in routes.items():
            if isinstance(price, int) and not isinstance(price, bool):
                self._prices[path] = price
            else:
                self._prices[path] = Amount.coerce(price).rescale(decimals).units
        self._lock = threading.Lock()
        self._used: set[tuple[str, str]] = set()
        self.payments: list[X402Paid] = []

    def __repr__(self) -> str:
        return f"<X402Server network={self.network!r} routes={sorted(self._prices)}>"

    # -- terms ----------------------------------------------------------------------

    def requirement(self, path: str, resource: str) -> dict[str, Any]:
        """The ``accepts`` entry for ``path`` (version 1 names its resource in it)."""
        extra = {"name": self.token_name, "version": self.token_version}
        if self.version == 1:
            return {
                "scheme": "exact",
                "network": self.network,
                "maxAmountRequired": str(self._prices[path]),
                "resource": resource,
                "description": self.description or f"{path}",
                "mimeType": "application/json",
                "payTo": self.pay_to,
                "maxTimeoutSeconds": self.max_timeout_seconds,
                "asset": self.asset,
                "extra": extra,
            }
        return {
            "scheme": "exact",
            "network": self.network,
            "amount": str(self._prices[path]),
            "asset": self.asset,
            "payTo": self.pay_to,
            "maxTimeoutSeconds": self.max_timeout_seconds,
            "extra": extra,
        }

    def payment_required(self, path: str, resource: str, error: str) -> dict[str, Any]:
        """The whole ``PaymentRequired`` document for ``path``."""
        document: dict[str, Any] = {
            "x402Version": self.version,
            "error": error,
            "accepts": [self.requirement(path, resource)],
        }
        if self.version >= 2:
            document["resource"] = {"url": resource, "mimeType": "application/json"}
            if self.description:
                document["resource"]["description"] = self.description
        return document

    def _required(self, path: str, resource: str, error: str, extra: list[Any]) -> _Outcome:
        document = self.payment_required(path, resource, error)
        headers = [("content-type", "application/json"), ("cache-control", "no-store"), *extra]
        if self.version >= 2:
            return _Outcome(402, [(X402_PAYMENT_REQUIRED, _b64(document)), *headers], b"{}")
        return _Outcome(402, headers, json.dumps(document).encode())

    # -- verifying ------------------------------------------------------------------

    def _check(self, path: str, resource: str, value: str) -> tuple[dict[str, str], str]:
        """The authorization and signature of a valid payment, or :class:`_Refused`."""
        document = _unb64(value)
        if not isinstance(document, dict) or document.get("x402Version") != self.version:
            raise _Refused("invalid_x402_version")
        expected = self.requirement(path, resource)
        if self.version >= 2:
            if document.get("accepted") != expected:
                raise _Refused("no matching payment requirements")
            echoed = document.get("resource")
            if echoed is not None and (
                not isinstance(echoed, dict) or echoed.get("url") != resource
            ):
                raise _Refused("resource mismatch")
        elif document.get("scheme") != "exact" or document.get("network") != self.network:
            raise _Refused("no matching payment requirements")
        payload = document.get("payload")
        if not isinstance(payload, dict):
            raise _Refused("invalid_payload")
        authorization, signature = payload.get("authorization"), payload.get("signature")
        if not isinstance(authorization, dict) or not isinstance(signature, str):
            raise _Refused("invalid_payload")
        try:
            sender = to_checksum_address(authorization["from"])
            to = to_checksum_address(authorization["to"])
            value_ = int(authorization["value"])
            valid_after = int(authorization["validAfter"])
            valid_before = int(authorization["validBefore"])
            nonce = bytes.fromhex(str(authorization["nonce"]).removeprefix("0x"))
        except (KeyError, TypeError, ValueError):
            raise _Refused("invalid_payload") from None
        if to != self.pay_to:
            raise _Refused("invalid_exact_evm_payload_recipient_mismatch")
        if value_ != self._prices[path]:
            raise _Refused("invalid_exact_evm_payload_authorization_value_mismatch")
        now = int(self.clock())
        if valid_before < now + _MIN_VALID_SECONDS:
            raise _Refused("invalid_exact_evm_payload_authorization_valid_before")
        if valid_before > now + self.max_timeout_seconds + 1:
            raise _Refused("invalid_exact_evm_payload_authorization_valid_before")
        if valid_after > now:
            raise _Refused("invalid_exact_evm_payload_authorization_valid_after")
        if len(nonce) != 32:
            raise _Refused("invalid_payload")
        typed = authorization_typed_data(
            (self.token_name, self.token_version),
            self.chain_id,
            self.asset,
            sender=sender,
            to=to,
            value=value_,
            valid_after=valid_after,
            valid_before=valid_before,
            nonce=nonce,
        )
        try:
            signer = Account.recover_message(
                encode_typed_data(full_message=typed), signature=signature
            )
        except Exception:
            raise _Refused("invalid_exact_evm_payload_signature") from None
        if signer != sender:
            raise _Refused("invalid_exact_evm_payload_signature")
        flat = {
            "from": sender,
            "to": to,
            "value": str(value_),
            "validAfter": str(valid_after),
            "validBefore": str(valid_before),
            "nonce": "0x" + nonce.hex(),
        }
        return flat, signature

    def handle(
        self, http_method: str, path: str, resource: str, headers: Mapping[str, str], body: bytes
    ) -> _Outcome:
        """Answer one request (no socket I/O: the ASGI wrapper does that)."""
        if path not in self._prices:
            if self.mpp is not None:
                return self.mpp.handle(http_method, path, headers, body)
            return _Outcome(200, [("content-type", "application/json")], b'{"free":true}')
        header = X402_PAYMENT_SIGNATURE if self.version >= 2 else X402_V1_PAYMENT
        value = headers.get(header.lower())
        if value is None:
            if self.mpp is not None:
                outcome = self.mpp.handle(http_method, path, headers, body)
                paid_mpp = any(v[:8].lower() == "payment " for v in headers.values())
                if outcome.status != 402 and paid_mpp:
                    return outcome  # paid through MPP
                if outcome.status != 402:  # a path only x402 prices
                    return self._required(path, resource, f"{header} header is required", [])
                document = self.payment_required(path, resource, f"{header} header is required")
                extra = [(X402_PAYMENT_REQUIRED, _b64(document))]
                return _Outcome(402, [*outcome.headers, *extra], outcome.body)
            return self._required(path, resource, f"{header} header is required", [])
        try:
            authorization, signature = self._check(path, resource, value)
            key = (authorization["from"].lower(), authorization["nonce"])
            with self._lock:
                if key in self._used:
                    raise _Refused("invalid_exact_evm_nonce_already_used")
                self._used.add(key)
        except _Refused as exc:
            return self._required(path, resource, exc.reason, [])
        transaction = ""
        if self.settle is not None:
            try:
                transaction = self.settle(authorization, signature)
            except Exception as exc:
                reason = exc.reason if isinstance(exc, _Refused) else "transaction_failed"
                settlement = {
                    "success": False,
                    "errorReason": reason,
                    "transaction": "",
                    "network": self.network,
                    "payer": authorization["from"],
                }
                return self._required(
                    path, resource, reason, [(self._settlement_header, _b64(settlement))]
                )
        with self._lock:
            self.payments.append(
                X402Paid(
                    path=path,
                    amount=self._prices[path],
                    payer=authorization["from"],
                    nonce=authorization["nonce"],
                    transaction=transaction,
                    version=self.version,
                )
            )
        settlement = {
            "success": True,
            "transaction": transaction,
            "network": self.network,
            "payer": authorization["from"],
        }
        return _Outcome(
            200,
            [
                ("content-type", "application/json"),
                ("cache-control", "private"),
                (self._settlement_header, _b64(settlement)),
            ],
            json.dumps({"ok": True, "paid": str(self._prices[path])}).encode(),
        )

    @property
    def _settlement_header(self) -> str:
        return X402_PAYMENT_RESPONSE if self.version >= 2 else X402_V1_PAYMENT_RESPONSE

    # -- ASGI -----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        body = await http_body(scope, receive, send)
        if body is None:
            return
        headers = _headers(scope.get("headers", ()))
        host = headers.get("host", "localhost")
        query = scope.get("query_string", b"").decode("latin-1")
        origin = self.base_url or f"{scope.get('scheme', 'http')}://{host}"
        resource = f"{origin}{scope['path']}"
        resource += f"?{query}" if query else ""
        outcome = await anyio.to_thread.run_sync(
            self.handle, scope["method"], scope["path"], resource, headers, body
        )
        await _respond(send, outcome)
