"""The ``tempo`` payment method: one-time TIP-20 charges on the Tempo chain.

Implements the client side of ``draft-tempo-charge-00``. A challenge asks for
``amount`` base units of the TIP-20 token ``currency`` for ``recipient``; the
wallet answers with one of three payloads:

``transaction`` (pull mode, the default)
    A signed Tempo transaction (EIP-2718 type ``0x76``) whose calls are TIP-20
    ``transferWithMemo`` (or ``transfer``) on the token: one to the recipient
    for ``amount`` minus the splits, then one per split in the request's
    order. The server broadcasts it, so nothing moves until it does. With
    ``methodDetails.feePayer: true`` the sender signs with ``fee_token``
    empty and the ``0x00`` fee-payer placeholder, and the payload is the
    ``0x78`` fee-payer envelope (the sender-signed fields with the sender's
    address in the fee-payer slot), the hand-off format the reference SDKs
    (mppx through viem, pympp) send and accept. The server co-signs and
    broadcasts it. Without a fee payer the wallet sets ``fee_token`` (the
    charge token unless configured) and pays the fee itself.
``hash`` (push mode, opt-in)
    The same transaction without a fee payer, broadcast by the wallet
    (``eth_sendRawTransactionSync``); once its receipt reports success the
    wallet sends the hash. Money moves before the server has answered.
    Used only when the wallet allows it (``modes``), the challenge advertises
    it (``methodDetails.supportedModes``, absent meaning both) and the server
    does not sponsor fees (the draft forbids ``hash`` with ``feePayer``).
``proof`` (zero amount)
    An EIP-712 signature binding the payer to the challenge: domain
    ``{name: "MPP", version, chainId}``, primary type ``Proof``. Nothing
    moves. The credential ``source`` must be the payer's ``did:pkh``.

Memos. The primary transfer always carries a memo, so it is always a
``transferWithMemo``: the request's ``methodDetails.memo`` when it names one
(as the drafts say), otherwise the MPP *attribution memo*
(:func:`attribution_memo`): a tag, the realm's and the client's fingerprints
and the challenge id's, binding the transfer to this challenge. The drafts do
not define it, but both reference servers (pympp 0.16, mppx 0.11) refuse a
payment without it ("memo is not bound to this challenge"), because without
it one pushed transfer could be claimed for two challenges. A split carries
its own memo when it names one and is a plain ``transfer`` otherwise, as in
mppx (pympp's client also writes the attribution memo on memo-less splits;
both servers accept either). The peers ignore ``methodDetails.memo``: mppx
0.11 removed request memos (its schema refuses one) and pympp has no such
field, so a request that names one comes from a draft-following server.
A memo in the request that is an attribution memo for another challenge or
realm is refused before signing (pympp refuses every attribution-shaped
split memo): paying it could settle that other challenge.

Transactions use an expiring nonce (``nonceKey`` = 2^256-1, ``nonce`` 0) with
``validBefore`` at most ``valid_for`` seconds ahead and never after the
challenge's expiry, so a credential the server never uses dies on its own and
concurrent payments never contend for a nonce.

Before anything is signed the terms are checked and any failure is a
:class:`~mpp_client.ChallengeError`: the chain id is explicit (in the
challenge or configured: the drafts disagree on a default, 42431 in the
charge draft and 4217 in pympp, so the wallet assumes neither) and one the
wallet pays on; the token is in the asset registry for that chain; addresses
are 20 bytes (and EIP-55 valid when mixed-case); memos are ``bytes32`` and
no attribution memo for another challenge; the
recipient and every split recipient are expected; splits are positive and add
up to strictly less than ``amount``; the challenge has not expired; a mode the
server advertises is one the wallet allows.

Proof versions. The drafts and SDKs disagree on the proof's typed data:
draft-tempo-charge-00 says domain version ``"1"`` and ``Proof(string
challengeId)``; the MPP conformance vector (``tempo-proof.json``) says version
``"2"`` and ``Proof(string challengeId,string realm)``; mppx 0.11 uses version
``"3"`` and ``Proof(address account,string challengeId,string realm)``. The
wallet signs version 2 by default (the conformance vector) and any of the
three with ``proof_version=``; :func:`proof_typed_data` builds each.

The chain. A node is needed for push mode, and to read the gas price when
``max_fee_per_gas`` is not set: ``rpc_url`` / ``rpc_urls``, your own web3.py
``Web3`` / ``AsyncWeb3`` / provider with ``web3=``, or else the public
endpoint of a known chain. ``pay`` uses the ``Web3`` (or one built from the
URL), ``apay`` the ``AsyncWeb3`` (or one built from the URL for that
payment); the node's chain id is checked before signing, reads are retried
on transport errors, and the push is sent once
(:mod:`~mpp_client.methods._chain._rpc`).

Needs the ``tempo`` extra (pytempo, eth-account, web3). Keys: a hex private
key, 32 bytes, an ``eth_account`` ``LocalAccount``, a Web3 Secret Storage
keystore (:meth:`TempoWallet.from_keystore`), or any signer object with
``address`` and ``sign_digest(digest)``: the sender signature and the proof
both go through that one seam (:mod:`~mpp_client.methods._chain._signing`).
The key never appears in ``repr()``, errors or logs, and the wallet refuses
to be pickled.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

try:
    from eth_account.signers.local import LocalAccount
    from eth_utils.address import to_checksum_address
    from eth_utils.crypto import keccak
    from pytempo import TempoTransaction  # type: ignore[import-untyped]
    from pytempo.contracts import TIP20  # type: ignore[import-untyped]

    from ._chain._addresses import HEX_ADDRESS, did_pkh, to_hex
    from ._chain._eip712 import PROOF_VERSIONS, proof_digest, proof_typed_data
    from ._chain._nodes import (
        MaybeSent,
        Node,
        NotSent,
        Web3Arg,
        expect_chain,
        nodes_from,
        run_offline,
        send_transaction,
    )
    from ._chain._rpc import (
        ChainFlow,
        ChainTransportError,
        RpcError,
        quantity,
        read,
    )
    from ._chain._signing import DigestSigner, sign
    from ._chain._tempo_charge import (
        ATTRIBUTION_TAG,
        ATTRIBUTION_VERSION,
        MODES,
        PATH_USD,
        AttributionMemo,
        TempoTerms,
        Transfer,
        attribution_memo,
        memo_binds,
        parse_attribution_memo,
        tempo_terms,
    )
    from ._chain._tempo_tx import FEE_PAYER_ENVELOPE_TYPE, fee_payer_envelope, sign_as_sender
    from ._chain._terms import Split
    from ._chain._wallet import EthWallet
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        f"the tempo payment method needs pytempo ({exc.name} is missing): "
        'pip install "mpp-client[tempo]"'
    ) from exc

from .._exceptions import (
    ChallengeError,
    ChallengeExpired,
    PaymentFailed,
    PaymentOutcomeUnknown,
    TermsExpired,
    TermsRefused,
)
from .._text import get_logger
from ..money import Amount, AssetEntry, AssetRegistry
from ..protocol import Challenge
from ._base import Quote

__all__ = [
    "ATTRIBUTION_TAG",
    "ATTRIBUTION_VERSION",
    "EXPIRING_NONCE_KEY",
    "FEE_PAYER_ENVELOPE_TYPE",
    "KNOWN_CHAINS",
    "PATH_USD",
    "TEMPO_MAINNET",
    "TEMPO_TESTNET",
    "TRANSACTION_TYPE",
    "AttributionMemo",
    "TempoTerms",
    "TempoWallet",
    "Transfer",
    "attribution_memo",
    "did_pkh",
    "memo_binds",
    "parse_attribution_memo",
    "proof_typed_data",
    "tempo_terms",
]

logger = get_logger("mpp_client.tempo")

#: Tempo mainnet.
TEMPO_MAINNET = 4217
#: Tempo's public testnet (Moderato).
TEMPO_TESTNET = 42431
#: The chains the wallet knows, with their public RPC endpoints (used only
#: when no ``rpc_url`` is configured and the wallet needs a node).
KNOWN_CHAINS: Mapping[int, str] = {
    TEMPO_MAINNET: "https://rpc.tempo.xyz",
    TEMPO_TESTNET: "https://rpc.moderato.tempo.xyz",
}
#: EIP-2718 type of a Tempo transaction.
TRANSACTION_TYPE = 0x76
#: The nonce lane of expiring nonces: U256::MAX, with nonce 0 and a ``validBefore``.
EXPIRING_NONCE_KEY = 2**256 - 1
# -- the wallet ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    terms: TempoTerms
    chain_id: int
    asset: AssetEntry
    mode: Literal["proof", "pull", "push"]
    valid_before: int
    #: What the transaction pays: the primary transfer (with the request's memo
    #: or the attribution memo), then the splits with their own memos.
    transfers: tuple[Split[bytes], ...]


@dataclass(frozen=True, slots=True)
class _Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int


class TempoWallet(EthWallet):
    """Pays ``tempo`` charges: TIP-20 transfers signed with one secp256k1 key.

    ::

        wallet = TempoWallet(os.environ["AGENT_TEMPO_KEY"], chain_id=4217)

    ``chain_id``: the chain the wallet pays on. A challenge naming another
    chain is refused; a challenge naming none is paid on this one. Without
    it, the challenge must name a known Tempo chain (4217 mainnet, 42431
    testnet) or one of ``rpc_urls``. ``assets``: the tokens the wallet pays,
    per chain (the registry's ``tempo`` entries: pathUSD on both chains by
    default); a token's entry gives the quote's asset and decimals.

    ``modes``: the non-zero modes the wallet may use, in its order of
    preference. ``("pull",)`` by default: the wallet only signs and the
    server broadcasts. Add ``"push"`` to let the wallet broadcast when the
    server asks for it (it then needs a node and pays the fee itself).

    ``payees``: when given, the only recipients paid. ``split_recipients``:
    who may receive a split (``"*"`` for anyone; none by default, so a
    challenge with splits is refused unless they are expected).

    Fees: ``max_fee_per_gas`` and ``max_priority_fee_per_gas`` in
    attodollars per gas; when ``max_fee_per_gas`` is not given the wallet
    asks the node (``eth_gasPrice``); the priority fee defaults to a tenth of
    the max fee (within the caps fee sponsors apply). ``gas_limit`` is fixed
    (1,000,000 by default: Tempo transactions have a high intrinsic cost).
    ``fee_token`` is the token fees are paid in when the server does not
    sponsor them (the charge token by default). ``rpc_url`` is the node for
    ``chain_id`` (``rpc_urls`` per chain), or ``web3`` your own (a ``Web3``,
    ``AsyncWeb3`` or provider for ``chain_id``, a sync and async pair, or a
    mapping of chain id to those); the public endpoints of the known chains
    are used otherwise, and only when a node is needed (push mode, or no
    ``max_fee_per_gas``). The node's chain id is checked before signing.

    ``valid_for`` bounds ``validBefore`` (seconds ahead); it never exceeds
    the challenge's expiry. ``proof_version`` picks the zero-amount proof's
    typed data (1, 2 or 3; see the module notes). ``client_id`` names the
    payer's software in the attribution memo (hashed; anonymous by default,
    as in the reference SDKs).
    """

    name: ClassVar[str] = "tempo"
    key_label: ClassVar[str] = "a Tempo private key"
    #: A pulled transaction (the server broadcasts it) and a proof: nothing moved at ``pay``.

    def __init__(
        self,
        key: LocalAccount | DigestSigner | str | bytes,
        *,
        chain_id: int | None = None,
        rpc_url: str | None = None,
        rpc_urls: Mapping[int, str] | None = None,
        web3: Web3Arg = None,
        assets: AssetRegistry | Iterable[AssetEntry] | None = None,
        modes: Sequence[str] = ("pull",),
        payees: Iterable[str] | None = None,
        split_recipients: Iterable[str] | Literal["*"] = (),
        fee_token: str | None = None,
        gas_limit: int = 1_000_000,
        max_fee_per_gas: int | None = None,
        max_priority_fee_per_gas: int | None = None,
        valid_for: float = 25.0,
        proof_version: int = 2,
        client_id: str | None = None,
        rpc_timeout: float = 15.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(
            key, assets=assets, payees=payees, split_recipients=split_recipients, clock=clock
        )
        if chain_id is not None and (
            not isinstance(chain_id, int) or isinstance(chain_id, bool) or chain_id <= 0
        ):
            raise ValueError("chain_id must be a positive integer")
        self.chain_id = chain_id
        urls = dict(rpc_urls or {})
        if rpc_url is not None:
            if chain_id is None:
                raise ValueError("rpc_url needs chain_id (or pass rpc_urls={chain: url})")
            urls[chain_id] = rpc_url
        self._nodes = nodes_from(
            rpc_urls=urls, web3=web3, single_chain=chain_id, timeout=rpc_timeout
        )
        self._known_chains = frozenset(KNOWN_CHAINS) | frozenset(self._nodes)
        chosen = tuple(modes)
        if (
            not chosen
            or any(mode not in MODES for mode in chosen)
            or len(set(chosen)) != len(chosen)
        ):
            raise ValueError(f"modes must be some of 'pull', 'push' (no repeats); got {chosen!r}")
        self.modes = chosen
        if fee_token is not None and HEX_ADDRESS.fullmatch(fee_token) is None:
            raise ValueError("fee_token must be a 20-byte hex address")
        self.fee_token = fee_token
        if gas_limit <= 0:
            raise ValueError("gas_limit must be positive")
        self.gas_limit = gas_limit
        for name, fee in (
            ("max_fee_per_gas", max_fee_per_gas),
            ("max_priority_fee_per_gas", max_priority_fee_per_gas),
        ):
            if fee is not None and (not isinstance(fee, int) or isinstance(fee, bool) or fee < 0):
                raise ValueError(f"{name} must be a non-negative integer")
        self.max_fee_per_gas = max_fee_per_gas
        self.max_priority_fee_per_gas = max_priority_fee_per_gas
        if not 0 < valid_for <= 300:
            raise ValueError("valid_for must be between 0 and 300 seconds")
        self.valid_for = valid_for
        if proof_version not in PROOF_VERSIONS:
            raise ValueError("proof_version must be 1, 2 or 3")
        self.proof_version = proof_version
        if client_id is not None and not isinstance(client_id, str):
            raise ValueError("client_id must be a string")
        self.client_id = client_id or None
        self._rpc_timeout = rpc_timeout

    # -- identity -----------------------------------------------------------------

    # -- checking -----------------------------------------------------------------

    def _plan(self, challenge: Challenge) -> _Plan:
        terms = tempo_terms(challenge)
        chain = self._resolve_chain(terms.chain_id)
        asset = self._asset(terms.currency, chain)
        self._check_recipients(terms.recipient, [split.recipient for split in terms.splits])
        valid_before = self._valid_before(terms)
        transfers = self._transfers(challenge, terms)
        mode: Literal["proof", "pull", "push"]
        if terms.amount == 0:  # (splits cannot add up to less than 0: there are none)
            mode = "proof"
        else:
            usable = [
                m for m in self.modes if m in terms.modes and not (m == "push" and terms.fee_payer)
            ]
            if not usable:
                raise ChallengeError(
                    f"the server accepts {'/'.join(terms.modes)}"
                    + (" with fee sponsorship (no push)" if terms.fee_payer else "")
                    + f"; the wallet uses {'/'.join(self.modes)}"
                )
            mode = "pull" if usable[0] == "pull" else "push"
        return _Plan(terms, chain, asset, mode, valid_before, transfers)

    def _transfers(self, challenge: Challenge, terms: TempoTerms) -> tuple[Split[bytes], ...]:
        """The transfers to sign: the primary carries a memo bound to this challenge.

        The request's own memo is used as given. Without one, the primary
        transfer carries the attribution memo (:func:`attribution_memo`),
        which both reference servers require. A memo in the request that is an
        attribution memo for another challenge or realm is refused: paying it
        could settle that other challenge (someone else's purchase) with this
        payer's money.
        """
        given = [("methodDetails.memo", terms.memo)] + [
            (f"split {index} memo", split.memo) for index, split in enumerate(terms.splits)
        ]
        for what, memo in given:
            if (
                memo is not None
                and parse_attribution_memo(memo) is not None
                and not memo_binds(memo, challenge.id, challenge.realm)
            ):
                raise ChallengeError(
                    f"tempo charge {what} is an MPP attribution memo for another "
                    "challenge: paying it could settle that challenge instead"
                )
        primary_memo = terms.memo
        if primary_memo is None:
            primary_memo = attribution_memo(challenge.id, challenge.realm, self.client_id)
        return (Split(terms.recipient, terms.primary_amount, primary_memo), *terms.splits)

    def _resolve_chain(self, chain: int | None) -> int:
        if self.chain_id is not None:
            return self._pay_chain(chain, (self.chain_id,), default=self.chain_id)
        return self._pay_chain(
            chain, self._known_chains, hint="; pass chain_id= to pay on another Tempo chain"
        )

    def _valid_before(self, terms: TempoTerms) -> int:
        now = self._clock()
        bound = math.floor(now.timestamp() + self.valid_for)
        if terms.expires is None:
            return bound
        if terms.expires <= now:
            raise ChallengeExpired(f"tempo charge expired at {terms.expires.isoformat()}")
        # validBefore is a whole second no later than the challenge's expiry.
        valid_before = min(bound, math.floor(terms.expires.timestamp()))
        if valid_before <= math.floor(now.timestamp()):
            raise ChallengeExpired(
                f"tempo charge expires at {terms.expires.isoformat()}, too soon to sign for"
            )
        return valid_before

    def quote(self, challenge: Challenge) -> Quote:
        plan = self._plan(challenge)
        terms = plan.terms
        details: dict[str, Any] = {
            "mode": plan.mode,
            "token": terms.currency,
            "feePayer": terms.fee_payer,
            "validBefore": plan.valid_before,
        }
        primary_memo = plan.transfers[0].memo
        if plan.mode != "proof" and primary_memo is not None:
            # The memo the primary transfer carries, and whose it is.
            details["memo"] = to_hex(primary_memo)
            details["attribution"] = terms.memo is None
        if terms.splits:
            details["splits"] = tuple(
                {
                    "recipient": s.recipient,
                    "amount": s.amount,
                    "memo": None if s.memo is None else to_hex(s.memo),
                }
                for s in terms.splits
            )
            details["primaryAmount"] = terms.primary_amount
        return Quote(
            amount=Amount(terms.amount, plan.asset.asset, plan.asset.decimals),
            payee=terms.recipient,
            method=self.name,
            intent=challenge.intent,
            expires=terms.expires,
            currency=challenge.request.get("currency", terms.currency),
            chain_id=plan.chain_id,
            details=details,
            payer=self.source_for(plan.chain_id),
            # Only push broadcasts in pay(); a pulled transaction and a proof are
            # signatures the server submits or checks.
            moves_funds=plan.mode == "push",
            prepared=plan,
        )

    def _plan_to_pay(self, challenge: Challenge, quote: Quote) -> _Plan:
        """The quoted plan, its ``validBefore`` taken again now (an approval takes time).

        Refusals here are :class:`~mpp_client.TermsRefused` (also PaymentFailed:
        nothing was signed).
        """
        try:
            if isinstance(quote.prepared, _Plan):
                plan = quote.prepared
                return dataclasses.replace(plan, valid_before=self._valid_before(plan.terms))
            return self._plan(challenge)
        except ChallengeExpired as exc:
            raise TermsExpired(exc.message) from None
        except ChallengeError as exc:
            raise TermsRefused(exc.message) from None

    # -- paying -------------------------------------------------------------------

    def pay(self, challenge: Challenge, quote: Quote) -> Mapping[str, Any]:
        plan = self._plan_to_pay(challenge, quote)
        node = self._node(plan)
        if node is None:
            return run_offline(self._flow(challenge, plan, None))
        try:
            rpc = node.rpc()
        except ChainTransportError as exc:
            raise self._node_unusable(node, exc) from None
        return rpc.run(self._flow(challenge, plan, node.where))

    async def apay(self, challenge: Challenge, quote: Quote) -> Mapping[str, Any]:
        """:meth:`pay`, with the node reached through an ``AsyncWeb3`` (the one given, or
        one built from the RPC URL for this payment)."""
        plan = self._plan_to_pay(challenge, quote)
        node = self._node(plan)
        if node is None:  # signing only: in a worker thread, as a signer may take its time
            return await super().apay(challenge, quote)
        async with node.arpc() as rpc:
            return await rpc.run(self._flow(challenge, plan, node.where))

    def _node(self, plan: _Plan) -> Node | None:
        """The node this payment needs (push mode, or no ``max_fee_per_gas``), if it needs one."""
        if plan.mode == "proof" or (plan.mode == "pull" and self.max_fee_per_gas is not None):
            return None
        node = self._nodes.get(plan.chain_id)
        if node is None and plan.chain_id in KNOWN_CHAINS:
            node = Node(url=KNOWN_CHAINS[plan.chain_id], timeout=self._rpc_timeout)
            self._nodes[plan.chain_id] = node
        if node is None:
            raise TermsRefused(
                f"no node for chain {plan.chain_id}: pass rpc_url= or web3= (needed for push "
                "mode and to read the gas price when max_fee_per_gas is not set)"
            )
        return node

    def _flow(
        self, challenge: Challenge, plan: _Plan, where: str | None
    ) -> ChainFlow[dict[str, Any]]:
        """The payment, written once: the node checked, the fees, the signature, the push.

        ``where`` names the node; None when the payment needs none (a proof, or
        a pull with configured fees), and then the flow asks nothing.
        """
        if plan.mode == "proof":
            return self._proof(challenge, plan)
        gas_price: int | None = None
        if where is not None:
            try:
                yield from expect_chain(plan.chain_id, where)
                if self.max_fee_per_gas is None:
                    gas_price = quantity((yield read("eth_gasPrice")), "eth_gasPrice")
            except (RpcError, ChainTransportError) as exc:
                raise PaymentFailed(
                    f"could not prepare the tempo transaction: {where} failed "
                    f"({type(exc).__name__}); nothing was signed"
                ) from None
        raw, tx_hash = self._sign_transfer(plan, self._fees_from(gas_price))
        if plan.mode == "pull":
            return self._pulled(plan, raw)
        try:
            mined = yield from send_transaction(
                raw, tx_hash, wait=self._rpc_timeout + 30, sync=True, timeout=self._rpc_timeout + 30
            )
        except NotSent as exc:
            raise PaymentFailed(
                f"the tempo node did not take the transaction ({exc}); nothing was sent"
            ) from None
        except MaybeSent as exc:
            raise PaymentOutcomeUnknown(
                f"broadcast of tempo transaction {tx_hash} on chain {plan.chain_id} failed "
                f"({exc}); it may still be included until validBefore {plan.valid_before}: "
                "check the transaction before resolving"
            ) from None
        return self._pushed(plan, tx_hash, mined)

    def _node_unusable(self, node: Node, exc: ChainTransportError) -> PaymentFailed:
        return PaymentFailed(
            f"could not prepare the tempo transaction: {node.where} cannot be used "
            f"({exc.cause}); nothing was signed"
        )

    def _fees_from(self, gas_price: int | None) -> _Fees:
        """The configured fees, or the node's gas price (read when none is configured)."""
        max_fee = self.max_fee_per_gas if self.max_fee_per_gas is not None else gas_price
        if max_fee is None:  # pragma: no cover - a node is always asked then
            raise PaymentFailed("no gas price: set max_fee_per_gas or an RPC URL")
        priority = self.max_priority_fee_per_gas
        if priority is None:
            # Tempo's base fee is fixed; a tenth of it as the tip stays within
            # the caps fee sponsors apply (pympp: 10 gwei on mainnet).
            priority = max_fee // 10
        return _Fees(max_fee, min(priority, max_fee))

    def _sign_transfer(self, plan: _Plan, fees: _Fees) -> tuple[bytes, str]:
        """The signed transaction's wire bytes (0x76, or the 0x78 envelope) and its hash."""
        terms = plan.terms
        token = TIP20(to_checksum_address(terms.currency))
        calls = tuple(
            token.transfer(to=t.recipient, amount=t.amount)
            if t.memo is None
            else token.transfer_with_memo(to=t.recipient, amount=t.amount, memo=t.memo)
            for t in plan.transfers
        )
        sponsored = terms.fee_payer
        tx = TempoTransaction.create(
            chain_id=plan.chain_id,
            gas_limit=self.gas_limit,
            max_fee_per_gas=fees.max_fee_per_gas,
            max_priority_fee_per_gas=fees.max_priority_fee_per_gas,
            nonce=0,
            nonce_key=EXPIRING_NONCE_KEY,
            valid_before=plan.valid_before,
            fee_token=None if sponsored else (self.fee_token or terms.currency),
            awaiting_fee_payer=sponsored,
            calls=calls,
        )
        # pytempo builds the sender's signing payload (0x76, with the fee-payer
        # placeholder when sponsored); the signer signs its digest.
        tx = sign_as_sender(self._signer, tx)
        raw = fee_payer_envelope(tx) if sponsored else bytes(tx.encode())
        return raw, to_hex(keccak(raw))

    def _pulled(self, plan: _Plan, raw: bytes) -> dict[str, Any]:
        logger.info(
            "tempo: signed a %stransaction for %s base units of %s on chain %s to %s",
            "fee-sponsored " if plan.terms.fee_payer else "",
            plan.terms.amount,
            plan.terms.currency,
            plan.chain_id,
            plan.terms.recipient,
        )
        return {"type": "transaction", "signature": to_hex(raw)}

    def _pushed(self, plan: _Plan, tx_hash: str, receipt: dict[str, Any]) -> dict[str, Any]:
        status = receipt.get("status")
        if status == "0x0":
            raise PaymentFailed(
                f"tempo transaction {tx_hash} reverted: no transfer happened (the fee was paid)"
            )
        if status != "0x1":
            raise PaymentOutcomeUnknown(
                f"tempo transaction {tx_hash} has receipt status {status!r:.20}; "
                "check the transaction before resolving"
            )
        logger.info(
            "tempo: broadcast %s for %s base units of %s on chain %s to %s",
            tx_hash,
            plan.terms.amount,
            plan.terms.currency,
            plan.chain_id,
            plan.terms.recipient,
        )
        return {"type": "hash", "hash": tx_hash}

    def _proof(self, challenge: Challenge, plan: _Plan) -> dict[str, Any]:
        typed = proof_typed_data(
            chain_id=plan.chain_id,
            challenge_id=challenge.id,
            realm=challenge.realm,
            account=self.address,
            version=self.proof_version,
        )
        signature = sign(self._signer, proof_digest(typed))
        logger.info("tempo: signed a zero-amount proof on chain %s", plan.chain_id)
        return {"type": "proof", "signature": to_hex(signature.to_bytes())}

    # -- hygiene ------------------------------------------------------------------

    def __repr__(self) -> str:
        chain = "any known" if self.chain_id is None else str(self.chain_id)
        return f"<TempoWallet address={self.address} chain={chain} modes={'/'.join(self.modes)}>"


def __getattr__(name: str) -> Any:
    if name == "MAX_SPLITS":  # a module-level name of earlier releases
        from ._chain._terms import MAX_SPLITS  # noqa: PLC0415

        return MAX_SPLITS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
