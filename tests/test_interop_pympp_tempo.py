"""Interop with pympp's ``tempo`` method, both directions, on the local Tempo chain.

(a) ``Client``/``AsyncClient`` with a ``TempoWallet`` pay a Starlette app built
    with pympp's own engine (``mpp.server.Mpp``) and its Tempo charge server
    method (``mpp.methods.tempo.server.charge``) configured for the local
    chain's RPC, chain id and pathUSD: pull with and without pympp as fee
    payer, push, and splits. pympp verifies the transfer (including its
    challenge-bound attribution memo), broadcasts it to the node and answers
    200; the payee's balance must rise by exactly the amount.
(b) pympp's own client (``mpp.client.Mpp`` with ``mpp.methods.tempo.client
    .charge`` and a funded key) pays our ``PaidServer`` with ``TempoVerifier``,
    with and without our fee payer and with splits.
(c) Either way, replaying the credential is refused and moves no money.

Two things the local node does differently from a Tempo node, bridged here:

* pympp's server calls ``eth_sendRawTransactionSync`` with a second parameter
  (a timeout in milliseconds); anvil 1.7.1 accepts only the raw transaction,
  and pympp's fee-payer path simulates the co-signed transaction with
  ``tempo_simulateV1``, which anvil does not serve (and its
  ``eth_simulateV1`` panics on a ``0x76`` call). :class:`AnvilTempoRpc`, the
  httpx transport pympp's server is given, drops the extra parameter and
  answers the simulation by ``eth_call``-ing each transfer from the sender
  against the real node. Everything else pympp sends goes to the node as is,
  and every transaction is broadcast to it and settles there.
* pympp's client signs ``validBefore`` up to 60 seconds ahead (capped at the
  challenge's expiry + 1), but the node (hardfork T4) keeps an
  expiring-nonce transaction only if it expires within 30 seconds, so our
  server issues challenges that expire in 20 seconds for (b).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from mpp import MemoryStore
from mpp.client import Mpp as PymppClient
from mpp.methods.tempo import client as pympp_tempo_client
from mpp.methods.tempo import server as pympp_tempo_server
from mpp.methods.tempo._attribution import encode as pympp_attribution
from mpp.methods.tempo.account import TempoAccount
from mpp.server import Mpp, pay
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mpp_client import payment_record
from mpp_client.methods.tempo import PATH_USD, TempoWallet, attribution_memo
from mpp_client.policy import Policy
from mpp_client.protocol import Credential, Receipt
from mpp_client.testing import LocalServer, PaidServer
from mpp_client.testing.tempo import Movement, TempoChain, TempoVerifier, movements_in

from .apps import Recorder
from .helpers import pay_now
from .rails import challenge_at, paid_get, present

pytest_plugins = ["tests.chain.tempo_chain"]

REALM = "pympp-tempo.test"
SECRET = "pympp-tempo-interop-secret-0123456789abcdef"
PRICE = 250_000  # route amount "0.25" in pathUSD (6 decimals)
FUNDS = 1_000_000
SPLIT = 50_000
SPLIT_MEMO = "0x" + "00" * 28 + "deadbeef"


def pympp_key(account: LocalAccount) -> TempoAccount:
    return TempoAccount.from_key("0x" + bytes(account.key).hex())


class AnvilTempoRpc(httpx.AsyncBaseTransport):
    """pympp's RPC transport to anvil: bridges the two calls anvil 1.7.1 lacks (see above)."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.simulations = 0

    async def _call(self, url: httpx.URL, method: str, params: list[Any]) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        response = await self._inner.handle_async_request(httpx.Request("POST", url, json=body))
        await response.aread()
        answer: dict[str, Any] = json.loads(response.content)
        return answer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"null")
        if not isinstance(body, dict):
            return await self._inner.handle_async_request(request)
        method, params = body.get("method"), list(body.get("params") or [])
        if method == "eth_sendRawTransactionSync" and len(params) > 1:
            answer = await self._call(request.url, method, params[:1])
            return httpx.Response(200, json={**answer, "id": body.get("id")})
        if method == "tempo_simulateV1":
            self.simulations += 1
            call = params[0]["blockStateCalls"][0]["calls"][0]
            calls = [*call.get("calls", []), {"to": call["to"], "data": call["data"]}]
            result: dict[str, Any] = {"status": "0x1"}
            for each in calls:
                answer = await self._call(
                    request.url,
                    "eth_call",
                    [{"from": call["from"], "to": each["to"], "data": each["data"]}, "latest"],
                )
                if "error" in answer:
                    result = {"status": "0x0", "error": answer["error"]}
                    break
            blocks = {"blocks": [{"calls": [result]}]}
            return httpx.Response(
                200, json={"jsonrpc": "2.0", "id": body.get("id"), "result": blocks}
            )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def pympp_app(
    chain: TempoChain, merchant: str, *, sponsor: LocalAccount | None = None, **route: Any
) -> tuple[Starlette, AnvilTempoRpc]:
    """pympp's Tempo charge server selling /paid for 0.25 pathUSD on the local chain."""
    rpc = AnvilTempoRpc()
    methods = pympp_tempo_server.charge(
        recipient=merchant,
        chain_id=chain.chain_id,
        rpc_url=chain.url,
        currencies=[PATH_USD],
        fee_payer=None if sponsor is None else pympp_key(sponsor),
        store=MemoryStore(),
        http_client=httpx.AsyncClient(transport=rpc),
    )
    server = Mpp(methods=methods, realm=REALM, secret_key=SECRET)

    @pay(server.tempo.charge(amount="0.25", **route))  # type: ignore[misc]
    async def paid(request: Request, credential: Any, receipt: Any) -> JSONResponse:
        return JSONResponse({"ok": True, "payer": receipt.payer})

    return Starlette(routes=[Route("/paid", paid)]), rpc


