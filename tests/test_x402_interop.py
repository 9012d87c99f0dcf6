"""x402 on a real chain: the official ``x402`` package's server and facilitator, paid by our client.

A local anvil node runs as chain 84532 (so that x402 version 1's network
name ``base-sepolia`` means it too), with ``contracts/TestUSD.sol`` (an
ERC-20 with EIP-3009) deployed on it. Three sellers:

- version 2: a FastAPI app behind the package's own payment middleware
  (``x402.http.middleware.fastapi.payment_middleware``) and resource server
  (``x402ResourceServer``), whose facilitator is the package's
  ``x402Facilitator`` with its ``exact`` EVM scheme, signing and submitting
  ``transferWithAuthorization`` from a funded key through the package's
  ``FacilitatorWeb3Signer``. The facilitator runs in the server's process
  (the package has no facilitator HTTP app to run); it is the package's
  verification and settlement code, unchanged.
- version 1: the package's server middleware speaks version 2 only, so the
  version 1 seller is written here from the package's own types
  (``PaymentRequiredV1``, ``PaymentRequirementsV1``, its header codecs) and
  calls the same facilitator, whose version 1 scheme verifies and settles.
- :class:`~mpp_client.testing.x402.X402Server`, settling through a
  :class:`~mpp_client.testing.evm.ChainClient`.

Every payment is checked on the chain: the payee's balance rises by exactly
the price and the payer's falls by it; a replayed payment header moves
nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount

from mpp_client import PaymentRejected, payment_record
from mpp_client.methods import EvmWallet, X402Wallet
from mpp_client.money import AssetEntry
from mpp_client.protocol import X402_PAYMENT_SIGNATURE, X402_V1_PAYMENT
from mpp_client.testing import LocalServer
from mpp_client.testing.evm import Anvil, ChainClient, selector, transfers_in
from mpp_client.testing.x402 import X402Server, settle_with

from .chain.tooling import (
    ETH,
    TOKEN_DECIMALS,
    TOKEN_NAME,
    TOKEN_SYMBOL,
    TOKEN_VERSION,
    anvil_binary,
    compile_contracts,
)
from .rails import paid_get, rail_policy

CHAIN = 84532
NETWORK = f"eip155:{CHAIN}"
PRICE = 250_000  # 0.25 TUSD


@dataclass
class Chain:
    anvil: Anvil
    client: ChainClient
    token: str
    facilitator: Any  # x402.x402Facilitator

    def account(self, tokens: int = 0) -> LocalAccount:
        account: LocalAccount = Account.create()
        self.anvil.set_balance(account.address, 10 * ETH)
        if tokens:
            data = selector("mint(address,uint256)") + abi_encode(
                ["address", "uint256"], [account.address, tokens]
            )
            assert self.client.transact(self.token, data)["status"] == "0x1"
        return account

    def balance(self, owner: str) -> int:
        return self.client.balance_of(self.token, owner)

    @property
    def assets(self) -> list[AssetEntry]:
        return [AssetEntry("x402", self.token, "USD", TOKEN_DECIMALS, CHAIN, name="TUSD")]


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    from x402 import x402Facilitator
    from x402.mechanisms.evm import FacilitatorWeb3Signer
    from x402.mechanisms.evm.exact.register import register_exact_evm_facilitator

    anvil = Anvil(anvil_binary(), chain_id=CHAIN).start()
    try:
        contracts = compile_contracts()
        minter: LocalAccount = Account.create()
        anvil.set_balance(minter.address, 100 * ETH)
        client = ChainClient(anvil.rpc, minter)
        constructor = abi_encode(
            ["string", "string", "string", "uint8"],
            [TOKEN_NAME, TOKEN_SYMBOL, TOKEN_VERSION, TOKEN_DECIMALS],
        )
        token = client.deploy(contracts["TestUSD"]["bytecode"], constructor)
        gas: LocalAccount = Account.create()
        anvil.set_balance(gas.address, 100 * ETH)
        signer = FacilitatorWeb3Signer(private_key=gas.key.hex(), rpc_url=anvil.url)
        facilitator = register_exact_evm_facilitator(x402Facilitator(), signer, networks=NETWORK)
        yield Chain(anvil, client, token, facilitator)
    finally:
        anvil.stop()


def official_v2_app(chain: Chain, pay_to: str) -> Any:
    """A FastAPI app priced by the x402 package's middleware, settled by its facilitator."""
    from fastapi import FastAPI
    from x402 import x402ResourceServer
    from x402.http.middleware.fastapi import payment_middleware
    from x402.mechanisms.evm.exact.register import register_exact_evm_server

    server = register_exact_evm_server(x402ResourceServer(chain.facilitator), NETWORK)
    price = {
        "amount": str(PRICE),
        "asset": chain.token,
        "extra": {"name": TOKEN_NAME, "version": TOKEN_VERSION},
    }
    routes = {
        "GET /weather": {
            "accepts": {"scheme": "exact", "payTo": pay_to, "price": price, "network": NETWORK},
            "description": "today's weather",
        }
    }
    app = FastAPI()
    middleware = payment_middleware(routes, server)

    @app.middleware("http")
    async def x402(request: Any, call_next: Any) -> Any:
        return await middleware(request, call_next)

    @app.get("/weather")
    async def weather() -> dict[str, Any]:
        return {"sunny": True}

    return app


