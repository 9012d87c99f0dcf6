"""The ``evm`` payment method (draft-evm-charge-00), on and off a real chain.

Unit tests check the terms before anything is signed, the credential shapes
and hashes, key hygiene and type selection. The chain tests start a local
anvil node (the npm package ``@foundry-rs/anvil-linux-amd64``, installed by
``scripts/chain-tools.sh``), deploy ``contracts/TestUSD.sol`` (an ERC-20 with
EIP-3009, compiled here with solc-js) and place ``contracts/WitnessTransfer.sol``
(Permit2's witness transfers, written from its interface) at Permit2's
canonical address. Then ``Client`` pays ``PaidServer`` + ``EvmVerifier`` with
every credential type, and pays pympp's own ``evm`` server method, whose
settle hook submits to the same node. Balances are read from the chain.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from web3 import AsyncWeb3, Web3

from mpp_client import (
    AsyncClient,
    ChallengeError,
    ChallengeExpired,
    Client,
    KeystoreError,
    PaymentFailed,
    PaymentOutcomeUnknown,
    PaymentRejected,
    payment_record,
)
from mpp_client.methods.evm import (
    PERMIT2_ADDRESS,
    PERMIT2_WITNESS_TYPE_STRING,
    EvmWallet,
    authorization_digest,
    challenge_binding,
    challenge_hash,
    did_pkh,
    eip3009_domain_separator,
    parse_did_pkh,
    payment_witness_hash,
    permit2_digest,
)
from mpp_client.policy import BUILTIN_ASSETS, AssetEntry, Policy
from mpp_client.protocol import Challenge, Credential, Receipt, parse_challenges
from mpp_client.testing import LocalServer, PaidServer
from mpp_client.testing._server import VerificationFailed
from mpp_client.testing.evm import ChainClient, EvmVerifier, recover_signer, transfers_in

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
from .rails import (
    Answer,
    CountingAsync,
    Faulty,
    HeldKey,
    challenge_at,
    evm_challenge,
    present,
    rail_policy,
    sent_credential,
)

CHAIN = 31337
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
# The draft's example recipient, EIP-55 encoded (the draft's own casing fails the checksum).
MERCHANT = to_checksum_address("0x742d35cc6634c0532925a3b844bc9e7595f8fe00")
DRAFT_CASED_MERCHANT = "0x742d35Cc6634C0532925a3b844Bc9e7595f8fE00"
PLATFORM = to_checksum_address("0x8ba1f109551bd432803012645ac136ddd64dba72")
KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ADDRESS = Account.from_key(KEY).address
NOW = datetime.now(UTC).replace(microsecond=0)
PRICE = 250_000  # 0.25 TUSD (6 decimals)


class CountingAccount(LocalAccount):
    """A real eth-account key that counts what it signs (to prove nothing was)."""

    signatures = 0

    def unsafe_sign_hash(self, message_hash: Any) -> Any:
        type(self).signatures += 1
        return super().unsafe_sign_hash(message_hash)

    def sign_transaction(self, transaction_dict: Any, blobs: Any = None) -> Any:
        type(self).signatures += 1
        return super().sign_transaction(transaction_dict, blobs)


def counting_account() -> CountingAccount:
    base = Account.from_key(KEY)
    CountingAccount.signatures = 0
    return CountingAccount(base._key_obj, Account)


def asset(token: str = TOKEN, chain: int = CHAIN) -> AssetEntry:
    return AssetEntry("evm", token, "USD", TOKEN_DECIMALS, chain, "TUSD")


def wallet_for(key: Any = KEY, **options: Any) -> EvmWallet:
    options.setdefault("chain_ids", [CHAIN])
    options.setdefault("assets", [asset()])
    options.setdefault("token_domains", {(CHAIN, TOKEN): (TOKEN_NAME, TOKEN_VERSION)})
    return EvmWallet(key, **options)


def challenge(
    *,
    amount: str = str(PRICE),
    currency: str = TOKEN,
    recipient: str = MERCHANT,
    details: dict[str, Any] | None = None,
    expires: datetime | None = NOW + timedelta(minutes=5),
    extra: dict[str, Any] | None = None,
) -> Challenge:
    """An evm charge on CHAIN offering authorization then permit2 (``details`` override)."""
    offered = {"permit2Address": PERMIT2_ADDRESS, "credentialTypes": ["authorization", "permit2"]}
    return evm_challenge(
        currency=currency,
        chain_id=CHAIN,
        amount=amount,
        recipient=recipient,
        details={**offered, **(details or {})},
        expires=expires,
        extra=extra,
    )


# -- identifiers and hashes ----------------------------------------------------------


def test_payer_is_did_pkh_on_the_challenge_chain() -> None:
    wallet = wallet_for(chain_ids=[CHAIN, 8453], assets=[asset(), asset(chain=8453)])
    assert wallet.source_for(8453) == f"did:pkh:eip155:8453:{ADDRESS}"
    payer = wallet.quote(challenge()).payer
    assert payer == f"did:pkh:eip155:{CHAIN}:{ADDRESS}"
    assert parse_did_pkh(payer) == (CHAIN, ADDRESS)
    on_base = challenge(details={"chainId": 8453})
    assert wallet.quote(on_base).payer == f"did:pkh:eip155:8453:{ADDRESS}"
    # The shipped wallets give the payer one way only: on the quote.
    for old in ("source", "credential_source", "funds_moved", "moves_funds_on_pay"):
        assert not hasattr(wallet, old), old
    assert parse_did_pkh("did:pkh:eip155:1:0xnothex") is None
    assert parse_did_pkh("did:key:z6Mk") is None


MPPX_RECORDED = json.loads(
    (Path(__file__).parent / "data" / "mppx_evm_challenges.json").read_text(encoding="utf-8")
)
# Strings that exercise every difference a JSON encoder could make: quotes,
# backslashes, control characters, non-ASCII (Latin-1, BMP, astral), DEL, U+2028.
AWKWARD = [
    ("aB3cDeF4gHiJkLmN", "api.example.com"),
    ('q"\u2603', "r\\\u00e9"),
    ("id-\U0001f600", "caf\u00e9.example"),
    ("tab\there", "nl\nline\u0001\u007f\u2028"),
    ("", ""),
]


def test_concat_rule_is_the_drafts_and_mppxs() -> None:
    # The draft: keccak256(abi.encodePacked(id, realm)), the two strings' UTF-8 bytes in a row.
    expected = keccak(b"aB3cDeF4gHiJkLmNapi.example.com")
    assert challenge_hash("aB3cDeF4gHiJkLmN", "api.example.com") == expected
    assert challenge_hash("aB3cDeF4gHiJkLmN", "api.example.com", "concat") == expected
    # mppx 0.11's own Types.challengeHash, recorded (tests/data/mppx_evm_challenges.json).
    vectors = MPPX_RECORDED["challengeHash"]
    assert len(vectors) == 4
    for vector in vectors:
        ours = challenge_hash(vector["id"], vector["realm"], "concat")
        assert "0x" + ours.hex() == vector["challengeHash"], vector
        assert challenge_hash(vector["id"], vector["realm"], "json-array") != ours


def test_json_array_rule_is_pympps_byte_for_byte() -> None:
    from mpp.methods.evm._eip3009 import challenge_hash as pympp_challenge_hash

    for cid, realm in AWKWARD:
        ours = challenge_hash(cid, realm, "json-array")
        assert "0x" + ours.hex() == pympp_challenge_hash(cid, realm), (cid, realm)
        assert ours != challenge_hash(cid, realm, "concat")
    # The exact text: compact separators, non-ASCII as UTF-8 (not \\u escapes),
    # quotes and backslashes escaped, control characters as JSON escapes.
    assert challenge_hash('\u00e9"', "r\\\n", "json-array") == keccak(
        '["\u00e9\\"","r\\\\\\n"]'.encode()
    )


def test_old_scheme_names_warn_and_keep_their_meaning() -> None:
    cid, realm = AWKWARD[1]
    with pytest.warns(DeprecationWarning, match="'mppx' is deprecated: it is the 'json-array'"):
        assert challenge_hash(cid, realm, "mppx") == challenge_hash(cid, realm, "json-array")
    with pytest.warns(DeprecationWarning, match="'draft' is deprecated: it is the 'concat'"):
        assert challenge_hash(cid, realm, "draft") == challenge_hash(cid, realm, "concat")
    with pytest.warns(DeprecationWarning, match="'mppx'"):
        old_mppx = wallet_for(challenge_hash_scheme="mppx")
    assert old_mppx.challenge_hash_scheme == "json-array"
    with pytest.warns(DeprecationWarning, match="'draft'"):
        old_draft = wallet_for(challenge_hash_scheme="draft")
    assert old_draft.challenge_hash_scheme == "concat"
    ch = challenge()
    assert (
        pay_now(old_mppx, ch)["nonce"] == "0x" + challenge_hash(ch.id, ch.realm, "json-array").hex()
    )
    assert pay_now(old_draft, ch)["nonce"] == "0x" + challenge_hash(ch.id, ch.realm, "concat").hex()
    for bad in ("auto", "either", "sha3", None):
        with pytest.raises(ValueError, match="unknown challenge hash scheme"):
            challenge_hash(cid, realm, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown challenge hash scheme"):
        wallet_for(challenge_hash_scheme="either")
    with pytest.raises(ValueError, match="not valid Unicode"):
        challenge_hash("\ud800", realm)


# -- which rule a challenge asks for ---------------------------------------------------


def pympp_evm_app(
    *, unique_challenges: bool = True, meta: dict[str, str] | None = None, settle: Any = None
) -> Starlette:
    """pympp's own ``evm`` server method, as its users mount it (``@pay`` on Starlette)."""
    from mpp import MemoryStore
    from mpp.methods.evm import server as evm_server
    from mpp.server import Mpp, pay

    method = evm_server.charge(
        currency=TOKEN,
        recipient=MERCHANT,
        chain_id=CHAIN,
        decimals=TOKEN_DECIMALS,
        authorization={"name": TOKEN_NAME, "version": TOKEN_VERSION},
        settle=settle or (lambda authorization: "0x" + "00" * 32),
        store=MemoryStore(),
    )
    server = Mpp(
        methods=method,
        realm="pympp-evm.test",
        secret_key="pympp-evm-secret-0123456789abcdef0",
        unique_challenges=unique_challenges,
    )

    @pay(server.evm.charge(amount="0.25", meta=meta))  # type: ignore[misc]
    async def paid(request: Request, credential: Any, receipt: Any) -> JSONResponse:
        return JSONResponse({"ok": True, "payer": receipt.payer})

    return Starlette(routes=[Route("/paid", paid)])


