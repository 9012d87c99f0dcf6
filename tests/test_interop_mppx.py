"""Interop with mppx 0.11.0, the TypeScript reference SDK, both directions.

The peers are real: ``node`` runs mppx from ``node_modules`` (pinned in
package.json, installed by ``scripts/chain-tools.sh``), started and stopped
by ``tests/peers/mppx_peer.py``. Nothing on the mppx side is mocked.

- Our ``Client``/``AsyncClient`` pay an mppx-built server (``server.mjs``):
  a custom ``dev`` method defined with ``Method.from``/``Method.toServer``
  whose verify checks our Ed25519 voucher with node's crypto; mppx's own EVM
  method (EIP-3009 ``authorization``) settled on anvil with our TestUSD; and
  mppx's Tempo method on ``anvil --network tempo``.
- mppx's client (``client.mjs``) pays our ``PaidServer`` with ``EvmVerifier``
  and ``TempoVerifier``, settled on the same chains.
- A replayed credential moves no money on either side (balances read on chain).

Wire facts of mppx 0.11.0 met here (they hold for the versions pinned):

- Its route handlers (``mppx.charge(...)``) never emit ``digest`` and never read
  the body; a digest-bound challenge needs its lower-level API
  (``Challenge.fromMethod({digest})`` + ``mppx.verifyCredential`` +
  ``BodyDigest.verify``). Its digest is ``sha-256=<base64, padded>``, without
  RFC 9530's colons.
- ``opaque`` is sent only for routes given ``meta`` (or a ``scope``):
  base64url of the JCS of a string map. The HMAC id binds it.
- The HMAC binds ``PaymentRequest.serialize(request)``: the *re-serialized*
  (JCS) request, not the string received. mppx's client also re-serializes
  ``request`` when it builds a credential, so a server whose ``request`` is
  not JCS would see a different string come back.
- ``expires`` has milliseconds (``toISOString``); the 402 body is an RFC 9457
  problem with extra members ``hint`` and ``challengeId``; a failed verify is
  a 402 with a fresh challenge and a problem; an exception in a method's
  verify (not a PaymentError) is a 500 ``internal-payment-error`` that still
  carries a fresh ``WWW-Authenticate``.
- Node's status line for mppx's 402 has an empty reason phrase (``HTTP/1.1 402``).
- Quoted strings: characters up to U+00FF go out as raw Latin-1 bytes,
  others as ``\\uXXXX`` escapes. ``requiresAuth`` adds
  ``header="Payment-Authorization"``, which the HMAC binds (a slot before
  ``opaque``). ``compose()`` puts all offers in one ``WWW-Authenticate`` field
  value, and drops the offers a request's ``Accept-Payment`` does not list.
- The EVM method's 402 carries an x402 ``PAYMENT-REQUIRED`` header beside
  ``WWW-Authenticate``. Its challenge hash is ``keccak256(id || realm)``. It
  does not talk to a chain (the host's ``settle`` does) and keeps no replay
  store: the token's used EIP-3009 nonce is what stops a replay.
- Tempo: a route cannot set a memo (``memo`` is ``never`` in the schema); every
  transfer must carry the attribution memo of this challenge and realm
  (checked in the calls before broadcasting, in the logs for ``hash``).
  Replays are stopped by a store of transaction hashes ("Transaction hash has
  already been used"). Its client signs an expiring-nonce 0x76 transaction
  (viem sets a random ``validAfter`` in the past) or, for ``feePayer: true``,
  the 0x78 envelope. Chains other than 4217/42431 need ``getClient``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

import mpp_client
from mpp_client import (
    Amount,
    AsyncClient,
    Client,
    DevWallet,
    PaymentOutcomeUnknown,
    PaymentRejected,
    SimplePolicy,
    payment_record,
)
from mpp_client.methods.evm import EvmWallet
from mpp_client.methods.tempo import PATH_USD, TempoWallet, memo_binds
from mpp_client.policy import AssetEntry, Policy
from mpp_client.protocol import Problem, Receipt, b64url_decode
from mpp_client.testing import PaidServer
from mpp_client.testing.evm import EvmVerifier, transfers_in
from mpp_client.testing.tempo import TempoChain, TempoVerifier

from .chain.tooling import (
    TOKEN_DECIMALS,
    TOKEN_NAME,
    TOKEN_VERSION,
    World,
    anvil_binary,
    compile_contracts,
    start_world,
)
from .helpers import pay_now
from .peers.mppx_peer import MppxServer, PeerError, run_client
from .rails import rail_policy

pytest_plugins = ["tests.chain.tempo_chain"]  # the session's local Tempo chain

REALM = "mppx-interop.test"
SECRET = "mppx-interop-secret-" + secrets.token_hex(16)
RECIPIENT = "did:web:merchant.mppx-interop.test"
PROBLEMS = "https://paymentauth.org/problems/"

REPORT_PRICE = Amount(25, "USD", 2)
OPAQUE_PRICE = Amount(10, "USD", 2)
ORDER_PRICE = Amount(40, "USD", 2)
ACCOUNT_PRICE = Amount(15, "USD", 2)
# mppx writes characters above U+00FF as \uXXXX escapes and Latin-1 ones as raw bytes.
ACCOUNT_DESCRIPTION = 'Caf\u00e9 account \u2014 \u2615 "premium"'
# Non-ASCII on purpose: a client that re-encoded `opaque` (say with ensure_ascii)
# would send different bytes, and mppx's HMAC would refuse them.
OPAQUE_META = {"route": "GET /opaque", "note": "caf\u00e9 \u2615 \u2014 \U0001f600"}


# -- the mppx server with the dev method -----------------------------------------------


@dataclass
class DevPeer:
    """The module's mppx server, seen from one test: events after ``start``."""

    server: MppxServer
    start: int

    @property
    def url(self) -> str:
        return self.server.url

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [
            e for e in self.server.events()[self.start :] if kind is None or e.get("kind") == kind
        ]


