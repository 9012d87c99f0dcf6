"""Spending policy: decides, with reasons, whether a payment may be made."""

from ._base import Decision, Limit, PaymentContext, RuleResult, SpendPolicy
from ._simple import SimplePolicy

__all__ = ["Decision", "Limit", "PaymentContext", "RuleResult", "SimplePolicy", "SpendPolicy"]
