"""x402 without a chain: the wire format, the wallet's checks, and the flow against real servers.

The protocol tests read x402's headers and bodies as the official ``x402``
package writes them (its own encoder is used where one exists). The wallet
tests check every term before anything is signed, with a signer that counts
its signatures. The flow tests run both drivers against
:class:`~mpp_client.testing.x402.X402Server` (verifying signatures, not
settling: the chain tests in ``test_x402_interop.py`` settle on anvil) and
against hostile servers written here, each a real loopback server.
"""

from __future__ import annotations

import base64
import json
import logging
import pickle
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mpp_client import (
    ChallengeError,
    ChallengeExpired,
    Client,
    DevWallet,
    InsecureTransport,
    NoAcceptableChallenge,
    PaymentOutcomeUnknown,
    PaymentRejected,
    PolicyDenied,
    ProtocolError,
    SimplePolicy,
    payment_record,
)
from mpp_client.methods import EvmWallet, X402Wallet
from mpp_client.money import AssetEntry
from mpp_client.protocol import (
    X402_PAYMENT_REQUIRED,
    X402_PAYMENT_SIGNATURE,
    X402_V1_PAYMENT,
    parse_x402_body,
    parse_x402_required,
    parse_x402_settlement,
    resource_matches,
    x402_challenges,
    x402_payment_header,
)
from mpp_client.testing import PaidServer
from mpp_client.testing.x402 import X402Server

from .drivers import Driver
from .rails import MERCHANT, HeldKey

