"""The ``tempo`` payment method (draft-tempo-charge-00), settled on a local Tempo chain.

The chain tests run ``anvil --network tempo`` (anvil 1.7.1 from the npm package
``@foundry-rs/anvil-linux-amd64``, installed by ``scripts/chain-tools.sh``;
one node per session, see ``tests/chain/tempo_chain.py``). ``Client`` and
``AsyncClient`` with a ``TempoWallet`` pay a ``PaidServer`` selling through a
``TempoVerifier`` over a real socket, in pull mode (with and without the server
as fee payer), push mode and with splits; the balances read from the chain must
rise by exactly the amounts, and replaying a credential, or presenting a
transfer bound to another challenge, must move nothing.

What the chain cannot show is checked by decoding what the wallet signs,
independently of the implementation:

* the exact field layout of the signed transaction, RLP-decoded here: type
  byte (``0x76``, or the ``0x78`` fee-payer envelope), expiring nonce
  (``nonceKey`` 2^256-1, ``nonce`` 0), ``validBefore`` (never after the
  challenge's expiry), ``feeToken`` and the fee-payer slot, and the sender's
  signature recovered over the signing payload rebuilt here from the draft;
* every refusal happens before anything is signed (a spy counts signatures);
* the zero-amount proof is recovered from EIP-712 typed data built here;
* the MPP attribution memo equals what both reference SDKs compute (pympp
  live, mppx from recorded vectors).

A fake JSON-RPC node on 127.0.0.1 stands in only for what a real node will not
do on demand: fail a broadcast ambiguously, answer with another transaction's
receipt, or serve a fixed gas price.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import rlp
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys import keys
from eth_utils import keccak, to_checksum_address
from web3 import AsyncWeb3, Web3

from mpp_client import (
    AsyncClient,
    ChallengeError,
    ChallengeExpired,
    MemoryLedger,
    PaymentFailed,
    PaymentOutcomeUnknown,
    PaymentRejected,
    SimplePolicy,
    payment_record,
)
from mpp_client.methods.tempo import (
    ATTRIBUTION_TAG,
    TempoWallet,
    attribution_memo,
    memo_binds,
    parse_attribution_memo,
    proof_typed_data,
)
from mpp_client.policy import AssetEntry, Policy
from mpp_client.protocol import Challenge, Credential, Receipt
from mpp_client.testing import PaidServer
from mpp_client.testing.tempo import Movement, TempoChain, TempoVerifier, movements_in

from .helpers import apay_now, pay_now, pay_unquoted
from .rails import (
    Answer,
    CountingAsync,
    Faulty,
    HeldKey,
    challenge_at,
    paid_get,
    present,
    sent_credential,
    tempo_challenge,
    with_terms,
)

pytest_plugins = ["tests.chain.tempo_chain"]

KEY = "0x" + "4c" * 32
ADDRESS = Account.from_key(KEY).address
TOKEN = "0x20c0000000000000000000000000000000000000"  # pathUSD
RECIPIENT = to_checksum_address("0x742d35cc6634c0532925a3b844bc9e7595f8fe00")
PLATFORM = to_checksum_address("0xa1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2")
AFFILIATE = to_checksum_address("0xc4d5e6f7a8b9c4d5e6f7a8b9c4d5e6f7a8b9c4d5")
MEMO = "0x" + "ab" * 32
SPLIT_MEMO = "0x" + "00" * 28 + "deadbeef"
U256_MAX = 2**256 - 1
GWEI = 10**9
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

TRANSFER = keccak(text="transfer(address,uint256)")[:4]
TRANSFER_WITH_MEMO = keccak(text="transferWithMemo(address,uint256,bytes32)")[:4]


#: A tempo charge for 1.00 pathUSD to RECIPIENT on chain 4217 unless told otherwise.
challenge = tempo_challenge


def bound(ch: Challenge, client_id: str | None = None) -> str:
    """The attribution memo for ``ch``, as pympp's own encoder writes it."""
    from mpp.methods.tempo._attribution import encode

    memo: str = encode(ch.id, ch.realm, client_id)
    return memo


def wallet(**options: Any) -> TempoWallet:
    options.setdefault("max_fee_per_gas", 20 * GWEI)
    return TempoWallet(KEY, **options)


# -- an independent decoder ---------------------------------------------------------


def _int(value: bytes) -> int:
    return int.from_bytes(value, "big")


class Decoded:
    """A signed Tempo transaction (0x76) or fee-payer envelope (0x78), decoded here."""

    def __init__(self, raw_hex: str) -> None:
        assert raw_hex.startswith("0x")
        raw = bytes.fromhex(raw_hex[2:])
        self.raw = raw
        self.type = raw[0]
        assert self.type in (0x76, 0x78), hex(self.type)
        fields = rlp.decode(raw[1:])
        # 13 body fields and the sender signature (no key authorization here).
        assert isinstance(fields, list) and len(fields) == 14, len(fields)
        self.fields = fields
        self.chain_id = _int(fields[0])
        self.max_priority_fee_per_gas = _int(fields[1])
        self.max_fee_per_gas = _int(fields[2])
        self.gas_limit = _int(fields[3])
        self.calls = [(bytes(to), _int(value), bytes(data)) for to, value, data in fields[4]]
        self.access_list = fields[5]
        self.nonce_key = _int(fields[6])
        self.nonce = _int(fields[7])
        self.valid_before = _int(fields[8]) if fields[8] else None
        self.valid_after = _int(fields[9]) if fields[9] else None
        self.fee_token = fields[10]
        self.slot_11 = fields[11]  # fee payer signature (0x76) or sender address (0x78)
        self.authorization_list = fields[12]
        self.signature = fields[13]

    @property
    def sponsored(self) -> bool:
        return self.type == 0x78

    def signing_payload(self, *, sponsored: bool | None = None) -> bytes:
        """The sender's signing payload as the draft describes it."""
        sponsored = self.sponsored if sponsored is None else sponsored
        body = [
            *self.fields[:10],
            b"" if sponsored else self.fee_token,
            b"\x00" if sponsored else b"",
            self.authorization_list,
        ]
        return b"\x76" + rlp.encode(body)

    def sender(self, *, sponsored: bool | None = None) -> str:
        signature = self.signature
        assert len(signature) == 65
        r, s, v = _int(signature[:32]), _int(signature[32:64]), signature[64]
        assert v in (27, 28)
        assert 0 < s <= SECP256K1_N // 2  # low-s, as Tempo requires
        digest = keccak(self.signing_payload(sponsored=sponsored))
        public = keys.Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
        return str(public.to_checksum_address())

    def transfers(self) -> list[tuple[str, str, int, str | None]]:
        """``(token, recipient, amount, memo)`` per call."""
        out: list[tuple[str, str, int, str | None]] = []
        for to, value, data in self.calls:
            assert value == 0
            if data[:4] == TRANSFER:
                recipient, amount = abi_decode(["address", "uint256"], data[4:])
                memo = None
            else:
                assert data[:4] == TRANSFER_WITH_MEMO, data[:4].hex()
                recipient, amount, memo_bytes = abi_decode(
                    ["address", "uint256", "bytes32"], data[4:]
                )
                memo = "0x" + memo_bytes.hex()
            out.append((to_checksum_address(to), to_checksum_address(recipient), amount, memo))
        return out