@pytest.fixture(scope="module")
def _dev_server() -> Iterator[MppxServer]:
    config = {
        "realm": REALM,
        "secretKey": SECRET,
        "dev": {
            "recipient": RECIPIENT,
            "meta": OPAQUE_META,
            "accountDescription": ACCOUNT_DESCRIPTION,
        },
    }
    with MppxServer(config) as server:
        yield server


@pytest.fixture
def dev_peer(_dev_server: MppxServer) -> Iterator[DevPeer]:
    peer = DevPeer(_dev_server, len(_dev_server.events()))
    yield peer
    _dev_server.check_alive()


def dev_client(wallet: DevWallet, *, sync: bool, **kwargs: Any) -> Client | AsyncClient:
    cls = Client if sync else AsyncClient
    return cls(
        methods=[wallet],
        policy=SimplePolicy(max_per_call="1.00 USD", budget="5.00 USD"),
        ledger="memory:",
        allow_insecure_localhost=True,
        **kwargs,
    )


async def send(
    wallet: DevWallet, method: str, url: str, *, sync: bool, **kwargs: Any
) -> tuple[httpx.Response, list[httpx.Response], Amount]:
    """One request through our client; the response, every response seen, and the spend."""
    seen: list[httpx.Response] = []
    if sync:
        with dev_client(wallet, sync=True, event_hooks={"response": [seen.append]}) as client:
            assert isinstance(client, Client)
            response = client.request(method, url, **kwargs)
            assert client.ledger is not None
            return response, seen, client.ledger.spent("USD")

    async def hook(response: httpx.Response) -> None:
        seen.append(response)

    async with dev_client(wallet, sync=False, event_hooks={"response": [hook]}) as client:
        assert isinstance(client, AsyncClient)
        response = await client.request(method, url, **kwargs)
        assert client.ledger is not None
        return response, seen, client.ledger.spent("USD")


SYNC_AND_ASYNC = pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])


def assert_paid_by_voucher(
    response: httpx.Response, peer: DevPeer, price: Amount, wallet: DevWallet
) -> mpp_client.PaymentRecord:
    assert response.status_code == 200, response.text
    record = payment_record(response)
    assert record is not None
    assert record.status == "committed"
    assert (record.method, record.intent, record.realm) == ("dev", "charge", REALM)
    assert record.payee == RECIPIENT
    assert record.amount == price
    assert record.receipt is not None
    assert record.receipt.status == "success"
    assert record.receipt.method == "dev"
    assert record.receipt.reference == f"voucher:{record.challenge_id}"
    # mppx's Payment-Receipt: base64url of JSON.stringify(receipt), extras kept.
    wire = json.loads(b64url_decode(response.headers["payment-receipt"]))
    assert wire["reference"] == record.receipt.reference
    assert wire["payer"] == wallet.source
    assert "private" in response.headers["cache-control"]
    # mppx's verify ran once, checked the signature with node's crypto, and accepted.
    (verified,) = peer.events("verify")
    assert verified["outcome"] == "accepted"
    assert verified["challengeId"] == record.challenge_id
    assert verified["payer"] == wallet.source
    assert verified["amount"] == str(price.units)
    return record


def test_a_peer_that_cannot_start_fails_with_its_own_words() -> None:
    """The harness quotes node's stderr and leaves no process behind."""
    server = MppxServer({"realm": REALM, "dev": {"recipient": RECIPIENT}})  # no secretKey
    with pytest.raises(PeerError) as failed:
        server.start()
    assert "exited" in str(failed.value)
    assert "Missing secret key" in str(failed.value)  # mppx's own message
    with pytest.raises(PeerError, match="not running"):
        server.check_alive()


# -- our client pays the mppx dev method ------------------------------------------------


@SYNC_AND_ASYNC
async def test_client_pays_mppx_custom_method_get(dev_peer: DevPeer, sync: bool) -> None:
    wallet = DevWallet()
    response, seen, spent = await send(wallet, "GET", dev_peer.url + "/report", sync=sync)

    assert [r.status_code for r in seen] == [402, 200]
    assert response.json() == {"paid": "GET /report", "realm": REALM}
    assert_paid_by_voucher(response, dev_peer, REPORT_PRICE, wallet)
    assert spent == REPORT_PRICE


def test_mppx_challenge_as_our_parser_reads_it(dev_peer: DevPeer) -> None:
    response = httpx.get(dev_peer.url + "/report")
    assert response.status_code == 402
    assert response.reason_phrase == ""  # node writes "HTTP/1.1 402 " for mppx's Response
    assert response.headers["cache-control"] == "no-store"
    (challenge,) = mpp_client.parse_challenges(response.headers.get_list("www-authenticate"))
    assert (challenge.realm, challenge.method, challenge.intent) == (REALM, "dev", "charge")
    assert dict(challenge.request) == {"amount": "25", "currency": "usd", "recipient": RECIPIENT}
    assert challenge.description == "Quarterly report"
    assert challenge.digest is None  # route handlers never bind a body
    assert challenge.opaque is None  # no `meta` on this route: no opaque at all
    assert challenge.header is None
    # expires: toISOString(), milliseconds and "Z".
    assert challenge.expires_raw is not None and challenge.expires_raw.endswith("Z")
    assert len(challenge.expires_raw) == len("2026-01-01T00:00:00.000Z")
    # The request is JCS (keys sorted, no spaces): what mppx's HMAC re-creates.
    assert (
        b64url_decode(challenge.request_b64)
        == json.dumps(dict(sorted(challenge.request.items())), separators=(",", ":")).encode()
    )

    problem = Problem.parse(response.content, response.headers.get("content-type"))
    assert problem is not None
    assert problem.type == PROBLEMS + "payment-required"
    assert problem.status == 402
    assert problem.detail == "Payment is required (Quarterly report)."
    assert problem.data["challengeId"] == challenge.id
    assert "hint" in problem.data
    assert dev_peer.events("verify") == []


