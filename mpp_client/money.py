"""Money as integers: base units, a currency code and a number of decimals.

``Amount(250, "USD", 2)`` is two dollars fifty. Arithmetic and comparison
between amounts of the same currency are exact even when their decimals
differ (``"0.001 USD"`` against ``"2.50 USD"``): the one with fewer decimals is
scaled up, never the other way, so no value is ever rounded. Floats are
refused everywhere.

The asset registry lives here too: it says what a challenge's currency *is*
(``0x8335...`` through ``evm`` on chain 8453 is USDC with 6 decimals, worth
USD), which the wallets need to quote and the policy needs to budget. Both
read it from here; neither imports the other.

A budget is kept in one currency (say USD). Payments arrive in many: Stripe
``usd`` in cents, USDC on several EVM chains with 6 decimals, a Tempo USD
stablecoin. The registry maps ``(method, currency, chain id)`` to the policy
currency and the number of decimals of the currency's base unit, so one USD
budget covers them all. A currency the registry does not know is refused.
The built-in entries are USD stablecoins whose addresses and decimals were
checked against their issuers' and the MPP method drafts' published values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["BUILTIN_ASSETS", "Amount", "AssetEntry", "AssetRegistry", "MoneyError"]

# Default minor-unit digits for common currency codes (ISO 4217). A written
# amount may always carry more digits than this ("0.001 USD").
_DEFAULT_DECIMALS = {"USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "CAD": 2, "AUD": 2, "JPY": 0}
_AMOUNT = re.compile(r"\s*(\d+)(?:\.(\d+))?\s+([A-Za-z][A-Za-z0-9_.:-]{0,63})\s*")
_CODE = re.compile(r"[A-Z][A-Z0-9_.:-]{0,63}")
_MAX_DECIMALS = 36


class MoneyError(ValueError):
    """An amount is malformed, or two amounts of different currencies were mixed."""


@dataclass(frozen=True, slots=True)
class Amount:
    """An exact amount: ``units`` of ``10**-decimals`` ``currency``."""

    units: int
    currency: str
    decimals: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.units, int) or isinstance(self.units, bool):
            raise MoneyError(f"units must be an int, not {type(self.units).__name__}")
        if not isinstance(self.decimals, int) or not 0 <= self.decimals <= _MAX_DECIMALS:
            raise MoneyError(f"decimals must be an int between 0 and {_MAX_DECIMALS}")
        if not isinstance(self.currency, str) or _CODE.fullmatch(self.currency) is None:
            raise MoneyError(f"invalid currency code {self.currency!r:.40}")

    @classmethod
    def parse(cls, text: str) -> Amount:
        """Parse ``"2.50 USD"``. Negative numbers, exponents and floats are refused."""
        if not isinstance(text, str):
            raise MoneyError(f'amounts are written like "2.50 USD", not {type(text).__name__}')
        match = _AMOUNT.fullmatch(text)
        if match is None:
            raise MoneyError(f'cannot read {text[:40]!r} as an amount like "2.50 USD"')
        whole, fraction, code = match.group(1), match.group(2) or "", match.group(3).upper()
        decimals = max(_DEFAULT_DECIMALS.get(code, 0), len(fraction))
        if decimals > _MAX_DECIMALS:
            raise MoneyError(f"{text[:40]!r} has more than {_MAX_DECIMALS} decimals")
        units = int(whole + fraction.ljust(decimals, "0"))
        return cls(units, code, decimals)

    @classmethod
    def coerce(cls, value: Any) -> Amount:
        """Accept an :class:`Amount` or its written form."""
        return value if isinstance(value, Amount) else cls.parse(value)

    @classmethod
    def zero(cls, currency: str, decimals: int = 0) -> Amount:
        return cls(0, currency, decimals)

    def _aligned(self, other: Amount) -> tuple[int, int, int]:
        if not isinstance(other, Amount):
            raise TypeError(f"cannot combine Amount with {type(other).__name__}")
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")
        decimals = max(self.decimals, other.decimals)
        return (
            self.units * 10 ** (decimals - self.decimals),
            other.units * 10 ** (decimals - other.decimals),
            decimals,
        )

    def rescale(self, decimals: int) -> Amount:
        """The same value with ``decimals`` digits; refuses to drop precision."""
        if decimals >= self.decimals:
            return Amount(self.units * 10 ** (decimals - self.decimals), self.currency, decimals)
        factor = 10 ** (self.decimals - decimals)
        if self.units % factor:
            raise MoneyError(f"{self} cannot be written with {decimals} decimals exactly")
        return Amount(self.units // factor, self.currency, decimals)

    def __add__(self, other: Amount) -> Amount:
        a, b, d = self._aligned(other)
        return Amount(a + b, self.currency, d)

    def __sub__(self, other: Amount) -> Amount:
        a, b, d = self._aligned(other)
        return Amount(a - b, self.currency, d)

    def __lt__(self, other: Amount) -> bool:
        a, b, _ = self._aligned(other)
        return a < b

    def __le__(self, other: Amount) -> bool:
        a, b, _ = self._aligned(other)
        return a <= b

    def __gt__(self, other: Amount) -> bool:
        a, b, _ = self._aligned(other)
        return a > b

    def __ge__(self, other: Amount) -> bool:
        a, b, _ = self._aligned(other)
        return a >= b

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Amount) or other.currency != self.currency:
            return False
        a, b, _ = self._aligned(other)
        return a == b

    def __hash__(self) -> int:
        # Equal values hash equally whatever their decimals.
        units, decimals = self.units, self.decimals
        while decimals and units % 10 == 0:
            units //= 10
            decimals -= 1
        return hash((units, self.currency, decimals))

    def __str__(self) -> str:
        sign = "-" if self.units < 0 else ""
        digits = str(abs(self.units)).rjust(self.decimals + 1, "0")
        if self.decimals:
            return f"{sign}{digits[: -self.decimals]}.{digits[-self.decimals :]} {self.currency}"
        return f"{sign}{digits} {self.currency}"

    def __repr__(self) -> str:
        return f"Amount({str(self)!r})"


# -- the asset registry ------------------------------------------------------------


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
        # x402's ``exact`` scheme pays the same USDC contracts (mpp_client.methods.x402).
        for method in ("evm", "usdc", "x402")
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