CHAIN = 84532  # Base Sepolia: the built-in registry knows its USDC, the wallet its domain
USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
DOMAIN = {"name": "USDC", "version": "2"}
POLICY = SimplePolicy(max_per_call="1.00 USD", budget="5.00 USD")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def requirement(**changes: Any) -> dict[str, Any]:
    """An ``accepts`` entry as the x402 package's server writes one (v2); a None drops a field."""
    entry: dict[str, Any] = {
        "scheme": "exact",
        "network": f"eip155:{CHAIN}",
        "amount": "250000",
        "asset": USDC,
        "payTo": MERCHANT,
        "maxTimeoutSeconds": 60,
        "extra": dict(DOMAIN),
    }
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def b64(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def required_header(url: str, *entries: Mapping[str, Any], **top: Any) -> str:
    document = {
        "x402Version": 2,
        "error": "PAYMENT-SIGNATURE header is required",
        "resource": {"url": url, "description": "", "mimeType": ""},
        "accepts": list(entries) or [requirement()],
        **top,
    }
    return b64(document)


def offers(url: str = "https://api.example.com/paid", *entries: Mapping[str, Any]) -> list[Any]:
    challenges, broken = x402_challenges(
        parse_x402_required(required_header(url, *entries)), url=url, id_prefix="t", now=NOW
    )
    assert broken == []
    return challenges


def wallet(key: Any = None, **options: Any) -> X402Wallet:
    evm = EvmWallet(key or HeldKey(), chain_ids=[CHAIN])
    return X402Wallet(evm, clock=lambda: NOW, **options)


# -- the wire format ------------------------------------------------------------------


def test_the_package_header_reads_as_one_offer_per_entry() -> None:
    from x402.http.utils import encode_payment_required_header
    from x402.schemas import PaymentRequired, PaymentRequirements, ResourceInfo

    url = "https://api.example.com/weather?city=paris"
    entries = [
        PaymentRequirements.model_validate(requirement()),
        PaymentRequirements.model_validate(requirement(network="eip155:8453", amount="1")),
    ]
    value = encode_payment_required_header(
        PaymentRequired(resource=ResourceInfo(url=url), accepts=entries, error="pay me")
    )
    required = parse_x402_required(value)
    assert required.version == 2 and required.error == "pay me"
    first, second = x402_challenges(required, url=url, id_prefix="x402-abc", now=NOW)[0]
    assert (first.method, first.intent, first.realm) == ("x402", "charge", "api.example.com")
    assert (first.id, second.id) == ("x402-abc.0", "x402-abc.1")
    assert first.request["amount"] == "250000"
    assert first.request["currency"] == USDC
    assert first.request["recipient"] == MERCHANT
    assert first.request["methodDetails"]["chainId"] == CHAIN
    assert second.request["methodDetails"]["chainId"] == 8453
    assert first.expires == NOW + timedelta(seconds=60)
    assert first.credential_header == X402_PAYMENT_SIGNATURE
    assert first.x402 is not None and first.x402.raw == entries[0].model_dump(by_alias=True)


def test_a_version_1_body_reads_with_its_per_entry_resource() -> None:
    url = "https://api.example.com/paid"
    body = json.dumps(
        {
            "x402Version": 1,
            "error": "X-PAYMENT header is required",
            "accepts": [
                {
                    "scheme": "exact",
                    "network": "base-sepolia",
                    "maxAmountRequired": "10000",
                    "resource": url,
                    "description": "a paid thing",
                    "mimeType": "application/json",
                    "payTo": MERCHANT,
                    "maxTimeoutSeconds": 300,
                    "asset": USDC,
                    "extra": json.dumps(DOMAIN),  # some servers send it as JSON text
                }
            ],
        }
    ).encode()
    required = parse_x402_body(body)
    assert required is not None and required.version == 1
    (challenge,), broken = x402_challenges(required, url=url, id_prefix="p", now=NOW)
    assert broken == []
    assert challenge.x402 is not None and challenge.x402.chain_id == CHAIN
    assert challenge.x402.extra == DOMAIN
    assert challenge.request["amount"] == "10000"
    assert challenge.credential_header == X402_V1_PAYMENT
    assert challenge.description == "a paid thing"


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b'{"type": "https://paymentauth.org/problems/payment-required"}', b"[1]"],
)
def test_a_body_that_is_not_x402_is_none(body: bytes) -> None:
    assert parse_x402_body(body) is None


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("%%%", "base64"),
        (base64.b64encode(b"\xff\xfe").decode(), "UTF-8"),
        (b64([1, 2]), "x402Version 2"),
        (b64({"x402Version": 1, "accepts": [requirement()]}), "x402Version 2"),
        (b64({"x402Version": 2, "accepts": []}), "accepts"),
        (b64({"x402Version": 2, "accepts": [requirement()] * 33}), "33 offers"),
        (b64({"x402Version": 2, "accepts": [requirement()], "resource": "x"}), "resource"),
        ("A" * (64 * 1024 + 4), "limit"),
        (b64({"x402Version": 2, "accepts": [requirement()], "a": 1, "a ": 2}).replace("=", ""), ""),
    ],
)
def test_a_malformed_payment_required_header_is_a_challenge_error(value: str, words: str) -> None:
    if not words:  # unpadded base64 is accepted
        assert parse_x402_required(value).accepts
        return
    with pytest.raises(ChallengeError, match=words):
        parse_x402_required(value)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"amount": 250000}, "base-unit digits"),
        ({"amount": "2.5"}, "base-unit digits"),
        ({"amount": "-1"}, "base-unit digits"),
        ({"amount": "0250"}, "base-unit digits"),
        ({"network": "eip155 8453"}, "network"),
        ({"scheme": "Exact!"}, "scheme"),
        ({"payTo": None}, "payTo"),
        ({"maxTimeoutSeconds": -1}, "maxTimeoutSeconds"),
        ({"maxTimeoutSeconds": 1.5}, "maxTimeoutSeconds"),
        ({"maxTimeoutSeconds": True}, "maxTimeoutSeconds"),
        ({"extra": [1]}, "extra"),
    ],
)
def test_a_malformed_entry_is_broken_and_the_others_still_offered(
    change: dict[str, Any], words: str
) -> None:
    value = required_header("https://a.test/p", requirement(**change), requirement())
    required = parse_x402_required(value)
    assert len(required.accepts) == 1
    (error,) = required.broken
    assert words in error.message


def test_server_text_in_errors_is_escaped_and_truncated() -> None:
    hostile = "eip155:1\n2026-12-01 CRITICAL forged \x1b[31m" + "x" * 500
    required = parse_x402_required(
        required_header("https://a.test/p", requirement(network=hostile))
    )
    (error,) = required.broken
    assert "\n" not in error.message and "\x1b" not in error.message
    assert len(error.message) < 200