@SYNC_AND_ASYNC
async def test_client_echoes_mppx_opaque_byte_for_byte(dev_peer: DevPeer, sync: bool) -> None:
    wallet = DevWallet()
    response, seen, _ = await send(wallet, "GET", dev_peer.url + "/opaque", sync=sync)

    (challenge,) = mpp_client.parse_challenges(seen[0].headers.get_list("www-authenticate"))
    sent_opaque = challenge.params["opaque"]
    assert challenge.opaque == OPAQUE_META
    # mppx's opaque: base64url (no padding) of the JCS of the meta map, UTF-8 as is.
    canonical = json.dumps(
        dict(sorted(OPAQUE_META.items())), separators=(",", ":"), ensure_ascii=False
    )
    assert b64url_decode(sent_opaque) == canonical.encode("utf-8")

    record = assert_paid_by_voucher(response, dev_peer, OPAQUE_PRICE, wallet)
    # What mppx received in the credential, read raw off the wire by the server.
    paid = [e for e in dev_peer.events("request") if e["status"] == 200]
    (echo,) = [e["echo"] for e in paid]
    assert echo["id"] == record.challenge_id == challenge.id
    assert echo["opaque"] == sent_opaque  # the same bytes...
    assert echo["request"] == challenge.request_b64  # ...and the request too


@SYNC_AND_ASYNC
async def test_client_pays_mppx_digest_bound_post(dev_peer: DevPeer, sync: bool) -> None:
    wallet = DevWallet()
    order = {"sku": "A-1", "qty": 2, "note": "caf\u00e9"}
    response, seen, spent = await send(
        wallet, "POST", dev_peer.url + "/orders", sync=sync, json=order
    )

    assert [r.status_code for r in seen] == [402, 200]
    (challenge,) = mpp_client.parse_challenges(seen[0].headers.get_list("www-authenticate"))
    body = seen[0].request.content
    # mppx's BodyDigest: "sha-256=" + standard base64 with padding, no RFC 9530 colons.
    assert challenge.digest == "sha-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert response.request.content == body
    assert response.request.headers["idempotency-key"]
    assert response.json() == {"ordered": order, "payer": wallet.source}
    record = assert_paid_by_voucher(response, dev_peer, ORDER_PRICE, wallet)
    assert record.http_method == "POST"
    (echo,) = [e["echo"] for e in dev_peer.events("request") if e["status"] == 200]
    assert echo["digest"] == challenge.digest
    assert spent == ORDER_PRICE


def test_mppx_refuses_a_voucher_for_another_body(dev_peer: DevPeer) -> None:
    """The digest binding is real: the credential for one body cannot buy another."""
    unpaid = httpx.post(dev_peer.url + "/orders", json={"sku": "A-1"})
    (challenge,) = mpp_client.parse_challenges(unpaid.headers.get_list("www-authenticate"))
    wallet = DevWallet()
    credential = mpp_client.protocol.Credential.for_challenge(
        challenge, pay_now(wallet, challenge), source=wallet.source
    ).to_header()

    other = httpx.post(
        dev_peer.url + "/orders", json={"sku": "B-2"}, headers={"Authorization": credential}
    )
    assert other.status_code == 402
    problem = Problem.parse(other.content, other.headers.get("content-type"))
    assert problem is not None and problem.code == "verification-failed"
    assert "payment-receipt" not in other.headers

    same = httpx.post(
        dev_peer.url + "/orders", json={"sku": "A-1"}, headers={"Authorization": credential}
    )
    assert same.status_code == 200, same.text
    outcomes = [e["outcome"] for e in dev_peer.events("verify")]
    assert outcomes == ["digest-mismatch", "accepted"]


def test_mppx_refuses_a_forged_voucher(dev_peer: DevPeer) -> None:
    unpaid = httpx.get(dev_peer.url + "/report")
    (challenge,) = mpp_client.parse_challenges(unpaid.headers.get_list("www-authenticate"))
    wallet = DevWallet()
    payload = dict(pay_now(wallet, challenge))
    signature = bytearray(b64url_decode(payload["signature"]))
    signature[-1] ^= 0x01
    forged = {**payload, "signature": base64.urlsafe_b64encode(signature).decode().rstrip("=")}
    header = mpp_client.protocol.Credential.for_challenge(
        challenge, forged, source=wallet.source
    ).to_header()

    response = httpx.get(dev_peer.url + "/report", headers={"Authorization": header})
    assert response.status_code == 402
    problem = Problem.parse(response.content, response.headers.get("content-type"))
    assert problem is not None
    assert problem.code == "verification-failed"
    assert problem.detail == "Payment verification failed: dev voucher signature does not verify."
    assert problem.data["challengeId"] != challenge.id  # a fresh challenge comes with it
    assert [e["outcome"] for e in dev_peer.events("verify")] == ["bad-voucher"]


@SYNC_AND_ASYNC
async def test_replayed_voucher_is_refused_by_mppx(dev_peer: DevPeer, sync: bool) -> None:
    wallet = DevWallet()
    first, _, spent = await send(wallet, "GET", dev_peer.url + "/report", sync=sync)
    assert_paid_by_voucher(first, dev_peer, REPORT_PRICE, wallet)
    authorization = first.request.headers["authorization"]
    assert authorization.startswith("Payment ")

    replay = httpx.get(dev_peer.url + "/report", headers={"Authorization": authorization})

    # mppx answers a failed verify with 402, a fresh challenge and the problem.
    assert replay.status_code == 402
    assert replay.headers["www-authenticate"].startswith("Payment ")
    assert "payment-receipt" not in replay.headers
    problem = Problem.parse(replay.content, replay.headers["content-type"])
    assert problem is not None
    assert problem.code == "verification-failed"
    assert problem.detail == "Payment verification failed: dev voucher already redeemed."
    outcomes = [e["outcome"] for e in dev_peer.events("verify")]
    assert outcomes == ["accepted", "replayed"]
    assert spent == REPORT_PRICE