def package_v1_app(chain: Chain, pay_to: str) -> Any:
    """A version 1 seller written from the package's types, settled by its facilitator."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from x402.http.utils import decode_payment_signature_header, encode_payment_response_header
    from x402.schemas.v1 import PaymentRequiredV1, PaymentRequirementsV1

    async def weather(request: Request) -> JSONResponse:
        requirements = PaymentRequirementsV1(
            scheme="exact",
            network="base-sepolia",
            max_amount_required=str(PRICE),
            resource=str(request.url),
            description="today's weather",
            mime_type="application/json",
            pay_to=pay_to,
            max_timeout_seconds=120,
            asset=chain.token,
            extra={"name": TOKEN_NAME, "version": TOKEN_VERSION},
        )

        def required(error: str) -> JSONResponse:
            document = PaymentRequiredV1(error=error, accepts=[requirements])
            return JSONResponse(document.model_dump(by_alias=True, exclude_none=True), 402)

        header = request.headers.get(X402_V1_PAYMENT)
        if header is None:
            return required("X-PAYMENT header is required")
        payload = decode_payment_signature_header(header)
        verified = await chain.facilitator.verify(payload, requirements)
        if not verified.is_valid:
            return required(verified.invalid_reason or "invalid")
        settled = await chain.facilitator.settle(payload, requirements)
        headers = {"X-PAYMENT-RESPONSE": encode_payment_response_header(settled)}
        if not settled.success:
            return JSONResponse({}, 402, headers=headers)
        return JSONResponse({"sunny": True}, headers=headers)

    return Starlette(routes=[Route("/weather", weather)])


def check_on_chain(chain: Chain, response: httpx.Response, payer: str, payee: str) -> str:
    """The payment's transaction moved exactly the price from payer to payee; its hash."""
    record = payment_record(response)
    assert record is not None and record.status == "committed" and record.method == "x402"
    assert record.receipt is not None and record.receipt.method == "x402"
    tx = record.receipt.reference
    receipt = chain.anvil.rpc.call("eth_getTransactionReceipt", tx)
    assert receipt["status"] == "0x1"
    moved = [(a.lower(), b.lower(), v) for a, b, v in transfers_in(receipt, chain.token)]
    assert moved == [(payer.lower(), payee.lower(), PRICE)]
    return str(tx)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_pays_the_official_x402_server_settled_on_chain(chain: Chain, flavour: str) -> None:
    payer, payee = chain.account(tokens=10 * PRICE), Account.create().address
    wallet = X402Wallet(EvmWallet(payer.key, chain_ids=[CHAIN]), assets=chain.assets)
    with LocalServer(official_v2_app(chain, payee)) as server:
        response = paid_get(flavour, rail_policy(chain.assets), wallet, server.url + "/weather")
        assert response.status_code == 200 and response.json() == {"sunny": True}
        check_on_chain(chain, response, payer.address, payee)
        assert chain.balance(payee) == PRICE
        assert chain.balance(payer.address) == 9 * PRICE
        # The same payment again, by hand: the server refuses it, nothing moves.
        replay = httpx.get(
            server.url + "/weather",
            headers={X402_PAYMENT_SIGNATURE: response.request.headers[X402_PAYMENT_SIGNATURE]},
        )
        assert replay.status_code == 402
    assert chain.balance(payee) == PRICE