@pytest.mark.parametrize(
    ("resource", "requested", "same"),
    [
        ("https://api.test/paid", "https://api.test/paid", True),
        ("https://API.test:443/paid", "https://api.test/paid", True),
        ("/paid", "https://api.test/paid?x=1", True),
        ("https://api.test/paid?x=1", "https://api.test/paid?x=1", True),
        ("https://api.test/paid#frag", "https://api.test/paid", True),
        ("https://api.test/paid%20x", "https://api.test/paid x", True),
        ("https://api.test/other", "https://api.test/paid", False),
        ("https://evil.test/paid", "https://api.test/paid", False),
        ("http://api.test/paid", "https://api.test/paid", False),
        ("https://api.test:8443/paid", "https://api.test/paid", False),
        ("https://api.test/paid?x=2", "https://api.test/paid?x=1", False),
        ("https://api.test:bad/paid", "https://api.test/paid", False),
    ],
)
def test_resource_matching(resource: str, requested: str, same: bool) -> None:
    assert resource_matches(resource, requested) is same


def test_an_entry_for_another_resource_is_refused_without_showing_its_query() -> None:
    url = "https://api.test/paid?token=s3cret"
    required = parse_x402_required(required_header("https://other.test/x?key=hidden"))
    challenges, (error,) = x402_challenges(required, url=url, id_prefix="p", now=NOW)
    assert challenges == []
    assert "another resource" in error.message
    assert "hidden" not in error.message and "s3cret" not in error.message


def test_the_payment_header_echoes_the_entry_and_resource_as_received() -> None:
    from x402.http.utils import decode_payment_signature_header

    odd = requirement(extra={"name": "USDC", "version": "2", "vendor": {"k": [1, 2]}})
    (challenge,) = offers("https://api.test/paid", odd)
    assert challenge.x402 is not None
    value = x402_payment_header(challenge.x402, {"signature": "0x01", "authorization": {}})
    document = json.loads(base64.b64decode(value))
    assert document["accepted"] == odd
    assert document["resource"] == {
        "url": "https://api.test/paid",
        "description": "",
        "mimeType": "",
    }
    assert "extensions" not in document
    decoded = decode_payment_signature_header(value)  # the package reads it back
    assert decoded.accepted.amount == "250000"


def test_settlement_headers() -> None:
    from x402.http.utils import encode_payment_response_header
    from x402.schemas import SettleResponse

    value = encode_payment_response_header(
        SettleResponse(success=True, transaction="0xabc", network=f"eip155:{CHAIN}", payer="0x1")
    )
    settlement = parse_x402_settlement(value)
    receipt = settlement.receipt()
    assert receipt is not None and (receipt.method, receipt.reference) == ("x402", "0xabc")
    failed = parse_x402_settlement(b64({"success": False, "errorReason": "x", "transaction": ""}))
    assert failed.receipt() is None and failed.error_reason == "x"
    for bad in ("!!", b64({"transaction": "0x1"}), b64([True])):
        with pytest.raises(ProtocolError):
            parse_x402_settlement(bad)


# -- the wallet -----------------------------------------------------------------------


def recovered(payload: Mapping[str, Any], name: str = "USDC", version: str = "2") -> str:
    auth = payload["authorization"]
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "TransferWithAuthorization": [
                {"name": k, "type": t}
                for k, t in [
                    ("from", "address"),
                    ("to", "address"),
                    ("value", "uint256"),
                    ("validAfter", "uint256"),
                    ("validBefore", "uint256"),
                    ("nonce", "bytes32"),
                ]
            ],
        },
        "primaryType": "TransferWithAuthorization",
        "domain": {"name": name, "version": version, "chainId": CHAIN, "verifyingContract": USDC},
        "message": {
            **{k: auth[k] for k in ("from", "to")},
            **{k: int(auth[k]) for k in ("value", "validAfter", "validBefore")},
            "nonce": bytes.fromhex(auth["nonce"][2:]),
        },
    }
    return str(
        Account.recover_message(
            encode_typed_data(full_message=typed), signature=payload["signature"]
        )
    )


def test_the_wallet_signs_an_eip3009_authorization_for_exactly_the_terms() -> None:
    key = HeldKey()
    pay = wallet(key)
    (challenge,) = offers()
    quote = pay.quote(challenge)
    assert quote.method == "x402" and quote.moves_funds is False
    assert str(quote.amount) == "0.250000 USD" and quote.chain_id == CHAIN
    assert quote.payee == MERCHANT and quote.payer == f"did:pkh:eip155:{CHAIN}:{key.address}"
    first, second = pay.pay(challenge, quote), pay.pay(challenge, quote)
    auth = first["authorization"]
    assert auth["from"] == key.address and auth["to"] == MERCHANT and auth["value"] == "250000"
    now = int(NOW.timestamp())
    assert int(auth["validBefore"]) == now + 60  # the server's maxTimeoutSeconds, never beyond
    assert now - 60 <= int(auth["validAfter"]) <= now
    assert recovered(first) == key.address
    assert first["authorization"]["nonce"] != second["authorization"]["nonce"]  # random, 32 bytes
    assert len(bytes.fromhex(auth["nonce"][2:])) == 32