def test_mppx_500_after_payment_is_an_unknown_outcome(dev_peer: DevPeer) -> None:
    """A method that throws gets mppx's 500 problem, with a fresh challenge."""
    wallet = DevWallet()
    seen: list[httpx.Response] = []
    with dev_client(wallet, sync=True, event_hooks={"response": [seen.append]}) as client:
        assert isinstance(client, Client)
        with pytest.raises(PaymentOutcomeUnknown) as unknown:
            client.get(dev_peer.url + "/broken")
        assert client.ledger is not None
        spent = client.ledger.spent("USD")
    # Paid (a voucher was handed over), outcome unknown: kept counted, never paid again.
    assert [r.status_code for r in seen] == [402, 500]
    assert unknown.value.record is not None
    assert spent == Amount(5, "USD", 2)

    # What mppx sent, read with a plain client (ours does not read a failed paid body).
    unpaid = httpx.get(dev_peer.url + "/broken")
    (challenge,) = mpp_client.parse_challenges(unpaid.headers.get_list("www-authenticate"))
    header = mpp_client.protocol.Credential.for_challenge(
        challenge, pay_now(wallet, challenge), source=wallet.source
    ).to_header()
    failed = httpx.get(dev_peer.url + "/broken", headers={"Authorization": header})
    assert failed.status_code == 500
    assert failed.headers["www-authenticate"].startswith("Payment ")  # and yet a new challenge
    problem = Problem.parse(failed.content, failed.headers.get("content-type"))
    assert problem is not None
    assert problem.type == PROBLEMS + "internal-payment-error"
    assert problem.status == 500
    assert problem.detail == "An internal payment error occurred."
    assert [e["outcome"] for e in dev_peer.events("verify")] == ["crashed", "crashed"]


def test_receipt_is_parsed_by_our_protocol_layer(dev_peer: DevPeer) -> None:
    wallet = DevWallet()
    with dev_client(wallet, sync=True) as client:
        assert isinstance(client, Client)
        response = client.get(dev_peer.url + "/report")
    receipt = Receipt.parse(response.headers["payment-receipt"])
    assert receipt.status == "success"
    assert receipt.method == "dev"
    assert receipt.data.get("payer") == wallet.source


# -- EVM: a local anvil chain with our TestUSD ----------------------------------------

TUSD_PRICE = 250_000  # 0.25 TUSD (6 decimals)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    running = start_world(anvil_binary(), compile_contracts())
    try:
        yield running
    finally:
        running.anvil.stop()


def tusd(world: World) -> AssetEntry:
    return AssetEntry("evm", world.token, "USD", TOKEN_DECIMALS, world.chain_id, "TUSD")


def chain_policy(entry: AssetEntry) -> Policy:
    """Pay anyone up to 1.00 USD, in the one token ``entry`` names."""
    return rail_policy([entry])


def evm_policy(world: World) -> Policy:
    return chain_policy(tusd(world))


def key_hex(account: LocalAccount) -> str:
    return "0x" + bytes(account.key).hex()


@dataclass
class EvmShop:
    """An mppx server selling GET /evm for 0.25 TUSD through mppx's EVM method."""

    server: MppxServer
    merchant: str
    submitter: LocalAccount

    def events(self, kind: str) -> list[dict[str, Any]]:
        return self.server.events(kind)


@pytest.fixture
def mppx_evm_shop(world: World) -> Iterator[EvmShop]:
    merchant = Account.create().address
    submitter = world.funded_account()
    config = {
        "realm": REALM,
        "secretKey": SECRET,
        "evm": {
            "rpcUrl": world.url,
            "chainId": world.chain_id,
            "token": world.token,
            "tokenName": TOKEN_NAME,
            "tokenVersion": TOKEN_VERSION,
            "decimals": TOKEN_DECIMALS,
            "recipient": merchant,
            "amount": "0.25",  # display units: mppx scales by `decimals`
            "eitherAmount": "0.30",
        },
        "dev": {"recipient": RECIPIENT},  # for the composed GET /either
    }
    with MppxServer(config, secrets={"MPPX_PEER_SUBMITTER_KEY": key_hex(submitter)}) as server:
        yield EvmShop(server, merchant, submitter)


def evm_wallet(
    world: World, payer: LocalAccount, scheme: Literal["auto", "concat", "json-array"] = "auto"
) -> EvmWallet:
    return EvmWallet(
        payer,
        chain_ids=[world.chain_id],
        assets=[tusd(world)],
        # The default types (permit2, authorization, transaction): mppx offers
        # only "authorization", and the wallet follows the server's list.
        token_domains={(world.chain_id, world.token): (TOKEN_NAME, TOKEN_VERSION)},
        # mppx 0.11 hashes keccak256(id || realm), the "concat" rule, which "auto"
        # picks for any challenge without pympp's marks.
        challenge_hash_scheme=scheme,
    )


async def pay_evm(
    world: World, wallet: EvmWallet, url: str, *, sync: bool
) -> tuple[httpx.Response, list[httpx.Response]]:
    seen: list[httpx.Response] = []
    options: dict[str, Any] = {
        "methods": [wallet],
        "policy": evm_policy(world),
        "ledger": "memory:",
        "allow_insecure_localhost": True,
    }
    if sync:
        with Client(**options, event_hooks={"response": [seen.append]}) as client:
            return client.get(url), seen

    async def hook(response: httpx.Response) -> None:
        seen.append(response)

    async with AsyncClient(**options, event_hooks={"response": [hook]}) as client:
        return await client.get(url), seen


