"""Selling for ``evm`` charges in tests: :class:`EvmVerifier`, which settles on a real chain.

It plugs into :class:`~mpp_client.testing.PaidServer` (``PaidServer(routes,
verifier=EvmVerifier(...), currency=token, recipient=merchant, asset="USD",
decimals=6)``) and follows the server side of ``draft-evm-charge-00``: every
check of the verification procedure, then the settlement
(``transferWithAuthorization``, ``permit[Batch]WitnessTransferFrom``,
broadcasting the signed transfer, or reading the mined one), waiting for a
successful receipt and matching its ``Transfer`` logs. Replay tokens (signer
and nonce, or transaction hash) are consumed once.

It reads the challenge's terms with the package's own reader
(:func:`~mpp_client.methods.evm.evm_terms`: they are the server's own terms),
but what it checks of the wallet's work it recomputes on its own or leaves to
the chain: the EIP-3009 digest with eth-account's generic EIP-712 encoder, the
transaction with eth-account's decoder and sender recovery, and the Permit2
signature by the witness-transfer contract itself (each settlement is
simulated before it is sent), so a verifier never agrees with a wallet's bug.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from ..methods._chain._addresses import (
    HEX_ADDRESS,
    did_pkh,
    parse_did_pkh,
    same_address,
    to_hex,
)
from ..methods._chain._eip712 import (
    PERMIT2_WITNESS_TYPE_STRING,
    payment_witness_hash,
    permit2_digest,
)
from ..methods._chain._evm_charge import (
    CHALLENGE_BINDINGS,
    CREDENTIAL_TYPES,
    PERMIT2_ADDRESS,
    ChallengeBinding,
    EvmTerms,
    binding_name,
    challenge_hash,
    decode_transfer_calldata,
    evm_terms,
    selector,
)
from ..methods._chain._nodes import MaybeSent, NotSent
from ..methods._chain._rpc import ChainRpc, ChainTransportError, RpcError
from ..methods._chain._signing import recover_signer, typed_data_digest
from ..methods._chain._terms import Split, uint256
from ..protocol import Challenge, Credential
from ._chain_client import ChainClient, authorization_calldata
from ._logs import transfers_in
from ._server import Settlement, VerificationFailed, echoed_challenge

__all__ = ["EvmVerifier"]

_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_SIGNATURE = re.compile(r"0x[0-9a-fA-F]{130}")


def _fail(detail: str, code: str = "verification-failed") -> VerificationFailed:
    return VerificationFailed(code, detail)


@dataclass(frozen=True, slots=True)
class _Checked:
    """A credential that passed every check, ready to settle."""

    kind: str
    payer: str
    replay_token: str
    submit: Callable[[], dict[str, Any]]
    expected: tuple[tuple[str, str, int], ...]


class EvmVerifier:
    """Verifies ``evm`` charge credentials and settles them on a chain.

    ``rpc`` is the node; ``submitter`` the key that submits (and pays gas for)
    ``permit2`` and ``authorization`` settlements and so is the Permit2
    ``spender``. It is advertised as ``methodDetails.spender`` unless
    ``advertise_spender=False`` (then clients default to the recipient, which
    must then be the submitter). ``credential_types`` is advertised in that
    order. ``token_domain`` (EIP-712 name and version) says the token
    implements EIP-3009; without it ``authorization`` is refused. ``splits`` are
    ``(recipient, amount)`` pairs added to every request.

    ``challenge_hash_scheme``: which challenge-hash rules an ``authorization``
    nonce or a Permit2 witness may be bound by. ``"either"`` (the default)
    accepts the draft's ``"concat"`` (what mppx's and this package's clients
    sign for a challenge without pympp's marks) and pympp's ``"json-array"``,
    so every reference client can pay; a challenge is still settled at most
    once, whichever rule its credential used. ``"concat"`` or ``"json-array"``
    accepts that rule only, as one reference server would.
    """

    method = "evm"
    blocking = True

    def __init__(
        self,
        rpc: ChainRpc | str,
        *,
        token: str,
        submitter: LocalAccount | str,
        credential_types: Sequence[str] = CREDENTIAL_TYPES,
        token_domain: tuple[str, str] | None = None,
        decimals: int | None = None,
        permit2: str = PERMIT2_ADDRESS,
        splits: Iterable[tuple[str, int]] = (),
        advertise_spender: bool = True,
        challenge_hash_scheme: str = "either",
        clock: Callable[[], float] = time.time,
    ) -> None:
        account = submitter if isinstance(submitter, LocalAccount) else Account.from_key(submitter)
        self.chain = ChainClient(rpc, account)
        self.chain_id = self.chain.chain_id
        self.token = to_checksum_address(token)
        self.submitter = str(account.address)
        self.credential_types = tuple(credential_types)
        unknown = set(self.credential_types) - set(CREDENTIAL_TYPES)
        if unknown or not self.credential_types:
            raise ValueError(f"unknown credential types {sorted(unknown)}")
        self.token_domain = token_domain
        self.decimals = decimals
        self.permit2 = to_checksum_address(permit2)
        self.splits: tuple[Split[str], ...] = tuple(
            Split(to_checksum_address(r), int(a)) for r, a in splits
        )
        self.advertise_spender = advertise_spender
        self.challenge_hash_scheme = cast(
            Literal["either", "concat", "json-array"],
            binding_name(challenge_hash_scheme, extra=("either",)),
        )
        self.clock = clock
        self._lock = threading.Lock()
        self._consumed: set[str] = set()
        #: Settled transaction hashes, in order, for assertions.
        self.settled: list[str] = []

    def __repr__(self) -> str:
        return f"<EvmVerifier chain_id={self.chain_id} token={self.token}>"

    # -- the request --------------------------------------------------------------

    def request_fields(self) -> Mapping[str, Any]:
        details: dict[str, Any] = {
            "chainId": self.chain_id,
            "permit2Address": self.permit2,
            "credentialTypes": list(self.credential_types),
        }
        if self.decimals is not None:
            details["decimals"] = self.decimals
        if self.splits:
            details["splits"] = [
                {"recipient": s.recipient, "amount": str(s.amount)} for s in self.splits
            ]
        if self.advertise_spender and "permit2" in self.credential_types:
            details["spender"] = self.submitter
        return {"methodDetails": details}

    def consumed(self, replay_token: str) -> bool:
        with self._lock:
            return replay_token in self._consumed

    def _fresh(self, replay_token: str, what: str) -> str:
        """``replay_token``, unless it was consumed (then refuse before any chain work)."""
        if self.consumed(replay_token):
            raise _fail(f"this {what} was already used", "invalid-challenge")
        return replay_token

    def _consume(self, replay_token: str) -> bool:
        with self._lock:
            if replay_token in self._consumed:
                return False
            self._consumed.add(replay_token)
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
            terms = evm_terms(challenge)
        except Exception as exc:
            raise _fail(f"the challenge's terms are unusable: {exc}", "invalid-challenge") from None
        if terms.chain_id != self.chain_id or not same_address(terms.currency, self.token):
            raise _fail("the challenge is for another chain or token", "invalid-challenge")
        payload = credential.payload
        kind = payload.get("type")
        if kind not in CREDENTIAL_TYPES:
            raise _fail("payload.type is not a known evm credential type", "malformed-credential")
        if kind not in self.credential_types:
            raise _fail(f"credential type {kind!r} is not accepted here")
        if terms.splits and kind != "permit2":
            raise _fail("a request with splits can only be paid with a permit2 credential")
        claimed: tuple[int, str] | None = None
        if credential.source is not None:
            claimed = parse_did_pkh(credential.source)
            if claimed is None or claimed[0] != self.chain_id:
                raise _fail("credential source is not a did:pkh on this chain")
        try:
            if kind == "authorization":
                checked = self._check_authorization(challenge, terms, payload)
            elif kind == "permit2":
                checked = self._check_permit2(challenge, terms, payload, claimed)
            elif kind == "transaction":
                checked = self._check_transaction(terms, payload)
            else:
                checked = self._check_hash(terms, payload)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            detail = f"malformed {kind} payload ({type(exc).__name__})"
            raise _fail(detail, "malformed-credential") from None
        if claimed is not None and not same_address(claimed[1], checked.payer):
            raise _fail("credential source is not the payer")
        if self.consumed(checked.replay_token):
            raise _fail(f"this {kind} credential was already used", "invalid-challenge")
        if not claim():
            raise _fail("challenge already used", "invalid-challenge")
        if not self._consume(checked.replay_token):
            raise _fail(f"this {kind} credential was already used", "invalid-challenge")
        receipt = checked.submit()
        if receipt.get("status") != "0x1":
            raise _fail(f"the {kind} settlement reverted: nothing was transferred")
        moved = transfers_in(receipt, self.token)
        for expected in checked.expected:
            if not any(
                same_address(a, expected[0]) and same_address(b, expected[1]) and v == expected[2]
                for a, b, v in moved
            ):
                raise VerificationFailed(
                    "verification-failed",
                    "the settlement's Transfer logs do not match the challenge",
                    status=500,
                )
        tx_hash = str(receipt["transactionHash"])
        with self._lock:
            self.settled.append(tx_hash)
        extra: dict[str, Any] = {"challengeId": echo["id"], "chainId": self.chain_id}
        if terms.external_id is not None:
            extra["externalId"] = terms.external_id
        return Settlement(
            payer=did_pkh(self.chain_id, checked.payer), reference=tx_hash, receipt=extra
        )

    def _bound_hash(self, challenge: Challenge, claimed: str, what: str) -> bytes:
        """The challenge hash ``claimed`` (hex) is, under a rule this verifier accepts."""
        scheme = self.challenge_hash_scheme
        rules: tuple[ChallengeBinding, ...] = (
            CHALLENGE_BINDINGS if scheme == "either" else (scheme,)
        )
        for rule in rules:
            try:
                chash = challenge_hash(challenge.id, challenge.realm, rule)
            except ValueError:
                raise _fail("the challenge id or realm cannot be hashed") from None
            if claimed.lower() == to_hex(chash):
                return chash
        raise _fail(f"{what} is not the challenge hash ({' or '.join(rules)})")

    def _now(self) -> int:
        return int(self.clock())

    def _window(self, challenge: Challenge, until: int) -> None:
        if until <= self._now():
            raise _fail("the signature's validity has passed")
        if challenge.expires is not None and until > int(challenge.expires.timestamp()):
            raise _fail("the signature stays valid beyond the challenge's expiry")

    def _submit_or_refuse(self, to: str, data: bytes) -> Callable[[], dict[str, Any]]:
        try:
            self.chain.simulate(to, data)
        except RpcError as exc:
            raise _fail(f"the settlement would revert: {exc.rpc_message}") from None

        def submit() -> dict[str, Any]:
            try:
                return self.chain.transact(to, data)
            except (NotSent, RpcError) as exc:
                raise _fail(f"the node refused the settlement: {exc}") from None
            except (MaybeSent, ChainTransportError) as exc:
                raise VerificationFailed(
                    "verification-failed",
                    f"settlement outcome unknown ({type(exc).__name__})",
                    status=500,
                ) from None

        return submit

    def _check_authorization(
        self, challenge: Challenge, terms: EvmTerms, payload: Mapping[str, Any]
    ) -> _Checked:
        if self.token_domain is None:
            raise _fail("the token does not implement EIP-3009")
        for name, pattern in (
            ("from", HEX_ADDRESS),
            ("to", HEX_ADDRESS),
            ("nonce", _HASH),
            ("signature", _SIGNATURE),
        ):
            value = payload.get(name)
            if not isinstance(value, str) or pattern.fullmatch(value) is None:
                raise ValueError(f"authorization {name} is malformed")
        value, valid_after, valid_before = (
            _uint(payload.get(name)) for name in ("value", "validAfter", "validBefore")
        )
        sender = to_checksum_address(payload["from"])
        replay_token = self._fresh(
            f"authorization:{sender.lower()}:{payload['nonce'].lower()}", "authorization"
        )
        if not same_address(payload["to"], terms.recipient):
            raise _fail("authorization 'to' is not the challenge recipient")
        if value != terms.amount:
            raise _fail("authorization value is not the challenge amount")
        self._bound_hash(challenge, payload["nonce"], "authorization nonce")
        if valid_after >= self._now():
            raise _fail("the authorization is not valid yet")
        self._window(challenge, valid_before)
        # Recomputed with eth-account's generic EIP-712 encoder from the public
        # terms, not with the wallet's hand-built digest: a bug there shows here.
        digest = typed_data_digest(
            authorization_typed_data(
                self.token_domain,
                self.chain_id,
                self.token,
                sender=sender,
                to=terms.recipient,
                value=terms.amount,
                valid_after=valid_after,
                valid_before=valid_before,
                nonce=bytes.fromhex(payload["nonce"][2:]),
            )
        )
        if not same_address(recover_signer(digest, payload["signature"]), sender):
            raise _fail("the authorization signature is not the payer's")
        if self.chain.balance_of(self.token, sender) < terms.amount:
            raise _fail("the payer's token balance is too low")
        data = authorization_calldata(payload)
        return _Checked(
            kind="authorization",
            payer=sender,
            replay_token=replay_token,
            submit=self._submit_or_refuse(self.token, data),
            expected=((sender, terms.recipient, terms.amount),),
        )

    def _check_permit2(
        self,
        challenge: Challenge,
        terms: EvmTerms,
        payload: Mapping[str, Any],
        claimed: tuple[int, str] | None,
    ) -> _Checked:
        if claimed is None:
            raise _fail("a permit2 credential needs a did:pkh source (the permit's owner)")
        owner = claimed[1]
        permit = payload["permit"]
        permitted = permit["permitted"]
        details = payload["transferDetails"]
        witness = payload["witness"]
        signature = payload["signature"]
        if not isinstance(permitted, list) or not isinstance(details, list) or not permitted:
            raise ValueError("permitted and transferDetails must be lists")
        if len(permitted) != len(details):
            raise _fail("permitted and transferDetails differ in length")
        nonce = _uint(permit["nonce"])
        replay_token = self._fresh(f"permit2:{owner.lower()}:{nonce}", "permit")
        deadline = _uint(permit["deadline"])
        self._window(challenge, deadline)
        chash = self._bound_hash(challenge, str(witness["challengeHash"]), "witness.challengeHash")
        expected = [(terms.recipient, terms.primary_amount)] + [
            (s.recipient, s.amount) for s in terms.splits
        ]
        if len(details) != len(expected):
            raise _fail("transferDetails do not list the recipient and each split")
        pairs: list[tuple[str, int]] = []
        for index, (allowed, detail, (to, amount)) in enumerate(
            zip(permitted, details, expected, strict=True)
        ):
            if not same_address(str(allowed["token"]), self.token):
                raise _fail(f"permitted[{index}].token is not the challenge currency")
            if not same_address(str(detail["to"]), to):
                raise _fail(f"transferDetails[{index}].to is not the expected recipient")
            if _uint(detail["requestedAmount"]) != amount:
                raise _fail(f"transferDetails[{index}].requestedAmount is not the expected amount")
            if _uint(allowed["amount"]) < amount:
                raise _fail(f"permitted[{index}].amount is below the transfer")
            pairs.append((self.token, _uint(allowed["amount"])))
        digest = permit2_digest(
            chain_id=self.chain_id,
            permit2=self.permit2,
            permitted=pairs,
            spender=self.submitter,
            nonce=nonce,
            deadline=deadline,
            witness=payment_witness_hash(chash, terms.external_id or ""),
        )
        if not same_address(recover_signer(digest, str(signature)), owner):
            raise _fail("the permit signature is not the source's (or names another spender)")
        total = terms.amount
        if self.chain.balance_of(self.token, owner) < total:
            raise _fail("the payer's token balance is too low")
        if self.chain.allowance(self.token, owner, self.permit2) < total:
            raise _fail("the payer has not approved Permit2 for this amount")
        witness_hash = payment_witness_hash(chash, terms.external_id or "")
        sig = bytes.fromhex(str(signature)[2:])
        if len(pairs) == 1:
            data = selector(
                "permitWitnessTransferFrom(((address,uint256),uint256,uint256),(address,uint256),"
                "address,bytes32,string,bytes)"
            ) + abi_encode(
                [
                    "((address,uint256),uint256,uint256)",
                    "(address,uint256)",
                    "address",
                    "bytes32",
                    "string",
                    "bytes",
                ],
                [
                    (pairs[0], nonce, deadline),
                    expected[0],
                    owner,
                    witness_hash,
                    PERMIT2_WITNESS_TYPE_STRING,
                    sig,
                ],
            )
        else:
            data = selector(
                "permitBatchWitnessTransferFrom(((address,uint256)[],uint256,uint256),"
                "(address,uint256)[],address,bytes32,string,bytes)"
            ) + abi_encode(
                [
                    "((address,uint256)[],uint256,uint256)",
                    "(address,uint256)[]",
                    "address",
                    "bytes32",
                    "string",
                    "bytes",
                ],
                [
                    (pairs, nonce, deadline),
                    expected,
                    owner,
                    witness_hash,
                    PERMIT2_WITNESS_TYPE_STRING,
                    sig,
                ],
            )
        return _Checked(
            kind="permit2",
            payer=owner,
            replay_token=replay_token,
            submit=self._submit_or_refuse(self.permit2, data),
            expected=tuple((owner, to, amount) for to, amount in expected),
        )

    def _check_transaction(self, terms: EvmTerms, payload: Mapping[str, Any]) -> _Checked:
        signature = payload["signature"]
        if not isinstance(signature, str) or re.fullmatch(r"0x[0-9a-fA-F]+", signature) is None:
            raise ValueError("transaction signature must be 0x-prefixed hex")
        raw = bytes.fromhex(signature[2:])
        tx_hash = to_hex(keccak(raw))
        replay_token = self._fresh(f"tx:{tx_hash}", "transaction")
        if not raw or raw[0] != 2:
            raise _fail("the transaction is not an EIP-1559 (type 2) transaction")
        try:
            fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
            sender = str(Account.recover_transaction(raw))
        except Exception:
            raise _fail("the transaction does not decode", "malformed-credential") from None
        if fields.get("chainId") != self.chain_id:
            raise _fail("the transaction is for another chain")
        to = fields.get("to")
        if not to or not same_address(to_hex(bytes(to)), self.token):
            raise _fail("the transaction does not call the challenge's token")
        try:
            recipient, amount = decode_transfer_calldata(bytes(fields.get("data", b"")))
        except ValueError:
            raise _fail("the transaction is not a transfer(address,uint256) call") from None
        if not same_address(recipient, terms.recipient) or amount != terms.amount:
            raise _fail("the transfer's recipient or amount does not match the challenge")
        if int(fields.get("value", 0)) != 0:
            raise _fail("the transaction also sends native currency")

        def submit() -> dict[str, Any]:
            try:
                return self.chain.send_raw(raw, tx_hash)
            except NotSent as exc:
                raise _fail(f"the node refused the transaction: {exc}") from None
            except MaybeSent as exc:
                raise VerificationFailed(
                    "verification-failed",
                    f"broadcast outcome unknown ({type(exc).__name__})",
                    status=500,
                ) from None

        return _Checked(
            kind="transaction",
            payer=sender,
            replay_token=replay_token,
            submit=submit,
            expected=((sender, terms.recipient, terms.amount),),
        )

    def _check_hash(self, terms: EvmTerms, payload: Mapping[str, Any]) -> _Checked:
        tx_hash = payload["hash"]
        if not isinstance(tx_hash, str) or _HASH.fullmatch(tx_hash) is None:
            raise ValueError("hash must be 32 bytes of 0x-prefixed hex")
        tx_hash = tx_hash.lower()
        replay_token = self._fresh(f"tx:{tx_hash}", "transaction hash")
        receipt = self.chain.rpc.call("eth_getTransactionReceipt", tx_hash)
        if not isinstance(receipt, dict):
            raise _fail("no mined transaction has this hash")
        if receipt.get("status") != "0x1":
            raise _fail("the transaction failed on chain")
        sender = to_checksum_address(str(receipt.get("from")))
        match = [
            (a, b, v)
            for a, b, v in transfers_in(receipt, self.token)
            if same_address(b, terms.recipient) and v == terms.amount
        ]
        if not match:
            raise _fail("the transaction has no Transfer of the amount to the recipient")
        return _Checked(
            kind="hash",
            payer=sender,
            replay_token=replay_token,
            submit=lambda: cast(dict[str, Any], receipt),
            expected=((match[0][0], terms.recipient, terms.amount),),
        )


def _uint(value: object) -> int:
    number = uint256(value)
    if number is None:
        raise ValueError("expected a stringified uint256")
    return number


def authorization_typed_data(
    domain: tuple[str, str],
    chain_id: int,
    token: str,
    *,
    sender: str,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
) -> dict[str, Any]:
    """EIP-3009's ``TransferWithAuthorization`` as EIP-712 typed data, from its specification."""
    name, version = domain
    return {
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
            "name": name,
            "version": version,
            "chainId": chain_id,
            "verifyingContract": token,
        },
        "message": {
            "from": sender,
            "to": to,
            "value": value,
            "validAfter": valid_after,
            "validBefore": valid_before,
            "nonce": nonce,
        },
    }