def test_the_wallet_window_is_bounded_by_its_own_max_validity() -> None:
    pay = wallet(max_validity=timedelta(seconds=30))
    (challenge,) = offers("https://api.example.com/paid", requirement(maxTimeoutSeconds=3600))
    payload = pay.pay(challenge, pay.quote(challenge))
    assert int(payload["authorization"]["validBefore"]) == int(NOW.timestamp()) + 30


def test_a_window_that_closed_since_the_quote_is_not_signed() -> None:
    key = HeldKey()
    clock = [NOW]
    pay = X402Wallet(EvmWallet(key, chain_ids=[CHAIN]), clock=lambda: clock[0])
    (challenge,) = offers()
    quote = pay.quote(challenge)
    clock[0] = NOW + timedelta(seconds=55)
    with pytest.raises(ChallengeExpired, match="too soon"):
        pay.pay(challenge, quote)
    assert key.signed == 0


REFUSED = [
    ({"network": "eip155:1"}, "chain 1"),
    ({"network": "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"}, "not an EVM network"),
    ({"asset": "0x" + "12" * 20}, "asset registry"),
    ({"asset": "0x036cBd53842c5426634e7929541eC2318f3dCF7e"}, "checksum"),
    ({"payTo": "0x" + "00" * 20}, "zero address"),
    ({"payTo": "merchant-1"}, "address"),
    ({"scheme": "upto"}, "only 'exact'"),
    ({"extra": {**DOMAIN, "assetTransferMethod": "permit2"}}, "EIP-3009 only"),
    ({"extra": {"name": "USD Coin", "version": "2"}}, "knows it as"),
    ({"extra": {"name": "USDC"}}, "short strings"),
]


@pytest.mark.parametrize(("change", "words"), REFUSED)
def test_terms_the_wallet_will_not_sign(change: dict[str, Any], words: str) -> None:
    key = HeldKey()
    (challenge,) = offers("https://api.example.com/paid", requirement(**change))
    with pytest.raises(ChallengeError, match=words):
        wallet(key).quote(challenge)
    assert key.signed == 0


def test_expected_payees_and_unknown_domains() -> None:
    (challenge,) = offers()
    with pytest.raises(ChallengeError, match="expected payees"):
        wallet(payees=["0x" + "ab" * 20]).quote(challenge)
    assert wallet(payees=[MERCHANT.lower()]).quote(challenge).payee == MERCHANT
    token = "0x" + "34" * 20
    assets = [AssetEntry("x402", token, "USD", 6, CHAIN)]
    (bare,) = offers("https://api.example.com/paid", requirement(asset=token, extra={}))
    with pytest.raises(ChallengeError, match="names no EIP-712 domain"):
        wallet(assets=assets).quote(bare)
    known = wallet(assets=assets, token_domains={(CHAIN, token): ("Mine", "7")})
    assert known.quote(bare).amount.units == 250000


def test_the_wallet_keeps_its_key_out_of_sight() -> None:
    account = Account.create()
    pay = X402Wallet(EvmWallet(account.key, chain_ids=[CHAIN]))
    assert account.key.hex()[2:] not in repr(pay)
    assert repr(pay) == f"<X402Wallet address={account.address} chains=[{CHAIN}]>"
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(pay)
    with pytest.raises(TypeError, match="EvmWallet"):
        X402Wallet(DevWallet())  # type: ignore[arg-type]


# -- the flow against the test server -------------------------------------------------


