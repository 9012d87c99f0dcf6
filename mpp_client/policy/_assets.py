"""The asset registry: what a challenge's currency is worth in the policy currency.

A budget is kept in one currency (say USD). Payments arrive in many: Stripe
``usd`` in cents, USDC on several EVM chains with 6 decimals, a Tempo USD
stablecoin. The registry maps ``(method, currency, chain id)`` to the policy
currency and the number of decimals of the currency's base unit, so one USD
budget covers them all. A currency the registry does not know is refused.

The built-in entries are USD stablecoins whose addresses and decimals were
checked against their issuers' and the MPP method drafts' published values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["BUILTIN_ASSETS", "AssetEntry", "AssetRegistry"]


@dataclass(frozen=True, slots=True)
class AssetEntry:
    """``currency`` paid through ``method`` on ``chain_id`` is ``decimals``-digit ``asset``.

    ``method`` may be ``"*"`` (any method); ``chain_id`` None means the
    currency is not on a chain (or any chain, for ``"*"`` methods: no). ``name``
    is what allow/deny lists of assets match (besides the raw currency).
    """

    method: str
    currency: str
    asset: str
    decimals: int
    chain_id: int | None = None
    name: str = ""

    @property
    def key(self) -> tuple[str, str, int | None]:
        return (self.method, _norm(self.currency), self.chain_id)


def _norm(currency: str) -> str:
    # Token addresses and ISO codes are both case-insensitive on the wire.
    return currency.strip().lower()


_USDC = {
    1: "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",  # Ethereum
    10: "0x0b2C639c533813f4Aa9D7837CAf62653d097Ff85",  # OP Mainnet
    137: "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359",  # Polygon PoS
    8453: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",  # Base
    42161: "0xaf88d065e77c8cC2239327C5EDb3A432268e5831",  # Arbitrum One
    84532: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",  # Base Sepolia (test)
}

#: Entries the registry starts with (``builtin_assets = true`` in a policy).
BUILTIN_ASSETS: tuple[AssetEntry, ...] = (
    AssetEntry("dev", "usd", "USD", 2, name="dev-usd"),
    AssetEntry("stripe", "usd", "USD", 2, name="usd"),
    AssetEntry("card", "usd", "USD", 2, name="usd"),
    *(
        AssetEntry(method, address, "USD", 6, chain, name="USDC")
        for chain, address in _USDC.items()
        for method in ("evm", "usdc")
    ),
    # Tempo's pathUSD (TIP-20, 6 decimals) on mainnet (4217) and testnet (42431).
    AssetEntry("tempo", "0x20c0000000000000000000000000000000000000", "USD", 6, 4217, "pathUSD"),
    AssetEntry("tempo", "0x20c0000000000000000000000000000000000000", "USD", 6, 42431, "pathUSD"),
)


class AssetRegistry:
    """Looks up ``(method, currency, chain id)``; exact method first, then ``"*"``."""

    def __init__(self, entries: Iterable[AssetEntry]) -> None:
        self._entries: dict[tuple[str, str, int | None], AssetEntry] = {}
        for entry in entries:
            self._entries[entry.key] = entry

    def lookup(self, method: str, currency: str, chain_id: int | None) -> AssetEntry | None:
        currency = _norm(currency)
        return self._entries.get((method, currency, chain_id)) or self._entries.get(
            ("*", currency, chain_id)
        )

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AssetRegistry):
            return NotImplemented
        return self._entries == other._entries

    __hash__ = None  # type: ignore[assignment]
