"""A pympp client, run as its own process: it pays one URL and reports what happened.

The tests start it with ``python tests/peers/pympp_client.py`` and a JSON job on
stdin (never argv: the job may carry a test key). It pays with pympp's own
client engine (``mpp.client.PaymentTransport``), so pympp parses the challenge, builds the
echo and serializes the credential, then replays the exact credential it sent
once more with a plain ``httpx`` request, the way an attacker who copied it
would. It prints one JSON object on stdout: the statuses, the paid body, the
receipt header and the replay's problem. Never the credential itself.

Jobs:

``{"method": "evm", "url", "key", "token", "chain_id", "decimals", "name", "version"}``
    pympp's ``evm`` client method (EIP-3009 ``authorization``).
``{"method": "dev", "url", "seed"}``
    A ``dev`` client method written against pympp's public client contract
    (``mpp.Method`` + ``mpp.client.ClientMethod``): pympp has none built in. It
    signs ``mpp_client``'s dev voucher over the echo pympp built.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx
from mpp import Credential
from mpp.client import ClientMethod, CredentialParams, PaymentTransport


class _Recorder(httpx.AsyncBaseTransport):
    """The real transport, remembering the payment credentials it forwarded."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.credentials: list[str] = []
        self.statuses: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        value = request.headers.get("authorization", "")
        if value.lower().startswith("payment "):
            self.credentials.append(value)
        response = await self.inner.handle_async_request(request)
        self.statuses.append(response.status_code)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def _evm_method(job: dict[str, Any]) -> ClientMethod:
    from eth_account import Account
    from mpp.methods.evm import client as evm

    return evm.charge(
        currency=job["token"],
        account=Account.from_key(job["key"]),
        chain_id=job["chain_id"],
        decimals=job["decimals"],
        authorization={"name": job["name"], "version": job["version"]},
    )


def _dev_method(job: dict[str, Any]) -> ClientMethod:
    import nacl.signing
    from mpp.methods import Method
    from pydantic import BaseModel, ConfigDict

    from mpp_client._didkey import did_key_from_public
    from mpp_client.methods.dev import voucher_message
    from mpp_client.protocol import b64url_encode

    class DevRequest(BaseModel):
        model_config = ConfigDict(extra="allow")
        amount: str
        currency: str

    class DevPayload(BaseModel):
        type: str
        payer: str
        signature: str

    definition: Method[DevRequest, DevPayload] = Method(
        name="dev", intent="charge", request_model=DevRequest, payload_model=DevPayload
    )
    key = nacl.signing.SigningKey(bytes.fromhex(job["seed"]))
    payer = did_key_from_public(bytes(key.verify_key))

    async def create_credential(params: CredentialParams) -> str:
        echo = params.challenge.to_echo()
        fields = {
            "id": echo.id,
            "realm": echo.realm,
            "method": echo.method,
            "intent": echo.intent,
            "request": echo.request,
        }
        signature = key.sign(voucher_message(fields, payer)).signature
        payload = {"type": "voucher", "payer": payer, "signature": b64url_encode(signature)}
        return Credential(challenge=echo, payload=payload, source=payer).to_authorization()

    return ClientMethod(method=definition, create_credential=create_credential)


async def run(job: dict[str, Any]) -> dict[str, Any]:
    method = _evm_method(job) if job["method"] == "evm" else _dev_method(job)
    recorder = _Recorder()
    # pympp's own transport over the recorder, plugged into an httpx client as its docs show.
    transport = PaymentTransport(methods=[method], inner=recorder)
    async with httpx.AsyncClient(transport=transport) as client:
        paid = await client.get(job["url"])
    report: dict[str, Any] = {
        "status": paid.status_code,
        "statuses": recorder.statuses,
        "body": paid.text,
        "receipt": paid.headers.get("payment-receipt"),
        "credentials_sent": len(recorder.credentials),
    }
    if recorder.credentials:
        async with httpx.AsyncClient() as plain:
            replay = await plain.get(
                job["url"], headers={"Authorization": recorder.credentials[-1]}
            )
        report["replay_status"] = replay.status_code
        report["replay_body"] = replay.text
        report["replay_receipt"] = replay.headers.get("payment-receipt")
    return report


def main() -> None:
    job = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(run(job))))


if __name__ == "__main__":
    main()