@pytest.mark.parametrize(
    ("sync", "scheme"),
    [(True, "auto"), (False, "auto"), (True, "concat")],
    ids=["sync-auto", "async-auto", "sync-concat"],
)
async def test_client_pays_mppx_evm_authorization_on_chain(
    world: World, mppx_evm_shop: EvmShop, sync: bool, scheme: Literal["auto", "concat"]
) -> None:
    shop = mppx_evm_shop
    payer = world.funded_account(tokens=1_000_000)
    gas_before = int(world.anvil.rpc.call("eth_getBalance", payer.address, "latest"), 16)

    response, seen = await pay_evm(
        world, evm_wallet(world, payer, scheme), shop.server.url + "/evm", sync=sync
    )

    assert [r.status_code for r in seen] == [402, 200], response.text
    # mppx's EVM 402 also offers the same terms over x402 (a PAYMENT-REQUIRED header).
    assert "payment-required" in seen[0].headers
    (challenge,) = mpp_client.parse_challenges(seen[0].headers.get_list("www-authenticate"))
    assert challenge.request["amount"] == str(TUSD_PRICE)
    assert challenge.request["methodDetails"] == {
        "chainId": world.chain_id,
        "credentialTypes": ["authorization"],
        "decimals": TOKEN_DECIMALS,
    }
    record = payment_record(response)
    assert record is not None and record.status == "committed"
    assert record.amount == Amount(TUSD_PRICE, "USD", TOKEN_DECIMALS)
    assert record.receipt is not None and record.receipt.method == "evm"
    tx_hash = record.receipt.reference
    (settled,) = shop.events("settle")
    assert settled["outcome"] == "settled"
    assert settled["hash"] == tx_hash
    assert settled["challengeId"] == record.challenge_id
    # On chain: exactly the price moved, payer to merchant, sent (and paid for) by the submitter.
    assert world.balance(shop.merchant) == TUSD_PRICE
    assert world.balance(payer.address) == 1_000_000 - TUSD_PRICE
    on_chain = world.receipt(tx_hash)
    assert on_chain["status"] == "0x1"
    assert on_chain["from"].lower() == shop.submitter.address.lower()
    assert transfers_in(on_chain, world.token) == [(payer.address, shop.merchant, TUSD_PRICE)]
    gas_after = int(world.anvil.rpc.call("eth_getBalance", payer.address, "latest"), 16)
    assert gas_after == gas_before

    # The same credential again: mppx's checks all pass (it keeps no replay
    # store for EVM), the token's used EIP-3009 nonce is what stops it.
    authorization = response.request.headers["authorization"]
    replay = httpx.get(shop.server.url + "/evm", headers={"Authorization": authorization})
    assert replay.status_code == 402
    assert "payment-receipt" not in replay.headers
    problem = Problem.parse(replay.content, replay.headers.get("content-type"))
    assert problem is not None and problem.code == "verification-failed"
    assert [e["outcome"] for e in shop.events("settle")] == ["settled", "would-revert"]
    assert world.balance(shop.merchant) == TUSD_PRICE
    assert world.balance(payer.address) == 1_000_000 - TUSD_PRICE


def test_mppx_refuses_the_json_array_challenge_hash(world: World, mppx_evm_shop: EvmShop) -> None:
    """mppx 0.11 does not take keccak256(JSON.stringify([id, realm])) (pympp's rule)."""
    shop = mppx_evm_shop
    payer = world.funded_account(tokens=1_000_000)
    with Client(
        methods=[evm_wallet(world, payer, "json-array")],
        policy=evm_policy(world),
        ledger="memory:",
        allow_insecure_localhost=True,
    ) as client:
        with pytest.raises(PaymentRejected) as refused:
            client.get(shop.server.url + "/evm")
        assert client.ledger is not None
        assert client.ledger.spent("USD").units == 0  # released: an authorization moves nothing
    assert refused.value.problem is not None
    assert refused.value.problem.detail == (
        "Payment verification failed: EVM authorization challenge hash mismatch."
    )
    assert shop.events("settle") == []
    assert world.balance(shop.merchant) == 0
    assert world.balance(payer.address) == 1_000_000


@pytest.mark.parametrize("pay_with", ["dev", "evm"])
def test_client_picks_its_method_from_an_mppx_composed_402(
    world: World, mppx_evm_shop: EvmShop, pay_with: str
) -> None:
    shop = mppx_evm_shop
    unpaid = httpx.get(shop.server.url + "/either")
    assert unpaid.status_code == 402
    # mppx.compose() merges the offers into one WWW-Authenticate field value.
    (line,) = unpaid.headers.get_list("www-authenticate")
    offers = mpp_client.parse_challenges([line])
    assert [c.key for c in offers] == ["dev/charge", "evm/charge"]

    payer = world.funded_account(tokens=1_000_000)
    wallet: DevWallet | EvmWallet
    if pay_with == "dev":
        wallet = DevWallet()
        policy: SimplePolicy | Policy = SimplePolicy(max_per_call="1.00 USD", budget="5.00 USD")
    else:
        wallet = evm_wallet(world, payer)
        policy = evm_policy(world)
    seen: list[httpx.Response] = []
    with Client(
        methods=[wallet],
        policy=policy,
        ledger="memory:",
        allow_insecure_localhost=True,
        event_hooks={"response": [seen.append]},
    ) as client:
        response = client.get(shop.server.url + "/either")

    assert response.status_code == 200, response.text
    # Our Accept-Payment names only the wallet's method, and mppx drops the other offer.
    assert seen[0].request.headers["accept-payment"] == f"{pay_with}/charge"
    narrowed = mpp_client.parse_challenges(seen[0].headers.get_list("www-authenticate"))
    assert [c.key for c in narrowed] == [f"{pay_with}/charge"]
    record = payment_record(response)
    assert record is not None and record.status == "committed"
    assert record.method == pay_with
    if pay_with == "dev":
        assert record.amount == Amount(30, "USD", 2)
        assert [e["outcome"] for e in shop.events("verify")] == ["accepted"]
        assert shop.events("settle") == []
        assert world.balance(shop.merchant) == 0
    else:
        assert record.amount == Amount(300_000, "USD", TOKEN_DECIMALS)
        assert shop.events("verify") == []
        assert [e["outcome"] for e in shop.events("settle")] == ["settled"]
        assert world.balance(shop.merchant) == 300_000
        assert world.balance(payer.address) == 1_000_000 - 300_000


