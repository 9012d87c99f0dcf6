"""The ``x402`` payment method: x402's ``exact`` scheme on EVM chains, with an EVM wallet's key.

An x402 server states its terms in ``PAYMENT-REQUIRED`` (version 2) or in
the 402's JSON body (version 1); the flow reads each ``accepts`` entry as an
offer with ``method="x402"`` (:func:`~mpp_client.protocol.x402_challenges`),
so the same policy, budgets, approvals and ledger decide on it as on any
Payment challenge. This wallet pays the ``exact`` scheme: an EIP-3009
``TransferWithAuthorization`` for exactly ``amount`` of the token ``asset``
to ``payTo``, signed off-chain by the :class:`~mpp_client.methods.EvmWallet`'s
key. The server's facilitator submits it and pays the gas, so a quote says
``moves_funds=False``: a server that refuses the payment has spent nothing.

Before anything is signed:

- the scheme is ``exact`` (by EIP-3009, not Permit2);
- the network is an EVM chain the wallet pays on (``eip155:<id>``, or a
  version 1 name such as ``base``);
- the token is in the wallet's asset registry for that chain under the
  method ``x402`` (the built-in registry lists USDC on the chains the ``evm``
  method knows; a policy budgets x402 USDC as the same USD);
- ``payTo`` and the token are well-formed addresses (EIP-55 when
  mixed-case), ``payTo`` one of the wallet's expected payees if it has any;
- the token's EIP-712 domain (``extra.name`` and ``extra.version``) agrees
  with the one the wallet knows for it, when it knows one;
- the window: ``validBefore`` is no later than ``maxTimeoutSeconds`` after
  the 402 arrived, nor than ``max_validity`` from now; ``validAfter`` one
  minute before now (a chain whose clock runs a little behind still takes
  it; a signature cannot be used before it exists anyway).

The flow itself checks what is not the wallet's: the requirement's resource
is the URL requested, the credential travels over HTTPS only, each 402 is
paid at most once.

The nonce is 32 random bytes, as x402 has no challenge to bind it to: the
token refuses a nonce twice, so one authorization settles at most once.

Needs the ``evm`` extra (eth-account, web3).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, NoReturn

try:
    from ._chain._addresses import ZERO_ADDRESS, checked_address, same_address, to_hex
    from ._chain._eip712 import authorization_digest, eip3009_domain_separator
    from ._chain._signing import DigestSigner, sign
    from .evm import TOKEN_DOMAINS, EvmWallet
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        f"the x402 payment method needs the evm extra ({exc.name} is missing): "
        'pip install "mpp-client[evm]"'
    ) from exc

from .._exceptions import ChallengeError, TermsExpired
from .._text import get_logger
from ..money import Amount, AssetEntry, AssetRegistry
from ..protocol import Challenge, X402Requirement
from ._base import PaymentMethod, Quote

__all__ = ["X402Wallet"]

logger = get_logger("mpp_client.x402")

#: How far before now ``validAfter`` lies: room for a chain clock behind ours.
VALID_AFTER_SLACK = 60
#: The shortest window worth signing: facilitators refuse a ``validBefore``
#: closer than a few seconds (the x402 package's: 6).
MIN_WINDOW = 10
_DOMAIN_TEXT_MAX = 64


@dataclass(frozen=True, slots=True)
class _Plan:
    requirement: X402Requirement
    chain_id: int
    asset: AssetEntry
    token: str
    pay_to: str
    domain: tuple[str, str]


class X402Wallet(PaymentMethod):
    """Pays x402 ``exact`` requirements on EVM chains, signing with an :class:`EvmWallet`'s key.

    ::

        evm = EvmWallet.from_keystore("payer.json", passphrase, chain_ids=[8453])
        client = mpp_client.Client(methods=[evm, X402Wallet(evm)], policy=policy)

    The order of ``methods`` is the user's preference: when a server offers
    both an MPP ``evm`` charge and x402, the first method that can pay (and
    that the policy allows) is used.

    It takes from ``wallet`` the key (through its signer seam), the chains it
    pays on, its asset registry, its expected payees and the EIP-712 domains
    it knows; ``chain_ids``, ``assets`` and ``payees`` narrow or replace
    them. ``token_domains`` adds ``{(chain_id, token): (name, version)}``.
    ``max_validity`` bounds how long an authorization stays valid, whatever
    the server's ``maxTimeoutSeconds``.
    """

    name: ClassVar[str] = "x402"

    def __init__(
        self,
        wallet: EvmWallet,
        *,
        chain_ids: Iterable[int] | None = None,
        assets: AssetRegistry | Iterable[AssetEntry] | None = None,
        payees: Iterable[str] | None = None,
        token_domains: Mapping[tuple[int, str], tuple[str, str]] | None = None,
        max_validity: timedelta = timedelta(minutes=10),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not isinstance(wallet, EvmWallet):
            raise TypeError("X402Wallet pays with an EvmWallet's key: pass the EvmWallet")
        self.wallet = wallet
        self.chain_ids = frozenset(wallet.chain_ids if chain_ids is None else chain_ids)
        if isinstance(assets, AssetRegistry):
            self.assets = assets
        else:
            self.assets = wallet.assets if assets is None else AssetRegistry(assets)
        self.payees = wallet.payees if payees is None else frozenset(p.lower() for p in payees)
        known = dict(getattr(wallet, "_token_domains", TOKEN_DOMAINS))
        for (chain, token), value in (token_domains or {}).items():
            known[(chain, token.lower())] = value
        self._token_domains: dict[tuple[int, str], tuple[str, str]] = {
            (chain, token.lower()): (str(v[0]), str(v[1])) for (chain, token), v in known.items()
        }
        if max_validity.total_seconds() < MIN_WINDOW:
            raise ValueError(f"max_validity must be at least {MIN_WINDOW} seconds")
        self.max_validity = max_validity
        self._clock = clock or (lambda: datetime.now(UTC))

    @property
    def address(self) -> str:
        """The payer's EIP-55 address (the EVM wallet's)."""
        return self.wallet.address

    @property
    def signer(self) -> DigestSigner:
        """The EVM wallet's signer seam (where the key lives, for the policy's signing rules)."""
        return self.wallet.signer

    def supports(self, challenge: Challenge) -> bool:
        return super().supports(challenge) and challenge.x402 is not None

    # -- choosing -----------------------------------------------------------------

    def _plan(self, challenge: Challenge) -> _Plan:
        requirement = challenge.x402
        if requirement is None:
            raise ChallengeError("not an x402 offer: it has no x402 payment requirement")
        if requirement.scheme != "exact":
            raise ChallengeError(
                f"x402 scheme {requirement.scheme!r} is not one this wallet pays (only 'exact')"
            )
        extra = requirement.extra
        method = extra.get("assetTransferMethod", "eip3009")
        if method != "eip3009":
            raise ChallengeError(
                f"x402 exact by {method!r:.20} is not supported: this wallet signs EIP-3009 only"
            )
        chain = requirement.chain_id
        if chain is None:
            raise ChallengeError(
                f"x402 network {requirement.network!r} is not an EVM network this wallet knows"
            )
        if chain not in self.chain_ids:
            raise ChallengeError(
                f"x402 network {requirement.network} (chain {chain}) is not one this wallet pays "
                f"on (it pays on chain {', '.join(map(str, sorted(self.chain_ids)))})"
            )
        token = checked_address(requirement.asset, "x402 asset")
        asset = self.assets.lookup(self.name, token, chain)
        if asset is None:
            raise ChallengeError(
                f"token {token} on chain {chain} is not in the wallet's asset registry for x402 "
                f'(add an AssetEntry("x402", ...) for it)'
            )
        pay_to = checked_address(requirement.pay_to, "x402 payTo")
        if same_address(pay_to, ZERO_ADDRESS):
            raise ChallengeError("x402 payTo is the zero address")
        if self.payees is not None and pay_to.lower() not in self.payees:
            raise ChallengeError(f"x402 payTo {pay_to} is not one of the expected payees")
        return _Plan(requirement, chain, asset, token, pay_to, self._domain(requirement, chain))

    def _domain(self, requirement: X402Requirement, chain: int) -> tuple[str, str]:
        """The token's EIP-712 (name, version): the server's ``extra``, checked against ours."""
        name, version = requirement.extra.get("name"), requirement.extra.get("version")
        known = self._token_domains.get((chain, requirement.asset.lower()))
        if name is None and version is None:
            if known is None:
                raise ChallengeError(
                    "x402 requirement names no EIP-712 domain for its token (extra.name and "
                    "extra.version) and the wallet knows none (pass token_domains)"
                )
            return known
        if not all(isinstance(v, str) and 0 < len(v) <= _DOMAIN_TEXT_MAX for v in (name, version)):
            raise ChallengeError(
                "x402 extra.name and extra.version must both be short strings (the token's "
                "EIP-712 domain)"
            )
        offered = (str(name), str(version))
        if known is not None and offered != known:
            raise ChallengeError(
                f"x402 requirement says the token's EIP-712 domain is {offered!r:.80}; "
                f"the wallet knows it as {known!r}"
            )
        return offered

    def quote(self, challenge: Challenge) -> Quote:
        plan = self._plan(challenge)
        requirement = plan.requirement
        return Quote(
            amount=Amount(requirement.amount, plan.asset.asset, plan.asset.decimals),
            payee=plan.pay_to,
            method=self.name,
            intent=challenge.intent,
            expires=challenge.expires,
            currency=requirement.asset,
            chain_id=plan.chain_id,
            details={
                "x402Version": requirement.version,
                "scheme": requirement.scheme,
                "network": requirement.network,
                "token": plan.token,
                "maxTimeoutSeconds": requirement.max_timeout_seconds,
            },
            payer=self.wallet.source_for(plan.chain_id),
            moves_funds=False,
            prepared=plan,
        )

    # -- paying -------------------------------------------------------------------

    def pay(self, challenge: Challenge, quote: Quote) -> Mapping[str, Any]:
        plan = quote.prepared if isinstance(quote.prepared, _Plan) else self._plan(challenge)
        now = math.floor(self._clock().timestamp())
        valid_before = now + math.floor(self.max_validity.total_seconds())
        if challenge.expires is not None:
            valid_before = min(valid_before, math.floor(challenge.expires.timestamp()))
        if valid_before - now < MIN_WINDOW:
            raise TermsExpired(
                f"the x402 payment window closes in {max(valid_before - now, 0)} s, too soon "
                "for a facilitator to settle it; nothing was signed"
            )
        valid_after = max(now - VALID_AFTER_SLACK, 0)
        nonce = secrets.token_bytes(32)
        name, version = plan.domain
        requirement = plan.requirement
        digest = authorization_digest(
            eip3009_domain_separator(name, version, plan.chain_id, plan.token),
            sender=self.address,
            to=plan.pay_to,
            value=requirement.amount,
            valid_after=valid_after,
            valid_before=valid_before,
            nonce=nonce,
        )
        signature = to_hex(sign(self.wallet.signer, digest).to_bytes())
        logger.info(
            "x402: exact authorization for %s base units of %s on %s to %s (valid until %s)",
            requirement.amount,
            plan.token,
            requirement.network,
            plan.pay_to,
            valid_before,
        )
        return {
            "signature": signature,
            "authorization": {
                "from": self.address,
                "to": plan.pay_to,
                "value": str(requirement.amount),
                "validAfter": str(valid_after),
                "validBefore": str(valid_before),
                "nonce": to_hex(nonce),
            },
        }

    # -- hygiene ------------------------------------------------------------------

    def __repr__(self) -> str:
        chains = ",".join(map(str, sorted(self.chain_ids)))
        return f"<X402Wallet address={self.address} chains=[{chains}]>"

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("X402Wallet cannot be pickled: that would write its key in the clear")
