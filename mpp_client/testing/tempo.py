"""Selling for ``tempo`` charges in tests: a verifier that settles on a local Tempo chain.

:class:`TempoVerifier` plugs into :class:`~mpp_client.testing.PaidServer`
(``PaidServer(routes, verifier=TempoVerifier(rpc_url), currency=PATH_USD,
recipient=merchant, asset="USD", decimals=6)``) and settles pull and push
credentials on a Tempo node, as the reference servers do (see its notes).

:class:`TempoChain` runs ``anvil --network tempo`` (Foundry's anvil 1.7.1) on
a free loopback port, with the facts a test needs about that node:

* The chain has TIP-20 precompiles at ``0x20c0...0000`` (pathUSD, 6
  decimals) and ``0x20c0...0001``-``0003``; anvil's dev accounts (its default
  mnemonic) hold 2^64-1 base units of each. Nothing else does:
  ``anvil_setBalance`` and ``anvil_dealERC20`` cannot credit a TIP-20
  balance, so :meth:`TempoChain.fund` transfers from dev account 0 (the
  faucet).
* Fees are paid in a TIP-20 token (pathUSD here: the faucet's and the fee
  payer's fee token), priced in attodollars per gas: ``eth_gasPrice`` starts
  at 11 gwei and follows the EIP-1559 base fee, and a TIP-20 transfer costs
  about 300,000 gas, so a payment's fee is a few thousandths of a pathUSD.
* The node runs hardfork ``T4`` here. anvil's default for ``--network
  tempo`` is ``T0``, which predates expiring nonces (``nonceKey`` 2^256-1):
  there that lane is an ordinary sequential nonce, so a key's second
  expiring-nonce transaction is dropped unmined. From ``T1`` on, each one is
  unique by hash and dies at ``validBefore``, which on ``T4`` must be at most
  30 seconds ahead, as on Tempo before T11 (a transaction valid for longer is
  accepted into the pool, then silently dropped: ``eth_sendRawTransactionSync``
  answers "Transaction confirmation timeout" 30 seconds later).
* ``eth_sendRawTransactionSync`` takes only the raw transaction (no timeout
  parameter), and the node serves no ``tempo_simulateV1``; its
  ``eth_simulateV1`` panics on a ``0x76`` call, which stops the node.
* ``eth_sendRawTransactionSync`` answers with the mined receipt; sending a
  transaction that was already mined answers with its receipt again (it does
  not move money twice, and it is no error).

Needs the ``tempo`` extra (which brings everything
:mod:`mpp_client.testing.evm` imports).
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, cast

import attrs
import rlp  # type: ignore[import-untyped]
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keys.datatypes import Signature as KeySignature
from eth_typing import Hash32
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from pytempo import Call, TempoTransaction  # type: ignore[import-untyped]
from pytempo import Signature as PySignature
from pytempo.contracts import TIP20  # type: ignore[import-untyped]

from .._exceptions import ChallengeError
from ..methods._chain._rpc import ChainRpc, ChainTransportError, RpcError
from ..methods.evm import TRANSFER_TOPIC, did_pkh, parse_did_pkh, same_address
from ..methods.tempo import (
    PATH_USD,
    TempoTerms,
    memo_binds,
    parse_attribution_memo,
    tempo_terms,
)
from ..policy import AssetEntry
from ..protocol import Challenge, Credential, parse_rfc3339
from ._server import Settlement, VerificationFailed
from .evm import Anvil, selector

__all__ = [
    "ANVIL_DEV_KEY",
    "TEMPO_HARDFORK",
    "TRANSFER_WITH_MEMO_TOPIC",
    "Movement",
    "TempoChain",
    "TempoVerifier",
    "movements_in",
]

#: Dev account 0 of anvil's default mnemonic ("test test ... junk"): public, test-only.
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
#: The newest Tempo hardfork anvil 1.7.1 knows; expiring nonces need T1 or later.
TEMPO_HARDFORK = "T4"
_GAS_LIMIT = 1_000_000


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


class TempoChain:
    """A local Tempo chain on ``127.0.0.1`` with a funded faucet, as a context manager.

    ::

        with TempoChain(anvil_binary) as chain:
            payer = chain.funded_account(5_000_000)      # 5 pathUSD
            assert chain.balance(payer.address) == 5_000_000

    ``binary`` is the anvil executable (``scripts/chain-tools.sh`` prints its
    path). ``chain_id`` defaults to anvil's 31337, which no public Tempo chain
    uses; ``hardfork`` to :data:`TEMPO_HARDFORK`.
    """

    def __init__(
        self,
        binary: str | os.PathLike[str],
        *,
        chain_id: int = 31337,
        hardfork: str = TEMPO_HARDFORK,
        startup_timeout: float = 20.0,
    ) -> None:
        self.anvil = Anvil(
            binary,
            chain_id=chain_id,
            startup_timeout=startup_timeout,
            accounts=1,
            extra_args=("--network", "tempo", "--hardfork", hardfork),
        )
        self.chain_id = chain_id
        self.hardfork = hardfork
        #: Dev account 0: it holds the genesis stablecoins and funds test keys.
        self.faucet: LocalAccount = Account.from_key(ANVIL_DEV_KEY)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.anvil.url

    @property
    def rpc(self) -> ChainRpc:
        return self.anvil.rpc

    def start(self) -> Self:
        self.anvil.start()
        return self

    def stop(self) -> None:
        self.anvil.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<TempoChain url={self.url!r} chain_id={self.chain_id} hardfork={self.hardfork}>"

    # -- reading ------------------------------------------------------------------

    def balance(self, owner: str, token: str = PATH_USD) -> int:
        """``owner``'s balance of the TIP-20 ``token`` (pathUSD by default), in base units."""
        data = selector("balanceOf(address)") + abi_encode(["address"], [owner])
        (value,) = abi_decode(["uint256"], self.rpc.eth_call(token, data))
        return int(value)

    def asset(self, token: str = PATH_USD, name: str = "pathUSD") -> AssetEntry:
        """A registry entry for a genesis stablecoin on this chain (6 decimals, USD)."""
        return AssetEntry("tempo", to_checksum_address(token), "USD", 6, self.chain_id, name)

    def gas_price(self) -> int:
        """The node's ``eth_gasPrice``, in attodollars per gas."""
        return int(self.rpc.call("eth_gasPrice"), 16)

    def receipt(self, tx_hash: str) -> dict[str, Any]:
        receipt = self.rpc.call("eth_getTransactionReceipt", tx_hash)
        if not isinstance(receipt, dict):
            raise LookupError(f"no receipt for {tx_hash}")
        return receipt

    # -- sending ------------------------------------------------------------------

    def send(
        self,
        account: LocalAccount,
        calls: Sequence[Any],
        *,
        fee_token: str = PATH_USD,
    ) -> dict[str, Any]:
        """Sign ``calls`` (pytempo ``Call``s) from ``account`` and broadcast them; the receipt.

        Uses the account's sequential nonce (lane 0), so transactions from one
        account must not be sent concurrently from elsewhere. Raises
        ``RuntimeError`` when the transaction reverted.
        """
        with self._lock:
            nonce = int(self.rpc.call("eth_getTransactionCount", account.address, "pending"), 16)
            gas_price = self.gas_price()
            tx = TempoTransaction.create(
                chain_id=self.chain_id,
                gas_limit=_GAS_LIMIT,
                max_fee_per_gas=2 * gas_price,
                max_priority_fee_per_gas=gas_price // 10,
                nonce=nonce,
                nonce_key=0,
                fee_token=fee_token,
                calls=tuple(calls),
            )
            signed = tx.sign(_hex(bytes(account.key)))
            receipt = self.rpc.call("eth_sendRawTransactionSync", _hex(bytes(signed.encode())))
        if not isinstance(receipt, dict) or receipt.get("status") != "0x1":
            raise RuntimeError(f"the transaction from {account.address} failed: {receipt!r:.200}")
        return receipt

    def fund(self, address: str, amount: int, token: str = PATH_USD) -> dict[str, Any]:
        """Send ``amount`` base units of ``token`` from the faucet to ``address``; the receipt."""
        call: Call = TIP20(to_checksum_address(token)).transfer(
            to=to_checksum_address(address), amount=amount
        )
        return self.send(self.faucet, [call])

    def funded_account(self, amount: int = 10_000_000, token: str = PATH_USD) -> LocalAccount:
        """A fresh key holding ``amount`` base units of ``token`` (10 pathUSD by default).

        The same token pays its fees (pathUSD is a fee token).
        """
        account: LocalAccount = Account.create()
        if amount:
            self.fund(account.address, amount, token)
        return account


