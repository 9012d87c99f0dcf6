"""The payment flow: one loop, written once, and the two drivers that run it.

::

    request -> send -> 402? -> parse -> select offer -> quote -> policy.decide
            -> ledger.reserve -> method.pay -> credential -> retry
            -> receipt -> ledger.commit (or release / mark unknown) -> response

``_call``      one logical request's decisions and records (no I/O)
``_loop``      the loop, as a generator of effects (no I/O)
``_drivers``   perform those effects: blocking for sync, awaited for async
``_options``   the per-call options (``extensions={"mpp": ...}``)
``_transport`` where credentials may go, URL redaction, 402 body limits
``_receipts``  what a paid response's receipt says about the payment
``_quote``     what a request would cost and what the policy would say (no payment)
"""

from typing import TYPE_CHECKING, Any

from .._lazy import load
from ._call import Call
from ._drivers import drive_async, drive_sync
from ._engine import DryRun, Engine, Offer, Pending, Plan
from ._loop import payment_loop
from ._options import CallOptions
from ._transport import MAX_402_BODY, is_loopback, redact_url

__all__ = [
    "MAX_402_BODY",
    "Call",
    "CallOptions",
    "DryRun",
    "Engine",
    "Offer",
    "Pending",
    "Plan",
    "QuoteResult",
    "QuotedOffer",
    "drive_async",
    "drive_sync",
    "is_loopback",
    "payment_loop",
    "quote_options",
    "quote_response",
    "redact_url",
]

from ._engine import Target

if TYPE_CHECKING:
    from ._mcp import CallTool, McpOutcome, ToolAnswer, asked_payment, drive_mcp, mcp_payment_loop
    from ._quote import QuotedOffer, QuoteResult, quote_options, quote_response

# Quoting, and the MCP transport's loop and driver (mpp_client.integrations.mcp
# performs its CallTool), load when first named: an HTTP payment needs neither.
_LAZY = {
    **dict.fromkeys(("QuotedOffer", "QuoteResult", "quote_options", "quote_response"), "._quote"),
    **dict.fromkeys(
        ("CallTool", "McpOutcome", "ToolAnswer", "asked_payment", "drive_mcp", "mcp_payment_loop"),
        "._mcp",
    ),
}


def __getattr__(name: str) -> Any:
    return load(__name__, _LAZY, name, globals())


__all__ += ["CallTool", "McpOutcome", "Target", "ToolAnswer", "drive_mcp", "mcp_payment_loop"]
__all__ += ["asked_payment"]