class Spy:
    """Wraps the wallet's signer (its one way to the key) and counts signatures."""

    def __init__(self, signer: Any) -> None:
        self.signer = signer
        self.signed = 0

    @property
    def address(self) -> str:
        return str(self.signer.address)

    def sign_digest(self, digest: bytes) -> Any:
        self.signed += 1
        return self.signer.sign_digest(digest)


def spied(w: TempoWallet) -> Spy:
    spy = Spy(w.signer)
    w._signer = spy
    return spy


# -- pull mode: the signed transaction ----------------------------------------------


def test_pull_transaction_without_fee_payer_matches_the_draft() -> None:
    ch = challenge()
    before = time.time()
    payload = pay_now(wallet(max_priority_fee_per_gas=2 * GWEI), ch)
    after = time.time()
    assert set(payload) == {"type", "signature"}
    assert payload["type"] == "transaction"
    tx = Decoded(payload["signature"])
    assert tx.type == 0x76
    assert tx.chain_id == 4217
    assert tx.max_fee_per_gas == 20 * GWEI
    assert tx.max_priority_fee_per_gas == 2 * GWEI
    assert tx.gas_limit == 1_000_000
    # The expiring nonce lane, with a validity window that ends soon and
    # never after the challenge's expiry.
    assert (tx.nonce_key, tx.nonce) == (U256_MAX, 0)
    assert tx.valid_before is not None
    assert math.floor(before) < tx.valid_before <= math.floor(after + 25)
    assert ch.expires is not None and tx.valid_before <= ch.expires.timestamp()
    assert tx.valid_after is None
    assert tx.access_list == [] and tx.authorization_list == []
    # Client-paid fees: feeToken is set (to the charge token) and no fee payer.
    assert tx.fee_token == bytes.fromhex(TOKEN[2:])
    assert tx.slot_11 == b""
    assert tx.transfers() == [(to_checksum_address(TOKEN), RECIPIENT, 1_000_000, bound(ch))]
    assert tx.sender() == ADDRESS


def test_pull_transaction_with_fee_payer_is_the_0x78_envelope() -> None:
    ch = challenge(feePayer=True)
    payload = pay_now(wallet(), ch)
    tx = Decoded(payload["signature"])
    assert tx.type == 0x78
    assert tx.fee_token == b""  # the fee payer chooses it
    assert tx.slot_11 == bytes.fromhex(ADDRESS[2:])  # the sender, for the fee payer
    assert tx.chain_id == 4217
    assert (tx.nonce_key, tx.nonce) == (U256_MAX, 0)
    assert tx.transfers() == [(to_checksum_address(TOKEN), RECIPIENT, 1_000_000, bound(ch))]
    # Signed over the draft's sponsored payload: feeToken empty, 0x00 placeholder...
    assert tx.sender() == ADDRESS
    # ...and not over the client-paid one.
    assert tx.sender(sponsored=False) != ADDRESS


@pytest.mark.parametrize("where", ["memo", "split"])
def test_an_attribution_memo_for_another_challenge_is_refused_before_signing(where: str) -> None:
    foreign = "0x" + attribution_memo("someone-elses-challenge", "shop.example").hex()
    if where == "memo":
        ch = challenge(memo=foreign)
    else:
        ch = challenge(splits=[{"amount": "5", "memo": foreign, "recipient": PLATFORM}])
    w = wallet(split_recipients="*")
    spy = spied(w)
    with pytest.raises(ChallengeError, match="attribution memo for another challenge"):
        w.quote(ch)
    with pytest.raises(ChallengeError, match="attribution memo for another challenge") as info:
        pay_unquoted(w, ch)
    assert isinstance(info.value, PaymentFailed)
    assert spy.signed == 0
    # One bound to this very challenge is harmless, and used as given.
    own = challenge(id="kM9xPqWvT2nJrHsY4aDfEb", memo=bound(challenge()))
    assert Decoded(pay_now(w, own)["signature"]).transfers()[0][3] == bound(own)


@pytest.mark.parametrize("split_total", ["1000000", "1000001"])
def test_splits_adding_up_to_the_amount_or_more_are_refused_before_signing(
    split_total: str,
) -> None:
    ch = challenge(splits=[{"amount": split_total, "recipient": PLATFORM}])
    w = wallet(split_recipients="*")
    spy = spied(w)
    with pytest.raises(ChallengeError, match="not less than the amount"):
        w.quote(ch)
    with pytest.raises(ChallengeError, match="not less than the amount") as info:
        pay_unquoted(w, ch)
    assert isinstance(info.value, PaymentFailed)  # the flow releases the reservation
    assert spy.signed == 0


def test_splits_are_refused_unless_their_recipients_are_expected() -> None:
    ch = challenge(splits=[{"amount": "1", "recipient": PLATFORM}])
    with pytest.raises(ChallengeError, match="not an expected split recipient"):
        wallet().quote(ch)
    with pytest.raises(ChallengeError, match="not an expected split recipient"):
        wallet(split_recipients=[AFFILIATE]).quote(ch)
    assert wallet(split_recipients=[PLATFORM.lower()]).quote(ch).details["primaryAmount"] == 999_999


def test_quote_reads_the_terms() -> None:
    quote = wallet().quote(challenge(feePayer=True, memo=MEMO))
    assert (quote.amount.units, quote.amount.currency, quote.amount.decimals) == (
        1_000_000,
        "USD",
        6,
    )
    assert quote.payee == RECIPIENT and quote.currency == TOKEN and quote.chain_id == 4217
    assert quote.method == "tempo" and quote.intent == "charge"
    assert quote.details["mode"] == "pull" and quote.details["feePayer"] is True
    assert quote.details["memo"] == MEMO and quote.details["attribution"] is False
    plain = challenge()
    attributed = wallet(client_id="my-agent").quote(plain)
    assert attributed.details["memo"] == bound(plain, "my-agent")
    assert attributed.details["attribution"] is True


def test_valid_before_never_passes_the_challenge_expiry() -> None:
    expires = datetime.now(UTC) + timedelta(seconds=7, microseconds=500_000)
    tx = Decoded(pay_now(wallet(), challenge(expires=expires))["signature"])
    assert tx.valid_before == math.floor(expires.timestamp())


def test_a_challenge_without_expiry_is_bounded_by_valid_for() -> None:
    before = time.time()
    tx = Decoded(pay_now(wallet(valid_for=10), challenge(expires=None))["signature"])
    assert tx.valid_before is not None
    assert math.floor(before) < tx.valid_before <= math.floor(time.time() + 10)


# -- chain ids ---------------------------------------------------------------------


def test_chain_id_comes_from_the_challenge_when_the_wallet_has_none() -> None:
    w = wallet()
    ch = challenge(chainId=42431)
    tx = Decoded(pay_now(w, ch)["signature"])
    assert tx.chain_id == 42431
    assert w.quote(ch).payer == f"did:pkh:eip155:42431:{ADDRESS}"
    assert w.quote(challenge(chainId=4217)).payer == f"did:pkh:eip155:4217:{ADDRESS}"


