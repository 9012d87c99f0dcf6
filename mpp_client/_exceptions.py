"""The error hierarchy.

Every refusal and every failure in the payment flow is one of these, so callers
can ``except PaymentError`` and know that nothing deeper leaked out. Messages are
written for people, name the reason, and never contain credentials, keys,
signatures or tokens: the flow only ever puts public terms (amounts, payees,
challenge ids) into them.

::

    PaymentError
    ├── ChallengeError          the server's terms are malformed or unusable
    │   ├── ChallengeExpired
    │   └── ChallengeReused     the challenge id was already answered
    ├── InsecureTransport       a credential would travel over plain HTTP
    ├── NoAcceptableChallenge   no offer matches a configured payment method
    ├── PolicyDenied            the spending policy refused
    │   ├── BudgetExceeded
    │   └── ApprovalRequired
    ├── PaymentFailed           the method could not pay; nothing was spent
    │   ├── TermsRefused        ...because the wallet refused the terms when paying
    │   │   └── TermsExpired    (both are also ChallengeErrors; TermsExpired a ChallengeExpired)
    │   └── SignerFailed        ...because a wallet's signer failed (mpp_client.methods)
    ├── PaymentRejected         paid attempt answered with a new 402
    ├── PaymentOutcomeUnknown   money may have moved, the result is unclear
    ├── ProtocolError           a receipt, problem or credential is malformed
    │   └── DiscoveryError      an /openapi.json is missing or malformed (mpp_client.protocol)
    ├── LedgerIntegrityError    the ledger is behind the tree heads it published
    ├── PolicyError             a policy document is invalid (mpp_client.policy)
    ├── KeystoreError           a key file cannot be read, decrypted or written
    │   └── SignerError         a key store or token is unreachable or failed to sign
    └── MandateError            a mandate cannot be trusted
        ├── MandateSignatureInvalid
        │   └── MandateOwnerUntrusted
        ├── MandateExpired, MandateNotYetValid, MandateRevoked
        ├── MandateAgentMismatch
        └── RevocationsInvalid
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._text import printable

if TYPE_CHECKING:
    import httpx

    from ._decision import Decision
    from .protocol import Problem

__all__ = [
    "ApprovalRequired",
    "BudgetExceeded",
    "ChallengeError",
    "ChallengeExpired",
    "ChallengeReused",
    "InsecureTransport",
    "KeystoreError",
    "LedgerIntegrityError",
    "MandateAgentMismatch",
    "MandateError",
    "MandateExpired",
    "MandateNotYetValid",
    "MandateOwnerUntrusted",
    "MandateRevoked",
    "MandateSignatureInvalid",
    "NoAcceptableChallenge",
    "PaymentError",
    "PaymentFailed",
    "PaymentOutcomeUnknown",
    "PaymentRejected",
    "PolicyDenied",
    "PolicyError",
    "ProtocolError",
    "RevocationsInvalid",
    "SignerError",
    "TermsExpired",
    "TermsRefused",
]


class PaymentError(Exception):
    """Base class of every error raised by mpp-client.

    ``response`` is the HTTP response that led to the error when there is one
    (already read, so its body and headers can be inspected after the fact).

    Messages often quote what the server sent (a payee, a problem detail):
    control and format characters in them are escaped here, once for every
    error, so a hostile server cannot forge log lines or paint a terminal.
    """

    def __init__(self, message: str, *, response: httpx.Response | None = None) -> None:
        message = printable(message)
        super().__init__(message)
        self.message = message
        self.response = response

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ChallengeError(PaymentError):
    """A ``WWW-Authenticate: Payment`` challenge is malformed or cannot be paid.

    Raised by :func:`mpp_client.parse_challenges` for bad input of any shape,
    and by the flow when terms are unusable (unknown currency, bad amount, a
    body digest that does not match the request body). Nothing was paid.
    """


class ChallengeExpired(ChallengeError):
    """The challenge's validity window has passed (beyond the allowed clock skew)."""


class ChallengeReused(ChallengeError):
    """The challenge id was already answered, by this process or any other on the ledger.

    Challenges are single use: a server that re-sends one (a replay, or a bug)
    is never paid twice. The ledger remembers every id it reserved for, across
    restarts and processes.
    """


class InsecureTransport(PaymentError):
    """A credential would have been sent over plain HTTP.

    Credentials are bearer instruments for money; they only travel over HTTPS,
    or to a loopback host when the client opted in with
    ``allow_insecure_localhost=True``.
    """


class NoAcceptableChallenge(PaymentError):
    """The server asked for payment, but no offer matched a configured method.

    ``reasons`` lists, per offer, why it was passed over.
    """

    def __init__(
        self,
        message: str,
        *,
        reasons: tuple[str, ...] = (),
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message, response=response)
        self.reasons = tuple(printable(reason) for reason in reasons)


