"""What the EVM and Tempo tests share: one copy each.

Challenges: ``evm_challenge`` and ``tempo_challenge`` build a charge the way
each rail's server writes one (defaults a test overrides field by field),
``with_terms`` rebuilds a challenge with changed terms under the same id (a
lookalike), ``challenge_at`` fetches the one a live server issues. Paying:
``rail_policy`` pays anyone up to 1.00 USD in the assets it names,
``paid_get`` GETs with ``Client`` or ``AsyncClient`` through a wallet,
``sent_credential`` is what was sent, ``present`` sends a credential by hand.

``HeldKey`` is a secp256k1 key reachable only through the wallets' signer
seam (``address`` and ``sign_digest``), as a key in a hardware token would
be: not an eth-account ``LocalAccount``, and it answers in whichever of the
shapes a signer may use. ``Faulty`` is a web3 provider in front of a real
node that fails chosen requests (a lost answer, a refused connection, a
re-sent broadcast); ``CountingAsync`` an async provider that lists what it
sent.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from eth_keys import keys
from eth_utils.crypto import keccak
from web3.providers import AsyncHTTPProvider, BaseProvider, HTTPProvider

from mpp_client import AsyncClient, Client, PaymentMethod
from mpp_client.money import AssetEntry
from mpp_client.policy import Policy
from mpp_client.protocol import Challenge, Credential, parse_challenges

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
#: pathUSD, the TIP-20 stablecoin of every Tempo chain (and of the local one).
PATH_USD = "0x20c0000000000000000000000000000000000000"
#: The draft's example recipient, EIP-55 encoded.
MERCHANT = "0x742d35Cc6634c0532925a3b844bC9e7595F8fE00"
#: A policy that allows every host, realm, payee, method, intent, asset and chain.
OPEN = {
    key: ["*"] for key in ("hosts", "realms", "payees", "methods", "intents", "assets", "chain_ids")
}


# -- challenges -------------------------------------------------------------------------


def _expiry(expires: datetime | Literal["soon"] | None) -> datetime | None:
    """``"soon"``: five minutes from now (whole seconds); otherwise as given."""
    if expires == "soon":
        return datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    return expires


def evm_challenge(
    *,
    currency: str,
    chain_id: int,
    amount: str = "250000",
    recipient: str = MERCHANT,
    details: Mapping[str, Any] | None = None,
    expires: datetime | Literal["soon"] | None = "soon",
    extra: Mapping[str, Any] | None = None,
    realm: str = "api.example.test",
    id: str | None = None,
) -> Challenge:
    """An ``evm`` charge as draft-evm-charge-00 writes one.

    ``methodDetails`` is ``chainId`` plus ``details`` (a None value drops a
    field); ``extra`` adds request fields. The id is derived from the request
    unless given, so different terms get different ids.
    """
    method_details = {"chainId": chain_id, **(details or {})}
    request: dict[str, Any] = {
        "amount": amount,
        "currency": currency,
        "recipient": recipient,
        "methodDetails": {k: v for k, v in method_details.items() if v is not None},
        **(extra or {}),
    }
    if id is None:
        id = "ch-" + keccak(json.dumps(request, sort_keys=True).encode()).hex()[:16]
    return Challenge.create(
        id=id, realm=realm, method="evm", intent="charge", request=request, expires=_expiry(expires)
    )


def tempo_challenge(
    amount: str = "1000000",
    *,
    currency: str = PATH_USD,
    recipient: str = MERCHANT,
    id: str = "kM9xPqWvT2nJrHsY4aDfEb",
    realm: str = "api.example.com",
    expires: datetime | Literal["soon"] | None = "soon",
    request: Mapping[str, Any] | None = None,
    **details: Any,
) -> Challenge:
    """A ``tempo`` charge as draft-tempo-charge-00 writes one.

    ``details`` are its ``methodDetails`` (``chainId`` 4217 unless given; a
    None value drops a field); ``request`` overrides request fields.
    """
    body: dict[str, Any] = {"amount": amount, "currency": currency, "recipient": recipient}
    details.setdefault("chainId", 4217)
    body["methodDetails"] = {k: v for k, v in details.items() if v is not None}
    body.update(request or {})
    return Challenge.create(
        id=id, realm=realm, method="tempo", intent="charge", request=body, expires=_expiry(expires)
    )


def with_terms(
    ch: Challenge, request: Mapping[str, Any] | None = None, **details: Any
) -> Challenge:
    """``ch`` with other terms under the same id, realm and expiry: a lookalike.

    ``request`` replaces request fields, ``details`` replace ``methodDetails``
    fields. What a wallet signs for it is what a tampering client would send.
    """
    body = dict(ch.request, **(request or {}))
    if details:
        body["methodDetails"] = {**body.get("methodDetails", {}), **details}
    return Challenge.create(
        id=ch.id,
        realm=ch.realm,
        method=ch.method,
        intent=ch.intent,
        request=body,
        expires=ch.expires,
    )


def challenge_at(url: str) -> Challenge:
    """The (first) challenge a live server answers ``GET url`` with."""
    response = httpx.get(url)
    assert response.status_code == 402, response.text
    return parse_challenges(response.headers["www-authenticate"])[0]


# -- paying -----------------------------------------------------------------------------


def rail_policy(assets: Iterable[AssetEntry]) -> Policy:
    """Pays anyone up to 1.00 USD a call, in the assets named (the registry's entries)."""
    return Policy.from_mapping(
        {
            "currency": "USD",
            "per_call": "1.00 USD",
            "allow": OPEN,
            "assets": [
                {
                    "method": entry.method,
                    "currency": entry.currency,
                    "asset": entry.asset,
                    "decimals": entry.decimals,
                    "chain_id": entry.chain_id,
                    **({"name": entry.name} if entry.name else {}),
                }
                for entry in assets
            ],
        }
    )


def paid_get(
    flavour: str, policy: Policy, wallet: PaymentMethod, url: str, **options: Any
) -> httpx.Response:
    """GET ``url`` with ``Client`` (``"sync"``) or ``AsyncClient`` paying through ``wallet``.

    A memory ledger and loopback HTTP unless ``options`` say otherwise.
    """
    settings: dict[str, Any] = {
        "methods": [wallet],
        "policy": policy,
        "ledger": "memory:",
        "allow_insecure_localhost": True,
        **options,
    }
    if flavour == "sync":
        with Client(**settings) as client:
            return client.get(url)

    async def run() -> httpx.Response:
        async with AsyncClient(**settings) as client:
            return await client.get(url)

    return asyncio.run(run())


def sent_credential(response: httpx.Response) -> str:
    """The ``Authorization: Payment ...`` header the paid retry carried."""
    value = response.request.headers.get("authorization")
    assert value is not None and value.startswith("Payment ")
    return value


def present(url: str, ch: Challenge, payload: Any, source: str | None) -> httpx.Response:
    """Send ``payload`` as the credential for ``ch`` by hand (a replay, a forgery...)."""
    header = Credential.for_challenge(ch, payload, source=source).to_header()
    return httpx.get(url, headers={"Authorization": header})


#: How a :class:`HeldKey` answers ``sign_digest``.
Answer = Literal["vrs", "vrs-0/1", "bytes", "object", "high-s", "wrong-parity"]


@dataclass(frozen=True)
class Recoverable:
    """A signature object as the identity signers return one (``r``, ``s``, ``y_parity``)."""

    r: int
    s: int
    y_parity: int

    @property
    def v(self) -> int:
        return 27 + self.y_parity


class HeldKey:
    """A signer that is not a ``LocalAccount``: the key lives behind ``sign_digest`` only.

    ``answer`` picks the shape of its signatures (see :data:`Answer`;
    ``high-s`` and ``wrong-parity`` are valid signatures in forms a token may
    produce, which the wallet must normalize). ``claims`` makes it name
    another address than its key's (a broken or hostile signer). ``fail``
    makes it raise, with a message that must not reach any error.
    """

    location = "pkcs11"
    hardware = True

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        answer: Answer = "vrs",
        claims: str | None = None,
        fail: bool = False,
    ) -> None:
        self._key = keys.PrivateKey(secret if secret is not None else os.urandom(32))
        self.answer = answer
        self.claims = claims
        self.fail = fail
        self.signed = 0

    @property
    def address(self) -> str:
        return self.claims or str(self._key.public_key.to_checksum_address())

    def sign_digest(self, digest: bytes) -> Any:
        if self.fail:
            raise RuntimeError("token locked: PIN 123456 rejected")
        self.signed += 1
        signature = self._key.sign_msg_hash(digest)
        parity, r, s = signature.v, signature.r, signature.s
        if self.answer == "vrs":
            return (27 + parity, r, s)
        if self.answer == "vrs-0/1":
            return (parity, r, s)
        if self.answer == "bytes":
            return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([27 + parity])
        if self.answer == "object":
            return Recoverable(r, s, parity)
        if self.answer == "high-s":
            return (27 + (parity ^ 1), r, SECP256K1_N - s)
        return (27 + (parity ^ 1), r, s)  # wrong-parity: a token that guessed the recovery id

    def __repr__(self) -> str:
        return f"HeldKey(address={self.address!r})"


