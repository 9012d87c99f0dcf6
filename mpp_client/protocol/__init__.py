"""The Payment scheme's wire format, with no I/O.

Everything here turns bytes and strings into typed values and back. It never
opens a socket or reads a clock, so the payment flow, the embedded server and
the tests share one implementation of the format.
"""

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
from ._time import format_rfc3339, parse_rfc3339

__all__ = [
    "AUTHORIZATION",
    "MAX_CHALLENGE_BYTES",
    "MAX_CREDENTIAL_BYTES",
    "PAYMENT_AUTHORIZATION",
    "PROBLEM_BASE",
    "Challenge",
    "Credential",
    "Problem",
    "Receipt",
    "b64url_decode",
    "b64url_encode",
    "canonical_json",
    "challenge_id",
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