# -- mppx's client pays our PaidServer ---------------------------------------------------


@dataclass
class OurEvmShop:
    """Our PaidServer selling /paid for 0.25 TUSD through EvmVerifier (authorization)."""

    server: PaidServer
    verifier: EvmVerifier
    merchant: str
    url: str


@pytest.fixture
def our_evm_shop(world: World, live: Any) -> OurEvmShop:
    merchant = Account.create().address
    verifier = EvmVerifier(
        world.url,
        token=world.token,
        submitter=world.funded_account(),
        # mppx's client signs only EIP-3009 authorizations.
        credential_types=["authorization"],
        token_domain=(TOKEN_NAME, TOKEN_VERSION),
        decimals=TOKEN_DECIMALS,
        challenge_hash_scheme="concat",  # mppx's keccak256(id || realm), pinned
    )
    server = PaidServer(
        {"/paid": "0.25 USD"},
        realm=REALM,
        verifier=verifier,
        currency=world.token,
        recipient=merchant,
        asset="USD",
        decimals=TOKEN_DECIMALS,
    )
    return OurEvmShop(server, verifier, merchant, live(server))


def mppx_evm_options(world: World) -> dict[str, Any]:
    return {
        "chainId": world.chain_id,
        "token": world.token,
        "tokenName": TOKEN_NAME,
        "tokenVersion": TOKEN_VERSION,
        "decimals": TOKEN_DECIMALS,
    }


def test_mppx_client_pays_our_evm_server_on_chain(world: World, our_evm_shop: OurEvmShop) -> None:
    shop = our_evm_shop
    payer = world.funded_account(tokens=1_000_000)

    out = run_client(
        {"url": shop.url + "/paid", "evm": mppx_evm_options(world), "replay": True},
        secrets={"MPPX_PEER_PAYER_KEY": key_hex(payer)},
    )

    assert "error" not in out, out
    assert out["paid"] is True
    response = out["response"]
    assert response["status"] == 200, out
    assert json.loads(response["body"]) == {"ok": True}
    # mppx read our challenge, opaque kept as the raw string it echoes.
    challenge = out["challenge"]
    assert [challenge[k] for k in ("method", "intent", "realm")] == ["evm", "charge", REALM]
    assert challenge["request"]["amount"] == str(TUSD_PRICE)
    assert b64url_decode(challenge["opaque"]) == b'{"route":"GET /paid"}'
    # mppx's Receipt.deserialize accepts our receipt.
    receipt = response["receipt"]
    assert receipt["status"] == "success"
    assert receipt["method"] == "evm"
    assert receipt["chainId"] == world.chain_id
    assert shop.verifier.settled == [receipt["reference"]]
    (payment,) = shop.server.payments
    assert payment.payer == f"did:pkh:eip155:{world.chain_id}:{payer.address}"
    assert payment.reference == receipt["reference"]
    on_chain = world.receipt(receipt["reference"])
    assert transfers_in(on_chain, world.token) == [(payer.address, shop.merchant, TUSD_PRICE)]
    assert world.balance(shop.merchant) == TUSD_PRICE
    assert world.balance(payer.address) == 1_000_000 - TUSD_PRICE

    # mppx's client sent the same credential again: refused, nothing moved.
    replay = out["replay"]
    assert replay["status"] == 402
    assert "payment-receipt" not in replay["headers"]
    assert json.loads(replay["body"])["type"] == PROBLEMS + "invalid-challenge"
    assert shop.verifier.settled == [receipt["reference"]]
    assert len(shop.server.payments) == 1
    assert world.balance(shop.merchant) == TUSD_PRICE
    assert world.balance(payer.address) == 1_000_000 - TUSD_PRICE


@SYNC_AND_ASYNC
async def test_client_pays_mppx_requires_auth_in_payment_authorization(
    dev_peer: DevPeer, sync: bool
) -> None:
    """mppx ``requiresAuth``: the credential goes in Payment-Authorization."""
    wallet = DevWallet()
    response, seen, spent = await send(
        wallet,
        "GET",
        dev_peer.url + "/account",
        sync=sync,
        headers={"Authorization": "Bearer app-token"},
    )

    (challenge,) = mpp_client.parse_challenges(seen[0].headers.get_list("www-authenticate"))
    assert challenge.header == "Payment-Authorization"
    assert challenge.description == ACCOUNT_DESCRIPTION
    assert response.request.headers["authorization"] == "Bearer app-token"
    assert response.request.headers["payment-authorization"].startswith("Payment ")
    assert response.json()["applicationAuthorization"] == "Bearer app-token"
    assert_paid_by_voucher(response, dev_peer, ACCOUNT_PRICE, wallet)
    # The echo carried `header` (mppx binds it into the id) and the description as received.
    (echo,) = [e["echo"] for e in dev_peer.events("request") if e["status"] == 200]
    assert echo["header"] == "Payment-Authorization"
    assert echo["description"] == ACCOUNT_DESCRIPTION
    assert spent == ACCOUNT_PRICE