# -- what a Tempo transaction pays ---------------------------------------------------


_TRANSFER = selector("transfer(address,uint256)")
_TRANSFER_WITH_MEMO = selector("transferWithMemo(address,uint256,bytes32)")
#: keccak256("TransferWithMemo(address,address,uint256,bytes32)"): TIP-20's memo event.
TRANSFER_WITH_MEMO_TOPIC = (
    "0x" + keccak(text="TransferWithMemo(address,address,uint256,bytes32)").hex()
)
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})+")
_HALF_ORDER = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0


@dataclass(frozen=True, slots=True)
class Movement:
    """One TIP-20 transfer of the charge token: from a call or from a receipt's logs."""

    sender: str
    recipient: str
    amount: int
    memo: bytes | None = None


def movements_in(receipt: Mapping[str, Any], token: str) -> list[Movement]:
    """Every transfer of ``token`` a receipt's logs record, once each.

    A TIP-20 ``transferWithMemo`` emits both ``Transfer`` and
    ``TransferWithMemo``: the pair counts as one movement, with its memo.
    Movements are in log order.
    """
    found: list[Movement | None] = []
    for log in receipt.get("logs") or ():
        topics = [str(topic).lower() for topic in log.get("topics") or ()]
        if not same_address(str(log.get("address", "")), token) or len(topics) < 3:
            continue
        sender = to_checksum_address("0x" + topics[1][-40:])
        recipient = to_checksum_address("0x" + topics[2][-40:])
        data = str(log.get("data", "0x"))
        amount = int(data[2:66] or "0", 16)
        if topics[0] == TRANSFER_TOPIC and len(topics) == 3:
            found.append(Movement(sender, recipient, amount))
        elif topics[0] == TRANSFER_WITH_MEMO_TOPIC and len(topics) == 4:
            twin = Movement(sender, recipient, amount)
            # The plain Transfer this event accompanies (emitted just before it) is the
            # same movement: the memo event replaces it.
            for index in range(len(found) - 1, -1, -1):
                if found[index] == twin:
                    found[index] = None
                    break
            found.append(Movement(sender, recipient, amount, bytes.fromhex(topics[3][2:])))
    return [movement for movement in found if movement is not None]


