"""Spending policy: decides, with reasons, whether a payment may be made."""

from ..money import BUILTIN_ASSETS, AssetEntry, AssetRegistry
from ._base import (
    ApprovalRequest,
    Approver,
    Decision,
    Limit,
    Mode,
    Outcome,
    PaymentContext,
    RuleResult,
    SpendHistory,
    SpendPolicy,
    Usage,
    program_scope,
)
from ._model import (
    Anomaly,
    Approval,
    AssetSpec,
    Budget,
    CircuitBreaker,
    Lists,
    Override,
    Policy,
    PolicyError,
    Velocity,
)
from ._simple import SimplePolicy

__all__ = [
    "BUILTIN_ASSETS",
    "Anomaly",
    "Approval",
    "ApprovalRequest",
    "Approver",
    "AssetEntry",
    "AssetRegistry",
    "AssetSpec",
    "Budget",
    "CircuitBreaker",
    "Decision",
    "Limit",
    "Lists",
    "Mode",
    "Outcome",
    "Override",
    "PaymentContext",
    "Policy",
    "PolicyError",
    "RuleResult",
    "SimplePolicy",
    "SpendHistory",
    "SpendPolicy",
    "Usage",
    "Velocity",
    "program_scope",
]
