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
from ._lazy import load
from ._version import __version__
from .auth import PaymentAuth
from .client import AsyncClient, Client, payment_decision, payment_record
from .ledger import Ledger, PaymentRecord
from .methods import PaymentMethod, Quote, charge_terms
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
from .protocol import Challenge, Credential, Problem, Receipt, parse_challenges

if TYPE_CHECKING:
    from ._flow import QuotedOffer, QuoteResult
    from .identity import AgentKey, OwnerKey, sign_record, verify_record, verify_signature
    from .ledger import MemoryLedger
    from .mandate import Mandate, Revocations, load_mandate
    from .methods import DevWallet
    from .policy import Policy
    from .protocol import DiscoveredOffer, Discovery, DiscoveryError, PricedOperation

# Imported on first use (see _lazy), so ``import mpp_client`` stays light: the
# policy model needs pydantic, keys, mandates and the dev wallet need pynacl,
# and quoting, discovery and the in-memory store are not on every program's path.
_LAZY = {
    "DevWallet": ".methods",
    "DiscoveredOffer": ".protocol",
    "Discovery": ".protocol",
    "DiscoveryError": ".protocol",
    "MemoryLedger": ".ledger",
    "PricedOperation": ".protocol",
    "QuoteResult": "._flow",
    "QuotedOffer": "._flow",
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
    return load(__name__, _LAZY, name, globals())


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
