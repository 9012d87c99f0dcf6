"""Payment methods (wallet adapters). Each real rail is an optional extra.

``DevWallet`` is always available. ``EvmWallet`` (``mpp-client[evm]``),
``TempoWallet`` (``mpp-client[tempo]``), ``StripeWallet``
(``mpp-client[stripe]``) and ``X402Wallet`` (x402's ``exact`` scheme with an
``EvmWallet``'s key; ``mpp-client[evm]``) are imported on first use, so the core installs
light; a missing extra fails with the ``pip install`` to run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import ChargeTerms, PaymentMethod, Quote, charge_terms
from .dev import DevWallet

if TYPE_CHECKING:
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

_LAZY = {
    "EvmWallet": ".evm",
    "TempoWallet": ".tempo",
    "StripeWallet": ".stripe",
    "X402Wallet": ".x402",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module  # noqa: PLC0415 - lazy on purpose

    return getattr(import_module(module, __name__), name)