def test_pays_an_x402_server_and_records_the_payment(driver: Driver) -> None:
    seller = X402Server(
        {"/weather": "0.25 USD"}, pay_to=MERCHANT, asset=USDC, chain_id=CHAIN, **_domain()
    )
    pay = driver.client(
        seller,
        methods=[wallet_now()],
        policy=POLICY,
        ledger="memory:",
        allow_insecure_localhost=True,
    )
    response = pay.get("/weather")
    assert response.status_code == 200 and response.json()["paid"] == "250000"
    record = payment_record(response)
    assert record is not None and record.status == "committed"
    assert record.method == "x402" and str(record.charge) == "0.250000 USD"
    assert record.payee == MERCHANT.lower()
    assert record.challenge_id.startswith("x402-")
    (paid,) = seller.payments
    assert paid.amount == 250000 and paid.version == 2
    assert [r.status for r in pay.ledger.records()] == ["committed"]
    # The payment header went on the retry, and no repr shows it.
    assert X402_PAYMENT_SIGNATURE.lower() in {k.lower() for k in response.request.headers}
    assert "[secure]" in repr(response.request.headers)
    assert response.request.headers[X402_PAYMENT_SIGNATURE] not in repr(response.request.headers)


def test_pays_a_version_1_server(driver: Driver) -> None:
    seller = X402Server(
        {"/weather": 10_000},
        pay_to=MERCHANT,
        asset=USDC,
        chain_id=CHAIN,
        version=1,
        network="base-sepolia",
        **_domain(),
    )
    pay = driver.client(
        seller,
        methods=[wallet_now()],
        policy=POLICY,
        ledger="memory:",
        allow_insecure_localhost=True,
    )
    response = pay.get("/weather")
    assert response.status_code == 200
    assert seller.payments[0].version == 1
    assert X402_V1_PAYMENT in response.request.headers


@pytest.mark.parametrize(("order", "paid_with"), [("x402 first", "x402"), ("dev first", "dev")])
def test_when_a_server_offers_both_the_users_order_decides(
    driver: Driver, order: str, paid_with: str
) -> None:
    mpp = PaidServer({"/weather": "0.25 USD"})
    seller = X402Server(
        {"/weather": "0.25 USD"}, pay_to=MERCHANT, asset=USDC, chain_id=CHAIN, mpp=mpp, **_domain()
    )
    methods = [wallet_now(), DevWallet()] if paid_with == "x402" else [DevWallet(), wallet_now()]
    pay = driver.client(
        seller, methods=methods, policy=POLICY, ledger="memory:", allow_insecure_localhost=True
    )
    first = httpx.get(pay.client.base_url.join("/weather"))
    assert "www-authenticate" in first.headers and X402_PAYMENT_REQUIRED in first.headers
    response = pay.get("/weather")
    record = payment_record(response)
    assert response.status_code == 200 and record is not None and record.method == paid_with
    assert (len(seller.payments), len(mpp.payments)) == ((1, 0) if paid_with == "x402" else (0, 1))


def test_the_policy_decides_when_the_preferred_method_is_not_allowed(driver: Driver) -> None:
    from mpp_client import Policy

    policy = Policy.from_mapping(
        {
            "currency": "USD",
            "per_call": "1.00 USD",
            "allow": {
                "hosts": ["*"],
                "realms": ["*"],
                "payees": ["*"],
                "methods": ["dev"],
                "intents": ["charge"],
                "assets": ["*"],
            },
        }
    )
    mpp = PaidServer({"/weather": "0.25 USD"})
    seller = X402Server(
        {"/weather": "0.25 USD"}, pay_to=MERCHANT, asset=USDC, chain_id=CHAIN, mpp=mpp, **_domain()
    )
    pay = driver.client(
        seller,
        methods=[wallet_now(), DevWallet()],
        policy=policy,
        ledger="memory:",
        allow_insecure_localhost=True,
    )
    record = payment_record(pay.get("/weather"))
    assert record is not None and record.method == "dev"
    assert seller.payments == []


def test_x402_usdc_counts_against_the_same_usd_budget(driver: Driver) -> None:
    seller = X402Server(
        {"/weather": "0.40 USD"},
        pay_to=MERCHANT,
        asset=USDC,
        chain_id=CHAIN,
        mpp=PaidServer({"/dev": "0.40 USD"}),
        **_domain(),
    )
    policy = SimplePolicy(max_per_call="1.00 USD", budget="1.00 USD")
    pay = driver.client(
        seller,
        methods=[wallet_now(), DevWallet()],
        policy=policy,
        ledger="memory:",
        allow_insecure_localhost=True,
    )
    assert payment_record(pay.get("/weather")).method == "x402"  # type: ignore[union-attr]
    assert payment_record(pay.get("/dev")).method == "dev"  # type: ignore[union-attr]
    with pytest.raises(PolicyDenied, match="budget"):
        pay.get("/weather")
    assert len(seller.payments) == 1