def test_configured_chain_id_is_used_when_the_challenge_has_none() -> None:
    w = wallet(chain_id=42431)
    ch = challenge(chainId=None)
    tx = Decoded(pay_now(w, ch)["signature"])
    assert tx.chain_id == 42431
    assert w.quote(ch).payer == f"did:pkh:eip155:42431:{ADDRESS}"


@pytest.mark.parametrize(
    ("options", "details", "message"),
    [
        ({}, {"chainId": None}, "names no chain id"),
        ({}, {"chainId": 1}, "chain 1, which this wallet does not pay on"),
        ({"chain_id": 4217}, {"chainId": 42431}, "pays on chain 4217"),
        ({}, {"chainId": "4217"}, "positive integer"),
        ({}, {"chainId": True}, "positive integer"),
    ],
)
def test_missing_unknown_or_mismatched_chain_ids_are_refused(
    options: dict[str, Any], details: dict[str, Any], message: str
) -> None:
    w = wallet(**options)
    spy = spied(w)
    ch = challenge(**details)
    with pytest.raises(ChallengeError, match=message):
        w.quote(ch)
    with pytest.raises(ChallengeError, match=message):
        pay_unquoted(w, ch)
    assert spy.signed == 0


# -- other refusals ----------------------------------------------------------------


OTHER_TOKEN = "0x20c0000000000000000000000000000000000001"


@pytest.mark.parametrize(
    ("kwargs", "options", "message"),
    [
        ({"request": {"currency": OTHER_TOKEN}}, {}, "not in the wallet's asset registry"),
        ({"request": {"currency": "usd"}}, {}, "currency must be a 0x-prefixed 20-byte address"),
        ({}, {"payees": [PLATFORM]}, "not one of the expected payees"),
        ({"request": {"recipient": "0x742d35Cc6634C0532925a3b844Bc9e7595f8fE00"}}, {}, "EIP-55"),
        ({"request": {"recipient": "0x" + "00" * 20}}, {}, "zero address"),
        ({"request": {"recipient": "bob"}}, {}, "recipient must be a 0x-prefixed 20-byte address"),
        ({"memo": "0x1234"}, {}, "bytes32"),
        ({"feePayer": "yes"}, {}, "feePayer must be a boolean"),
        ({"splits": []}, {"split_recipients": "*"}, "non-empty list"),
        (
            {"splits": [{"amount": "0", "recipient": PLATFORM}]},
            {"split_recipients": "*"},
            "positive",
        ),
        ({"splits": [{"amount": "5", "recipient": "x"}]}, {"split_recipients": "*"}, "20-byte"),
        ({"supportedModes": ["push"]}, {}, "the wallet uses pull"),
        ({"supportedModes": ["batch"]}, {}, "neither 'pull' nor 'push'"),
        ({"expires": datetime.now(UTC) - timedelta(seconds=1)}, {}, "expired"),
        ({"amount": "1.5"}, {}, "digits"),
    ],
)
def test_unusable_terms_are_refused_before_signing(
    kwargs: dict[str, Any], options: dict[str, Any], message: str
) -> None:
    w = wallet(**options)
    spy = spied(w)
    ch = challenge(**kwargs)
    with pytest.raises(ChallengeError, match=message):
        w.quote(ch)
    with pytest.raises(ChallengeError, match=message) as info:
        pay_unquoted(w, ch)
    assert isinstance(info.value, PaymentFailed)
    assert spy.signed == 0


