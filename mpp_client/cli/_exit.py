"""Exit codes scripts can rely on, and which error means which.

The codes are part of the interface: a script that runs ``mpp get`` can tell
"the policy said no" from "money may have moved, look at the ledger" without
reading messages. They never change meaning; new ones are only ever added.
"""

from __future__ import annotations

import enum

import httpx

from .._exceptions import (
    ChallengeError,
    InsecureTransport,
    KeystoreError,
    MandateError,
    NoAcceptableChallenge,
    PaymentError,
    PaymentFailed,
    PaymentOutcomeUnknown,
    PaymentRejected,
    PolicyDenied,
    PolicyError,
    ProtocolError,
)
from ..money import MoneyError

__all__ = ["EXIT_CODES", "ExitCode", "exit_code"]


class ExitCode(enum.IntEnum):
    """What ``mpp`` exits with."""

    OK = 0
    #: Anything not listed below (a bug, an unexpected failure).
    ERROR = 1
    #: Bad arguments, or an input file (policy, mandate, key, amount) that cannot be used.
    USAGE = 2
    #: The spending policy refused (or would refuse) to pay; nothing was paid.
    REFUSED = 3
    #: The payment failed before money moved, or the server rejected the credential.
    PAYMENT_FAILED = 4
    #: Money may have moved but the outcome is unclear: resolve it (``mpp ledger resolve``).
    OUTCOME_UNKNOWN = 5
    #: A verification failed: the ledger's audit log, a mandate, a revocation list.
    VERIFICATION_FAILED = 6
    #: The server's terms cannot be paid (malformed or expired challenge, no
    #: matching payment method, plain HTTP) or its answer cannot be read.
    UNPAYABLE = 7
    #: The server could not be reached (connection refused, DNS, timeout, TLS).
    UNREACHABLE = 8
    #: ``--fail``: the server answered with an HTTP error status (as ``curl -f``).
    HTTP_ERROR = 22
    #: Interrupted (Ctrl-C).
    INTERRUPTED = 130


#: One line per code, for ``mpp --help`` and the docs.
EXIT_CODES: dict[int, str] = {
    0: "success (for quote: the request would be paid, or needs no payment)",
    1: "unexpected error",
    2: "usage: bad arguments, or an input file that cannot be used",
    3: "refused by the spending policy (nothing paid)",
    4: "payment failed before money moved, or the server rejected the credential",
    5: "outcome unknown: money may have moved; resolve with `mpp ledger resolve`",
    6: "verification failed (ledger audit log, mandate, revocations)",
    7: "the server's terms cannot be paid or its answer cannot be read",
    8: "the server could not be reached",
    22: "--fail and the server answered with an HTTP error status",
    130: "interrupted",
}


def exit_code(error: BaseException) -> ExitCode:
    """The exit code for ``error`` (order matters: the most specific first)."""
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(error, PaymentOutcomeUnknown):
        return ExitCode.OUTCOME_UNKNOWN
    if isinstance(error, PolicyDenied):
        return ExitCode.REFUSED
    if isinstance(error, PaymentFailed | PaymentRejected):
        return ExitCode.PAYMENT_FAILED
    if isinstance(error, MandateError):
        return ExitCode.VERIFICATION_FAILED
    if isinstance(error, ChallengeError | NoAcceptableChallenge | InsecureTransport):
        return ExitCode.UNPAYABLE
    if isinstance(error, KeystoreError | PolicyError | MoneyError):
        return ExitCode.USAGE
    if isinstance(error, ProtocolError):
        return ExitCode.UNPAYABLE
    if isinstance(error, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return ExitCode.USAGE
    if isinstance(error, httpx.TransportError):
        return ExitCode.UNREACHABLE
    if isinstance(error, OSError):
        return ExitCode.USAGE
    if isinstance(error, PaymentError):
        return ExitCode.ERROR
    return ExitCode.ERROR