def test_per_call_limits_narrow_x402_payments(driver: Driver) -> None:
    seller = X402Server(
        {"/weather": "0.25 USD"}, pay_to=MERCHANT, asset=USDC, chain_id=CHAIN, **_domain()
    )
    pay = driver.client(
        seller,
        methods=[wallet_now()],
        policy=POLICY,
        ledger="memory:",
        allow_insecure_localhost=True,
    )
    with pytest.raises(PolicyDenied, match="max_amount"):
        pay.get("/weather", extensions={"mpp": {"max_amount": "0.10 USD"}})
    with pytest.raises(PolicyDenied, match="payee"):
        pay.get("/weather", extensions={"mpp": {"payee": "0x" + "ab" * 20}})
    assert seller.payments == []


def test_never_over_plain_http(driver: Driver) -> None:
    seller = X402Server(
        {"/weather": "0.25 USD"}, pay_to=MERCHANT, asset=USDC, chain_id=CHAIN, **_domain()
    )
    key = HeldKey()
    pay = driver.client(
        seller,
        methods=[X402Wallet(EvmWallet(key, chain_ids=[CHAIN]))],
        policy=POLICY,
        ledger="memory:",
    )
    with pytest.raises(InsecureTransport):
        pay.get("/weather")
    assert key.signed == 0 and seller.payments == []


def test_the_server_behind_https_is_paid_at_its_public_url(driver: Driver) -> None:
    seller = X402Server(
        {"/weather": "0.25 USD"},
        pay_to=MERCHANT,
        asset=USDC,
        chain_id=CHAIN,
        base_url="https://api.test",
        **_domain(),
    )
    pay = driver.client(
        seller, methods=[wallet_now()], policy=POLICY, ledger="memory:", base_url="https://api.test"
    )
    assert pay.get("/weather").status_code == 200


def _domain() -> dict[str, str]:
    return {"token_name": DOMAIN["name"], "token_version": DOMAIN["version"]}


def wallet_now(key: Any = None) -> X402Wallet:
    return X402Wallet(EvmWallet(key or HeldKey(), chain_ids=[CHAIN]))


# -- hostile servers ------------------------------------------------------------------

Answer = Callable[[Request], Response]


def hostile(unpaid: Callable[[Request], Response], paid: Answer | None = None) -> Starlette:
    """A server that answers unpaid requests with ``unpaid`` and paid ones with ``paid``."""

    async def endpoint(request: Request) -> Response:
        if request.headers.get(X402_PAYMENT_SIGNATURE) or request.headers.get(X402_V1_PAYMENT):
            if paid is None:
                return JSONResponse({"ok": True})
            return paid(request)
        return unpaid(request)

    return Starlette(routes=[Route("/paid", endpoint)])


def asks(*entries: Mapping[str, Any], resource: str | None = None) -> Callable[[Request], Response]:
    def unpaid(request: Request) -> Response:
        header = required_header(resource or str(request.url), *entries)
        return JSONResponse({}, status_code=402, headers={X402_PAYMENT_REQUIRED: header})

    return unpaid


def settled(document: Mapping[str, Any], status: int = 402, **more: str) -> Answer:
    def answer(request: Request) -> Response:
        return JSONResponse(
            {}, status_code=status, headers={"PAYMENT-RESPONSE": b64(document), **more}
        )

    return answer


HOSTILE_TERMS = [
    (requirement(network="eip155:1"), ChallengeError, "chain 1"),
    (requirement(asset="0x" + "12" * 20), ChallengeError, "asset registry"),
    (requirement(amount="1.5"), ChallengeError, "base-unit digits"),
    (requirement(amount="5000000"), PolicyDenied, "per-call cap"),
    (requirement(payTo="0x" + "00" * 20), ChallengeError, "zero address"),
    (requirement(maxTimeoutSeconds=0), ChallengeExpired, "expired"),
    (requirement(maxTimeoutSeconds=3), ChallengeExpired, "too soon"),
]


