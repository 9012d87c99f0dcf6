"""Payment methods (wallet adapters). Each real rail is an optional extra.

``DevWallet`` is always available. ``EvmWallet`` (``mpp-client[evm]``),
``TempoWallet`` (``mpp-client[tempo]``), ``StripeWallet``
(``mpp-client[stripe]``) and ``X402Wallet`` (x402's ``exact`` scheme with an
``EvmWallet``'s key; ``mpp-client[evm]``) are imported on first use, so the core installs
light; a missing extra fails with the ``pip install`` to run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._lazy import load
from ._base import ChargeTerms, PaymentMethod, Quote, charge_terms

if TYPE_CHECKING:
    from .dev import DevWallet
    from .evm import EvmWallet
    from .stripe import StripeWallet
    from .tempo import TempoWallet
    from .x402 import X402Wallet

__all__ = [
    "ChargeTerms",
    "DevWallet",
    "EvmWallet",
    "PaymentMethod",
    "Quote",
    "StripeWallet",
    "TempoWallet",
    "X402Wallet",
    "charge_terms",
]

# Each wallet loads when first named: their chain and crypto libraries are heavy.
_LAZY = {
    "DevWallet": ".dev",
    "EvmWallet": ".evm",
    "TempoWallet": ".tempo",
    "StripeWallet": ".stripe",
    "X402Wallet": ".x402",
}


def __getattr__(name: str) -> Any:
    return load(__name__, _LAZY, name, globals())