# -- a web3 provider that fails on cue ------------------------------------------------

#: What :class:`Faulty` does to one request: ``refused`` (sent to a closed port: a
#: real refused connection, nothing reaches the node), ``lost`` (forwarded, then
#: the answer is lost: a timeout), ``resend`` (forwarded twice, the second answer
#: returned, as web3's default retry does after a timeout), ``pending`` (answered
#: null without asking: "not yet mined").
Fault = Literal["refused", "lost", "resend", "pending"]


def closed_port() -> int:
    """A loopback port nothing listens on."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Faulty(BaseProvider):
    """A web3 provider in front of a real node that fails the requests it is told to.

    ``faults`` maps a method to the faults of its next calls, in order; other
    calls go through to the node unchanged. ``calls`` lists every method asked
    for, to show what was sent and how often. What a real node does not do on
    demand (lose an answer, be unreachable for one request) is all it adds.
    """

    def __init__(self, url: str, faults: dict[str, list[Fault]] | None = None) -> None:
        super().__init__()
        self.node = HTTPProvider(url, exception_retry_configuration=None)
        self.nowhere = HTTPProvider(
            f"http://127.0.0.1:{closed_port()}", exception_retry_configuration=None
        )
        self.faults = {method: list(queue) for method, queue in (faults or {}).items()}
        self.calls: list[str] = []

    def make_request(self, method: Any, params: Any) -> Any:
        self.calls.append(str(method))
        queue = self.faults.get(str(method)) or []
        fault = queue.pop(0) if queue else None
        if fault == "refused":
            return self.nowhere.make_request(method, params)
        if fault == "pending":
            return {"jsonrpc": "2.0", "id": 0, "result": None}
        answer = self.node.make_request(method, params)
        if fault == "lost":
            raise TimeoutError("the answer was lost on the way back")
        if fault == "resend":
            answer = self.node.make_request(method, params)
        return answer

    def is_connected(self, show_traceback: bool = False) -> bool:
        return True

    def count(self, method: str) -> int:
        return self.calls.count(method)


class CountingAsync(AsyncHTTPProvider):
    """An async HTTP provider that lists the methods it sent (to see which path paid)."""

    def __init__(self, url: str) -> None:
        super().__init__(url, exception_retry_configuration=None)
        self.calls: list[str] = []

    async def make_request(self, method: Any, params: Any) -> Any:
        self.calls.append(str(method))
        return await super().make_request(method, params)
