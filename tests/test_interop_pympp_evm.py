"""Interop with pympp in both directions, settled on a local chain.

One anvil node with this project's EIP-3009 token (``tests/chain/tooling.py``):

- our ``Client`` and ``AsyncClient`` pay pympp's own ``evm`` server method
  (``mpp.methods.evm.server.charge`` behind ``@pay`` on Starlette, served by
  uvicorn on 127.0.0.1). Its ``settle`` hook submits the authorization to the
  node, as a pympp merchant's hook would.
- pympp's own client engine, in a separate Python process
  (``tests/peers/pympp_client.py``), pays our ``PaidServer``: with its ``evm``
  client method (a funded key) against ``EvmVerifier``, which settles on the
  node, and with a ``dev`` client method written to pympp's client contract
  against the default voucher verifier.

The two SDKs bind the authorization to the challenge with different hashes
(see ``docs/methods.md``): our wallet reads pympp's rule off its challenges,
and our verifier accepts pympp's. Every replayed credential is refused and
moves nothing; balances are read from the chain before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_abi.abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mpp_client import AsyncClient, Client, DevWallet, payment_record
from mpp_client.methods.evm import EvmWallet, challenge_binding, challenge_hash
from mpp_client.policy import AssetEntry, Policy
from mpp_client.protocol import Credential, Problem, Receipt, parse_challenges
from mpp_client.testing import LocalServer, PaidServer
from mpp_client.testing.evm import ChainClient, EvmVerifier, selector, transfers_in

from .chain.tooling import (
    TOKEN_DECIMALS,
    TOKEN_NAME,
    TOKEN_VERSION,
    World,
    anvil_binary,
    compile_contracts,
    start_world,
)
from .rails import challenge_at, rail_policy, sent_credential

ROOT = Path(__file__).resolve().parents[1]
PYMPP_CLIENT = Path(__file__).with_name("peers") / "pympp_client.py"
PRICE = 250_000  # "0.25" at 6 decimals
FUNDS = 1_000_000
REALM = "pympp-evm-interop.test"
_TWA = (
    "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,"
    "uint8,bytes32,bytes32)"
)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    running = start_world(anvil_binary(), compile_contracts())
    try:
        yield running
    finally:
        running.anvil.stop()


def tusd(world: World) -> AssetEntry:
    return AssetEntry("evm", world.token, "USD", TOKEN_DECIMALS, world.chain_id, "TUSD")


def policy_for(world: World) -> Policy:
    return rail_policy([tusd(world)])


def wallet_for(world: World, payer: LocalAccount) -> EvmWallet:
    """Our wallet with no challenge-hash rule named: it reads the rule off each challenge."""
    return EvmWallet(
        payer,
        rpc_urls={world.chain_id: world.url},
        assets=[tusd(world)],
        credential_types=("authorization",),
    )


def nonce_settled(world: World, tx_hash: str) -> str:
    """The EIP-3009 nonce of the ``transferWithAuthorization`` a transaction called."""
    tx = world.anvil.rpc.call("eth_getTransactionByHash", tx_hash)
    data = bytes.fromhex(str(tx["input"])[2:])
    assert data[:4] == selector(_TWA)
    fields = abi_decode(
        ["address", "address", "uint256", "uint256", "uint256", "bytes32"], data[4 : 4 + 6 * 32]
    )
    return "0x" + bytes(fields[5]).hex()


# -- our client pays pympp's evm server ---------------------------------------------------


@dataclass
class PymppShop:
    url: str
    merchant: str
    settled: list[str] = field(default_factory=list)


def pympp_evm_app(world: World, merchant: str, settled: list[str]) -> Starlette:
    from mpp import MemoryStore
    from mpp.errors import VerificationFailedError
    from mpp.methods.evm import server as evm_server
    from mpp.server import Mpp, pay

    submitter = ChainClient(world.anvil.rpc, world.funded_account())

    def settle(authorization: Any) -> str:
        # What a pympp merchant's hook does: submit the checked authorization, wait, report.
        receipt = submitter.submit_authorization(world.token, authorization.payload)
        if receipt.get("status") != "0x1":
            raise VerificationFailedError("transferWithAuthorization reverted")
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
    server = Mpp(methods=method, realm=REALM, secret_key="pympp-evm-interop-0123456789abcdef")

    @pay(server.evm.charge(amount="0.25"))  # type: ignore[misc]
    async def paid(request: Request, credential: Any, receipt: Any) -> JSONResponse:
        return JSONResponse({"ok": True, "payer": receipt.payer})

    return Starlette(routes=[Route("/paid", paid)])


@pytest.fixture
def pympp_shop(world: World) -> Iterator[PymppShop]:
    merchant = Account.create().address
    settled: list[str] = []
    with LocalServer(pympp_evm_app(world, merchant, settled)) as server:
        yield PymppShop(server.url + "/paid", merchant, settled)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_our_client_pays_pympp_evm_server_on_chain(
    world: World, pympp_shop: PymppShop, mode: str
) -> None:
    payer = world.funded_account(tokens=FUNDS)
    wallet = wallet_for(world, payer)
    options: dict[str, Any] = {
        "methods": [wallet],
        "policy": policy_for(world),
        "ledger": "memory:",
        "allow_insecure_localhost": True,
    }
    seen: list[httpx.Response] = []

    async def async_hook(response: httpx.Response) -> None:
        seen.append(response)

    merchant_before = world.balance(pympp_shop.merchant)
    if mode == "sync":
        with Client(**options, event_hooks={"response": [seen.append]}) as client:
            response = client.get(pympp_shop.url)
    else:
        async with AsyncClient(**options, event_hooks={"response": [async_hook]}) as client:
            response = await client.get(pympp_shop.url)

    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "payer": payer.address}
    record = payment_record(response)
    assert record is not None and record.status == "committed"
    receipt = Receipt.parse(response.headers["payment-receipt"])
    assert receipt.method == "evm"
    assert pympp_shop.settled == [receipt.reference]
    assert record.receipt is not None and record.receipt.reference == receipt.reference
    # The payee's balance rose by exactly the price, in the transaction the receipt names.
    assert world.balance(pympp_shop.merchant) == merchant_before + PRICE
    assert world.balance(payer.address) == FUNDS - PRICE
    assert transfers_in(world.receipt(receipt.reference), world.token) == [
        (payer.address, pympp_shop.merchant, PRICE)
    ]
    # The wallet saw pympp's marks and signed pympp's JSON-array hash, which pympp settled.
    assert [r.status_code for r in seen] == [402, 200]
    (challenge,) = parse_challenges(seen[0].headers["www-authenticate"])
    assert challenge_binding(challenge) == "json-array"
    sent = Credential.parse(sent_credential(response))
    assert sent.echo["id"] == challenge.id
    bound = "0x" + challenge_hash(sent.echo["id"], sent.echo["realm"], "json-array").hex()
    assert sent.payload["nonce"] == bound == nonce_settled(world, receipt.reference)

    # The same credential, replayed: pympp refuses it for good, and nothing moves.
    replay = httpx.get(pympp_shop.url, headers={"Authorization": sent_credential(response)})
    assert replay.status_code == 403
    assert "payment-receipt" not in replay.headers
    assert "www-authenticate" not in replay.headers  # no fresh challenge to pay again
    problem = Problem.parse(replay.content, replay.headers.get("content-type"))
    assert problem is not None and problem.code == "verification-failed"
    assert "already been used" in (problem.detail or "")
    assert world.balance(pympp_shop.merchant) == merchant_before + PRICE
    assert world.balance(payer.address) == FUNDS - PRICE
    assert pympp_shop.settled == [receipt.reference]


# -- pympp's client pays our server --------------------------------------------------------


def run_pympp_client(job: dict[str, Any]) -> dict[str, Any]:
    """Run pympp's client as its own process on ``job``; its report."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    result = subprocess.run(  # our interpreter, our script, a JSON job on stdin
        [sys.executable, str(PYMPP_CLIENT)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": path},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@dataclass
class OurShop:
    server: PaidServer
    verifier: EvmVerifier
    merchant: str
    submitter: LocalAccount


def our_evm_shop(world: World) -> OurShop:
    merchant = Account.create().address
    submitter = world.funded_account()
    verifier = EvmVerifier(
        world.url,
        token=world.token,
        submitter=submitter,
        credential_types=["authorization"],
        token_domain=(TOKEN_NAME, TOKEN_VERSION),
        decimals=TOKEN_DECIMALS,
    )
    server = PaidServer(
        {"/paid": "0.25 USD"},
        verifier=verifier,
        currency=world.token,
        recipient=merchant,
        asset="USD",
        decimals=TOKEN_DECIMALS,
    )
    return OurShop(server, verifier, merchant, submitter)


def test_pympp_client_pays_our_evm_server_on_chain(world: World) -> None:
    payer = world.funded_account(tokens=FUNDS)
    shop = our_evm_shop(world)
    with LocalServer(shop.server) as server:
        url = server.url + "/paid"
        # What pympp is offered: our challenge carries none of pympp's marks.
        offered = challenge_at(url)
        assert challenge_binding(offered) == "concat"
        report = run_pympp_client(
            {
                "method": "evm",
                "url": url,
                "key": payer.key.hex(),
                "token": world.token,
                "chain_id": world.chain_id,
                "decimals": TOKEN_DECIMALS,
                "name": TOKEN_NAME,
                "version": TOKEN_VERSION,
            }
        )
        after_pay = (world.balance(shop.merchant), world.balance(payer.address))

    assert report["statuses"] == [402, 200], report
    assert report["status"] == 200
    assert json.loads(report["body"]) == {"ok": True}
    assert report["credentials_sent"] == 1
    receipt = Receipt.parse(report["receipt"])
    assert receipt.method == "evm"
    assert receipt.data["chainId"] == world.chain_id
    assert shop.verifier.settled == [receipt.reference]
    (payment,) = shop.server.payments
    assert payment.payer == f"did:pkh:eip155:{world.chain_id}:{payer.address}"
    assert payment.reference == receipt.reference
    # Settled on the chain: exactly the price, payer to merchant; our submitter paid the gas.
    assert after_pay == (PRICE, FUNDS - PRICE)
    on_chain = world.receipt(receipt.reference)
    assert on_chain["from"].lower() == shop.submitter.address.lower()
    assert transfers_in(on_chain, world.token) == [(payer.address, shop.merchant, PRICE)]
    # pympp's client bound its authorization with pympp's JSON-array hash; we accepted it.
    challenge_id = receipt.data["challengeId"]
    assert nonce_settled(world, receipt.reference) == (
        "0x" + challenge_hash(challenge_id, shop.server.realm, "json-array").hex()
    )

    # pympp's exact credential, replayed: refused, nothing settles, no money moves.
    assert report["replay_status"] == 402
    assert report["replay_receipt"] is None
    problem = json.loads(report["replay_body"])
    assert problem["type"].endswith("/invalid-challenge")
    assert "already used" in problem["detail"]
    assert (world.balance(shop.merchant), world.balance(payer.address)) == after_pay
    assert shop.verifier.settled == [receipt.reference]
    assert len(shop.server.payments) == 1


def test_pympp_client_with_a_dev_method_pays_our_server() -> None:
    seed = bytes(range(32))
    expected_payer = DevWallet(seed).source
    server = PaidServer({"/paid": "0.25 USD"})
    with LocalServer(server) as running:
        report = run_pympp_client(
            {"method": "dev", "url": running.url + "/paid", "seed": seed.hex()}
        )
    assert report["statuses"] == [402, 200], report
    assert json.loads(report["body"]) == {"ok": True}
    receipt = Receipt.parse(report["receipt"])
    (payment,) = server.payments
    assert payment.payer == expected_payer  # the did:key of the seed pympp's client signed with
    assert receipt.reference == payment.reference
    # The same voucher, replayed: refused, and no second payment is recorded.
    assert report["replay_status"] == 402
    assert report["replay_receipt"] is None
    assert "already used" in json.loads(report["replay_body"])["detail"]
    assert len(server.payments) == 1
