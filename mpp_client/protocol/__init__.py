"""The Payment scheme's wire format, with no I/O.

Everything here turns bytes and strings into typed values and back. It never
opens a socket or reads a clock, so the payment flow, the embedded server and
the tests share one implementation of the format. The terms of a charge
(:class:`ChargeTerms`, :class:`Quote`) live here too: the wallets produce
them, the policy decides on them and the ledger records them.
"""

from typing import TYPE_CHECKING, Any

from .._lazy import load
from ._accept import format_accept_payment
from ._b64 import b64url_decode, b64url_encode
from ._binding import challenge_id
from ._challenge import (
    AUTHORIZATION,
    MAX_CHALLENGE_BYTES,
    PAYMENT_AUTHORIZATION,
    Challenge,
    format_challenge,
    parse_challenges,
    parse_challenges_lenient,
)
from ._credential import MAX_CREDENTIAL_BYTES, Credential
from ._digest import content_digest, digest_matches, parse_digest
from ._jcs import canonical_json
from ._receipt import PROBLEM_BASE, Problem, Receipt
from ._terms import BASE_UNITS, ChargeTerms, Quote, charge_terms
from ._time import format_rfc3339, parse_rfc3339

if TYPE_CHECKING:
    from ._discovery import *  # noqa: F403 - the names of _LAZY, for type checkers
    from ._mcp import *  # noqa: F403
    from ._x402 import *  # noqa: F403

# Discovery, MCP's spelling of the scheme and x402 load when first named: an
# HTTP payment under MPP needs none of them before its first 402. Each module's
# exported names, as its own ``__all__`` lists them (tests/test_extras.py checks).
_LAZY_MODULES = {
    "_discovery": (
        "DISCOVERY_PATH",
        "MAX_DISCOVERY_BYTES",
        "DiscoveredOffer",
        "Discovery",
        "DiscoveryError",
        "PricedOperation",
        "parse_discovery",
    ),
    "_mcp": (
        "MCP_META_CREDENTIAL",
        "MCP_META_PAYMENT_REQUIRED",
        "MCP_META_RECEIPT",
        "MCP_PAYMENT_REQUIRED",
        "MCP_VERIFICATION_FAILED",
        "McpChallenge",
        "McpPaymentRequired",
        "is_mcp_payment_required",
        "mcp_challenge_object",
        "mcp_credential",
        "mcp_receipt",
        "parse_mcp_credential",
        "parse_mcp_receipt",
    ),
    "_x402": (
        "MAX_X402_BYTES",
        "X402_PAYMENT_REQUIRED",
        "X402_PAYMENT_RESPONSE",
        "X402_PAYMENT_SIGNATURE",
        "X402_V1_PAYMENT",
        "X402_V1_PAYMENT_RESPONSE",
        "X402PaymentRequired",
        "X402Requirement",
        "X402Settlement",
        "parse_x402_body",
        "parse_x402_required",
        "parse_x402_settlement",
        "resource_matches",
        "x402_challenges",
        "x402_payment_header",
    ),
}
_LAZY = {name: f".{module}" for module, names in _LAZY_MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    return load(__name__, _LAZY, name, globals())


__all__ = [
    "AUTHORIZATION",
    "BASE_UNITS",
    "MAX_CHALLENGE_BYTES",
    "MAX_CREDENTIAL_BYTES",
    "PAYMENT_AUTHORIZATION",
    "PROBLEM_BASE",
    "Challenge",
    "ChargeTerms",
    "Credential",
    "Problem",
    "Quote",
    "Receipt",
    "b64url_decode",
    "b64url_encode",
    "canonical_json",
    "challenge_id",
    "charge_terms",
    "content_digest",
    "digest_matches",
    "format_accept_payment",
    "format_challenge",
    "format_rfc3339",
    "parse_challenges",
    "parse_challenges_lenient",
    "parse_digest",
    "parse_rfc3339",
]
__all__ += list(_LAZY)