@pytest.mark.parametrize(("entry", "error", "words"), HOSTILE_TERMS)
def test_hostile_terms_get_typed_errors_and_nothing_is_signed(
    driver: Driver, entry: dict[str, Any], error: type[Exception], words: str
) -> None:
    key = HeldKey()
    pay = driver.client(
        hostile(asks(entry)),
        methods=[wallet_now(key)],
        policy=POLICY,
        ledger="memory:",
        allow_insecure_localhost=True,
    )
    with pytest.raises(error, match=words) as caught:
        pay.get("/paid")
    assert key.signed == 0
    assert caught.value.response is not None and caught.value.response.status_code == 402  # type: ignore[attr-defined]


def test_a_resource_that_is_not_the_url_requested_is_refused(driver: Driver) -> None:
    key = HeldKey()
    app = hostile(asks(resource="https://elsewhere.test/premium"))
    pay = driver.client(
        app,
        methods=[wallet_now(key)],
        policy=POLICY,
        ledger="memory:",
        allow_insecure_localhost=True,
    )
    with pytest.raises(ChallengeError, match="another resource"):
        pay.get("/paid")
    assert key.signed == 0


@pytest.mark.parametrize("header", ["%%%", b64({"x402Version": 2, "accepts": "all of them"})])
def test_a_malformed_header_is_a_challenge_error(driver: Driver, header: str) -> None:
    def unpaid(request: Request) -> Response:
        return JSONResponse({}, status_code=402, headers={X402_PAYMENT_REQUIRED: header})

    pay = driver.client(
        hostile(unpaid),
        methods=[wallet_now()],
        policy=POLICY,
        ledger="memory:",
        allow_insecure_localhost=True,
    )
    with pytest.raises(ChallengeError):
        pay.get("/paid")


def test_a_malformed_header_does_not_spoil_a_good_mpp_offer(driver: Driver) -> None:
    mpp = PaidServer({"/paid": "0.25 USD"})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async def hostile_send(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] == 402:
                message["headers"] = [*message["headers"], (b"payment-required", b"%%%")]
            await send(message)

        await mpp(scope, receive, hostile_send)

    pay = driver.client(
        app,
        methods=[wallet_now(), DevWallet()],
        policy=POLICY,
        ledger="memory:",
        allow_insecure_localhost=True,
    )
    record = payment_record(pay.get("/paid"))
    assert record is not None and record.method == "dev"


def test_no_configured_method_names_the_x402_offer(driver: Driver) -> None:
    pay = driver.client(
        hostile(asks()),
        methods=[DevWallet()],
        policy=POLICY,
        ledger="memory:",
        allow_insecure_localhost=True,
    )
    with pytest.raises(NoAcceptableChallenge, match="x402/charge"):
        pay.get("/paid")


def test_a_402_after_payment_is_a_refusal_and_releases(driver: Driver) -> None:
    def refused(request: Request) -> Response:
        header = required_header(str(request.url), error="invalid_exact_evm_payload_signature")
        return JSONResponse({}, status_code=402, headers={X402_PAYMENT_REQUIRED: header})

    pay = driver.client(
        hostile(asks(), refused),
        methods=[wallet_now()],
        policy=POLICY,
        ledger="memory:",
        allow_insecure_localhost=True,
    )
    with pytest.raises(PaymentRejected, match="invalid_exact_evm_payload_signature"):
        pay.get("/paid")
    (record,) = pay.ledger.records()
    assert record.status == "released"


@pytest.mark.parametrize(
    ("document", "outcome"),
    [
        (
            {"success": False, "errorReason": "transaction_failed", "transaction": "0xdead"},
            "released",
        ),
        ({"success": False, "errorReason": "invalid_exact_evm_nonce_already_used"}, "released"),
        (
            {"success": False, "errorReason": "settlement_pending", "transaction": "0xbeef"},
            "unknown",
        ),
        (
            {"success": False, "errorReason": "unexpected_settle_error", "transaction": ""},
            "unknown",
        ),
        ({"success": True, "transaction": "0xbeef"}, "unknown"),
    ],
)
def test_a_settlement_failure_is_released_only_when_nothing_can_have_moved(
    driver: Driver, document: dict[str, Any], outcome: str
) -> None:
    pay = driver.client(
        hostile(asks(), settled(document)),
        methods=[wallet_now()],
        policy=POLICY,
        ledger="memory:",
        allow_insecure_localhost=True,
    )
    error = PaymentRejected if outcome == "released" else PaymentOutcomeUnknown
    with pytest.raises(error):
        pay.get("/paid")
    (record,) = pay.ledger.records()
    assert record.status == outcome