# -- Tempo: a local Tempo chain (anvil --network tempo) ------------------------------------

TEMPO_PRICE = 250_000  # 0.25 pathUSD (6 decimals)
TIP20_TRANSFER_WITH_MEMO = "0x" + keccak(b"TransferWithMemo(address,address,uint256,bytes32)").hex()


@dataclass
class TempoShop:
    """An mppx server selling GET /tempo for 0.25 pathUSD through mppx's Tempo method."""

    server: MppxServer
    merchant: str


def start_mppx_tempo_shop(
    chain: TempoChain, *, sponsor: LocalAccount | None = None, modes: list[str] | None = None
) -> tuple[MppxServer, str]:
    merchant = Account.create().address
    options: dict[str, Any] = {
        "rpcUrl": chain.url,
        "chainId": chain.chain_id,
        "currency": PATH_USD,
        "recipient": merchant,
        "amount": "0.25",  # display units, 6 decimals
    }
    if modes is not None:
        options["supportedModes"] = modes
    secrets = {"MPPX_PEER_FEE_PAYER_KEY": key_hex(sponsor)} if sponsor else {}
    server = MppxServer({"realm": REALM, "secretKey": SECRET, "tempo": options}, secrets=secrets)
    return server.start(), merchant


@pytest.fixture
def mppx_tempo_shop(tempo_chain: TempoChain) -> Iterator[TempoShop]:
    server, merchant = start_mppx_tempo_shop(tempo_chain)
    try:
        yield TempoShop(server, merchant)
    finally:
        server.stop()


def path_usd(chain: TempoChain) -> AssetEntry:
    return AssetEntry("tempo", PATH_USD, "USD", 6, chain.chain_id, "pathUSD")


def tempo_wallet(chain: TempoChain, payer: LocalAccount) -> TempoWallet:
    return TempoWallet(payer, chain_id=chain.chain_id, rpc_url=chain.url, assets=[path_usd(chain)])


def memos_in(receipt: dict[str, Any]) -> list[tuple[str, str, int, bytes]]:
    """``(from, to, amount, memo)`` of each TIP-20 TransferWithMemo log in a receipt."""
    out = []
    for log in receipt.get("logs") or ():
        topics = [str(t).lower() for t in log.get("topics") or ()]
        if topics and topics[0] == TIP20_TRANSFER_WITH_MEMO:
            sender = to_checksum_address("0x" + topics[1][-40:])
            receiver = to_checksum_address("0x" + topics[2][-40:])
            data = bytes.fromhex(str(log["data"])[2:])
            out.append(
                (sender, receiver, int.from_bytes(data[:32], "big"), bytes.fromhex(topics[3][2:]))
            )
    return out


@SYNC_AND_ASYNC
async def test_client_pays_mppx_tempo_charge_on_chain(
    tempo_chain: TempoChain, mppx_tempo_shop: TempoShop, sync: bool
) -> None:
    shop = mppx_tempo_shop
    payer = tempo_chain.funded_account(5_000_000)
    options: dict[str, Any] = {
        "methods": [tempo_wallet(tempo_chain, payer)],
        "policy": chain_policy(path_usd(tempo_chain)),
        "ledger": "memory:",
        "allow_insecure_localhost": True,
    }
    if sync:
        with Client(**options) as client:
            response = client.get(shop.server.url + "/tempo")
    else:
        async with AsyncClient(**options) as aclient:
            response = await aclient.get(shop.server.url + "/tempo")

    assert response.status_code == 200, response.text
    record = payment_record(response)
    assert record is not None and record.status == "committed"
    assert record.amount == Amount(TEMPO_PRICE, "USD", 6)
    assert record.receipt is not None and record.receipt.method == "tempo"
    tx_hash = record.receipt.reference
    on_chain = tempo_chain.receipt(tx_hash)
    assert on_chain["status"] == "0x1"
    # The payee's balance rose by exactly the price; the payer paid it plus the fee.
    assert tempo_chain.balance(shop.merchant) == TEMPO_PRICE
    paid = 5_000_000 - tempo_chain.balance(payer.address)
    assert TEMPO_PRICE < paid < TEMPO_PRICE + 100_000
    # The transfer carries the MPP attribution memo mppx checked: this realm, this challenge.
    ((sender, receiver, amount, memo),) = memos_in(on_chain)
    assert (sender, receiver, amount) == (payer.address, shop.merchant, TEMPO_PRICE)
    assert memo_binds(memo, record.challenge_id, REALM)

    # mppx keeps the transaction hash: the same credential again moves nothing.
    authorization = response.request.headers["authorization"]
    replay = httpx.get(shop.server.url + "/tempo", headers={"Authorization": authorization})
    assert replay.status_code == 402
    assert "payment-receipt" not in replay.headers
    problem = Problem.parse(replay.content, replay.headers.get("content-type"))
    assert problem is not None and problem.code == "verification-failed"
    assert tempo_chain.balance(shop.merchant) == TEMPO_PRICE
    assert 5_000_000 - tempo_chain.balance(payer.address) == paid