@dataclass(frozen=True, slots=True)
class _Decoded:
    """A client-signed Tempo transaction (``0x76``) or fee-payer envelope (``0x78``)."""

    envelope: bool
    chain_id: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas_limit: int
    calls: tuple[tuple[str, int, bytes], ...]
    nonce_key: int
    nonce: int
    valid_before: int | None
    valid_after: int | None
    fee_token: bytes
    fee_payer_slot: Any
    signature: bytes
    #: The sender's signing payload (``0x76`` domain), rebuilt from the fields.
    signing_payload: bytes


def _uint(item: object) -> int:
    if not isinstance(item, bytes) or (item[:1] == b"\x00"):
        raise ValueError("not a canonical RLP integer")
    return int.from_bytes(item, "big")


def _decode(raw: bytes) -> _Decoded:
    """Decode the client's transaction; ``ValueError`` for anything else."""
    if raw[:1] not in (b"\x76", b"\x78"):
        raise ValueError("not a Tempo transaction (0x76) or fee-payer envelope (0x78)")
    fields = rlp.decode(raw[1:])
    if not isinstance(fields, list) or len(fields) != 14:
        raise ValueError("a Tempo transaction has 14 fields here (no key authorization)")
    calls_rlp, access_list, authorizations = fields[4], fields[5], fields[12]
    if not isinstance(calls_rlp, list) or access_list != [] or authorizations != []:
        raise ValueError("calls must be a list; access and authorization lists must be empty")
    calls: list[tuple[str, int, bytes]] = []
    for call in calls_rlp:
        if not isinstance(call, list) or len(call) != 3 or len(call[0]) != 20:
            raise ValueError("a call is [to, value, data]")
        calls.append((to_checksum_address(bytes(call[0])), _uint(call[1]), bytes(call[2])))
    envelope = raw[0] == 0x78
    fee_token = fields[10]
    if not isinstance(fee_token, bytes) or len(fee_token) not in (0, 20):
        raise ValueError("feeToken must be empty or 20 bytes")
    signature = fields[13]
    if not isinstance(signature, bytes) or len(signature) != 65:
        raise ValueError("the sender signature must be 65 bytes (secp256k1)")
    sponsored = envelope or fields[11] != b""
    body = [
        *fields[:10],
        b"" if sponsored else fee_token,
        b"\x00" if sponsored else b"",
        authorizations,
    ]
    return _Decoded(
        envelope=envelope,
        chain_id=_uint(fields[0]),
        max_priority_fee_per_gas=_uint(fields[1]),
        max_fee_per_gas=_uint(fields[2]),
        gas_limit=_uint(fields[3]),
        calls=tuple(calls),
        nonce_key=_uint(fields[6]),
        nonce=_uint(fields[7]),
        valid_before=_uint(fields[8]) if fields[8] != b"" else None,
        valid_after=_uint(fields[9]) if fields[9] != b"" else None,
        fee_token=bytes(fee_token),
        fee_payer_slot=fields[11],
        signature=bytes(signature),
        signing_payload=b"\x76" + bytes(rlp.encode(body)),
    )