def _challenge_from(url: str) -> tuple[str, Challenge]:
    response = httpx.get(url)
    assert response.status_code == 402
    (value,) = response.headers.get_list("www-authenticate")
    (parsed,) = parse_challenges(value)
    return value, parsed


PYMPP_CONFIGS = {
    "default": {},
    "with meta": {"meta": {"order": "A-1"}},
    "without issuance nonce": {"unique_challenges": False},
}


@pytest.mark.parametrize("config", list(PYMPP_CONFIGS), ids=list(PYMPP_CONFIGS))
def test_a_pympp_challenge_asks_for_the_json_array(live: Any, config: str) -> None:
    from mpp import Challenge as PymppChallenge

    options = PYMPP_CONFIGS[config]
    value, ch = _challenge_from(live(pympp_evm_app(**options)) + "/paid")
    assert challenge_binding(ch) == "json-array"
    # What pympp marks its challenges with (the evidence challenge_binding reads).
    assert isinstance(ch.request["_mppx_scope"], dict)
    if options.get("unique_challenges", True):
        assert ch.opaque is not None and "_mpp_nonce" in ch.opaque
    else:
        assert ch.opaque is None  # the request's route scope alone tells
    # The EVM terms themselves look just like mppx's.
    assert ch.request["methodDetails"] == {
        "chainId": CHAIN,
        "credentialTypes": ["authorization"],
        "decimals": TOKEN_DECIMALS,
    }
    wallet = wallet_for()
    assert wallet.quote(ch).details["challengeBinding"] == "json-array"
    nonce = pay_now(wallet, ch)["nonce"]
    reference = PymppChallenge.from_www_authenticate(value)
    from mpp.methods.evm._eip3009 import challenge_hash as pympp_challenge_hash

    assert nonce == pympp_challenge_hash(reference.id, reference.realm)


@pytest.mark.parametrize("route", ["paid", "described", "scoped"])
def test_an_mppx_challenge_asks_for_the_concatenation(route: str) -> None:
    # Recorded from a live mppx 0.11 server: see the note in the data file.
    (ch,) = parse_challenges(MPPX_RECORDED["challenges"][route])
    assert ch.realm == "mppx-evm.test"
    assert "_mppx_scope" not in ch.request  # mppx's scope, when set, rides in opaque
    if route == "scoped":
        assert ch.opaque == {"_mppx_scope": "GET /scoped"}
    assert challenge_binding(ch) == "concat"
    assert ch.expires is not None
    before_expiry = ch.expires - timedelta(seconds=30)
    wallet = wallet_for(payees=[MERCHANT], clock=lambda: before_expiry)
    assert wallet.quote(ch).details["challengeBinding"] == "concat"
    payload = pay_now(wallet, ch)
    assert payload["nonce"] == "0x" + challenge_hash(ch.id, ch.realm, "concat").hex()
    # A pinned rule wins over what the challenge shows.
    pinned = wallet_for(clock=lambda: before_expiry, challenge_hash_scheme="json-array")
    assert (
        pay_now(pinned, ch)["nonce"] == "0x" + challenge_hash(ch.id, ch.realm, "json-array").hex()
    )


def test_a_challenge_without_pympp_marks_gets_the_drafts_rule(live: Any) -> None:
    assert challenge_binding(challenge()) == "concat"
    # This package's own test server.
    server = PaidServer(
        {"/paid": "0.25 USD"}, currency=TOKEN, recipient=MERCHANT, asset="USD", decimals=6
    )
    _, ours = _challenge_from(live(server) + "/paid")
    assert challenge_binding(ours) == "concat"
    # A string _mppx_scope in the request is not pympp's object; an unrelated opaque says nothing.
    assert challenge_binding(challenge(extra={"_mppx_scope": "GET /paid"})) == "concat"
    marked = challenge(extra={"_mppx_scope": {"route": "/paid"}})
    assert challenge_binding(marked) == "json-array"
    nonce = Challenge.create(
        id="x",
        realm="r",
        method="evm",
        intent="charge",
        request=dict(challenge().request),
        opaque={"_mpp_nonce": "ab" * 32},
    )
    assert challenge_binding(nonce) == "json-array"


def test_authorization_payload_is_bound_to_the_challenge_and_its_expiry() -> None:
    ch = challenge()
    payload = pay_now(wallet_for(), ch)
    assert payload["type"] == "authorization"
    assert payload["from"] == ADDRESS
    assert payload["to"] == MERCHANT
    assert payload["value"] == str(PRICE)
    assert payload["validAfter"] == "0"
    assert payload["validBefore"] == str(int(ch.expires.timestamp()))  # type: ignore[union-attr]
    assert payload["nonce"] == "0x" + challenge_hash(ch.id, ch.realm).hex()
    digest = authorization_digest(
        eip3009_domain_separator(TOKEN_NAME, TOKEN_VERSION, CHAIN, TOKEN),
        sender=ADDRESS,
        to=MERCHANT,
        value=PRICE,
        valid_after=0,
        valid_before=int(payload["validBefore"]),
        nonce=bytes.fromhex(payload["nonce"][2:]),
    )
    assert recover_signer(digest, payload["signature"]) == ADDRESS


