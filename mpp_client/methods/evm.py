"""The ``evm`` payment method: one-time ERC-20 charges on EVM chains.

Implements the client side of ``draft-evm-charge-00``. A challenge asks for
``amount`` base units of the ERC-20 token ``currency`` for ``recipient`` on
``methodDetails.chainId``; the wallet answers with one of four credential types:

``permit2``
    An EIP-712 Permit2 ``PermitWitnessTransferFrom`` (``PermitBatch...`` when the
    request has ``splits``) signed off-chain, with the draft's ``PaymentWitness``
    (``challengeHash`` and ``externalId``). The server submits it and pays gas.
``authorization``
    An EIP-3009 ``TransferWithAuthorization`` signed off-chain, its ``nonce`` set
    to the challenge hash. The server submits it to the token and pays gas.
``transaction``
    A signed EIP-1559 ``transfer(recipient, amount)`` on the token. The server
    broadcasts it; the payer pays gas.
``hash``
    The same transaction, broadcast by the wallet itself; once it is mined the
    wallet sends its hash. Money moves before the server has answered.

The type is the first one the server lists in ``credentialTypes`` that the
wallet allows and can produce (``prefer="wallet"`` uses the wallet's order
instead). Before anything is signed the terms are checked: the chain is one the
wallet pays on, the token is in the asset registry for that chain, addresses
are well formed (and EIP-55 valid when mixed-case), the recipient and every
split recipient are expected, splits are only paid with ``permit2`` and add up
to less than the amount, and the validity window ends at the challenge's expiry
and no later. Any failure is a :class:`~mpp_client.ChallengeError` and nothing
is signed.

The challenge hash. ``authorization`` nonces and the Permit2 witness
``challengeHash`` are a keccak256 hash of the challenge, and the peers hash
different bytes. Two rules exist:

``"concat"``
    ``keccak256(id || realm)``: the UTF-8 bytes of the id, then of the realm
    (the draft's ``abi.encodePacked(id, realm)``). mppx 0.11 and the draft.
``"json-array"``
    ``keccak256`` of the JSON text ``["<id>","<realm>"]`` (no spaces, non-ASCII
    written as UTF-8, not ``\\u`` escapes). pympp 0.16.

A server only accepts its own rule, so the wallet picks one per challenge
(:func:`challenge_binding`): pympp marks every challenge it issues (its route
scope ``_mppx_scope`` inside ``request``, its issuance nonce ``_mpp_nonce``
inside ``opaque``), so a challenge with either mark is hashed as a JSON array;
any other challenge (mppx, the draft, this package's test server) with the
draft's rule. ``challenge_hash_scheme="concat"`` or ``"json-array"`` pins one
rule for a server the marks misjudge.

Permit2 notes. The draft does not say who the Permit2 ``spender`` (the address
that submits the transfer) is; the wallet uses ``methodDetails.spender`` when
the server sends one and the ``recipient`` otherwise. The permit ``nonce`` is
the challenge hash read as a number, so at most one permit per challenge can
ever settle. The witness type string is the draft's, byte for byte (with its
space after the comma), so the typed-data hash is computed field by field
(:func:`permit2_digest`) rather than by a generic EIP-712 encoder, which would
drop that space.

The chain. ``transaction`` and ``hash`` need a node, and ``authorization`` and
``permit2`` use one when there is one (to read a token's EIP-712 domain, to
check the Permit2 allowance): ``rpc_urls={chain: url}``, or your own web3.py
``Web3`` / ``AsyncWeb3`` / provider with ``web3=``. ``pay`` uses the ``Web3``
(or one built from the URL), ``apay`` the ``AsyncWeb3`` (or one built from the
URL for that payment). The node's chain id is checked before anything is
signed with what it says; reads are retried on transport errors, a broadcast
is sent once (:mod:`~mpp_client.methods._chain._rpc`).

Needs the ``evm`` extra (eth-account, web3). Keys: a hex private key, 32
bytes, an ``eth_account`` ``LocalAccount``, a Web3 Secret Storage keystore
(:meth:`EvmWallet.from_keystore`), or any signer object with ``address`` and
``sign_digest(digest)`` (a key held in a token, say): every signature goes
through that one seam (:mod:`~mpp_client.methods._chain._signing`). The key
never appears in ``repr()``, errors or logs, and the wallet refuses to be
pickled.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal, cast

try:
    from eth_abi.abi import decode as abi_decode
    from eth_abi.abi import encode as abi_encode
    from eth_account.signers.local import LocalAccount

    from ._chain._addresses import (
        checked_address,
        did_pkh,
        is_address,
        parse_did_pkh,
        same_address,
        to_hex,
    )
    from ._chain._eip712 import (
        PERMIT2_WITNESS_TYPE_STRING,
        authorization_digest,
        eip3009_domain_separator,
        payment_witness_hash,
        permit2_digest,
    )
    from ._chain._evm_charge import (
        CHALLENGE_BINDINGS,
        CREDENTIAL_TYPES,
        PERMIT2_ADDRESS,
        ChallengeBinding,
        EvmTerms,
        binding_name,
        challenge_binding,
        challenge_hash,
        evm_terms,
        selector,
        transfer_calldata,
    )
    from ._chain._nodes import (
        MaybeSent,
        NotSent,
        Web3Arg,
        expect_chain,
        nodes_from,
        prepare_eip1559,
        run_offline,
        send_transaction,
    )
    from ._chain._rpc import (
        ChainFlow,
        ChainRpc,
        ChainTransportError,
        RpcError,
        eth_call,
        returned_data,
    )
    from ._chain._signing import (
        DigestSigner,
        sign,
        sign_eip1559,
    )
    from ._chain._terms import UINT256_MAX, Split
    from ._chain._wallet import EthWallet

except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        f"the evm payment method needs its extra ({exc.name} is missing): "
        'pip install "mpp-client[evm]"'
    ) from exc

from .._exceptions import (
    ChallengeError,
    ChallengeExpired,
    PaymentFailed,
    PaymentOutcomeUnknown,
)
from .._text import get_logger
from ..money import Amount, AssetEntry, AssetRegistry
from ..protocol import Challenge
from ._base import Quote

__all__ = [
    "CHALLENGE_BINDINGS",
    "CREDENTIAL_TYPES",
    "PERMIT2_ADDRESS",
    "PERMIT2_WITNESS_TYPE_STRING",
    "ChainRpc",
    "ChallengeBinding",
    "EvmTerms",
    "EvmWallet",
    "RpcError",
    "Split",
    "authorization_digest",
    "challenge_binding",
    "challenge_hash",
    "did_pkh",
    "eip3009_domain_separator",
    "evm_terms",
    "is_address",
    "parse_did_pkh",
    "payment_witness_hash",
    "permit2_digest",
    "same_address",
    "transfer_calldata",
]

logger = get_logger("mpp_client.evm")

#: EIP-712 domains (name, version) of EIP-3009 tokens the wallet knows without
#: asking the chain. Other tokens: pass ``token_domains`` or an RPC URL.
TOKEN_DOMAINS: Mapping[tuple[int, str], tuple[str, str]] = {
    (8453, "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"): ("USD Coin", "2"),  # Base USDC
    (84532, "0x036cbd53842c5426634e7929541ec2318f3dcf7e"): ("USDC", "2"),  # Base Sepolia USDC
}


# -- the wallet ------------------------------------------------------------------

CredentialType = Literal["permit2", "authorization", "transaction", "hash"]


class _Skip(Exception):
    """This credential type cannot be produced for this challenge; try the next."""


@dataclass(frozen=True, slots=True)
class _Plan:
    terms: EvmTerms
    asset: AssetEntry
    types: tuple[str, ...]
    valid_before: int
    skipped: tuple[str, ...] = field(default_factory=tuple)


class EvmWallet(EthWallet):
    """Pays ``evm`` charges: ERC-20 transfers signed with one secp256k1 key.

    ::

        wallet = EvmWallet(
            os.environ["AGENT_EVM_KEY"],            # or EvmWallet.from_keystore(path, pw)
            rpc_urls={8453: "https://base.example/rpc"},
            credential_types=("permit2", "authorization", "transaction"),
        )

    ``chain_ids`` (plus the chains of ``rpc_urls``) are the chains the wallet
    pays on; a challenge for any other chain is refused. ``assets`` is the
    registry of tokens it knows (the built-in USDC entries by default): a
    token not in it for that chain is refused, and its entry gives the asset
    and decimals of the quote. ``credential_types`` are the types the wallet
    may use, in its order of preference (``"hash"`` is opt-in: it moves money
    before the server answers). A node per chain (``rpc_urls``, or ``web3``:
    a ``Web3``, ``AsyncWeb3`` or provider, a sync and async pair, or a mapping
    of chain id to those; a single one serves a wallet on one chain) is needed
    for ``transaction`` and ``hash``, and is used to check Permit2 allowances
    and to read an EIP-3009 token's EIP-712 domain when ``token_domains`` does
    not give it.

    ``payees``: when given, the only recipients paid. ``split_recipients``:
    who may receive a split (``"*"`` for anyone; none by default).
    ``permit2_addresses`` adds Permit2 deployments (per chain) to the
    canonical one. ``max_validity`` refuses challenges that expire further
    ahead than that; ``default_validity`` bounds signatures for challenges
    without an expiry.

    ``challenge_hash_scheme``: how ``authorization`` nonces and Permit2
    witnesses hash the challenge. ``"auto"`` (the default) reads the rule off
    each challenge (:func:`challenge_binding`: pympp's JSON array when the
    challenge carries pympp's marks, the draft's concatenation otherwise);
    ``"concat"`` or ``"json-array"`` always uses that rule.
    """

    name: ClassVar[str] = "evm"
    key_label: ClassVar[str] = "an EVM private key"

    def __init__(
        self,
        key: LocalAccount | DigestSigner | str | bytes,
        *,
        chain_ids: Iterable[int] = (),
        rpc_urls: Mapping[int, str] | None = None,
        web3: Web3Arg = None,
        assets: AssetRegistry | Iterable[AssetEntry] | None = None,
        credential_types: Sequence[str] = ("permit2", "authorization", "transaction"),
        prefer: Literal["server", "wallet"] = "server",
        token_domains: Mapping[tuple[int, str], tuple[str, str]] | None = None,
        permit2_addresses: Mapping[int, str] | None = None,
        payees: Iterable[str] | None = None,
        split_recipients: Iterable[str] | Literal["*"] = (),
        max_validity: timedelta = timedelta(hours=1),
        default_validity: timedelta = timedelta(minutes=5),
        challenge_hash_scheme: Literal["auto", "concat", "json-array", "draft", "mppx"] = "auto",
        max_gas: int = 200_000,
        receipt_timeout: float = 60.0,
        rpc_timeout: float = 10.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(
            key, assets=assets, payees=payees, split_recipients=split_recipients, clock=clock
        )
        named = {*chain_ids, *(rpc_urls or {})}
        self._nodes = nodes_from(
            rpc_urls=dict(rpc_urls or {}),
            web3=web3,
            single_chain=next(iter(named)) if len(named) == 1 else None,
            timeout=rpc_timeout,
        )
        chains = {*named, *self._nodes}
        if not chains or not all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in chains
        ):
            raise ValueError("name the chains the wallet pays on: chain_ids=[...] or rpc_urls=")
        self.chain_ids = frozenset(chains)
        types = tuple(credential_types)
        unknown = [t for t in types if t not in CREDENTIAL_TYPES]
        if unknown or not types:
            raise ValueError(
                f"credential_types must be some of {', '.join(CREDENTIAL_TYPES)}; got {types!r}"
            )
        self.credential_types = types
        if prefer not in ("server", "wallet"):
            raise ValueError("prefer must be 'server' or 'wallet'")
        self.prefer = prefer
        self._token_domains = {
            (chain, token.lower()): value for (chain, token), value in TOKEN_DOMAINS.items()
        }
        for (chain, token), value in (token_domains or {}).items():
            self._token_domains[(chain, token.lower())] = value
        self._permit2 = {chain: {PERMIT2_ADDRESS.lower()} for chain in self.chain_ids}
        for chain, address in (permit2_addresses or {}).items():
            if not is_address(address):
                raise ValueError(f"permit2_addresses[{chain}] is not an address")
            self._permit2.setdefault(chain, {PERMIT2_ADDRESS.lower()}).add(address.lower())
        self.max_validity = max_validity
        self.default_validity = default_validity
        self.challenge_hash_scheme = cast(
            Literal["auto", "concat", "json-array"],
            binding_name(challenge_hash_scheme, extra=("auto",)),
        )
        self.max_gas = max_gas
        self.receipt_timeout = receipt_timeout

    # -- choosing -----------------------------------------------------------------

    def _plan(self, challenge: Challenge) -> _Plan:
        terms = evm_terms(challenge)
        chain = self._pay_chain(terms.chain_id, self.chain_ids)
        asset = self._asset(terms.currency, chain)
        if terms.decimals is not None and terms.decimals != asset.decimals:
            raise ChallengeError(
                f"challenge says token {terms.currency} has {terms.decimals} decimals; "
                f"the registry says {asset.decimals}"
            )
        self._check_recipients(terms.recipient, [split.recipient for split in terms.splits])
        valid_before = self._valid_before(terms)
        offered = terms.offered_types
        if self.prefer == "server":
            order = [t for t in offered if t in self.credential_types]
        else:
            order = [t for t in self.credential_types if t in offered]
        types: list[str] = []
        skipped: list[str] = []
        for kind in order:
            reason = self._unusable(kind, terms)
            if reason is None:
                types.append(kind)
            else:
                skipped.append(f"{kind}: {reason}")
        if not types:
            why = "; ".join(skipped) or (
                f"the server accepts {', '.join(offered)}, the wallet uses "
                f"{', '.join(self.credential_types)}"
            )
            raise ChallengeError(f"no usable evm credential type ({why})")
        # Only ``hash`` moves money in ``pay`` (the wallet broadcasts); the others
        # sign for the server to submit. Falling back at payment time stays on
        # the first type's side of that line, so the quote says exactly whether
        # paying it moves funds.
        types = [kind for kind in types if (kind == "hash") == (types[0] == "hash")]
        if any(kind in ("authorization", "permit2") for kind in types):
            self._chash(challenge)  # an id or realm that cannot be hashed fails here, unsigned
        return _Plan(terms, asset, tuple(types), valid_before, tuple(skipped))

    def _unusable(self, kind: str, terms: EvmTerms) -> str | None:
        chain = terms.chain_id
        if terms.splits and kind != "permit2":
            return "splits can only be paid with permit2"
        if kind == "permit2":
            if terms.permit2_address.lower() not in self._permit2.get(chain, set()):
                return f"Permit2 at {terms.permit2_address} is not a known deployment"
            return None
        if kind == "authorization":
            known = (chain, terms.currency.lower()) in self._token_domains
            if not known and chain not in self._nodes:
                return "the token's EIP-712 domain is unknown (pass token_domains or an RPC URL)"
            return None
        if chain not in self._nodes:
            return f"needs an RPC URL for chain {chain}"
        return None

    def _valid_before(self, terms: EvmTerms) -> int:
        now = self._clock()
        if terms.expires is None:
            return math.floor((now + self.default_validity).timestamp())
        if terms.expires <= now:
            raise ChallengeExpired(f"evm charge expired at {terms.expires.isoformat()}")
        if terms.expires - now > self.max_validity:
            raise ChallengeError(
                f"challenge expires at {terms.expires.isoformat()}, further ahead than the "
                f"wallet's max_validity ({self.max_validity}); refusing a long-lived signature"
            )
        return math.floor(terms.expires.timestamp())

    def quote(self, challenge: Challenge) -> Quote:
        plan = self._plan(challenge)
        terms = plan.terms
        details: dict[str, Any] = {
            "credentialTypes": plan.types,
            "token": terms.currency,
            "validBefore": plan.valid_before,
            "challengeBinding": self.binding_for(challenge),
        }
        if terms.splits:
            details["splits"] = tuple(
                {"recipient": s.recipient, "amount": s.amount, "memo": s.memo} for s in terms.splits
            )
            details["primaryAmount"] = terms.primary_amount
        return Quote(
            amount=Amount(terms.amount, plan.asset.asset, plan.asset.decimals),
            payee=terms.recipient,
            method=self.name,
            intent=challenge.intent,
            expires=terms.expires,
            currency=challenge.request.get("currency", terms.currency),
            chain_id=terms.chain_id,
            details=details,
            payer=self.source_for(terms.chain_id),
            moves_funds=plan.types[0] == "hash",
            prepared=plan,
        )

    # -- paying -------------------------------------------------------------------

    def _prepared(self, challenge: Challenge, quote: Quote) -> _Plan:
        return quote.prepared if isinstance(quote.prepared, _Plan) else self._plan(challenge)

    def pay(self, challenge: Challenge, quote: Quote) -> Mapping[str, Any]:
        plan = self._prepared(challenge, quote)
        node = self._nodes.get(plan.terms.chain_id)
        try:
            rpc = None if node is None else node.rpc()
            offline = (
                None if node is not None else f"needs an RPC URL for chain {plan.terms.chain_id}"
            )
        except ChainTransportError as exc:
            rpc, offline = None, exc.cause
        skipped = list(plan.skipped)
        for kind in plan.types:
            flow = self._make(kind, challenge, plan, offline, "" if node is None else node.where)
            try:
                payload = run_offline(flow) if rpc is None else rpc.run(flow)
            except _Skip as exc:
                skipped.append(f"{kind}: {exc}")
                continue
            return self._made(kind, challenge, plan, payload)
        raise PaymentFailed(f"no evm credential could be made: {'; '.join(skipped)}")

    async def apay(self, challenge: Challenge, quote: Quote) -> Mapping[str, Any]:
        """:meth:`pay`, with the node reached through an ``AsyncWeb3`` (the one given, or
        one built from the RPC URL for this payment)."""
        plan = self._prepared(challenge, quote)
        node = self._nodes.get(plan.terms.chain_id)
        if node is None:  # signing only: in a worker thread, as a signer may take its time
            return await super().apay(challenge, quote)
        skipped = list(plan.skipped)
        async with node.arpc() as rpc:
            for kind in plan.types:
                try:
                    payload = await rpc.run(self._make(kind, challenge, plan, None, node.where))
                except _Skip as exc:
                    skipped.append(f"{kind}: {exc}")
                    continue
                return self._made(kind, challenge, plan, payload)
        raise PaymentFailed(f"no evm credential could be made: {'; '.join(skipped)}")

    def _made(
        self, kind: str, challenge: Challenge, plan: _Plan, payload: dict[str, Any]
    ) -> dict[str, Any]:
        logger.info(
            "evm: %s credential for %s base units of %s on chain %s to %s (challenge hash: %s)",
            kind,
            plan.terms.amount,
            plan.terms.currency,
            plan.terms.chain_id,
            plan.terms.recipient,
            self.binding_for(challenge),
        )
        return payload

    def _make(
        self, kind: str, challenge: Challenge, plan: _Plan, offline: str | None, where: str
    ) -> ChainFlow[dict[str, Any]]:
        """The credential of type ``kind``; ``offline`` says why there is no node (if none)."""
        terms = plan.terms
        if kind == "authorization":
            name, version = yield from self._token_domain(terms, offline, where)
            return self._authorization(challenge, plan, name, version)
        if kind == "permit2":
            if offline is None:
                yield from self._check_permit2_allowance(terms, where)
            return self._permit2_payload(challenge, plan)
        if offline is not None:
            raise _Skip(offline)
        data = transfer_calldata(terms.recipient, terms.amount)
        raw, tx_hash = yield from self._sign_transaction(
            terms.chain_id, terms.currency, data, where
        )
        if kind == "transaction":
            return {"type": "transaction", "signature": to_hex(raw)}
        yield from self._broadcast(terms.chain_id, raw, tx_hash)
        return {"type": "hash", "hash": tx_hash}

    def _sign(self, digest: bytes) -> str:
        return to_hex(sign(self._signer, digest).to_bytes())

    def _chash(self, challenge: Challenge) -> bytes:
        rule = self.binding_for(challenge)
        try:
            return challenge_hash(challenge.id, challenge.realm, rule)
        except ValueError as exc:
            raise ChallengeError(str(exc)) from None

    def binding_for(self, challenge: Challenge) -> ChallengeBinding:
        """The challenge-hash rule this wallet signs ``challenge`` with."""
        if self.challenge_hash_scheme == "auto":
            return challenge_binding(challenge)
        return self.challenge_hash_scheme

    def _authorization(
        self, challenge: Challenge, plan: _Plan, name: str, version: str
    ) -> dict[str, Any]:
        terms = plan.terms
        nonce = self._chash(challenge)
        digest = authorization_digest(
            eip3009_domain_separator(name, version, terms.chain_id, terms.currency),
            sender=self.address,
            to=terms.recipient,
            value=terms.amount,
            valid_after=0,
            valid_before=plan.valid_before,
            nonce=nonce,
        )
        return {
            "type": "authorization",
            "from": self.address,
            "to": terms.recipient,
            "value": str(terms.amount),
            "validAfter": "0",
            "validBefore": str(plan.valid_before),
            "nonce": to_hex(nonce),
            "signature": self._sign(digest),
        }

    def _token_domain(
        self, terms: EvmTerms, offline: str | None, where: str
    ) -> ChainFlow[tuple[str, str]]:
        """The token's EIP-712 (name, version): configured, known, or read from the chain once."""
        known = self._token_domains.get((terms.chain_id, terms.currency.lower()))
        if known is not None:
            return known
        if offline is not None:
            raise _Skip("the token's EIP-712 domain is unknown")
        try:
            yield from expect_chain(terms.chain_id, where)
            name = _decode_string(
                returned_data((yield eth_call(terms.currency, selector("name()"))))
            )
            version = _decode_string(
                returned_data((yield eth_call(terms.currency, selector("version()"))))
            )
        except (RpcError, ChainTransportError, ValueError) as exc:
            raise _Skip(f"could not read the token's EIP-712 name and version ({exc})") from None
        self._token_domains[(terms.chain_id, terms.currency.lower())] = (name, version)
        return name, version

    def _permit2_payload(self, challenge: Challenge, plan: _Plan) -> dict[str, Any]:
        terms = plan.terms
        transfers = [(terms.recipient, terms.primary_amount)] + [
            (split.recipient, split.amount) for split in terms.splits
        ]
        chash = self._chash(challenge)
        nonce = int.from_bytes(chash, "big")
        external_id = terms.external_id or ""
        spender = terms.spender or terms.recipient
        digest = permit2_digest(
            chain_id=terms.chain_id,
            permit2=terms.permit2_address,
            permitted=[(terms.currency, amount) for _, amount in transfers],
            spender=spender,
            nonce=nonce,
            deadline=plan.valid_before,
            witness=payment_witness_hash(chash, external_id),
        )
        witness: dict[str, str] = {"challengeHash": to_hex(chash)}
        if terms.external_id is not None:
            witness["externalId"] = terms.external_id
        return {
            "type": "permit2",
            "permit": {
                "permitted": [
                    {"token": terms.currency, "amount": str(amount)} for _, amount in transfers
                ],
                "nonce": str(nonce),
                "deadline": str(plan.valid_before),
            },
            "transferDetails": [
                {"to": to, "requestedAmount": str(amount)} for to, amount in transfers
            ],
            "witness": witness,
            "signature": self._sign(digest),
        }

    def _check_permit2_allowance(self, terms: EvmTerms, where: str) -> ChainFlow[None]:
        data = selector("allowance(address,address)") + abi_encode(
            ["address", "address"], [self.address, terms.permit2_address]
        )
        try:
            yield from expect_chain(terms.chain_id, where)
            (allowance,) = abi_decode(
                ["uint256"], returned_data((yield eth_call(terms.currency, data)))
            )
        except (RpcError, ChainTransportError, ValueError) as exc:
            raise _Skip(f"could not read the Permit2 allowance ({exc})") from None
        if allowance < terms.amount:
            raise _Skip(
                f"the Permit2 allowance for {terms.currency} is {allowance}, below "
                f"{terms.amount}: approve Permit2 once with approve_permit2()"
            )

    def _sign_transaction(
        self, chain_id: int, to: str, data: bytes, where: str
    ) -> ChainFlow[tuple[bytes, str]]:
        """A signed EIP-1559 call of ``to`` with ``data``: nonce, gas and fees from the node."""
        try:
            yield from expect_chain(chain_id, where)
            tx = yield from prepare_eip1559(self.address, chain_id, to, data, max_gas=self.max_gas)
        except RpcError as exc:
            raise PaymentFailed(
                f"the transfer cannot be prepared on chain {chain_id}: {exc.rpc_message}; "
                "nothing was sent"
            ) from None
        except ChainTransportError as exc:
            raise PaymentFailed(
                f"the RPC for chain {chain_id} failed ({exc.cause}); nothing was sent"
            ) from None
        return sign_eip1559(self._signer, tx)

    def _broadcast(self, chain: int, raw: bytes, tx_hash: str) -> ChainFlow[None]:
        """Send a signed transaction once and wait until it is mined successfully."""
        try:
            mined = yield from send_transaction(raw, tx_hash, wait=self.receipt_timeout)
        except NotSent as exc:
            raise PaymentFailed(
                f"chain {chain} did not take the transfer: {exc}; nothing was sent"
            ) from None
        except MaybeSent as exc:
            raise PaymentOutcomeUnknown(
                f"transaction {tx_hash} was sent; {exc}: it may still be mined"
            ) from None
        if mined.get("status") != "0x1":
            raise PaymentFailed(
                f"transaction {tx_hash} reverted: no tokens moved (its gas was spent)"
            )

    def approve_permit2(
        self, chain_id: int, token: str, amount: int = UINT256_MAX, *, permit2: str | None = None
    ) -> str:
        """Approve Permit2 to move ``token`` for this wallet (one transaction, once per token).

        Needs a node for ``chain_id`` (an RPC URL or a ``Web3``); returns the
        mined transaction's hash.
        """
        token = checked_address(token, "token")
        spender = checked_address(permit2 or PERMIT2_ADDRESS, "permit2")
        data = selector("approve(address,uint256)") + abi_encode(
            ["address", "uint256"], [spender, amount]
        )
        node = self._nodes.get(chain_id)
        if node is None:
            raise PaymentFailed(f"approving Permit2 needs an RPC URL for chain {chain_id}")

        def approval() -> ChainFlow[str]:
            raw, tx_hash = yield from self._sign_transaction(chain_id, token, data, node.where)
            yield from self._broadcast(chain_id, raw, tx_hash)
            return tx_hash

        try:
            return node.rpc().run(approval())
        except PaymentOutcomeUnknown as exc:
            raise PaymentFailed(f"the Permit2 approval did not succeed: {exc.message}") from None

    # -- hygiene ------------------------------------------------------------------

    def close(self) -> None:
        """Close the RPC connections the wallet opened."""
        for node in self._nodes.values():
            node.close()

    def __repr__(self) -> str:
        chains = ",".join(map(str, sorted(self.chain_ids)))
        return f"<EvmWallet address={self.address} chains=[{chains}]>"