def _recover(payload: bytes, signature: bytes) -> str:
    r, s, v = (
        int.from_bytes(signature[:32], "big"),
        int.from_bytes(signature[32:64], "big"),
        signature[64],
    )
    if v in (27, 28):
        v -= 27
    if v not in (0, 1) or not 0 < s <= _HALF_ORDER:
        raise ValueError("the signature has a bad v or a malleable s")
    parsed = KeySignature(vrs=(v, r, s))
    return str(parsed.recover_public_key_from_msg_hash(keccak(payload)).to_checksum_address())


def _call_movement(sender: str, token: str, call: tuple[str, int, bytes]) -> Movement:
    to, value, data = call
    if not same_address(to, token):
        raise _fail("the transaction calls something other than the charge token")
    if value != 0:
        raise _fail("the transaction also sends native value")
    if data[:4] == _TRANSFER and len(data) == 68:
        recipient, amount = abi_decode(["address", "uint256"], data[4:])
        return Movement(sender, to_checksum_address(recipient), int(amount))
    if data[:4] == _TRANSFER_WITH_MEMO and len(data) == 100:
        recipient, amount, memo = abi_decode(["address", "uint256", "bytes32"], data[4:])
        return Movement(sender, to_checksum_address(recipient), int(amount), bytes(memo))
    raise _fail("a call is not a TIP-20 transfer or transferWithMemo")


# -- the verifier -----------------------------------------------------------------


def _fail(detail: str, code: str = "verification-failed") -> VerificationFailed:
    return VerificationFailed(code, detail)


def _unknown(detail: str) -> VerificationFailed:
    return VerificationFailed("verification-failed", detail, status=500)


@dataclass(frozen=True, slots=True)
class _Checked:
    """A credential that passed every check, ready to settle."""

    kind: str
    payer: str
    replay_token: str
    settle: Callable[[], dict[str, Any]]