#: Pay ``url`` with ``Client`` ("sync") or ``AsyncClient`` ("async") through a wallet.
get = paid_get


# -- (a) our client pays pympp's server ---------------------------------------------


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("case", ["pull", "pull-fee-payer", "push", "pull-splits"])
def test_our_client_pays_pympp_tempo_server(
    tempo_chain: TempoChain, tempo_policy: Policy, flavour: str, case: str
) -> None:
    payer = tempo_chain.funded_account(FUNDS)
    merchant, platform = Account.create().address, Account.create().address
    sponsor = tempo_chain.funded_account(FUNDS) if case == "pull-fee-payer" else None
    route: dict[str, Any] = {}
    if sponsor is not None:
        route["fee_payer"] = True
    if case == "pull-splits":
        route["splits"] = [{"amount": str(SPLIT), "recipient": platform}]
    app, rpc = pympp_app(tempo_chain, merchant, sponsor=sponsor, **route)
    wallet = TempoWallet(
        payer,
        chain_id=tempo_chain.chain_id,
        rpc_url=tempo_chain.url,
        assets=[tempo_chain.asset()],
        modes=("push",) if case == "push" else ("pull",),
        split_recipients=[platform],
        client_id="mpp-client-tests",
    )
    with LocalServer(app) as server:
        response = get(flavour, tempo_policy, wallet, server.url + "/paid")
        sent = response.request.headers["authorization"]
        replay = httpx.get(server.url + "/paid", headers={"Authorization": sent})

    assert response.status_code == 200, response.text
    assert response.json()["payer"].lower() == payer.address.lower()
    record = payment_record(response)
    assert record is not None and record.status == "committed"
    receipt = Receipt.parse(response.headers["payment-receipt"])
    on_chain = tempo_chain.receipt(receipt.reference)
    assert on_chain["status"] == "0x1"
    # Exactly the price moved: the primary transfer carries our attribution memo.
    credential = Credential.parse(sent)
    memo = attribution_memo(credential.echo["id"], REALM, "mpp-client-tests")
    primary = PRICE - SPLIT if case == "pull-splits" else PRICE
    assert tempo_chain.balance(merchant) == primary
    moved = movements_in(on_chain, PATH_USD)
    assert Movement(payer.address, merchant, primary, memo) in moved
    if case == "pull-splits":
        assert tempo_chain.balance(platform) == SPLIT
        assert Movement(payer.address, platform, SPLIT, None) in moved
    if sponsor is not None:
        assert tempo_chain.balance(payer.address) == FUNDS - PRICE  # pympp paid the fee
        assert tempo_chain.balance(sponsor.address) < FUNDS
        assert rpc.simulations == 1
    spent = FUNDS - tempo_chain.balance(payer.address)

    # (c) pympp refuses the replayed credential, and nothing more moves.
    assert replay.status_code in (402, 403)
    assert "already used" in replay.json()["detail"]
    assert "payment-receipt" not in replay.headers
    assert tempo_chain.balance(merchant) == primary
    assert FUNDS - tempo_chain.balance(payer.address) == spent


# -- (b) pympp's client pays our server ----------------------------------------------


