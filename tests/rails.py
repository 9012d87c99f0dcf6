"""What the EVM and Tempo tests share: one copy each.

``HeldKey`` is a secp256k1 key reachable only through the wallets' signer
seam (``address`` and ``sign_digest``), as a key in a hardware token would
be: not an eth-account ``LocalAccount``, and it answers in whichever of the
shapes a signer may use. ``Faulty`` is a web3 provider in front of a real
node that fails chosen requests (a lost answer, a refused connection, a
re-sent broadcast); ``CountingAsync`` an async provider that lists what it
sent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from eth_keys import keys
from web3.providers import AsyncHTTPProvider, BaseProvider, HTTPProvider

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

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