def _decode_string(data: bytes) -> str:
    (value,) = abi_decode(["string"], data)
    if not isinstance(value, str) or not value:
        raise ValueError("empty string")
    return value


#: Module-level names of earlier releases (never in ``__all__``), still found here.
_MOVED = {
    "MAX_MEMO": ("._chain._terms", "MAX_TEXT_MEMO"),
    "MAX_SPLITS": ("._chain._terms", "MAX_SPLITS"),
    "PAYMENT_WITNESS_TYPE": ("._chain._eip712", "PAYMENT_WITNESS_TYPE"),
    "TRANSFER_SELECTOR": ("._chain._evm_charge", "TRANSFER_SELECTOR"),
    "TRANSFER_TOPIC": ("._chain._evm_charge", "TRANSFER_TOPIC"),
    "decode_transfer_calldata": ("._chain._evm_charge", "decode_transfer_calldata"),
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from importlib import import_module  # noqa: PLC0415 - only for old names

        module, attribute = _MOVED[name]
        return getattr(import_module(module, __package__), attribute)
    if name == "JsonRpc":
        warnings.warn(
            "mpp_client.methods.evm.JsonRpc is deprecated: it is ChainRpc (on web3.py), "
            "which takes the same URL; the old name is removed in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return ChainRpc
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