def test_permit2_payload_has_the_witness_and_every_split_in_order() -> None:
    ch = challenge(
        amount="1050000",
        details={
            "credentialTypes": ["permit2"],
            "splits": [{"recipient": PLATFORM, "amount": "50000", "memo": "platform fee"}],
        },
        extra={"externalId": "order-7"},
    )
    wallet = wallet_for(split_recipients=[PLATFORM])
    quote = wallet.quote(ch)
    assert quote.amount.units == 1_050_000
    assert quote.details["splits"][0]["recipient"] == PLATFORM
    payload = pay_now(wallet, ch)
    assert payload["type"] == "permit2"
    assert payload["permit"]["permitted"] == [
        {"token": TOKEN, "amount": "1000000"},
        {"token": TOKEN, "amount": "50000"},
    ]
    assert payload["transferDetails"] == [
        {"to": MERCHANT, "requestedAmount": "1000000"},
        {"to": PLATFORM, "requestedAmount": "50000"},
    ]
    chash = challenge_hash(ch.id, ch.realm)
    assert payload["witness"] == {"challengeHash": "0x" + chash.hex(), "externalId": "order-7"}
    # One permit per challenge: the nonce is the challenge hash as a number.
    assert payload["permit"]["nonce"] == str(int.from_bytes(chash, "big"))
    digest = permit2_digest(
        chain_id=CHAIN,
        permit2=PERMIT2_ADDRESS,
        permitted=[(TOKEN, 1_000_000), (TOKEN, 50_000)],
        spender=MERCHANT,  # no methodDetails.spender: the recipient submits
        nonce=int(payload["permit"]["nonce"]),
        deadline=int(payload["permit"]["deadline"]),
        witness=payment_witness_hash(chash, "order-7"),
    )
    assert recover_signer(digest, payload["signature"]) == ADDRESS
    # The draft's witness type string, byte for byte (space after the comma included).
    assert PERMIT2_WITNESS_TYPE_STRING == (
        "PaymentWitness witness)PaymentWitness(bytes32 challengeHash, string externalId)"
        "TokenPermissions(address token,uint256 amount)"
    )