def test_expired_challenge_is_challenge_expired() -> None:
    ch = challenge(expires=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(ChallengeExpired):
        wallet().quote(ch)
    with pytest.raises(ChallengeExpired):
        pay_unquoted(wallet(), ch)


def test_only_the_charge_intent_is_paid() -> None:
    ch = Challenge.create(
        id="x",
        realm="r",
        method="tempo",
        intent="session",
        request={"amount": "1", "currency": TOKEN, "recipient": RECIPIENT},
    )
    assert not wallet().supports(ch)
    with pytest.raises(ChallengeError, match="only charge"):
        wallet().quote(ch)


def test_constructor_checks_its_options() -> None:
    with pytest.raises(ValueError, match="modes"):
        TempoWallet(KEY, modes=("pull", "teleport"))
    with pytest.raises(ValueError, match="rpc_url needs chain_id"):
        TempoWallet(KEY, rpc_url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="proof_version"):
        TempoWallet(KEY, proof_version=4)
    with pytest.raises(ValueError, match="valid_for"):
        TempoWallet(KEY, valid_for=3600)


# -- the zero-amount proof ----------------------------------------------------------


def _recover_proof(signature: str, typed: dict[str, Any]) -> str:
    domain_type = [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
    ]
    full = {**typed, "types": {"EIP712Domain": domain_type, **typed["types"]}}
    return str(Account.recover_message(encode_typed_data(full_message=full), signature=signature))


def test_zero_amount_pays_with_an_eip712_proof_over_the_challenge() -> None:
    ch = challenge("0", id="proof-challenge-id", chainId=42431)
    w = wallet()
    spy = spied(w)
    payload = pay_now(w, ch)
    assert spy.signed == 1
    assert set(payload) == {"type", "signature"} and payload["type"] == "proof"
    assert payload["signature"].startswith("0x") and len(payload["signature"]) == 132
    # The conformance vector's typed data, written out here.
    typed = {
        "domain": {"name": "MPP", "version": "2", "chainId": 42431},
        "types": {
            "Proof": [
                {"name": "challengeId", "type": "string"},
                {"name": "realm", "type": "string"},
            ]
        },
        "primaryType": "Proof",
        "message": {"challengeId": "proof-challenge-id", "realm": "api.example.com"},
    }
    assert _recover_proof(payload["signature"], typed) == ADDRESS
    # Bound to the challenge: another id, realm or chain recovers someone else.
    for changed in (
        {**typed, "message": {**typed["message"], "challengeId": "other"}},
        {**typed, "message": {**typed["message"], "realm": "evil.example"}},
        {**typed, "domain": {**typed["domain"], "chainId": 4217}},
    ):
        assert _recover_proof(payload["signature"], changed) != ADDRESS
    # The proof credential must carry the payer's did:pkh on the proof's chain.
    quote = w.quote(ch)
    assert quote.payer == f"did:pkh:eip155:42431:{ADDRESS}"
    assert quote.moves_funds is False  # a proof moves nothing


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_proof_version_recovers_to_the_payer(version: int) -> None:
    ch = challenge("0", id="c-1", chainId=4217)
    payload = pay_now(wallet(proof_version=version), ch)
    typed = proof_typed_data(
        chain_id=4217, challenge_id="c-1", realm="api.example.com", account=ADDRESS, version=version
    )
    assert typed["domain"]["version"] == str(version)
    assert _recover_proof(payload["signature"], typed) == ADDRESS


def test_proof_ignores_supported_modes_and_fee_payer() -> None:
    payload = pay_now(wallet(), challenge("0", supportedModes=["push"], feePayer=True))
    assert payload["type"] == "proof"


def test_zero_amount_with_splits_is_refused() -> None:
    ch = challenge("0", splits=[{"amount": "1", "recipient": PLATFORM}])
    with pytest.raises(ChallengeError, match="not less than the amount"):
        wallet(split_recipients="*").quote(ch)


# -- a fake node: what a real one will not do on demand -----------------------------


class FakeNode:
    """JSON-RPC on 127.0.0.1: eth_chainId, eth_gasPrice, eth_sendRawTransactionSync."""

    def __init__(
        self,
        chain_id: int = 4217,
        gas_price: int = 20 * GWEI,
        on_send: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.gas_price = gas_price
        self.calls: list[tuple[str, list[Any]]] = []
        self.on_send = on_send or self.mined
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                node.calls.append((body["method"], body["params"]))
                answer = node.answer(body["method"], body["params"])
                data = json.dumps({"jsonrpc": "2.0", "id": body["id"], **answer}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/rpc/SECRET-API-KEY"

    def answer(self, method: str, params: list[Any]) -> dict[str, Any]:
        if method == "eth_chainId":
            return {"result": hex(self.chain_id)}
        if method == "eth_gasPrice":
            return {"result": hex(self.gas_price)}
        if method == "eth_sendRawTransactionSync":
            return self.on_send(params[0])
        return {"error": {"code": -32601, "message": "method not found"}}

    @staticmethod
    def mined(raw: str, status: str = "0x1") -> dict[str, Any]:
        tx_hash = "0x" + keccak(bytes.fromhex(raw[2:])).hex()
        return {"result": {"transactionHash": tx_hash, "status": status, "blockNumber": "0x10"}}

    def sent(self) -> list[str]:
        return [
            params[0] for method, params in self.calls if method == "eth_sendRawTransactionSync"
        ]

    def __enter__(self) -> FakeNode:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def node() -> Iterator[FakeNode]:
    with FakeNode() as fake:
        yield fake


def test_push_is_not_used_when_the_server_sponsors_fees_or_only_pulls(node: FakeNode) -> None:
    w = TempoWallet(KEY, chain_id=4217, rpc_url=node.url, modes=("push", "pull"))
    for ch in (challenge(feePayer=True), challenge(supportedModes=["pull"])):
        assert w.quote(ch).details["mode"] == "pull"
        assert pay_now(w, ch)["type"] == "transaction"
    assert node.sent() == []
    push_only = TempoWallet(KEY, chain_id=4217, rpc_url=node.url, modes=("push",))
    with pytest.raises(ChallengeError, match="fee sponsorship"):
        push_only.quote(challenge(feePayer=True))


def test_pull_reads_the_gas_price_from_the_node_when_not_configured(node: FakeNode) -> None:
    node.gas_price = 30 * GWEI
    w = TempoWallet(KEY, chain_id=4217, rpc_url=node.url)
    assert w.quote(challenge()).moves_funds is False  # pull: the server broadcasts
    tx = Decoded(pay_now(w, challenge())["signature"])
    assert (tx.max_fee_per_gas, tx.max_priority_fee_per_gas) == (30 * GWEI, 3 * GWEI)
    assert [method for method, _ in node.calls] == ["eth_chainId", "eth_gasPrice"]


async def test_pull_reads_the_gas_price_async(node: FakeNode) -> None:
    w = TempoWallet(KEY, chain_id=4217, rpc_url=node.url)
    tx = Decoded((await apay_now(w, challenge()))["signature"])
    assert tx.max_fee_per_gas == node.gas_price
    assert tx.sender() == ADDRESS


def test_a_broadcast_error_leaves_the_outcome_unknown(node: FakeNode) -> None:
    node.on_send = lambda raw: {"error": {"code": -32000, "message": "timed out waiting"}}
    w = TempoWallet(KEY, chain_id=4217, rpc_url=node.url, modes=("push",))
    with pytest.raises(PaymentOutcomeUnknown, match="may still be included") as info:
        pay_unquoted(w, challenge())
    assert "SECRET-API-KEY" not in str(info.value)


def test_a_receipt_for_another_transaction_leaves_the_outcome_unknown(node: FakeNode) -> None:
    node.on_send = lambda raw: {"result": {"transactionHash": "0x" + "11" * 32, "status": "0x1"}}
    w = TempoWallet(KEY, chain_id=4217, rpc_url=node.url, modes=("push",))
    with pytest.raises(PaymentOutcomeUnknown, match="not 0x"):
        pay_unquoted(w, challenge())


def test_an_unreachable_node_fails_without_signing() -> None:
    with socket_closed_port() as port:
        w = TempoWallet(KEY, chain_id=4217, rpc_url=f"http://127.0.0.1:{port}", modes=("push",))
        spy = spied(w)
        with pytest.raises(PaymentFailed, match="nothing was signed"):
            pay_unquoted(w, challenge())
        assert spy.signed == 0


class socket_closed_port:
    """A loopback port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        port: int = self.sock.getsockname()[1]
        self.sock.close()
        return port

    def __exit__(self, *exc: object) -> None:
        pass


# -- keys and hygiene ---------------------------------------------------------------


def test_the_key_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    secret = KEY[2:]
    w = wallet(split_recipients="*")
    caplog.set_level(logging.DEBUG)
    pay_now(w, challenge(feePayer=True, splits=[{"amount": "5", "recipient": PLATFORM}]))
    pay_now(w, challenge("0"))
    with pytest.raises(ChallengeError) as info:
        pay_unquoted(w, challenge(chainId=1))
    for text in (repr(w), str(w), caplog.text, str(info.value), repr(info.value)):
        assert secret not in text.lower()
    assert ADDRESS in repr(w)
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(w)


def test_keys_are_accepted_as_hex_bytes_or_local_account() -> None:
    for key in (KEY, KEY[2:], bytes.fromhex(KEY[2:]), Account.from_key(KEY)):
        assert TempoWallet(key).address == ADDRESS
    with pytest.raises(ValueError) as info:
        TempoWallet("0x" + "zz" * 32)
    assert "zz" not in str(info.value)
    with pytest.raises(ValueError, match="not a valid secp256k1"):
        TempoWallet("0x" + "00" * 32)


@pytest.mark.parametrize("answer", ["vrs", "bytes", "object", "high-s", "wrong-parity"])
def test_a_signer_that_is_not_a_local_account_signs_transactions_and_proofs(
    answer: Answer,
) -> None:
    held = HeldKey(bytes.fromhex(KEY[2:]), answer=answer)
    w = TempoWallet(held, max_fee_per_gas=20 * GWEI, split_recipients="*")
    assert w.address == ADDRESS and w.signer is held
    for ch in (
        challenge(),
        challenge(feePayer=True, splits=[{"amount": "5", "recipient": PLATFORM}]),
    ):
        tx = Decoded(pay_now(w, ch)["signature"])
        assert tx.sender() == ADDRESS  # recovered here from the draft's signing payload
    proof = challenge("0", id="c-1", chainId=4217)
    typed = proof_typed_data(chain_id=4217, challenge_id="c-1", realm="api.example.com")
    assert _recover_proof(pay_now(w, proof)["signature"], typed) == ADDRESS
    assert held.signed == 3


def test_a_signer_that_lies_or_fails_signs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    liar = TempoWallet(
        HeldKey(claims=Account.create().address), max_fee_per_gas=20 * GWEI, chain_id=4217
    )
    for ch in (challenge(), challenge("0")):
        with pytest.raises(PaymentFailed, match="signed with another key than its address"):
            pay_now(liar, ch)
    broken = TempoWallet(HeldKey(fail=True), max_fee_per_gas=20 * GWEI)
    with pytest.raises(PaymentFailed, match="signer failed") as caught:
        pay_now(broken, challenge())
    for text in (str(caught.value), caplog.text):
        assert "PIN" not in text


def test_the_key_round_trips_through_a_keystore(tmp_path: Any) -> None:
    # The keystore belongs to the key both rails share, so a Tempo wallet has one too.
    path = tmp_path / "tempo.json"
    wallet().save_keystore(path, "correct horse", iterations=2)
    assert KEY[2:] not in path.read_text().lower()
    loaded = TempoWallet.from_keystore(path, "correct horse", chain_id=4217)
    assert loaded.address == ADDRESS and loaded.chain_id == 4217


# -- the zero-amount proof in the flow (no chain: nothing moves) ----------------------


def _server(ch: Challenge, seen: list[Credential]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        header = request.headers.get("authorization")
        if header is None:
            return httpx.Response(402, headers={"www-authenticate": ch.to_header()})
        credential = Credential.parse(header)
        seen.append(credential)
        receipt = Receipt(
            status="success", method="tempo", reference="0xabc", timestamp=datetime.now(UTC)
        )
        return httpx.Response(200, headers={"payment-receipt": receipt.to_header()}, text="ok")

    return httpx.MockTransport(handler)


async def test_the_async_flow_sends_a_proof_with_the_payers_did() -> None:
    ch = challenge("0", chainId=42431)
    seen: list[Credential] = []
    async with AsyncClient(
        methods=[wallet()],
        policy=SimplePolicy(max_per_call="2.00 USD", budget="5.00 USD"),
        ledger=MemoryLedger(),
        transport=_server(ch, seen),
    ) as client:
        response = await client.get("https://api.example.com/paid")
    assert response.status_code == 200
    [credential] = seen
    assert credential.payload["type"] == "proof"
    assert credential.source == f"did:pkh:eip155:42431:{ADDRESS}"


def test_a_quote_moves_funds_only_when_the_wallet_will_push() -> None:
    pushing = wallet(modes=("push", "pull"))
    assert pushing.quote(challenge()).moves_funds is True
    assert pushing.quote(challenge(supportedModes=["pull"])).moves_funds is False
    assert wallet().quote(challenge()).moves_funds is False
    assert wallet().quote(challenge("0")).moves_funds is False  # a proof


# -- the reference server (pympp) accepts what the wallet signs ---------------------


def test_pympp_server_code_validates_and_cosigns_the_sponsored_transaction() -> None:
    intents = pytest.importorskip("mpp.methods.tempo.intents")
    account = pytest.importorskip("mpp.methods.tempo.account")
    schemas = pytest.importorskip("mpp.methods.tempo.schemas")
    ch = challenge(
        feePayer=True,
        memo=MEMO,
        splits=[{"amount": "50000", "memo": SPLIT_MEMO, "recipient": PLATFORM}],
    )
    raw = pay_now(wallet(split_recipients="*"), ch)["signature"]
    intent = intents.ChargeIntent(
        chain_id=4217, fee_payer=account.TempoAccount.from_key("0x" + "22" * 32)
    )
    request = schemas.ChargeRequest.model_validate(dict(ch.request))
    # pympp's fee-payer path (private API): checks the envelope (expiring
    # nonce, no feeToken, sponsor fee policy), the calls against the request
    # (amounts, recipients, memos, splits) and the sender signature, then co-signs.
    cosigned, _ = intent._cosign_as_fee_payer(raw, None, request)
    final = Decoded(cosigned)
    assert final.type == 0x76 and final.slot_11 != b""  # now carries the fee payer's signature
    assert intents._transaction_sender(raw).lower() == ADDRESS.lower()

    plain = challenge(chainId=4217)
    raw_plain = pay_now(wallet(), plain)["signature"]
    legs = intent._validate_transaction_payload(
        raw_plain, schemas.ChargeRequest.model_validate(dict(plain.request)), strict=True
    )
    assert legs
    # The check that refused the wallet before it wrote the attribution memo.
    intent._assert_challenge_bound_memo(legs, challenge_id=plain.id, realm=plain.realm)
    with pytest.raises(Exception, match="memo is not bound to this challenge"):
        intent._assert_challenge_bound_memo(legs, challenge_id="another-id", realm=plain.realm)
    assert intents._transaction_sender(raw_plain).lower() == ADDRESS.lower()


# -- the MPP attribution memo --------------------------------------------------------

# (challenge id, realm, client id, memo) as mppx 0.11.0 computes them, recorded with
#   node --input-type=module -e 'import * as A from "<mppx>/dist/tempo/Attribution.js";
#     console.log(A.encode({challengeId, serverId: realm, clientId}))'
# against `npm i mppx@0.11.0`. pympp 0.16 is installed here, so it is asked live below.
MPPX_ATTRIBUTION_VECTORS = [
    (
        "challenge-123",
        "api.example.com",
        None,
        "0xef1ed712011ece072f76bd8b82350e00000000000000000000eb18f2d4402269",
    ),
    (
        "kM9xPqWvT2nJrHsY4aDfEb",
        "api.example.com",
        "my-app",
        "0xef1ed712011ece072f76bd8b82350e3a180fb9d0177aa2f3711128fb265e760d",
    ),
    (
        "id-\u2713-\U0001f600",
        "caf\u00e9.example",
        "agent-7",
        "0xef1ed71201e1405bbb6a9b3d395eff2fc7e051965c2733416b85c68ba3aff56d",
    ),
    ("x", "r", "", "0xef1ed71201414f72a4d550cad29f17000000000000000000007521d1cadbcfa9"),
]


@pytest.mark.parametrize(
    ("challenge_id", "realm", "client_id", "expected"), MPPX_ATTRIBUTION_VECTORS
)
def test_attribution_memo_matches_both_reference_sdks(
    challenge_id: str, realm: str, client_id: str | None, expected: str
) -> None:
    from mpp.methods.tempo._attribution import encode as pympp_encode

    memo = attribution_memo(challenge_id, realm, client_id)
    assert "0x" + memo.hex() == expected  # mppx, recorded
    assert "0x" + memo.hex() == pympp_encode(challenge_id, realm, client_id)  # pympp, live


def test_attribution_memo_layout() -> None:
    memo = attribution_memo("kM9xPqWvT2nJrHsY4aDfEb", "api.example.com", "my-app")
    assert len(memo) == 32
    assert ATTRIBUTION_TAG == keccak(text="mpp")[:4] == bytes.fromhex("ef1ed712")
    assert memo[:4] == ATTRIBUTION_TAG and memo[4] == 1
    assert memo[5:15] == keccak(text="api.example.com")[:10]
    assert memo[15:25] == keccak(text="my-app")[:10]
    assert memo[25:] == keccak(text="kM9xPqWvT2nJrHsY4aDfEb")[:7]
    parsed = parse_attribution_memo(memo)
    assert parsed is not None
    assert (parsed.version, parsed.server, parsed.client, parsed.nonce) == (
        1,
        memo[5:15],
        memo[15:25],
        memo[25:],
    )
    anonymous = parse_attribution_memo(attribution_memo("c", "api.example.com"))
    assert anonymous is not None and anonymous.client is None


def test_attribution_memo_binds_one_challenge_and_realm() -> None:
    memo = attribution_memo("challenge-1", "api.example.com", "agent")
    assert memo_binds(memo, "challenge-1", "api.example.com")
    assert not memo_binds(memo, "challenge-2", "api.example.com")
    assert not memo_binds(memo, "challenge-1", "evil.example.com")
    # The client id is attribution only: it does not change what the memo binds.
    assert memo_binds(
        attribution_memo("challenge-1", "api.example.com"), "challenge-1", "api.example.com"
    )


@pytest.mark.parametrize(
    "memo",
    [
        bytes.fromhex(MEMO[2:]),  # an ordinary bytes32
        bytes(32),
        ATTRIBUTION_TAG + b"\x02" + bytes(27),  # a version this module does not know
        attribution_memo("c", "r")[:31],  # not 32 bytes
        b"\xef\x1e\xd7\x13" + b"\x01" + bytes(27),  # another tag
    ],
)
def test_other_memos_are_not_attribution_memos(memo: bytes) -> None:
    assert parse_attribution_memo(memo) is None
    assert not memo_binds(memo, "c", "r")


# -- on the local Tempo chain ----------------------------------------------------------

PRICE = 250_000  # 0.25 pathUSD
FUNDS = 1_000_000
ALPHA_USD = "0x20C0000000000000000000000000000000000001"  # another genesis TIP-20


class Shop:
    """A PaidServer selling /paid for 0.25 pathUSD through a TempoVerifier."""

    def __init__(
        self,
        chain: TempoChain,
        *,
        fee_payer: bool = False,
        currency: str = TOKEN,
        **options: Any,
    ) -> None:
        self.chain = chain
        self.merchant = Account.create().address
        self.sponsor = chain.funded_account(FUNDS) if fee_payer else None
        self.verifier = TempoVerifier(chain.url, fee_payer=self.sponsor, **options)
        self.server = PaidServer(
            {"/paid": "0.25 USD"},
            verifier=self.verifier,
            currency=currency,
            recipient=self.merchant,
            asset="USD",
            decimals=6,
        )


def chain_wallet(chain: TempoChain, account: Any, **options: Any) -> TempoWallet:
    options.setdefault("assets", [chain.asset()])
    options.setdefault("split_recipients", "*")
    return TempoWallet(account, chain_id=chain.chain_id, rpc_url=chain.url, **options)


#: Pay ``url`` with ``Client`` ("sync") or ``AsyncClient`` ("async") through a wallet.
get = paid_get


def settled(response: httpx.Response, shop: Shop) -> dict[str, Any]:
    """200, a committed record, and a receipt naming the settlement; its on-chain receipt."""
    assert response.status_code == 200, response.text
    record = payment_record(response)
    assert record is not None and record.status == "committed"
    receipt = Receipt.parse(response.headers["payment-receipt"])
    assert receipt.method == "tempo"
    assert receipt.data["challengeId"] == record.challenge_id
    assert receipt.data["chainId"] == shop.chain.chain_id
    assert shop.verifier.settled == [receipt.reference]
    on_chain = shop.chain.receipt(receipt.reference)
    assert on_chain["status"] == "0x1"
    return on_chain


FLAVOURS = pytest.mark.parametrize("flavour", ["sync", "async"])


@FLAVOURS
@pytest.mark.parametrize(("mode", "fee_payer"), [("pull", False), ("pull", True), ("push", False)])
def test_client_pays_on_the_tempo_chain(
    tempo_chain: TempoChain,
    tempo_policy: Policy,
    live: Any,
    flavour: str,
    mode: str,
    fee_payer: bool,
) -> None:
    shop = Shop(tempo_chain, fee_payer=fee_payer)
    payer = tempo_chain.funded_account(FUNDS)
    wallet = chain_wallet(tempo_chain, payer, modes=(mode,))
    url = live(shop.server)
    sponsor_before = 0 if shop.sponsor is None else tempo_chain.balance(shop.sponsor.address)

    response = get(flavour, tempo_policy, wallet, url + "/paid")

    on_chain = settled(response, shop)
    sent = Credential.parse(sent_credential(response))
    assert sent.payload["type"] == ("hash" if mode == "push" else "transaction")
    assert sent.source == f"did:pkh:eip155:{tempo_chain.chain_id}:{payer.address}"
    # The merchant received exactly the price, bound to the challenge by its memo.
    assert tempo_chain.balance(shop.merchant) == PRICE
    memo = attribution_memo(sent.echo["id"], shop.server.realm)
    paid = [m for m in movements_in(on_chain, TOKEN) if m.recipient == shop.merchant]
    assert paid == [Movement(payer.address, shop.merchant, PRICE, memo)]
    spent = FUNDS - tempo_chain.balance(payer.address)
    if fee_payer:
        # The server paid the fee; the payer paid the price and nothing else.
        assert spent == PRICE
        assert shop.sponsor is not None
        assert tempo_chain.balance(shop.sponsor.address) < sponsor_before
        assert bytes(shop.sponsor.key).hex() not in repr(shop.verifier).lower()
    else:
        assert PRICE < spent < PRICE + 100_000  # the price and the payer's own fee

    # Replaying the very credential is refused, and moves nothing.
    replay = httpx.get(url + "/paid", headers={"Authorization": sent_credential(response)})
    assert replay.status_code == 402
    assert replay.json()["type"].endswith("/invalid-challenge")
    assert "already used" in replay.json()["detail"]
    assert "payment-receipt" not in replay.headers
    assert tempo_chain.balance(shop.merchant) == PRICE
    assert FUNDS - tempo_chain.balance(payer.address) == spent
    assert len(shop.verifier.settled) == 1


@FLAVOURS
@pytest.mark.parametrize(("mode", "fee_payer"), [("pull", True), ("pull", False), ("push", False)])
def test_splits_are_paid_atomically(
    tempo_chain: TempoChain,
    tempo_policy: Policy,
    live: Any,
    flavour: str,
    mode: str,
    fee_payer: bool,
) -> None:
    platform, affiliate = Account.create().address, Account.create().address
    shop = Shop(
        tempo_chain,
        fee_payer=fee_payer,
        splits=[(platform, 50_000), (affiliate, 10_000, SPLIT_MEMO)],
    )
    payer = tempo_chain.funded_account(FUNDS)
    url = live(shop.server)
    wallet = chain_wallet(tempo_chain, payer, modes=(mode,), split_recipients=[platform, affiliate])
    response = get(flavour, tempo_policy, wallet, url + "/paid")
    on_chain = settled(response, shop)
    assert tempo_chain.balance(shop.merchant) == PRICE - 60_000
    assert tempo_chain.balance(platform) == 50_000
    assert tempo_chain.balance(affiliate) == 10_000
    # In order: the primary with the attribution memo, the splits with their own (or none).
    challenge_id = Credential.parse(sent_credential(response)).echo["id"]
    assert movements_in(on_chain, TOKEN)[:3] == [
        Movement(
            payer.address,
            shop.merchant,
            PRICE - 60_000,
            attribution_memo(challenge_id, shop.server.realm),
        ),
        Movement(payer.address, platform, 50_000, None),
        Movement(payer.address, affiliate, 10_000, bytes.fromhex(SPLIT_MEMO[2:])),
    ]
    if fee_payer:
        assert tempo_chain.balance(payer.address) == FUNDS - PRICE


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_a_request_memo_is_used_as_given_and_its_transfer_pays_once(
    tempo_chain: TempoChain, tempo_policy: Policy, live: Any, mode: str
) -> None:
    shop = Shop(tempo_chain, memo=MEMO)
    payer = tempo_chain.funded_account(FUNDS)
    wallet = chain_wallet(tempo_chain, payer, modes=(mode,))
    url = live(shop.server)
    response = get("sync", tempo_policy, wallet, url + "/paid")
    on_chain = settled(response, shop)
    assert movements_in(on_chain, TOKEN)[0] == Movement(
        payer.address, shop.merchant, PRICE, bytes.fromhex(MEMO[2:])
    )
    assert tempo_chain.balance(shop.merchant) == PRICE
    # Every challenge of this shop names the same memo, so nothing binds the
    # transfer to one of them: only single use stops it paying a second time.
    sent = Credential.parse(sent_credential(response))
    again = present(url + "/paid", challenge_at(url + "/paid"), sent.payload, sent.source)
    assert again.status_code == 402
    assert "already used" in again.json()["detail"]
    assert tempo_chain.balance(shop.merchant) == PRICE
    assert len(shop.server.payments) == 1


@pytest.mark.parametrize("fee_payer", [False, True])
def test_a_transaction_bound_to_another_challenge_is_refused(
    tempo_chain: TempoChain, live: Any, fee_payer: bool
) -> None:
    shop = Shop(tempo_chain, fee_payer=fee_payer)
    payer = tempo_chain.funded_account(FUNDS)
    wallet = chain_wallet(tempo_chain, payer)
    url = live(shop.server)
    first, second = challenge_at(url + "/paid"), challenge_at(url + "/paid")
    # Signed for the first challenge, presented for the second: its memo names the first.
    answer = present(url + "/paid", second, pay_now(wallet, first), wallet.quote(second).payer)
    assert answer.status_code == 402
    assert "memo is not bound to this challenge" in answer.json()["detail"]
    assert tempo_chain.balance(payer.address) == FUNDS
    assert tempo_chain.balance(shop.merchant) == 0
    assert shop.verifier.settled == []


def test_a_transfer_with_another_memo_than_the_request_names_is_refused(
    tempo_chain: TempoChain, live: Any
) -> None:
    shop = Shop(tempo_chain, memo=MEMO)
    payer = tempo_chain.funded_account(FUNDS)
    wallet = chain_wallet(tempo_chain, payer)
    url = live(shop.server)
    ch = challenge_at(url + "/paid")
    # The same terms with another memo: everything else about the transaction is right.
    lookalike = with_terms(ch, memo=SPLIT_MEMO)
    answer = present(url + "/paid", ch, pay_now(wallet, lookalike), wallet.quote(ch).payer)
    assert answer.status_code == 402
    assert "with the request's memo" in answer.json()["detail"]
    assert tempo_chain.balance(payer.address) == FUNDS
    assert shop.verifier.settled == []


def test_a_pushed_hash_cannot_pay_a_second_challenge(tempo_chain: TempoChain, live: Any) -> None:
    shop = Shop(tempo_chain)
    payer = tempo_chain.funded_account(FUNDS)
    wallet = chain_wallet(tempo_chain, payer, modes=("push",))
    url = live(shop.server)
    first, second = challenge_at(url + "/paid"), challenge_at(url + "/paid")
    pushed = pay_now(wallet, first)  # broadcast: the merchant is paid once, for the first
    assert tempo_chain.balance(shop.merchant) == PRICE
    source = wallet.quote(first).payer
    stolen = present(url + "/paid", second, pushed, source)
    assert stolen.status_code == 402
    assert "memo is not bound to this challenge" in stolen.json()["detail"]
    honest = present(url + "/paid", first, pushed, source)
    assert honest.status_code == 200, honest.text
    again = present(url + "/paid", challenge_at(url + "/paid"), pushed, source)
    assert again.status_code == 402 and "already used" in again.json()["detail"]
    assert tempo_chain.balance(shop.merchant) == PRICE
    assert len(shop.server.payments) == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"chainId": 42431}, "for another chain"),
        ({"clock": -60}, "validBefore has passed"),
    ],
)
def test_a_transaction_for_another_chain_or_past_its_validity_is_refused(
    tempo_chain: TempoChain, live: Any, change: dict[str, Any], reason: str
) -> None:
    shop = Shop(tempo_chain)
    payer = tempo_chain.funded_account(FUNDS)
    url = live(shop.server)
    ch = challenge_at(url + "/paid")
    details = dict(ch.request["methodDetails"])
    options: dict[str, Any] = {}
    if "chainId" in change:
        details["chainId"] = change["chainId"]
        options["assets"] = [tempo_chain.asset(), AssetEntry("tempo", TOKEN, "USD", 6, 42431)]
        signer = TempoWallet(payer, max_fee_per_gas=20 * GWEI, **options)
    else:
        past = datetime.now(UTC) + timedelta(seconds=change["clock"])
        signer = chain_wallet(tempo_chain, payer, clock=lambda: past)
    lookalike = with_terms(ch, **details)
    answer = present(url + "/paid", ch, pay_now(signer, lookalike), None)
    assert answer.status_code == 402
    assert reason in answer.json()["detail"]
    assert tempo_chain.balance(payer.address) == FUNDS
    assert shop.verifier.settled == []


@FLAVOURS
@pytest.mark.parametrize("mode", ["pull", "push"])
def test_a_refusal_after_paying_is_unknown_before_it_is_released(
    tempo_chain: TempoChain, tempo_policy: Policy, live: Any, flavour: str, mode: str
) -> None:
    # A misconfigured shop: it asks for AlphaUSD but its verifier settles pathUSD only.
    shop = Shop(tempo_chain, currency=ALPHA_USD)
    payer = tempo_chain.funded_account(FUNDS)
    tempo_chain.fund(payer.address, FUNDS, token=ALPHA_USD)
    alpha = tempo_chain.asset(ALPHA_USD, "AlphaUSD")
    wallet = chain_wallet(tempo_chain, payer, modes=(mode,), assets=[alpha], fee_token=TOKEN)
    ledger = MemoryLedger()
    url = live(shop.server) + "/paid"
    expected = PaymentOutcomeUnknown if mode == "push" else PaymentRejected
    with pytest.raises(expected):
        get(flavour, tempo_policy, wallet, url, ledger=ledger)
    [record] = ledger.records()
    if mode == "push":
        # The wallet broadcast before the server refused: money moved, kept counted.
        assert record.status == "unknown"
        assert tempo_chain.balance(shop.merchant, ALPHA_USD) == PRICE
    else:
        # Only signed: nothing moved, so the reservation is released.
        assert record.status == "released"
        assert tempo_chain.balance(payer.address, ALPHA_USD) == FUNDS
        assert tempo_chain.balance(shop.merchant, ALPHA_USD) == 0
    assert shop.verifier.settled == []


@FLAVOURS
@pytest.mark.parametrize(("mode", "fee_payer"), [("pull", True), ("push", False)])
def test_a_key_held_outside_eth_account_pays_on_the_tempo_chain(
    tempo_chain: TempoChain,
    tempo_policy: Policy,
    live: Any,
    flavour: str,
    mode: str,
    fee_payer: bool,
) -> None:
    shop = Shop(tempo_chain, fee_payer=fee_payer)
    payer = tempo_chain.funded_account(FUNDS)
    held = HeldKey(bytes(payer.key), answer="bytes")
    wallet = chain_wallet(tempo_chain, held, modes=(mode,))
    response = get(flavour, tempo_policy, wallet, live(shop.server) + "/paid")
    on_chain = settled(response, shop)
    paid = [m for m in movements_in(on_chain, TOKEN) if m.recipient == shop.merchant]
    assert [(m.sender, m.amount) for m in paid] == [(payer.address, PRICE)]
    assert tempo_chain.balance(shop.merchant) == PRICE
    assert held.signed == 1


def test_push_through_the_users_web3_and_async_web3(
    tempo_chain: TempoChain, tempo_policy: Policy, live: Any
) -> None:
    # The sync flow uses the Web3, the async flow the AsyncWeb3; each sends once.
    sync, async_ = Faulty(tempo_chain.url), CountingAsync(tempo_chain.url)
    for flavour in ("sync", "async"):
        shop = Shop(tempo_chain)
        payer = tempo_chain.funded_account(FUNDS)
        wallet = TempoWallet(
            payer,
            chain_id=tempo_chain.chain_id,
            web3=(Web3(sync), AsyncWeb3(async_)),
            assets=[tempo_chain.asset()],
            modes=("push",),
        )
        settled(get(flavour, tempo_policy, wallet, live(shop.server) + "/paid"), shop)
        assert tempo_chain.balance(shop.merchant) == PRICE
    assert sync.count("eth_sendRawTransactionSync") == 1
    assert async_.calls.count("eth_sendRawTransactionSync") == 1
    assert "eth_gasPrice" in sync.calls and "eth_gasPrice" in async_.calls


def test_a_refused_connection_at_the_push_sends_nothing(tempo_chain: TempoChain) -> None:
    payer = tempo_chain.funded_account(FUNDS)
    provider = Faulty(tempo_chain.url, {"eth_sendRawTransactionSync": ["refused"]})
    wallet = TempoWallet(
        payer,
        chain_id=tempo_chain.chain_id,
        web3=provider,
        assets=[tempo_chain.asset()],
        modes=("push",),
    )
    ch = challenge(str(PRICE), chainId=tempo_chain.chain_id)
    with pytest.raises(PaymentFailed, match="nothing was sent"):
        pay_now(wallet, ch)
    assert provider.count("eth_sendRawTransactionSync") == 1
    assert tempo_chain.balance(payer.address) == FUNDS


def test_a_lost_push_answer_is_unknown_and_the_transfer_counted(
    tempo_chain: TempoChain,
) -> None:
    payer = tempo_chain.funded_account(FUNDS)
    provider = Faulty(tempo_chain.url, {"eth_sendRawTransactionSync": ["lost"]})
    wallet = TempoWallet(
        payer,
        chain_id=tempo_chain.chain_id,
        web3=provider,
        assets=[tempo_chain.asset()],
        modes=("push",),
    )
    before = tempo_chain.balance(RECIPIENT)
    with pytest.raises(PaymentOutcomeUnknown, match="may still be included"):
        pay_now(wallet, challenge(str(PRICE), chainId=tempo_chain.chain_id))
    assert provider.count("eth_sendRawTransactionSync") == 1  # never re-sent
    assert tempo_chain.balance(RECIPIENT) == before + PRICE  # it was mined: money moved


def test_the_verifier_does_not_share_a_wallet_signing_bug(
    tempo_chain: TempoChain, tempo_policy: Policy, live: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wallet signs the payload of another transaction than the one it sends (a gas
    # limit off by one): the verifier rebuilds the sender's payload from the decoded
    # fields, recovers someone else than the payer, and refuses before broadcasting.
    import attrs

    import mpp_client.methods.tempo as tempo
    from mpp_client.methods._chain._signing import sign

    def wrong_payload(signer: Any, tx: Any) -> Any:
        other = attrs.evolve(tx, gas_limit=tx.gas_limit + 1)
        signature = sign(signer, bytes(other.get_signing_hash(for_fee_payer=False)))
        return attrs.evolve(
            tx,
            sender_signature=tempo_signature(signature),
            sender_address=signer.address,
        )

    monkeypatch.setattr(tempo, "sign_as_sender", wrong_payload)
    shop = Shop(tempo_chain)
    payer = tempo_chain.funded_account(FUNDS)
    with pytest.raises(PaymentRejected) as caught:
        get("sync", tempo_policy, chain_wallet(tempo_chain, payer), live(shop.server) + "/paid")
    assert caught.value.problem is not None
    assert "not the transaction's sender" in str(caught.value.problem.detail)
    assert tempo_chain.balance(payer.address) == FUNDS
    assert shop.verifier.settled == []


def tempo_signature(signature: Any) -> Any:
    from pytempo import Signature

    return Signature(r=signature.r, s=signature.s, v=signature.v)


def test_a_reverted_push_fails_without_paying(
    tempo_chain: TempoChain, tempo_policy: Policy, live: Any
) -> None:
    shop = Shop(tempo_chain)
    payer = tempo_chain.funded_account(PRICE // 2)  # enough for the fee, not the price
    wallet = chain_wallet(tempo_chain, payer, modes=("push",))
    with pytest.raises(PaymentFailed, match="reverted"):
        get("sync", tempo_policy, wallet, live(shop.server) + "/paid")
    assert tempo_chain.balance(shop.merchant) == 0
    assert shop.verifier.settled == []


def test_a_node_on_another_chain_is_refused_before_signing(tempo_chain: TempoChain) -> None:
    w = TempoWallet(KEY, chain_id=42431, rpc_url=tempo_chain.url, modes=("push",))
    spy = spied(w)
    with pytest.raises(PaymentFailed, match=f"serves chain {tempo_chain.chain_id}"):
        pay_unquoted(w, challenge(chainId=42431))
    assert spy.signed == 0