@pytest.mark.parametrize("mode", ["sponsored", "push"])
def test_client_pays_mppx_tempo_sponsored_and_push(tempo_chain: TempoChain, mode: str) -> None:
    """mppx as fee payer (0x78 envelope, co-signed by mppx), and push mode (a hash)."""
    sponsor = tempo_chain.funded_account(5_000_000) if mode == "sponsored" else None
    server, merchant = start_mppx_tempo_shop(
        tempo_chain, sponsor=sponsor, modes=["push"] if mode == "push" else None
    )
    try:
        payer = tempo_chain.funded_account(5_000_000)
        wallet = TempoWallet(
            payer,
            chain_id=tempo_chain.chain_id,
            rpc_url=tempo_chain.url,
            assets=[path_usd(tempo_chain)],
            modes=("push",) if mode == "push" else ("pull",),
        )
        seen: list[httpx.Response] = []
        with Client(
            methods=[wallet],
            policy=chain_policy(path_usd(tempo_chain)),
            ledger="memory:",
            allow_insecure_localhost=True,
            event_hooks={"response": [seen.append]},
        ) as client:
            response = client.get(server.url + "/tempo")

        assert response.status_code == 200, response.text
        (challenge,) = mpp_client.parse_challenges(seen[0].headers.get_list("www-authenticate"))
        details = challenge.request["methodDetails"]
        credential = mpp_client.protocol.Credential.parse(response.request.headers["authorization"])
        record = payment_record(response)
        assert record is not None and record.status == "committed" and record.receipt is not None
        on_chain = tempo_chain.receipt(record.receipt.reference)
        ((sender, receiver, amount, memo),) = memos_in(on_chain)
        assert (sender, receiver, amount) == (payer.address, merchant, TEMPO_PRICE)
        assert memo_binds(memo, record.challenge_id, REALM)
        assert tempo_chain.balance(merchant) == TEMPO_PRICE
        if mode == "sponsored":
            assert details["feePayer"] is True
            assert credential.payload["type"] == "transaction"
            assert credential.payload["signature"].startswith("0x78")  # the fee-payer envelope
            # mppx paid the fee: the payer lost exactly the price, the sponsor the fee.
            assert tempo_chain.balance(payer.address) == 5_000_000 - TEMPO_PRICE
            assert sponsor is not None and tempo_chain.balance(sponsor.address) < 5_000_000
        else:
            assert details["supportedModes"] == ["push"]
            assert credential.payload == {"type": "hash", "hash": record.receipt.reference}
            assert tempo_chain.balance(payer.address) < 5_000_000 - TEMPO_PRICE  # price + fee
        payer_after = tempo_chain.balance(payer.address)

        replay = httpx.get(
            server.url + "/tempo",
            headers={"Authorization": response.request.headers["authorization"]},
        )
        assert replay.status_code == 402
        problem = Problem.parse(replay.content, replay.headers.get("content-type"))
        assert problem is not None and problem.code == "verification-failed"
        assert problem.detail is not None and "already been used" in problem.detail
        assert tempo_chain.balance(merchant) == TEMPO_PRICE
        assert tempo_chain.balance(payer.address) == payer_after
    finally:
        server.stop()


# -- mppx's client pays our PaidServer with TempoVerifier ---------------------------------


@pytest.mark.parametrize("mode", ["pull", "sponsored", "push"])
def test_mppx_client_pays_our_tempo_server_on_chain(
    tempo_chain: TempoChain, live: Any, mode: str
) -> None:
    merchant = Account.create().address
    sponsor = tempo_chain.funded_account(5_000_000) if mode == "sponsored" else None
    verifier = TempoVerifier(
        tempo_chain.url,
        fee_payer=sponsor,
        supported_modes=["push"] if mode == "push" else None,
    )
    server = PaidServer(
        {"/paid": "0.25 USD"},
        realm=REALM,
        verifier=verifier,
        currency=PATH_USD,
        recipient=merchant,
        asset="USD",
        decimals=6,
    )
    url = live(server)
    payer = tempo_chain.funded_account(5_000_000)
    options: dict[str, Any] = {"rpcUrl": tempo_chain.url, "chainId": tempo_chain.chain_id}
    if mode == "push":
        options["mode"] = "push"

    out = run_client(
        {"url": url + "/paid", "tempo": options, "replay": True},
        secrets={"MPPX_PEER_PAYER_KEY": key_hex(payer)},
    )

    assert "error" not in out, out
    assert out["paid"] is True
    response = out["response"]
    assert response["status"] == 200, out
    challenge = out["challenge"]
    assert [challenge[k] for k in ("method", "intent", "realm")] == ["tempo", "charge", REALM]
    receipt = response["receipt"]  # as mppx's Receipt.deserialize read it
    assert receipt["status"] == "success" and receipt["method"] == "tempo"
    (payment,) = server.payments
    assert payment.reference == receipt["reference"]
    on_chain = tempo_chain.receipt(receipt["reference"])
    assert on_chain["status"] == "0x1"
    # mppx's client wrote its attribution memo, bound to our challenge and realm.
    ((sender, receiver, amount, memo),) = memos_in(on_chain)
    assert (sender, receiver, amount) == (payer.address, merchant, TEMPO_PRICE)
    assert memo_binds(memo, challenge["id"], REALM)
    assert tempo_chain.balance(merchant) == TEMPO_PRICE
    if mode == "sponsored":
        assert challenge["request"]["methodDetails"]["feePayer"] is True
        assert tempo_chain.balance(payer.address) == 5_000_000 - TEMPO_PRICE  # we paid the fee
    else:
        assert tempo_chain.balance(payer.address) < 5_000_000 - TEMPO_PRICE
    payer_after = tempo_chain.balance(payer.address)

    # mppx's client sent the same credential again: refused, nothing moved.
    replay = out["replay"]
    assert replay["status"] == 402
    assert "payment-receipt" not in replay["headers"]
    problem = json.loads(replay["body"])
    assert problem["type"] == PROBLEMS + "invalid-challenge"
    kind = "hash" if mode == "push" else "credential"
    assert problem["detail"] == f"this transaction {kind} was already used"
    assert len(server.payments) == 1
    assert tempo_chain.balance(merchant) == TEMPO_PRICE
    assert tempo_chain.balance(payer.address) == payer_after