class PolicyDenied(PaymentError):
    """The spending policy refused this payment. ``decision`` says why."""

    def __init__(
        self,
        message: str,
        *,
        decision: Decision | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message, response=response)
        self.decision = decision

    @property
    def reasons(self) -> tuple[str, ...]:
        """Human-readable reasons, one per rule that refused."""
        if self.decision is None:
            return (self.message,)
        return tuple(printable(reason) for reason in self.decision.reasons)


class BudgetExceeded(PolicyDenied):
    """Paying would take a budget over its limit (counting reserved and unknown spend)."""


class ApprovalRequired(PolicyDenied):
    """The payment needs a human approval that was not given."""


class PaymentFailed(PaymentError):
    """The payment method failed before any money could move.

    The reservation was released; it is safe to try again.
    """


class TermsRefused(ChallengeError, PaymentFailed):
    """The wallet refused the terms when it came to pay: nothing was signed or spent.

    Both a :class:`ChallengeError` (the terms are the reason) and a
    :class:`PaymentFailed` (the flow releases the reservation). Raised from
    ``pay`` when a check that can only run then fails: the node serves another
    chain, a token's details cannot be read, the terms changed.
    """


class TermsExpired(ChallengeExpired, TermsRefused):
    """The challenge expired (or would, before a credential could reach the server)
    between the quote and the payment: nothing was signed or spent."""


class PaymentRejected(PaymentError):
    """The server answered the paid retry with another 402.

    ``problem`` is the server's RFC 9457 problem detail when it sent one. Whether
    the spend was released or kept as unknown depends on the method: a voucher
    the server refused moved no money, a broadcast transfer did.
    """

    def __init__(
        self,
        message: str,
        *,
        problem: Problem | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message, response=response)
        self.problem = problem


class PaymentOutcomeUnknown(PaymentError):
    """A payment was made but the paid request did not clearly succeed.

    The amount stays counted as spent and the ledger marks the record unknown:
    it must be resolved explicitly, never by paying again.
    """

    def __init__(
        self,
        message: str,
        *,
        record: Any = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message, response=response)
        self.record = record


class ProtocolError(PaymentError):
    """A credential, receipt or problem body does not follow the wire format."""


class PolicyError(PaymentError):
    """A policy document is invalid; the message names the setting."""


class LedgerIntegrityError(PaymentError):
    """The ledger holds less than the signed tree heads it published outside itself.

    Raised when a ledger opens and a chain is shorter than, or differs from, a
    head it published (for a SQLite file, the heads in ``<file>.heads/``):
    payments or their log entries were deleted, or the file was replaced by
    an older copy. Nothing is paid from it until someone looks. ``problems``
    names each chain. If the file was replaced on purpose, move its heads
    directory away too.
    """

    def __init__(self, message: str, *, problems: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(printable(problem) for problem in problems)


class KeystoreError(PaymentError):
    """An encrypted key file cannot be written, read or decrypted.

    Raised for a wrong passphrase, an altered or truncated file, a file holding
    the other kind of key, and a file that other users can read. The message
    names the file and the reason, never the passphrase or the key.
    """


class SignerError(KeystoreError):
    """A key store or token could not be reached, or failed to sign.

    A :class:`KeystoreError`, so code that handles key files handles these
    too. The message names the store and the key's label or public identity,
    never a secret, a PIN or a signature.
    """


class MandateError(PaymentError):
    """A mandate (or a revocation list) is malformed or does not authorize this agent.

    Raised directly for documents that cannot be parsed; the subclasses say why
    a well-formed mandate was refused. Either way the agent must not pay under it.
    """


class MandateSignatureInvalid(MandateError):
    """The owner's signature does not cover this mandate as it reads now.

    The body was altered after signing, or the signature was not made by the
    owner named in it.
    """


class MandateOwnerUntrusted(MandateSignatureInvalid):
    """The mandate names an owner that is not among the trusted owner keys.

    A subclass of :class:`MandateSignatureInvalid` because anyone can sign a
    mandate with a key of their own: without trust in the signer the signature
    proves nothing.
    """


class MandateExpired(MandateError):
    """The mandate's ``expires_at`` has passed (beyond the allowed clock skew)."""


class MandateNotYetValid(MandateError):
    """The mandate's ``not_before`` lies in the future (beyond the allowed clock skew)."""


class MandateRevoked(MandateError):
    """The owner revoked the mandate by id."""


class MandateAgentMismatch(MandateError):
    """The mandate was issued to a different agent ``did:key``."""


class RevocationsInvalid(MandateError):
    """A revocation list is malformed, forged, or not signed by a trusted owner.

    Refused loudly rather than ignored: an agent fed a forged (say, empty) list
    would otherwise keep paying under mandates its owner had revoked.
    """