def pay_with_pympp(
    chain: TempoChain, payer: LocalAccount, url: str, *, client_id: str | None = None
) -> httpx.Response:
    method = pympp_tempo_client.charge(
        account=pympp_key(payer), chain_id=chain.chain_id, rpc_url=chain.url, client_id=client_id
    )

    async def run() -> httpx.Response:
        async with PymppClient(methods=[method]) as client:
            return await client.fetch(url)

    return asyncio.run(run())


@pytest.mark.parametrize("case", ["pull", "pull-fee-payer", "pull-splits"])
def test_pympp_client_pays_our_tempo_verifier(tempo_chain: TempoChain, case: str) -> None:
    payer = tempo_chain.funded_account(FUNDS)
    merchant, platform, affiliate = (Account.create().address for _ in range(3))
    splits = [(platform, SPLIT), (affiliate, 10_000, SPLIT_MEMO)] if case == "pull-splits" else []
    verifier = TempoVerifier(
        tempo_chain.url,
        fee_payer=tempo_chain.funded_account(FUNDS) if case == "pull-fee-payer" else None,
        splits=splits,
    )
    shop = PaidServer(
        {"/paid": "0.25 USD"},
        verifier=verifier,
        currency=PATH_USD,
        recipient=merchant,
        asset="USD",
        decimals=6,
        ttl=timedelta(seconds=20),  # see the module notes: validBefore within 30 s
    )
    recorder = Recorder(shop)
    with LocalServer(recorder) as server:
        response = pay_with_pympp(tempo_chain, payer, server.url + "/paid", client_id="pympp")
        [paid] = [seen for seen in recorder.seen if "authorization" in seen.headers]
        sent = paid.headers["authorization"]
        replay = httpx.get(server.url + "/paid", headers={"Authorization": sent})

    assert response.status_code == 200, response.text
    [tx_hash] = verifier.settled
    assert Receipt.parse(response.headers["payment-receipt"]).reference == tx_hash
    credential = Credential.parse(sent)
    assert credential.payload["type"] == "transaction"
    assert credential.source == f"did:pkh:eip155:{tempo_chain.chain_id}:{payer.address}"
    # pympp wrote the same attribution memo we compute (and put it on memo-less splits too).
    memo = attribution_memo(credential.echo["id"], shop.realm, "pympp")
    assert "0x" + memo.hex() == pympp_attribution(credential.echo["id"], shop.realm, "pympp")
    moved = movements_in(tempo_chain.receipt(tx_hash), PATH_USD)
    primary = PRICE - SPLIT - 10_000 if splits else PRICE
    assert tempo_chain.balance(merchant) == primary
    assert Movement(payer.address, merchant, primary, memo) in moved
    if splits:
        assert tempo_chain.balance(platform) == SPLIT
        assert tempo_chain.balance(affiliate) == 10_000
        assert Movement(payer.address, platform, SPLIT, memo) in moved
        assert Movement(payer.address, affiliate, 10_000, bytes.fromhex(SPLIT_MEMO[2:])) in moved
    if case == "pull-fee-payer":
        assert tempo_chain.balance(payer.address) == FUNDS - PRICE  # our server paid the fee
    spent = FUNDS - tempo_chain.balance(payer.address)

    # (c) our verifier refuses the replayed credential, and nothing more moves.
    assert replay.status_code == 402
    assert "already used" in replay.json()["detail"]
    assert "payment-receipt" not in replay.headers
    assert tempo_chain.balance(merchant) == primary
    assert FUNDS - tempo_chain.balance(payer.address) == spent
    assert verifier.settled == [tx_hash]


def test_pympp_refuses_a_transfer_bound_to_another_challenge(
    tempo_chain: TempoChain, tempo_policy: Policy
) -> None:
    """The check our wallet failed before it wrote the memo, on pympp's side."""
    payer = tempo_chain.funded_account(FUNDS)
    merchant = Account.create().address
    app, _ = pympp_app(tempo_chain, merchant)
    wallet = TempoWallet(
        payer, chain_id=tempo_chain.chain_id, rpc_url=tempo_chain.url, assets=[tempo_chain.asset()]
    )

    with LocalServer(app) as server:
        first, second = challenge_at(server.url + "/paid"), challenge_at(server.url + "/paid")
        answer = present(
            server.url + "/paid", second, pay_now(wallet, first), wallet.quote(second).payer
        )
    assert answer.status_code in (402, 403)
    assert "memo is not bound to this challenge" in answer.json()["detail"]
    assert tempo_chain.balance(payer.address) == FUNDS
    assert tempo_chain.balance(merchant) == 0