def test_a_2xx_whose_settlement_failed_is_unknown(driver: Driver) -> None:
    failed = settled({"success": False, "errorReason": "x", "transaction": ""}, status=200)
    pay = driver.client(
        hostile(asks(), failed),
        methods=[wallet_now()],
        policy=POLICY,
        ledger="memory:",
        allow_insecure_localhost=True,
    )
    with pytest.raises(PaymentOutcomeUnknown, match="settlement failed"):
        pay.get("/paid")
    assert pay.ledger.records()[0].status == "unknown"


def test_a_402_again_and_again_is_paid_at_most_max_payments_times(driver: Driver) -> None:
    seen: list[str] = []

    def refused(request: Request) -> Response:
        seen.append(request.headers[X402_PAYMENT_SIGNATURE])
        return asks()(request)

    key = HeldKey()
    pay = driver.client(
        hostile(asks(), refused),
        methods=[wallet_now(key)],
        policy=POLICY,
        ledger="memory:",
        allow_insecure_localhost=True,
        max_payments=2,
    )
    with pytest.raises(PaymentRejected):
        pay.get("/paid")
    assert len(seen) == 2 and seen[0] != seen[1] and key.signed == 2
    assert [r.status for r in pay.ledger.records()] == ["released", "released"]


@pytest.mark.parametrize(("network", "kept"), [(f"eip155:{CHAIN}", True), ("eip155:1", False)])
def test_a_good_settlement_is_kept_as_the_receipt(driver: Driver, network: str, kept: bool) -> None:
    tx = "0x" + "ab" * 32
    answer = settled({"success": True, "transaction": tx, "network": network}, status=200)
    pay = driver.client(
        hostile(asks(), answer),
        methods=[wallet_now()],
        policy=POLICY,
        ledger="memory:",
        allow_insecure_localhost=True,
    )
    record = payment_record(pay.get("/paid"))
    assert record is not None and record.status == "committed"
    if kept:
        assert record.receipt is not None
        assert (record.receipt.method, record.receipt.reference) == ("x402", tx)
    else:
        assert record.receipt is None


def test_the_payment_never_reaches_logs_or_errors(
    driver: Driver, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[str] = []

    def refused(request: Request) -> Response:
        sent.append(request.headers[X402_PAYMENT_SIGNATURE])
        return asks()(request)

    caplog.set_level(logging.DEBUG)
    pay = driver.client(
        hostile(asks(), refused),
        methods=[wallet_now()],
        policy=POLICY,
        ledger="memory:",
        allow_insecure_localhost=True,
    )
    with pytest.raises(PaymentRejected) as caught:
        pay.get("/paid")
    (value,) = sent
    signature = json.loads(base64.b64decode(value))["payload"]["signature"]
    shown = caplog.text + str(caught.value) + repr(caught.value.response.request.headers)  # type: ignore[union-attr]
    assert value not in shown and signature not in shown and signature[2:] not in shown


def test_without_the_evm_extra_the_x402_wallet_names_its_install() -> None:
    from .test_extras import run

    result = run(
        """
        import mpp_client, mpp_client.protocol
        value = mpp_client.protocol.x402_payment_header  # the wire format needs no extra
        try:
            from mpp_client.methods import X402Wallet
        except ImportError as exc:
            print("error:", exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "error: the x402 payment method needs the evm extra" in result.stdout
    assert 'pip install "mpp-client[evm]"' in result.stdout


def test_a_quote_lists_and_decides_x402_offers_without_paying(live: Any) -> None:
    """``client.quote`` reads the same offers the flow pays from: x402 terms too."""
    seller = X402Server(
        {"/weather": "0.25 USD"}, pay_to=MERCHANT, asset=USDC, chain_id=CHAIN, **_domain()
    )
    with Client(
        base_url=live(seller),
        methods=[wallet_now()],
        policy=POLICY,
        ledger="memory:",
        allow_insecure_localhost=True,
    ) as client:
        result = client.quote("/weather")
        assert client.ledger is not None and client.ledger.records() == []
    assert result.would_pay, result.reasons
    (offer,) = result.offers
    assert offer.challenge.method == "x402" and offer.chosen
    assert str(offer.amount) == "0.250000 USD"
    assert seller.payments == []