class TempoVerifier:
    """Verifies ``tempo`` charge credentials and settles them on a Tempo chain.

    ::

        verifier = TempoVerifier(chain.url, fee_payer=chain.funded_account())
        server = PaidServer({"/paid": "0.25 USD"}, verifier=verifier,
                            currency=PATH_USD, recipient=merchant, asset="USD", decimals=6)

    It follows the server side of ``draft-tempo-charge-00`` and what both
    reference servers (pympp 0.16, mppx 0.11) check on top of it:

    ``transaction`` (pull)
        The client-signed ``0x76`` transaction (client-paid fees), or the
        ``0x78`` fee-payer envelope when the request sponsors fees: on this
        chain, with a ``validBefore`` that has not passed and is no later
        than the challenge's expiry (plus the one second pympp's client
        adds: ``validBefore`` is exclusive), nothing but TIP-20
        ``transfer``/``transferWithMemo`` calls on the token that pay exactly
        the recipient and each split (in any order; the request's memos
        where it names them), and a sender signature that recovers (the
        ``did:pkh`` source, when given, must name that sender). The payer
        must hold the amount. A sponsored transaction is co-signed with
        ``fee_payer`` (fees in ``fee_token``, within ``max_gas`` and
        ``max_fee_per_gas``), then broadcast with
        ``eth_sendRawTransactionSync``, and the receipt's logs must show the
        transfers.
    ``hash`` (push)
        Refused when the request sponsors fees. The mined receipt must have
        succeeded and its logs must show the transfers from the payer (the
        source's address, else the transaction's sender).

    Zero-amount ``proof`` credentials are refused: this verifier sells only
    for money. Either way the payment must be bound to this challenge: with a request
    memo, the primary transfer carries it; without one, some transfer
    carries the MPP attribution memo of this challenge and realm, and none
    carries an attribution memo of another (pympp's rule; mppx checks only
    the first half). Replay tokens (the client's signed bytes, the
    transaction hash) are used once, so a replayed credential, or a hash
    already settled, is refused before anything is broadcast.

    ``splits`` are ``(recipient, amount)`` or ``(recipient, amount, memo)``
    tuples added to every request; ``memo`` is a request memo (a bytes32
    hex string) and ``supported_modes`` the modes to advertise (both when
    None, advertised as absent).
    """

    method = "tempo"
    blocking = True

    def __init__(
        self,
        rpc: ChainRpc | str,
        *,
        token: str = PATH_USD,
        fee_payer: LocalAccount | str | None = None,
        fee_token: str | None = None,
        splits: Iterable[tuple[str, int] | tuple[str, int, str]] = (),
        memo: str | None = None,
        supported_modes: Sequence[str] | None = None,
        max_gas: int = 2_000_000,
        max_fee_per_gas: int = 100 * 10**9,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rpc = rpc if isinstance(rpc, ChainRpc) else ChainRpc(rpc, timeout=40.0)
        self.chain_id = int(self.rpc.call("eth_chainId"), 16)
        self.token = to_checksum_address(token)
        self.fee_payer: LocalAccount | None = (
            fee_payer
            if fee_payer is None or isinstance(fee_payer, LocalAccount)
            else Account.from_key(fee_payer)
        )
        self.fee_token = to_checksum_address(fee_token or token)
        self.splits = tuple(
            (to_checksum_address(split[0]), int(split[1]), split[2] if len(split) > 2 else None)
            for split in splits
        )
        self.memo = memo
        self.supported_modes = None if supported_modes is None else list(supported_modes)
        self.max_gas = max_gas
        self.max_fee_per_gas = max_fee_per_gas
        self.clock = clock
        self._lock = threading.Lock()
        self._consumed: set[str] = set()
        #: Settled transaction hashes, in order, for assertions.
        self.settled: list[str] = []

    def __repr__(self) -> str:
        sponsor = "" if self.fee_payer is None else f" fee_payer={self.fee_payer.address}"
        return f"<TempoVerifier chain_id={self.chain_id} token={self.token}{sponsor}>"

    # -- the request --------------------------------------------------------------

    def request_fields(self) -> Mapping[str, Any]:
        details: dict[str, Any] = {"chainId": self.chain_id}
        if self.fee_payer is not None:
            details["feePayer"] = True
        if self.memo is not None:
            details["memo"] = self.memo
        if self.splits:
            details["splits"] = [
                {"recipient": r, "amount": str(a), **({"memo": m} if m else {})}
                for r, a, m in self.splits
            ]
        if self.supported_modes is not None:
            details["supportedModes"] = list(self.supported_modes)
        return {"methodDetails": details}

    # -- single use ---------------------------------------------------------------

    def consumed(self, replay_token: str) -> bool:
        with self._lock:
            return replay_token in self._consumed

    def _consume(self, *replay_tokens: str) -> bool:
        with self._lock:
            if any(token in self._consumed for token in replay_tokens):
                return False
            self._consumed.update(replay_tokens)
            return True

    # -- redeeming ----------------------------------------------------------------

    def redeem(
        self,
        echo: Mapping[str, str],
        request: Mapping[str, Any],
        credential: Credential,
        claim: Callable[[], bool],
    ) -> Settlement:
        challenge = Challenge(
            id=echo["id"],
            realm=echo["realm"],
            method=echo["method"],
            intent=echo["intent"],
            request=request,
            request_b64=echo["request"],
            expires=parse_rfc3339(echo["expires"]) if "expires" in echo else None,
            expires_raw=echo.get("expires"),
        )
        try:
            terms = tempo_terms(challenge)
        except ChallengeError as exc:
            detail = f"the challenge's terms are unusable: {exc.message}"
            raise _fail(detail, "invalid-challenge") from None
        if terms.chain_id != self.chain_id or not same_address(terms.currency, self.token):
            raise _fail("the challenge is for another chain or token", "invalid-challenge")
        payload = credential.payload
        kind = payload.get("type")
        if kind not in ("transaction", "hash"):
            raise _fail("payload.type must be 'transaction' or 'hash'", "malformed-credential")
        mode = "pull" if kind == "transaction" else "push"
        if mode not in terms.modes:
            raise _fail(f"this challenge does not accept {mode} mode")
        claimed: str | None = None
        if credential.source is not None:
            parsed = parse_did_pkh(credential.source)
            if parsed is None or parsed[0] != self.chain_id:
                raise _fail("credential source is not a did:pkh on this chain")
            claimed = parsed[1]
        try:
            if kind == "transaction":
                checked = self._check_transaction(challenge, terms, payload, claimed)
            else:
                checked = self._check_hash(challenge, terms, payload, claimed)
        except (KeyError, TypeError, ValueError, IndexError, rlp.DecodingError) as exc:
            detail = f"malformed {kind} payload ({type(exc).__name__})"
            raise _fail(detail, "malformed-credential") from None
        if self.consumed(checked.replay_token):
            raise _fail(f"this {kind} credential was already used", "invalid-challenge")
        if not claim():
            raise _fail("challenge already used", "invalid-challenge")
        if not self._consume(checked.replay_token):
            raise _fail(f"this {kind} credential was already used", "invalid-challenge")
        receipt = checked.settle()
        tx_hash = str(receipt["transactionHash"]).lower()
        self._consume(f"tx:{tx_hash}")
        with self._lock:
            self.settled.append(tx_hash)
        extra: dict[str, Any] = {"challengeId": echo["id"], "chainId": self.chain_id}
        if terms.external_id is not None:
            extra["externalId"] = terms.external_id
        return Settlement(
            payer=did_pkh(self.chain_id, checked.payer), reference=tx_hash, receipt=extra
        )

    # -- what must be paid --------------------------------------------------------

    def _match(
        self,
        challenge: Challenge,
        terms: TempoTerms,
        moved: Sequence[Movement],
        *,
        exact: bool,
    ) -> list[Movement]:
        """The movements that pay each expected transfer; VerificationFailed when some are missing.

        Transfers whose memo the request names match only that memo; the
        others match any memo, preferring one bound to this challenge (so an
        equal transfer paying another challenge is not taken for this one).
        """
        expected = sorted(terms.transfers, key=lambda t: t.memo is None)
        unused = list(moved)

        def rank(movement: Movement) -> int:
            if movement.memo is not None and memo_binds(
                movement.memo, challenge.id, challenge.realm
            ):
                return 0
            return 2 if movement.memo is not None and parse_attribution_memo(movement.memo) else 1

        unused.sort(key=rank)
        matched: list[Movement] = []
        for transfer in expected:
            found = next(
                (
                    m
                    for m in unused
                    if same_address(m.recipient, transfer.recipient)
                    and m.amount == transfer.amount
                    and (transfer.memo is None or m.memo == transfer.memo)
                ),
                None,
            )
            if found is None:
                memo = "" if transfer.memo is None else " with the request's memo"
                raise _fail(f"no transfer pays {transfer.amount} to {transfer.recipient}{memo}")
            unused.remove(found)
            matched.append(found)
        if exact and unused:
            raise _fail("the transaction pays more than the challenge asks for")
        if terms.memo is None:
            memos = [m.memo for m in matched if m.memo is not None]
            attributions = [memo for memo in memos if parse_attribution_memo(memo) is not None]
            if not any(memo_binds(memo, challenge.id, challenge.realm) for memo in attributions):
                raise _fail("memo is not bound to this challenge (no MPP attribution memo)")
            if not all(memo_binds(memo, challenge.id, challenge.realm) for memo in attributions):
                raise _fail("a transfer carries an MPP attribution memo of another challenge")
        return matched

    def _now(self) -> int:
        return int(self.clock())

    # -- pull ---------------------------------------------------------------------

    def _check_transaction(
        self,
        challenge: Challenge,
        terms: TempoTerms,
        payload: Mapping[str, Any],
        claimed: str | None,
    ) -> _Checked:
        signature = payload["signature"]
        if not isinstance(signature, str) or _HEX.fullmatch(signature) is None:
            raise ValueError("transaction signature must be 0x-prefixed hex")
        raw = bytes.fromhex(signature[2:])
        replay_token = f"raw:{keccak(raw).hex()}"
        if self.consumed(replay_token):
            raise _fail("this transaction credential was already used", "invalid-challenge")
        tx = _decode(raw)
        if tx.chain_id != self.chain_id:
            raise _fail("the transaction is for another chain")
        if terms.fee_payer and not tx.envelope:
            raise _fail("the request sponsors fees: send the 0x78 fee-payer envelope")
        if tx.envelope and not terms.fee_payer:
            raise _fail("the request does not sponsor fees: send a 0x76 transaction")
        if not tx.envelope and tx.fee_payer_slot != b"":
            raise _fail("the transaction already carries a fee payer's signature")
        if tx.envelope and tx.fee_token != b"":
            raise _fail("a fee-payer envelope leaves feeToken to the fee payer")
        now = self._now()
        if tx.valid_before is None:
            raise _fail("the transaction has no validBefore")
        if tx.valid_before <= now:
            raise _fail("the transaction's validBefore has passed")
        if challenge.expires is not None and tx.valid_before > (
            math.floor(challenge.expires.timestamp()) + 1
        ):
            raise _fail("the transaction stays valid beyond the challenge's expiry")
        if tx.valid_after is not None and tx.valid_after > now:
            raise _fail("the transaction is not valid yet")
        try:
            sender = _recover(tx.signing_payload, tx.signature)
        except Exception:
            raise _fail("the sender signature does not recover") from None
        if tx.envelope and (
            not isinstance(tx.fee_payer_slot, bytes)
            or to_checksum_address(tx.fee_payer_slot) != sender
        ):
            raise _fail("the envelope names another sender than the one who signed")
        if claimed is not None and not same_address(claimed, sender):
            raise _fail("credential source is not the transaction's sender")
        moved = [_call_movement(sender, self.token, call) for call in tx.calls]
        self._match(challenge, terms, moved, exact=True)
        try:
            balance = self.balance(sender)
        except (RpcError, ChainTransportError) as exc:
            detail = f"the node could not be asked ({type(exc).__name__}); nothing was broadcast"
            raise _fail(detail) from None
        if balance < terms.amount:
            raise _fail("the payer's token balance is too low")
        if tx.envelope:
            if self.fee_payer is None:
                raise _fail("this server does not sponsor fees")
            if tx.gas_limit > self.max_gas or tx.max_fee_per_gas > self.max_fee_per_gas:
                raise _fail("the sponsored transaction asks for more gas or fees than allowed")
            final = self._cosign(tx, sender)
        else:
            final = raw

        def settle() -> dict[str, Any]:
            try:
                receipt = self.rpc.call("eth_sendRawTransactionSync", "0x" + final.hex())
            except RpcError as exc:
                raise _fail(f"the node refused the transaction: {exc.rpc_message}") from None
            except ChainTransportError as exc:
                raise _unknown(f"broadcast outcome unknown ({type(exc).__name__})") from None
            if (
                not isinstance(receipt, dict)
                or str(receipt.get("transactionHash", "")).lower() != "0x" + keccak(final).hex()
            ):
                raise _unknown("the node returned no receipt for the transaction")
            if receipt.get("status") != "0x1":
                raise _fail("the transaction reverted: nothing was transferred")
            try:
                self._match(
                    challenge,
                    terms,
                    self._from(movements_in(receipt, self.token), sender),
                    exact=False,
                )
            except VerificationFailed as exc:
                raise _unknown(f"the settled transfers do not match: {exc.detail}") from None
            return receipt

        return _Checked(kind="transaction", payer=sender, replay_token=replay_token, settle=settle)

    @staticmethod
    def _from(moved: Iterable[Movement], sender: str) -> list[Movement]:
        return [m for m in moved if same_address(m.sender, sender)]

    def _cosign(self, tx: _Decoded, sender: str) -> bytes:
        """The envelope as a ``0x76`` transaction carrying the fee payer's signature too."""
        assert self.fee_payer is not None
        unsigned = TempoTransaction.create(
            chain_id=tx.chain_id,
            gas_limit=tx.gas_limit,
            max_fee_per_gas=tx.max_fee_per_gas,
            max_priority_fee_per_gas=tx.max_priority_fee_per_gas,
            nonce=tx.nonce,
            nonce_key=tx.nonce_key,
            valid_before=tx.valid_before,
            valid_after=tx.valid_after,
            fee_token=self.fee_token,
            awaiting_fee_payer=True,
            calls=tuple(Call.create(to=to, value=value, data=data) for to, value, data in tx.calls),
        )
        with_sender = attrs.evolve(
            unsigned, sender_signature=PySignature.from_bytes(tx.signature), sender_address=sender
        )
        digest = with_sender.get_signing_hash(for_fee_payer=True)
        signed = self.fee_payer.unsafe_sign_hash(Hash32(digest))
        final = attrs.evolve(
            with_sender, fee_payer_signature=PySignature(r=signed.r, s=signed.s, v=signed.v)
        )
        return bytes(final.encode())

    def balance(self, owner: str) -> int:
        data = selector("balanceOf(address)") + abi_encode(["address"], [owner])
        (value,) = abi_decode(["uint256"], self.rpc.eth_call(self.token, data))
        return int(value)

    # -- push ---------------------------------------------------------------------

    def _check_hash(
        self,
        challenge: Challenge,
        terms: TempoTerms,
        payload: Mapping[str, Any],
        claimed: str | None,
    ) -> _Checked:
        if terms.fee_payer:
            raise _fail("a hash credential cannot answer a request that sponsors fees")
        tx_hash = payload["hash"]
        if not isinstance(tx_hash, str) or _HASH.fullmatch(tx_hash) is None:
            raise ValueError("hash must be 32 bytes of 0x-prefixed hex")
        tx_hash = tx_hash.lower()
        replay_token = f"tx:{tx_hash}"
        if self.consumed(replay_token):
            raise _fail("this transaction hash was already used", "invalid-challenge")
        try:
            receipt = self.rpc.call("eth_getTransactionReceipt", tx_hash)
        except (RpcError, ChainTransportError) as exc:
            raise _unknown(f"the node could not be asked ({type(exc).__name__})") from None
        if not isinstance(receipt, dict):
            raise _fail("no mined transaction has this hash")
        if receipt.get("status") != "0x1":
            raise _fail("the transaction failed on chain")
        sender = claimed or to_checksum_address(str(receipt.get("from")))
        moved = self._from(movements_in(receipt, self.token), sender)
        self._match(challenge, terms, moved, exact=False)
        return _Checked(
            kind="hash",
            payer=sender,
            replay_token=replay_token,
            settle=lambda: cast(dict[str, Any], receipt),
        )
