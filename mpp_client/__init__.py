"""mpp-client: httpx that pays for what it uses, under a spending policy.

The Machine Payments Protocol gives HTTP 402 a meaning: the server answers
with a ``WWW-Authenticate: Payment`` challenge, the client pays and retries
with a credential, the server returns the resource and a receipt. This package
is the agent side of that exchange::

    import mpp_client

    client = mpp_client.Client(
        methods=[mpp_client.DevWallet()],
        policy=mpp_client.SimplePolicy(max_per_call="0.50 USD", budget="5.00 USD"),
    )
    response = client.get("https://api.example.com/paid")
    print(mpp_client.payment_record(response))
"""

from typing import TYPE_CHECKING, Any

from ._exceptions import (
    ApprovalRequired,
    BudgetExceeded,
    ChallengeError,
    ChallengeExpired,
    ChallengeReused,
    InsecureTransport,
    KeystoreError,
    LedgerIntegrityError,
    MandateAgentMismatch,
    MandateError,
    MandateExpired,
    MandateNotYetValid,
    MandateOwnerUntrusted,
    MandateRevoked,
    MandateSignatureInvalid,
    NoAcceptableChallenge,
    PaymentError,
    PaymentFailed,
    PaymentOutcomeUnknown,
    PaymentRejected,
    PolicyDenied,
    PolicyError,
    ProtocolError,
    RevocationsInvalid,
    SignerError,
    TermsExpired,
    TermsRefused,
)
from ._flow import QuotedOffer, QuoteResult
from ._version import __version__
from .auth import PaymentAuth
from .client import AsyncClient, Client, payment_decision, payment_record
from .ledger import Ledger, MemoryLedger, PaymentRecord
from .methods import DevWallet, PaymentMethod, Quote, charge_terms
from .money import Amount, MoneyError
from .policy import (
    ApprovalRequest,
    Decision,
    Limit,
    PaymentContext,
    RuleResult,
    SimplePolicy,
    SpendPolicy,
)
from .protocol import (
    Challenge,
    Credential,
    DiscoveredOffer,
    Discovery,
    DiscoveryError,
    PricedOperation,
    Problem,
    Receipt,
    parse_challenges,
)

if TYPE_CHECKING:
    from .identity import AgentKey, OwnerKey, sign_record, verify_record, verify_signature
    from .mandate import Mandate, Revocations, load_mandate
    from .policy import Policy

# Imported on first use, so ``import mpp_client`` stays light: the policy model
# needs pydantic, keys and mandates need pynacl.
_LAZY = {
    "Policy": ".policy",
    "AgentKey": ".identity",
    "OwnerKey": ".identity",
    "sign_record": ".identity",
    "verify_record": ".identity",
    "verify_signature": ".identity",
    "Mandate": ".mandate",
    "Revocations": ".mandate",
    "load_mandate": ".mandate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module  # noqa: PLC0415 - lazy on purpose

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


__all__ = [
    "AgentKey",
    "Amount",
    "ApprovalRequest",
    "ApprovalRequired",
    "AsyncClient",
    "BudgetExceeded",
    "Challenge",
    "ChallengeError",
    "ChallengeExpired",
    "ChallengeReused",
    "Client",
    "Credential",
    "Decision",
    "DevWallet",
    "DiscoveredOffer",
    "Discovery",
    "DiscoveryError",
    "InsecureTransport",
    "KeystoreError",
    "Ledger",
    "LedgerIntegrityError",
    "Limit",
    "Mandate",
    "MandateAgentMismatch",
    "MandateError",
    "MandateExpired",
    "MandateNotYetValid",
    "MandateOwnerUntrusted",
    "MandateRevoked",
    "MandateSignatureInvalid",
    "MemoryLedger",
    "MoneyError",
    "NoAcceptableChallenge",
    "OwnerKey",
    "PaymentAuth",
    "PaymentContext",
    "PaymentError",
    "PaymentFailed",
    "PaymentMethod",
    "PaymentOutcomeUnknown",
    "PaymentRecord",
    "PaymentRejected",
    "Policy",
    "PolicyDenied",
    "PolicyError",
    "PricedOperation",
    "Problem",
    "ProtocolError",
    "Quote",
    "QuoteResult",
    "QuotedOffer",
    "Receipt",
    "Revocations",
    "RevocationsInvalid",
    "RuleResult",
    "SignerError",
    "SimplePolicy",
    "SpendPolicy",
    "TermsExpired",
    "TermsRefused",
    "__version__",
    "charge_terms",
    "load_mandate",
    "parse_challenges",
    "payment_decision",
    "payment_record",
    "sign_record",
    "verify_record",
    "verify_signature",
]