def _eip712_hash(full_message: dict[str, Any]) -> bytes:
    signable = encode_typed_data(full_message=full_message)
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def test_digests_match_a_generic_eip712_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hand-built EIP-712 hashes equal eth-account's, given the same type strings.

    The draft's witness type string has a space a generic encoder cannot write, so
    for this cross-check the module's type strings are swapped for the encoder's.
    """
    domain = eip3009_domain_separator(TOKEN_NAME, TOKEN_VERSION, CHAIN, TOKEN)
    nonce = keccak(b"n")
    ours = authorization_digest(
        domain, sender=ADDRESS, to=MERCHANT, value=5, valid_after=0, valid_before=9, nonce=nonce
    )
    assert ours == _eip712_hash(
        {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "TransferWithAuthorization": [
                    {"name": "from", "type": "address"},
                    {"name": "to", "type": "address"},
                    {"name": "value", "type": "uint256"},
                    {"name": "validAfter", "type": "uint256"},
                    {"name": "validBefore", "type": "uint256"},
                    {"name": "nonce", "type": "bytes32"},
                ],
            },
            "primaryType": "TransferWithAuthorization",
            "domain": {
                "name": TOKEN_NAME,
                "version": TOKEN_VERSION,
                "chainId": CHAIN,
                "verifyingContract": TOKEN,
            },
            "message": {
                "from": ADDRESS,
                "to": MERCHANT,
                "value": 5,
                "validAfter": 0,
                "validBefore": 9,
                "nonce": nonce,
            },
        }
    )
    import mpp_client.methods._chain._eip712 as evm

    monkeypatch.setattr(
        evm,
        "PERMIT2_WITNESS_TYPE_STRING",
        "PaymentWitness witness)PaymentWitness(bytes32 challengeHash,string externalId)"
        "TokenPermissions(address token,uint256 amount)",
    )
    monkeypatch.setattr(
        evm, "PAYMENT_WITNESS_TYPE", "PaymentWitness(bytes32 challengeHash,string externalId)"
    )
    chash = keccak(b"challenge")
    for permitted in ([(TOKEN, 7)], [(TOKEN, 7), (TOKEN, 3)]):
        batch = len(permitted) > 1
        ours = evm.permit2_digest(
            chain_id=CHAIN,
            permit2=PERMIT2_ADDRESS,
            permitted=permitted,
            spender=MERCHANT,
            nonce=42,
            deadline=99,
            witness=evm.payment_witness_hash(chash, "ext"),
        )
        token_permissions = [{"token": token, "amount": amount} for token, amount in permitted]
        primary = "PermitBatchWitnessTransferFrom" if batch else "PermitWitnessTransferFrom"
        assert ours == _eip712_hash(
            {
                "types": {
                    "EIP712Domain": [
                        {"name": "name", "type": "string"},
                        {"name": "chainId", "type": "uint256"},
                        {"name": "verifyingContract", "type": "address"},
                    ],
                    primary: [
                        {
                            "name": "permitted",
                            "type": "TokenPermissions[]" if batch else "TokenPermissions",
                        },
                        {"name": "spender", "type": "address"},
                        {"name": "nonce", "type": "uint256"},
                        {"name": "deadline", "type": "uint256"},
                        {"name": "witness", "type": "PaymentWitness"},
                    ],
                    "TokenPermissions": [
                        {"name": "token", "type": "address"},
                        {"name": "amount", "type": "uint256"},
                    ],
                    "PaymentWitness": [
                        {"name": "challengeHash", "type": "bytes32"},
                        {"name": "externalId", "type": "string"},
                    ],
                },
                "primaryType": primary,
                "domain": {
                    "name": "Permit2",
                    "chainId": CHAIN,
                    "verifyingContract": PERMIT2_ADDRESS,
                },
                "message": {
                    "permitted": token_permissions if batch else token_permissions[0],
                    "spender": MERCHANT,
                    "nonce": 42,
                    "deadline": 99,
                    "witness": {"challengeHash": chash, "externalId": "ext"},
                },
            }
        )


# -- refusals before signing ----------------------------------------------------------

FUTURE = NOW + timedelta(hours=3)
REFUSALS: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("wrong chain", {"details": {"chainId": 1}}, {}, "chain 1, which this wallet does not pay"),
    ("string chain id", {"details": {"chainId": "31337"}}, {}, "integer methodDetails.chainId"),
    ("unknown token", {"currency": "0x" + "ab" * 20}, {}, "not in the wallet's asset registry"),
    ("bad token", {"currency": "usd"}, {}, "currency must be a 0x-prefixed 20-byte address"),
    (
        "recipient not expected",
        {},
        {"payees": [PLATFORM]},
        f"recipient {MERCHANT} is not one of the expected payees",
    ),
    ("zero recipient", {"recipient": "0x" + "00" * 20}, {}, "recipient is the zero address"),
    (
        "recipient checksum",
        {"recipient": DRAFT_CASED_MERCHANT},
        {},
        "fails its EIP-55 checksum",
    ),
    ("malformed recipient", {"recipient": "merchant-1"}, {}, "recipient must be a 0x-prefixed"),
    (
        "splits too large",
        {"details": {"splits": [{"recipient": PLATFORM, "amount": str(PRICE)}]}},
        {"split_recipients": "*"},
        "not less than the amount",
    ),
    (
        "split recipient not expected",
        {"details": {"splits": [{"recipient": PLATFORM, "amount": "1"}]}},
        {},
        "not an expected split recipient",
    ),
    (
        "too many splits",
        {"details": {"splits": [{"recipient": PLATFORM, "amount": "1"}] * 11}},
        {"split_recipients": "*"},
        "11 entries, over 10",
    ),
    (
        "empty splits",
        {"details": {"splits": []}},
        {"split_recipients": "*"},
        "splits must be a non-empty list",
    ),
    (
        "splits without permit2",
        {
            "details": {
                "credentialTypes": ["authorization", "transaction"],
                "splits": [{"recipient": PLATFORM, "amount": "1"}],
            }
        },
        {"split_recipients": "*"},
        "splits can only be paid with permit2",
    ),
    ("expiry beyond the window", {"expires": FUTURE}, {}, "further ahead than the wallet's"),
    ("expired", {"expires": NOW - timedelta(seconds=30)}, {}, "expired at"),
    (
        "unsupported credentialTypes",
        {"details": {"credentialTypes": ["session", "x402"]}},
        {},
        "lists no supported type",
    ),
    (
        "only types the wallet refuses",
        {"details": {"credentialTypes": ["hash"]}},
        {},
        "no usable evm credential type",
    ),
    (
        "no credentialTypes and no RPC",
        {"details": {"credentialTypes": None}},
        {"credential_types": ("authorization", "transaction", "hash")},
        "needs an RPC URL for chain 31337",
    ),
    (
        "unknown Permit2 deployment",
        {"details": {"credentialTypes": ["permit2"], "permit2Address": PLATFORM}},
        {},
        "is not a known deployment",
    ),
    ("decimals mismatch", {"details": {"decimals": 18}}, {}, "has 18 decimals"),
    ("zero amount", {"amount": "0"}, {}, "amount must be positive"),
    ("float amount", {"amount": 0.25}, {}, "string of base-unit digits"),
]


@pytest.mark.parametrize(
    ("terms", "options", "message"),
    [pytest.param(t, o, m, id=name) for name, t, o, m in REFUSALS],
)
def test_unusable_terms_are_refused_before_anything_is_signed(
    terms: dict[str, Any], options: dict[str, Any], message: str
) -> None:
    ch = challenge(**terms)
    account = counting_account()
    wallet = wallet_for(account, clock=lambda: NOW, **options)
    with pytest.raises(ChallengeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        wallet.quote(ch)
    with pytest.raises(ChallengeError):
        pay_now(wallet, ch)
    assert CountingAccount.signatures == 0


def test_expired_challenge_is_a_challenge_expired() -> None:
    wallet = wallet_for(clock=lambda: NOW)
    with pytest.raises(ChallengeExpired):
        wallet.quote(challenge(expires=NOW - timedelta(seconds=1)))


def test_a_challenge_without_expiry_is_signed_for_the_default_window_only() -> None:
    wallet = wallet_for(clock=lambda: NOW, default_validity=timedelta(seconds=90))
    payload = pay_now(wallet, challenge(expires=None))
    assert int(payload["validBefore"]) == int(NOW.timestamp()) + 90


# -- choosing the credential type ----------------------------------------------------------


def test_server_order_wins_unless_the_wallet_prefers_its_own() -> None:
    ch = challenge(details={"credentialTypes": ["permit2", "authorization"]})
    assert pay_now(wallet_for(), ch)["type"] == "permit2"
    assert pay_now(wallet_for(credential_types=("authorization",)), ch)["type"] == "authorization"
    wallet_order = wallet_for(credential_types=("authorization", "permit2"), prefer="wallet")
    assert pay_now(wallet_order, ch)["type"] == "authorization"
    assert wallet_order.quote(ch).details["credentialTypes"] == ("authorization", "permit2")


def test_a_quote_moves_funds_only_when_its_credential_is_a_broadcast_hash() -> None:
    assert EvmWallet.name == "evm"
    assert wallet_for().quote(challenge()).moves_funds is False
    node = {CHAIN: "http://127.0.0.1:9"}  # hash needs a node to broadcast; quoting never calls it
    wallet = wallet_for(credential_types=("hash", "authorization"), prefer="wallet", rpc_urls=node)
    hashed = wallet.quote(challenge(details={"credentialTypes": ["hash", "authorization"]}))
    assert hashed.moves_funds is True
    # A quote never mixes the two sides: a hash quote will not fall back to signing...
    assert hashed.details["credentialTypes"] == ("hash",)
    signing = wallet_for(credential_types=("authorization", "hash"), rpc_urls=node).quote(
        challenge(details={"credentialTypes": ["authorization", "hash"]})
    )
    # ...and a signing quote will not fall back to broadcasting.
    assert signing.moves_funds is False
    assert "hash" not in signing.details["credentialTypes"]


def test_a_refused_authorization_from_a_hash_wallet_is_released() -> None:
    # The wallet may broadcast, but this payment only signed: a refusal spent nothing.
    wallet = wallet_for(credential_types=("authorization", "hash"))
    ch = challenge(details={"credentialTypes": ["authorization"]})
    seen: list[Credential] = []

    def handler(request: httpx.Request) -> httpx.Response:
        header = request.headers.get("authorization")
        if header is None:
            return httpx.Response(402, headers={"www-authenticate": ch.to_header()})
        seen.append(Credential.parse(header))
        problem = {"type": "https://paymentauth.org/problems/verification-failed", "status": 402}
        return httpx.Response(
            402, json=problem, headers={"content-type": "application/problem+json"}
        )

    with (
        Client(
            methods=[wallet],
            policy=unit_policy(),
            ledger="memory:",
            transport=httpx.MockTransport(handler),
        ) as client,
        pytest.raises(PaymentRejected),
    ):
        client.get("https://api.example.test/paid")
    [credential] = seen
    assert credential.payload["type"] == "authorization"
    assert credential.source == f"did:pkh:eip155:{CHAIN}:{ADDRESS}"
    assert client.ledger is not None
    assert [r.status for r in client.ledger.records()] == ["released"]


def unit_policy() -> Policy:
    return rail_policy([asset()])


def test_constructor_refuses_unclear_configuration() -> None:
    with pytest.raises(ValueError, match="name the chains"):
        EvmWallet(KEY)
    with pytest.raises(ValueError, match="credential_types"):
        EvmWallet(KEY, chain_ids=[1], credential_types=("wire",))


# -- keys ----------------------------------------------------------

KEY_HEX = KEY[2:]


def assert_no_key(text: str) -> None:
    assert KEY_HEX not in text.lower()
    assert KEY_HEX.upper() not in text


def test_key_never_in_repr_str_errors_or_pickles() -> None:
    wallet = wallet_for()
    for text in (repr(wallet), str(wallet), repr(wallet.signer)):
        assert_no_key(text)
    assert ADDRESS in repr(wallet)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(wallet)
    for bad in (KEY[:-2] + "zz", KEY + "00", b"\x00" * 31):
        with pytest.raises(ValueError) as caught:
            EvmWallet(bad, chain_ids=[1])
        assert_no_key(str(caught.value))
        assert KEY[:-2][2:] not in str(caught.value)
    # secp256k1 rejects the zero key: the error must not quote it either.
    with pytest.raises(ValueError, match="not a valid secp256k1 private key"):
        EvmWallet("00" * 32, chain_ids=[1])


def test_key_never_in_logs_or_credentials(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wallet = wallet_for()
    ch = challenge()
    payload = pay_now(wallet, ch)
    header = Credential.for_challenge(ch, payload, source=wallet.quote(ch).payer).to_header()
    assert_no_key(header)
    assert_no_key(json.dumps(payload))
    assert "evm: authorization credential" in caplog.text
    assert_no_key(caplog.text)


def test_keystore_round_trip_and_refusals(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    wallet_for().save_keystore(path, "correct horse", iterations=2)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert_no_key(path.read_text())
    loaded = EvmWallet.from_keystore(path, "correct horse", chain_ids=[CHAIN])
    assert loaded.address == ADDRESS
    with pytest.raises(KeystoreError, match="already exists"):
        wallet_for().save_keystore(path, "correct horse", iterations=2)
    with pytest.raises(KeystoreError, match="wrong passphrase") as caught:
        EvmWallet.from_keystore(path, "wrong horse", chain_ids=[CHAIN])
    assert "wrong horse" not in str(caught.value)
    assert_no_key(str(caught.value))
    os.chmod(path, 0o644)
    with pytest.raises(KeystoreError, match="accessible by group or others"):
        EvmWallet.from_keystore(path, "correct horse", chain_ids=[CHAIN])
    (tmp_path / "junk.json").write_text("{}")
    os.chmod(tmp_path / "junk.json", 0o600)
    with pytest.raises(KeystoreError, match="not a Web3 Secret Storage"):
        EvmWallet.from_keystore(tmp_path / "junk.json", "x", chain_ids=[CHAIN])
    with pytest.raises(KeystoreError, match="cannot read"):
        EvmWallet.from_keystore(tmp_path / "missing.json", "x", chain_ids=[CHAIN])
    # A keystore written by eth-account itself (as geth and Foundry write them) loads too.
    (tmp_path / "eth.json").write_text(json.dumps(Account.encrypt(KEY, "pw", iterations=2)))
    os.chmod(tmp_path / "eth.json", 0o600)
    assert EvmWallet.from_keystore(tmp_path / "eth.json", "pw", chain_ids=[1]).address == ADDRESS


# -- the signer seam -------------------------------------------------------------


@pytest.mark.parametrize("answer", ["vrs", "vrs-0/1", "bytes", "object", "high-s", "wrong-parity"])
def test_a_signer_that_is_not_a_local_account_signs_every_credential(answer: Answer) -> None:
    held = HeldKey(bytes.fromhex(KEY[2:]), answer=answer)
    wallet = wallet_for(held, split_recipients=[PLATFORM])
    assert wallet.address == ADDRESS and wallet.signer is held
    assert wallet.signer.hardware and wallet.signer.location == "pkcs11"  # type: ignore[attr-defined]
    ch = challenge()
    assert wallet.quote(ch).payer == f"did:pkh:eip155:{CHAIN}:{ADDRESS}"
    authorization = pay_now(wallet, ch)
    digest = authorization_digest(
        eip3009_domain_separator(TOKEN_NAME, TOKEN_VERSION, CHAIN, TOKEN),
        sender=ADDRESS,
        to=MERCHANT,
        value=PRICE,
        valid_after=0,
        valid_before=int(authorization["validBefore"]),
        nonce=bytes.fromhex(authorization["nonce"][2:]),
    )
    # Whatever shape the signer answered in, the credential carries one canonical
    # signature (v 27/28, low s) that recovers to the signer's address.
    assert recover_signer(digest, authorization["signature"]) == ADDRESS
    assert authorization == pay_now(wallet_for(), ch)  # as a LocalAccount signs it
    split = challenge(
        amount="300000",
        details={
            "credentialTypes": ["permit2"],
            "splits": [{"recipient": PLATFORM, "amount": "50000"}],
        },
    )
    assert pay_now(wallet, split) == pay_now(wallet_for(split_recipients=[PLATFORM]), split)
    assert held.signed == 2


def test_a_signer_that_lies_or_fails_pays_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    other = Account.create().address
    liar = wallet_for(HeldKey(bytes.fromhex(KEY[2:]), claims=other))
    assert liar.quote(challenge()).payer == f"did:pkh:eip155:{CHAIN}:{other}"
    with pytest.raises(PaymentFailed, match="signed with another key than its address"):
        pay_now(liar, challenge())
    broken = wallet_for(HeldKey(fail=True))
    with pytest.raises(PaymentFailed, match=r"signer failed \(RuntimeError\)") as caught:
        pay_now(broken, challenge())
    for text in (str(caught.value), repr(caught.value), caplog.text):
        assert "PIN" not in text and "123456" not in text
    with pytest.raises(ValueError, match="not a 20-byte EIP-55 address"):
        wallet_for(HeldKey(claims="merchant-1"))
    with pytest.raises(TypeError, match="key must be a hex string"):
        wallet_for(object())


def test_an_external_signers_key_cannot_be_exported(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot be exported"):
        wallet_for(HeldKey()).save_keystore(tmp_path / "k.json", "pw", iterations=2)
    assert not (tmp_path / "k.json").exists()


# -- on a real chain ----------------------------------------------------------


@pytest.fixture(scope="session")
def world() -> Iterator[World]:
    binary = anvil_binary()
    contracts = compile_contracts()
    running = start_world(binary, contracts)
    try:
        yield running
    finally:
        running.anvil.stop()


def world_asset(world: World) -> AssetEntry:
    return AssetEntry("evm", world.token, "USD", TOKEN_DECIMALS, world.chain_id, "TUSD")


def policy_for(world: World) -> Policy:
    return rail_policy([world_asset(world)])


def chain_wallet(world: World, account: LocalAccount, **options: Any) -> EvmWallet:
    options.setdefault("credential_types", ("permit2", "authorization", "transaction", "hash"))
    return EvmWallet(
        account,
        rpc_urls={world.chain_id: world.url},
        assets=[world_asset(world)],
        **options,
    )


class Shop:
    """A PaidServer selling /paid for 0.25 TUSD through an EvmVerifier, on a socket."""

    def __init__(self, world: World, types: list[str], **options: Any) -> None:
        self.merchant = Account.create().address
        self.submitter = world.funded_account()
        self.verifier = EvmVerifier(
            world.url,
            token=world.token,
            submitter=self.submitter,
            credential_types=types,
            token_domain=(TOKEN_NAME, TOKEN_VERSION),
            decimals=TOKEN_DECIMALS,
            **options,
        )
        self.server = PaidServer(
            {"/paid": "0.25 USD"},
            verifier=self.verifier,
            currency=world.token,
            recipient=self.merchant,
            asset="USD",
            decimals=TOKEN_DECIMALS,
        )


def pay_once(world: World, shop: Shop, wallet: EvmWallet, live: Any) -> httpx.Response:
    url = live(shop.server)
    with Client(
        methods=[wallet], policy=policy_for(world), ledger="memory:", allow_insecure_localhost=True
    ) as client:
        return client.get(url + "/paid")


def assert_settled(world: World, response: httpx.Response, shop: Shop) -> Receipt:
    """200, a committed record, and a receipt whose reference is the settlement."""
    assert response.status_code == 200, response.text
    record = payment_record(response)
    assert record is not None and record.status == "committed"
    receipt = Receipt.parse(response.headers["payment-receipt"])
    assert receipt.method == "evm"
    assert receipt.data["chainId"] == world.chain_id
    assert receipt.data["challengeId"] == record.challenge_id
    assert shop.verifier.settled == [receipt.reference]
    on_chain = world.receipt(receipt.reference)
    assert on_chain["status"] == "0x1"
    return receipt


@pytest.mark.parametrize("kind", ["authorization", "permit2", "transaction", "hash"])
def test_client_pays_each_credential_type_on_chain(world: World, live: Any, kind: str) -> None:
    payer = world.funded_account(tokens=1_000_000)
    shop = Shop(world, [kind])
    wallet = chain_wallet(world, payer)
    if kind == "permit2":  # the one-time approval, sent by the wallet itself
        approval = wallet.approve_permit2(world.chain_id, world.token)
        assert world.receipt(approval)["status"] == "0x1"
    gas_before = int(world.anvil.rpc.call("eth_getBalance", payer.address, "latest"), 16)
    response = pay_once(world, shop, wallet, live)
    receipt = assert_settled(world, response, shop)
    # Exactly the price moved, from the payer to the merchant, in the referenced transaction.
    assert world.balance(payer.address) == 1_000_000 - PRICE
    assert world.balance(shop.merchant) == PRICE
    on_chain = world.receipt(receipt.reference)
    assert transfers_in(on_chain, world.token) == [(payer.address, shop.merchant, PRICE)]
    gas_after = int(world.anvil.rpc.call("eth_getBalance", payer.address, "latest"), 16)
    # Gas: the server pays for signed authorizations, the payer for its own transfer.
    if kind in ("authorization", "permit2"):
        assert gas_after == gas_before
        assert on_chain["from"].lower() == shop.submitter.address.lower()
    else:
        assert gas_after < gas_before
        assert on_chain["from"].lower() == payer.address.lower()

    # Replaying the very same credential is refused and moves nothing.
    sent = sent_credential(response)
    url = live(shop.server)
    replay = httpx.get(url + "/paid", headers={"Authorization": sent})
    assert replay.status_code == 402
    assert replay.json()["type"].endswith("/invalid-challenge")
    assert "payment-receipt" not in replay.headers
    assert world.balance(shop.merchant) == PRICE
    assert shop.verifier.settled == [receipt.reference]


@pytest.mark.parametrize("kind", ["transaction", "hash", "permit2"])
def test_a_key_held_outside_eth_account_pays_on_chain(world: World, live: Any, kind: str) -> None:
    # EIP-1559 transactions (the transfer, and the Permit2 approval) and the
    # Permit2 typed data, all signed through the seam by a key that is no LocalAccount.
    payer = world.funded_account(tokens=1_000_000)
    held = HeldKey(bytes(payer.key), answer="high-s")
    shop = Shop(world, [kind])
    wallet = chain_wallet(world, held)  # type: ignore[arg-type]
    if kind == "permit2":
        assert world.receipt(wallet.approve_permit2(world.chain_id, world.token))["status"] == "0x1"
    response = pay_once(world, shop, wallet, live)
    receipt = assert_settled(world, response, shop)
    assert transfers_in(world.receipt(receipt.reference), world.token) == [
        (payer.address, shop.merchant, PRICE)
    ]
    assert world.balance(payer.address) == 1_000_000 - PRICE
    assert held.signed >= 1


def web3_wallet(world: World, account: Any, web3: Any, **options: Any) -> EvmWallet:
    """A wallet whose only way to the chain is the ``web3`` handed in (no RPC URL)."""
    options.setdefault("credential_types", ("hash",))
    return EvmWallet(
        account,
        chain_ids=[world.chain_id],
        web3=web3,
        assets=[world_asset(world)],
        **options,
    )


@pytest.mark.parametrize("form", ["Web3", "provider"])
def test_a_users_web3_carries_every_request_and_the_broadcast_once(
    world: World, live: Any, form: str
) -> None:
    payer = world.funded_account(tokens=1_000_000)
    provider = Faulty(world.url)
    given = Web3(provider) if form == "Web3" else provider
    shop = Shop(world, ["hash"])
    response = pay_once(world, shop, web3_wallet(world, payer, given), live)
    assert_settled(world, response, shop)
    assert world.balance(shop.merchant) == PRICE
    # Every chain request of the payment went through the user's provider: the
    # node's chain checked before signing; the broadcast sent once.
    if form == "provider":  # wrapped without middleware: exactly the wallet's requests
        assert provider.count("eth_chainId") == 1
    else:  # the user's Web3 keeps its middleware, whose validation asks for the chain id too
        assert provider.count("eth_chainId") > 1
    assert provider.count("eth_sendRawTransaction") == 1
    assert provider.count("eth_getTransactionReceipt") >= 1


async def test_the_async_flow_uses_the_users_async_web3(world: World, live: Any) -> None:
    payer = world.funded_account(tokens=1_000_000)
    sync, async_ = Faulty(world.url), CountingAsync(world.url)
    wallet = web3_wallet(world, payer, (Web3(sync), AsyncWeb3(async_)))
    shop = Shop(world, ["hash"])
    async with AsyncClient(
        methods=[wallet], policy=policy_for(world), ledger="memory:", allow_insecure_localhost=True
    ) as client:
        response = await client.get(live(shop.server) + "/paid")
    assert_settled(world, response, shop)
    assert "eth_sendRawTransaction" in async_.calls
    assert sync.calls == []  # the sync Web3 was not used by the async flow


def test_an_async_web3_alone_cannot_serve_a_sync_payment(world: World, live: Any) -> None:
    payer = world.funded_account(tokens=1_000_000)
    wallet = web3_wallet(world, payer, AsyncWeb3(CountingAsync(world.url)))
    with pytest.raises(PaymentFailed, match="only an AsyncWeb3: pay with AsyncClient"):
        pay_once(world, Shop(world, ["hash"]), wallet, live)
    assert world.balance(payer.address) == 1_000_000


def test_reads_and_receipts_are_retried_and_the_broadcast_is_not(world: World, live: Any) -> None:
    payer = world.funded_account(tokens=1_000_000)
    provider = Faulty(
        world.url,
        {
            "eth_getTransactionCount": ["refused", "refused"],  # a flaky network: retried
            "eth_getTransactionReceipt": ["pending", "pending"],  # not yet mined: polled
        },
    )
    shop = Shop(world, ["hash"])
    response = pay_once(world, shop, web3_wallet(world, payer, provider), live)
    assert_settled(world, response, shop)
    assert provider.count("eth_getTransactionCount") == 3
    assert provider.count("eth_getTransactionReceipt") >= 3
    assert provider.count("eth_sendRawTransaction") == 1
    assert world.balance(shop.merchant) == PRICE


def test_a_lost_broadcast_answer_is_an_unknown_outcome_never_a_resend(world: World) -> None:
    payer = world.funded_account(tokens=1_000_000)
    provider = Faulty(world.url, {"eth_sendRawTransaction": ["lost"]})
    wallet = web3_wallet(world, payer, provider)
    ch = challenge(
        recipient=MERCHANT,
        currency=world.token,
        details={"chainId": world.chain_id, "credentialTypes": ["hash"]},
    )
    with pytest.raises(PaymentOutcomeUnknown, match="may still be mined"):
        pay_now(wallet, ch)
    assert provider.count("eth_sendRawTransaction") == 1
    assert world.balance(MERCHANT) >= PRICE  # it was mined: the money did move


def test_a_broadcast_the_provider_resent_is_not_taken_for_a_refusal(
    world: World, live: Any
) -> None:
    # web3's default HTTPProvider re-sends eth_sendRawTransaction after a timeout; the
    # node then answers "nonce too low" for a transaction it has already mined.
    payer = world.funded_account(tokens=1_000_000)
    provider = Faulty(world.url, {"eth_sendRawTransaction": ["resend"]})
    shop = Shop(world, ["hash"])
    response = pay_once(world, shop, web3_wallet(world, payer, provider), live)
    assert_settled(world, response, shop)
    assert provider.count("eth_getTransactionByHash") == 1  # the refusal was checked
    assert world.balance(shop.merchant) == PRICE
    assert world.balance(payer.address) == 1_000_000 - PRICE


def test_a_refused_connection_at_the_broadcast_sends_nothing(world: World) -> None:
    payer = world.funded_account(tokens=1_000_000)
    provider = Faulty(world.url, {"eth_sendRawTransaction": ["refused"]})
    ch = challenge(
        recipient=MERCHANT,
        currency=world.token,
        details={"chainId": world.chain_id, "credentialTypes": ["hash"]},
    )
    before = world.balance(MERCHANT)
    with pytest.raises(PaymentFailed, match="nothing was sent"):
        pay_now(web3_wallet(world, payer, provider), ch)
    assert world.balance(payer.address) == 1_000_000
    assert world.balance(MERCHANT) == before


def test_json_rpc_is_the_chain_client_under_its_old_name() -> None:
    import mpp_client.methods.evm as evm

    with pytest.warns(DeprecationWarning, match="JsonRpc is deprecated: it is ChainRpc"):
        old = evm.JsonRpc
    assert old is evm.ChainRpc


async def test_async_client_on_a_multi_chain_wallet_names_the_paying_chain(
    world: World, live: Any
) -> None:
    # permit2's owner is the credential's source: it must name the challenge's chain.
    payer = world.funded_account(tokens=1_000_000)
    world.approve_permit2(payer)
    shop = Shop(world, ["permit2"])
    wallet = EvmWallet(
        payer,
        chain_ids=[8453, world.chain_id],
        rpc_urls={world.chain_id: world.url},
        assets=[
            AssetEntry("evm", world.token, "USD", TOKEN_DECIMALS, world.chain_id, "TUSD"),
            *BUILTIN_ASSETS,
        ],
    )
    url = live(shop.server)
    async with AsyncClient(
        methods=[wallet], policy=policy_for(world), ledger="memory:", allow_insecure_localhost=True
    ) as client:
        response = await client.get(url + "/paid")
    assert response.status_code == 200, response.text
    sent = Credential.parse(sent_credential(response))
    assert sent.source == did_pkh(world.chain_id, payer.address)
    assert world.balance(shop.merchant) == PRICE
    assert world.balance(payer.address) == 1_000_000 - PRICE


def test_permit2_with_splits_settles_atomically_in_one_batch(world: World, live: Any) -> None:
    payer = world.funded_account(tokens=1_000_000)
    world.approve_permit2(payer)
    platform = Account.create().address
    shop = Shop(world, ["permit2"], splits=[(platform, 50_000)])
    wallet = chain_wallet(world, payer, split_recipients=[platform])
    response = pay_once(world, shop, wallet, live)
    receipt = assert_settled(world, response, shop)
    assert world.balance(payer.address) == 1_000_000 - PRICE
    assert world.balance(shop.merchant) == PRICE - 50_000
    assert world.balance(platform) == 50_000
    assert sorted(transfers_in(world.receipt(receipt.reference), world.token)) == sorted(
        [(payer.address, shop.merchant, PRICE - 50_000), (payer.address, platform, 50_000)]
    )


def test_permit2_without_allowance_falls_back_to_the_next_type(world: World, live: Any) -> None:
    payer = world.funded_account(tokens=1_000_000)  # no Permit2 approval
    shop = Shop(world, ["permit2", "authorization"])
    response = pay_once(world, shop, chain_wallet(world, payer), live)
    assert_settled(world, response, shop)
    assert Credential.parse(sent_credential(response)).payload["type"] == "authorization"
    assert world.balance(shop.merchant) == PRICE


def test_hash_replayed_under_a_fresh_challenge_is_refused(world: World, live: Any) -> None:
    payer = world.funded_account(tokens=1_000_000)
    shop = Shop(world, ["hash"])
    wallet = chain_wallet(world, payer)
    response = pay_once(world, shop, wallet, live)
    receipt = assert_settled(world, response, shop)
    # A fresh challenge, answered with the hash already redeemed: refused (draft replay token).
    url = live(shop.server)
    fresh = challenge_at(url + "/paid")
    stolen = {"type": "hash", "hash": receipt.reference}
    refused = present(url + "/paid", fresh, stolen, wallet.source_for(world.chain_id))
    assert refused.status_code == 402
    assert "already used" in refused.json()["detail"]
    assert shop.verifier.settled == [receipt.reference]


def test_tampered_authorization_is_refused_and_nothing_moves(world: World, live: Any) -> None:
    payer = world.funded_account(tokens=1_000_000)
    shop = Shop(world, ["authorization"])
    url = live(shop.server)
    ch = challenge_at(url + "/paid")
    wallet = chain_wallet(world, payer)
    payload = dict(pay_now(wallet, ch))
    cases = {
        "to": ({**payload, "to": payer.address}, "not the challenge recipient"),
        "signature": (
            {**payload, "validBefore": str(int(payload["validBefore"]) - 1)},
            "signature is not the payer's",
        ),
        "source": (payload, "source is not the payer"),
    }
    for name, (tampered, reason) in cases.items():
        fresh = challenge_at(url + "/paid")
        if name == "source":  # a valid payload, claimed by someone else
            body = dict(pay_now(wallet, fresh))
            source = did_pkh(world.chain_id, Account.create().address)
        else:  # re-bound to the fresh challenge, so only the tampered field is wrong
            body = {**tampered, "nonce": "0x" + challenge_hash(fresh.id, fresh.realm).hex()}
            source = wallet.source_for(world.chain_id)
        answer = present(url + "/paid", fresh, body, source)
        assert answer.status_code == 402, name
        assert reason in answer.json()["detail"], (name, answer.json())
    assert world.balance(payer.address) == 1_000_000
    assert shop.verifier.settled == []


def test_the_verifier_does_not_share_a_wallet_digest_bug(
    world: World, live: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wallet signs a digest with validAfter and validBefore swapped; the verifier
    # recomputes the EIP-712 digest with a generic encoder, so it refuses, and nothing moves.
    import mpp_client.methods.evm as evm

    honest = evm.authorization_digest

    def swapped(domain: bytes, **fields: Any) -> bytes:
        fields["valid_after"], fields["valid_before"] = (
            fields["valid_before"],
            fields["valid_after"],
        )
        return honest(domain, **fields)

    monkeypatch.setattr(evm, "authorization_digest", swapped)
    payer = world.funded_account(tokens=1_000_000)
    shop = Shop(world, ["authorization"])
    with pytest.raises(PaymentRejected) as caught:
        pay_once(world, shop, chain_wallet(world, payer), live)
    assert caught.value.problem is not None
    assert "signature is not the payer's" in str(caught.value.problem.detail)
    assert world.balance(payer.address) == 1_000_000
    assert shop.verifier.settled == []


def test_transfer_that_would_revert_is_not_paid(world: World, live: Any) -> None:
    payer = world.funded_account(tokens=PRICE - 1)  # one base unit short
    shop = Shop(world, ["transaction"])
    with pytest.raises(PaymentFailed, match="cannot be prepared") as caught:
        pay_once(world, shop, chain_wallet(world, payer), live)
    assert "nothing was sent" in str(caught.value)
    assert world.balance(payer.address) == PRICE - 1
    assert shop.verifier.settled == []


# -- the reference SDK's own server ----------------------------------------------------------


def pympp_app(world: World, merchant: str, settled: list[str]) -> Starlette:
    from mpp import MemoryStore
    from mpp.methods.evm import server as evm_server
    from mpp.server import Mpp, pay

    submitter = ChainClient(world.anvil.rpc, world.funded_account())

    def settle(authorization: Any) -> str:
        receipt = submitter.submit_authorization(world.token, authorization.payload)
        assert receipt["status"] == "0x1"
        settled.append(str(receipt["transactionHash"]))
        return str(receipt["transactionHash"])

    method = evm_server.charge(
        currency=world.token,
        recipient=merchant,
        chain_id=world.chain_id,
        decimals=TOKEN_DECIMALS,
        authorization={"name": TOKEN_NAME, "version": TOKEN_VERSION},
        settle=settle,
        store=MemoryStore(),
    )
    server = Mpp(
        methods=method, realm="pympp-evm.test", secret_key="pympp-evm-secret-0123456789abcdef0"
    )

    @pay(server.evm.charge(amount="0.25"))  # type: ignore[misc]
    async def paid(request: Request, credential: Any, receipt: Any) -> JSONResponse:
        return JSONResponse({"ok": True, "payer": receipt.payer})

    return Starlette(routes=[Route("/paid", paid)])


def test_client_pays_pympp_evm_server_on_the_same_chain(world: World) -> None:
    payer = world.funded_account(tokens=1_000_000)
    merchant = Account.create().address
    settled: list[str] = []
    app = pympp_app(world, merchant, settled)
    # No scheme named: the wallet reads pympp's marks and signs pympp's JSON-array hash.
    wallet = chain_wallet(world, payer)
    with (
        LocalServer(app) as server,
        Client(
            methods=[wallet],
            policy=policy_for(world),
            ledger="memory:",
            allow_insecure_localhost=True,
        ) as client,
    ):
        response = client.get(server.url + "/paid")
        # Replaying the credential to pympp is refused; nothing moves.
        replay = httpx.get(
            server.url + "/paid", headers={"Authorization": sent_credential(response)}
        )
    assert response.status_code == 200, response.text
    assert response.json()["payer"] == payer.address
    sent = Credential.parse(sent_credential(response))
    echo = sent.echo
    assert (
        sent.payload["nonce"]
        == "0x" + challenge_hash(echo["id"], echo["realm"], "json-array").hex()
    )
    receipt = Receipt.parse(response.headers["payment-receipt"])
    assert settled == [receipt.reference]
    assert world.balance(payer.address) == 1_000_000 - PRICE
    assert world.balance(merchant) == PRICE
    assert transfers_in(world.receipt(receipt.reference), world.token) == [
        (payer.address, merchant, PRICE)
    ]
    assert replay.status_code in (402, 403)
    assert "payment-receipt" not in replay.headers
    assert world.balance(merchant) == PRICE


def test_the_concat_rule_is_refused_by_pympp(world: World) -> None:
    payer = world.funded_account(tokens=1_000_000)
    merchant = Account.create().address
    settled: list[str] = []
    # The draft's rule pinned; no "hash" type, so a refusal means nothing was spent.
    wallet = chain_wallet(
        world, payer, credential_types=("authorization",), challenge_hash_scheme="concat"
    )
    with (
        LocalServer(pympp_app(world, merchant, settled)) as server,
        Client(
            methods=[wallet],
            policy=policy_for(world),
            ledger="memory:",
            allow_insecure_localhost=True,
        ) as client,
        pytest.raises(PaymentRejected, match="challenge hash mismatch"),
    ):
        client.get(server.url + "/paid")
    assert settled == []
    assert world.balance(payer.address) == 1_000_000


def _answer(url: str, ch: Challenge, wallet: EvmWallet) -> httpx.Response:
    quote = wallet.quote(ch)
    return present(url + "/paid", ch, wallet.pay(ch, quote), quote.payer)


@pytest.mark.parametrize("kind", ["authorization", "permit2"])
def test_verifier_accepts_either_rule_and_settles_a_challenge_once(
    world: World, live: Any, kind: str
) -> None:
    payer = world.funded_account(tokens=1_000_000)
    if kind == "permit2":
        world.approve_permit2(payer)
    shop = Shop(world, [kind])
    assert shop.verifier.challenge_hash_scheme == "either"
    url = live(shop.server)
    concat = chain_wallet(world, payer, challenge_hash_scheme="concat")
    json_array = chain_wallet(world, payer, challenge_hash_scheme="json-array")
    for wallet in (concat, json_array):
        assert _answer(url, challenge_at(url + "/paid"), wallet).status_code == 200
    assert world.balance(shop.merchant) == 2 * PRICE
    assert len(shop.verifier.settled) == 2
    # One challenge, answered under each rule: two different nonces, one settlement.
    ch = challenge_at(url + "/paid")
    first = _answer(url, ch, concat)
    assert first.status_code == 200, first.text
    second = _answer(url, ch, json_array)
    assert second.status_code == 402
    assert second.json()["detail"] == "challenge already used"
    assert "payment-receipt" not in second.headers
    assert world.balance(shop.merchant) == 3 * PRICE
    assert world.balance(payer.address) == 1_000_000 - 3 * PRICE
    assert len(shop.verifier.settled) == 3


@pytest.mark.parametrize(
    ("accepts", "refused"), [("concat", "json-array"), ("json-array", "concat")]
)
def test_a_verifier_pinned_to_one_rule_refuses_the_other(
    world: World, live: Any, accepts: str, refused: str
) -> None:
    payer = world.funded_account(tokens=1_000_000)
    shop = Shop(world, ["authorization"], challenge_hash_scheme=accepts)
    url = live(shop.server)
    wrong = chain_wallet(world, payer, challenge_hash_scheme=refused)
    answer = _answer(url, challenge_at(url + "/paid"), wrong)
    assert answer.status_code == 402
    assert answer.json()["detail"] == f"authorization nonce is not the challenge hash ({accepts})"
    assert world.balance(payer.address) == 1_000_000
    right = chain_wallet(world, payer, challenge_hash_scheme=accepts)
    assert _answer(url, challenge_at(url + "/paid"), right).status_code == 200
    assert world.balance(shop.merchant) == PRICE


def test_verifier_old_scheme_names_warn(world: World) -> None:
    with pytest.warns(DeprecationWarning, match="'mppx' is deprecated: it is the 'json-array'"):
        assert (
            Shop(
                world, ["authorization"], challenge_hash_scheme="mppx"
            ).verifier.challenge_hash_scheme
            == "json-array"
        )
    with pytest.warns(DeprecationWarning, match="'draft' is deprecated: it is the 'concat'"):
        assert (
            Shop(
                world, ["authorization"], challenge_hash_scheme="draft"
            ).verifier.challenge_hash_scheme
            == "concat"
        )
    with pytest.raises(ValueError, match="unknown challenge hash scheme 'auto'"):
        Shop(world, ["authorization"], challenge_hash_scheme="auto")


def test_unknown_outcome_is_not_paid_twice(world: World, live: Any) -> None:
    # A hash wallet broadcasts in pay(): a server that then refuses leaves the outcome unknown.
    payer = world.funded_account(tokens=1_000_000)
    shop = Shop(world, ["hash"])
    # The server advertises "hash" but then refuses every hash credential.
    shop.verifier.credential_types = ("authorization",)
    shop.verifier.request_fields = lambda: {  # type: ignore[method-assign]
        "methodDetails": {"chainId": world.chain_id, "credentialTypes": ["hash"]}
    }
    with pytest.raises(PaymentOutcomeUnknown) as caught:
        pay_once(world, shop, chain_wallet(world, payer), live)
    assert world.balance(shop.merchant) == PRICE  # the broadcast transfer did happen
    assert caught.value.record is not None and caught.value.record.status == "unknown"


class _UnsureVerifier:
    """A verifier whose settlement outcome is unknown (the node timed out mid-send)."""

    method = "evm"
    blocking = False

    def request_fields(self) -> dict[str, Any]:
        return {"methodDetails": {"chainId": CHAIN, "credentialTypes": ["authorization"]}}

    def redeem(self, echo: Any, request: Any, credential: Any, claim: Any) -> Any:
        assert claim()
        raise VerificationFailed("verification-failed", "settlement outcome unknown", status=500)


def test_a_settlement_of_unknown_outcome_is_a_500_and_stays_counted(live: Any) -> None:
    server = PaidServer(
        {"/paid": "0.25 USD"},
        verifier=_UnsureVerifier(),
        currency=TOKEN,
        recipient=MERCHANT,
        asset="USD",
        decimals=TOKEN_DECIMALS,
    )
    url = live(server)
    with (
        Client(
            methods=[wallet_for()],
            policy=unit_policy(),
            ledger="memory:",
            allow_insecure_localhost=True,
        ) as client,
        pytest.raises(PaymentOutcomeUnknown) as caught,
    ):
        client.get(url + "/paid")
    response = caught.value.response
    assert response is not None and response.status_code == 500
    assert "www-authenticate" not in response.headers  # no fresh challenge to pay again
    assert "payment-receipt" not in response.headers
    assert server.payments == []
