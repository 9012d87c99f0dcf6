"""Payment methods (wallet adapters). Each real rail is an optional extra."""

from ._base import ChargeTerms, PaymentMethod, Quote, charge_terms
from .dev import DevWallet

__all__ = ["ChargeTerms", "DevWallet", "PaymentMethod", "Quote", "charge_terms"]