def test_pays_a_version_1_server_with_the_packages_facilitator(chain: Chain) -> None:
    payer, payee = chain.account(tokens=PRICE), Account.create().address
    wallet = X402Wallet(EvmWallet(payer.key, chain_ids=[CHAIN]), assets=chain.assets)
    with LocalServer(package_v1_app(chain, payee)) as server:
        response = paid_get("sync", rail_policy(chain.assets), wallet, server.url + "/weather")
        assert response.status_code == 200
        assert X402_V1_PAYMENT in response.request.headers
        check_on_chain(chain, response, payer.address, payee)
    assert (chain.balance(payee), chain.balance(payer.address)) == (PRICE, 0)


def test_a_payment_the_chain_cannot_settle_is_refused_and_released(chain: Chain) -> None:
    """No tokens: the facilitator's simulation refuses it (the token reverts: balance too
    low); nothing moved, nothing stays counted."""
    payer, payee = chain.account(tokens=0), Account.create().address
    wallet = X402Wallet(EvmWallet(payer.key, chain_ids=[CHAIN]), assets=chain.assets)
    with LocalServer(official_v2_app(chain, payee)) as server:

        async def run() -> None:
            from mpp_client import AsyncClient

            async with AsyncClient(
                methods=[wallet],
                policy=rail_policy(chain.assets),
                ledger="memory:",
                allow_insecure_localhost=True,
            ) as client:
                with pytest.raises(PaymentRejected, match="simulation_failed"):
                    await client.get(server.url + "/weather")
                assert [r.status for r in client.ledger.records()] == ["released"]

        asyncio.run(run())
    assert chain.balance(payee) == 0


def test_pays_the_testing_server_settled_on_chain(chain: Chain) -> None:
    payer, payee = chain.account(tokens=PRICE), Account.create().address
    seller = X402Server(
        {"/weather": PRICE},
        pay_to=payee,
        asset=chain.token,
        chain_id=CHAIN,
        token_name=TOKEN_NAME,
        token_version=TOKEN_VERSION,
        settle=settle_with(chain.client, chain.token),
    )
    wallet = X402Wallet(EvmWallet(payer.key, chain_ids=[CHAIN]), assets=chain.assets)
    with LocalServer(seller) as server:
        response = paid_get("async", rail_policy(chain.assets), wallet, server.url + "/weather")
        tx = check_on_chain(chain, response, payer.address, payee)
    assert seller.payments[0].transaction == tx
    assert chain.balance(payee) == PRICE


def test_the_official_client_pays_the_testing_server(chain: Chain) -> None:
    """The package's own client pays X402Server: the test server speaks x402 as the package does."""
    from x402 import x402Client
    from x402.http.clients.httpx import x402HttpxClient
    from x402.mechanisms.evm.exact.register import register_exact_evm_client

    payer, payee = chain.account(tokens=PRICE), Account.create().address
    seller = X402Server(
        {"/weather": PRICE},
        pay_to=payee,
        asset=chain.token,
        chain_id=CHAIN,
        token_name=TOKEN_NAME,
        token_version=TOKEN_VERSION,
        settle=settle_with(chain.client, chain.token),
    )
    # The package's client pays only tokens it knows unless told otherwise: ours is a test token.
    client = register_exact_evm_client(x402Client().set_spend_controls(False), payer)

    async def run(url: str) -> httpx.Response:
        async with x402HttpxClient(client) as http:
            return await http.get(url)

    with LocalServer(seller) as server:
        response = asyncio.run(run(server.url + "/weather"))
    assert response.status_code == 200
    assert chain.balance(payee) == PRICE
