"""Selling for ``tempo`` charges in tests: :class:`TempoVerifier`, which settles on a Tempo chain.

It reads the challenge's terms with the package's own reader (they are the
server's own terms), but decodes what the wallet signed on its own: the
``0x76`` transaction and the ``0x78`` envelope are RLP-decoded here, field
by field, and the sender's signing payload is rebuilt from the decoded
fields (not taken from the wallet's encoder, pytempo) before the signature
is recovered; the node then checks the transaction again. The fee payer's
co-signature goes through the same signer seam as every other signature.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import attrs
import rlp  # type: ignore[import-untyped]
from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from pytempo import Call, TempoTransaction  # type: ignore[import-untyped]
from pytempo import Signature as PySignature

from .._exceptions import ChallengeError
from ..methods._chain._addresses import did_pkh, parse_did_pkh, same_address
from ..methods._chain._evm_charge import selector
from ..methods._chain._rpc import ChainRpc, ChainTransportError, RpcError
from ..methods._chain._signing import (
    SECP256K1_N,
    DigestSigner,
    Signature,
    as_signer,
    recover_address,
)
from ..methods._chain._tempo_charge import (
    PATH_USD,
    TempoTerms,
    memo_binds,
    parse_attribution_memo,
    tempo_terms,
)
from ..methods._chain._tempo_tx import cosign_as_fee_payer
from ..protocol import Challenge, Credential
from ._logs import Movement, movements_in
from ._server import Settlement, VerificationFailed, echoed_challenge

__all__ = ["TempoVerifier"]

_TRANSFER_SELECTOR = selector("transfer(address,uint256)")
_TRANSFER_WITH_MEMO_SELECTOR = selector("transferWithMemo(address,uint256,bytes32)")
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})+")


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
    """The sender of a Tempo signature (65 bytes, ``v`` 0/1 or 27/28, low ``s`` only)."""
    r, s, v = (
        int.from_bytes(signature[:32], "big"),
        int.from_bytes(signature[32:64], "big"),
        signature[64],
    )
    if v in (27, 28):
        v -= 27
    if v not in (0, 1) or not 0 < s <= SECP256K1_N // 2:
        raise ValueError("the signature has a bad v or a malleable s")
    return recover_address(keccak(payload), Signature(r, s, v))


def _call_movement(sender: str, token: str, call: tuple[str, int, bytes]) -> Movement:
    to, value, data = call
    if not same_address(to, token):
        raise _fail("the transaction calls something other than the charge token")
    if value != 0:
        raise _fail("the transaction also sends native value")
    if data[:4] == _TRANSFER_SELECTOR and len(data) == 68:
        recipient, amount = abi_decode(["address", "uint256"], data[4:])
        return Movement(sender, to_checksum_address(recipient), int(amount))
    if data[:4] == _TRANSFER_WITH_MEMO_SELECTOR and len(data) == 100:
        recipient, amount, memo = abi_decode(["address", "uint256", "bytes32"], data[4:])
        return Movement(sender, to_checksum_address(recipient), int(amount), bytes(memo))
    raise _fail("a call is not a TIP-20 transfer or transferWithMemo")


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
        fee_payer: LocalAccount | DigestSigner | str | None = None,
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
        self.fee_payer: DigestSigner | None = (
            None if fee_payer is None else as_signer(fee_payer, "the fee payer's key")
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
        challenge = echoed_challenge(echo, request)
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
        final = cosign_as_fee_payer(self.fee_payer, with_sender)
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
