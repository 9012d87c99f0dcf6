"""Spending policy: decides, with reasons, whether a payment may be made.

:class:`Policy` and its parts are a pydantic model, imported on first use:
code that pays under a :class:`SimplePolicy` (or its own ``SpendPolicy``)
never loads pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._exceptions import PolicyError
from .._lazy import load
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
from ._simple import SimplePolicy

if TYPE_CHECKING:
    from ._model import (
        Anomaly,
        Approval,
        AssetSpec,
        Budget,
        CircuitBreaker,
        Lists,
        Override,
        Policy,
        Signing,
        Velocity,
    )

# The pydantic model loads only when a Policy (or one of its parts) is named.
_LAZY = dict.fromkeys(
    (
        "Anomaly",
        "Approval",
        "AssetSpec",
        "Budget",
        "CircuitBreaker",
        "Lists",
        "Override",
        "Policy",
        "Signing",
        "Velocity",
    ),
    "._model",
)


def __getattr__(name: str) -> Any:
    return load(__name__, _LAZY, name, globals())


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
    "Signing",
    "SimplePolicy",
    "SpendHistory",
    "SpendPolicy",
    "Usage",
    "Velocity",
    "program_scope",
]
