"""Reading the ``Payment-Receipt`` of a paid response, and what it says about the payment.

The draft sends a receipt only for a successful payment of the challenge that
was paid. Servers differ and some are hostile, so the receipt is checked
against the payment before it is kept, and anything odd is written in the
ledger record rather than dropped in silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from .._exceptions import ChallengeError, ProtocolError
from .._text import get_logger, printable
from ..protocol import Challenge, Receipt

if TYPE_CHECKING:
    from ..protocol import X402Requirement

__all__ = ["ReceiptReading", "read_receipt", "read_x402_refusal"]

logger = get_logger("mpp_client")


@dataclass(frozen=True, slots=True)
class ReceiptReading:
    """What the paid response's ``Payment-Receipt`` says about this payment."""

    receipt: Receipt | None = None
    #: Why the server's receipt was not kept (for the ledger record), if it was not.
    note: str | None = None
    #: The receipt reports a payment that did not succeed.
    failed: bool = False


def read_receipt(response: httpx.Response, challenge: Challenge) -> ReceiptReading:
    """The receipt for this payment, and a note when the server's could not be kept.

    The draft sends a receipt only for a successful payment, for the
    challenge that was paid. A malformed one, or one naming another method
    or challenge, is not kept (the 2xx still means the credential was
    accepted) and the ledger record says why. A receipt whose status is
    not ``success`` contradicts the 2xx: the reading is then ``failed``,
    and the outcome is recorded as unknown.
    """
    if challenge.x402 is not None:  # x402 (issue 13): its settlement header instead
        return _read_x402_settlement(response, challenge.x402)
    value = response.headers.get("payment-receipt")
    if value is None:
        # The paid request may have been redirected: the receipt then rides on
        # the redirect response that accepted the credential.
        for earlier in reversed(response.history):
            if earlier.status_code == 402:
                break
            value = earlier.headers.get("payment-receipt")
            if value is not None:
                break
    if value is None:
        return ReceiptReading()
    try:
        receipt = Receipt.parse(value)
    except ProtocolError as exc:
        return unreadable_receipt(exc, Receipt.peek_status(value), "Payment-Receipt")
    return checked_receipt(receipt, challenge, "Payment-Receipt")


def unreadable_receipt(exc: ProtocolError, status: object, what: str) -> ReceiptReading:
    """A receipt that could not be read: failed if it still says so, else not kept.

    ``status`` is what the receipt claims, if that much could be read; ``what``
    names the receipt in notes (``Payment-Receipt``, ``receipt``).
    """
    if isinstance(status, str) and status != "success":
        return ReceiptReading(note=f"its {what} says status {printable(status, 40)!r}", failed=True)
    logger.warning("ignoring a malformed %s: %s", what, exc.message)
    return ReceiptReading(note=f"the server's {what} was malformed ({exc.message}); not kept")


def checked_receipt(receipt: Receipt, challenge: Challenge, what: str) -> ReceiptReading:
    """``receipt`` kept if it is for this payment: its method, and its challenge when named."""
    note = None
    if receipt.method != challenge.method:
        note = (
            f"the server's {what} names method {printable(receipt.method, 40)!r}, "
            f"not {challenge.method!r}; not kept"
        )
    else:
        named = receipt.data.get("challengeId")
        if named is not None and named != challenge.id:
            note = (
                f"the server's {what} is for challenge {printable(named, 80)!r}, "
                f"not {challenge.id!r}; not kept"
            )
    if note is None:
        return ReceiptReading(receipt)
    logger.warning("%s", note)
    return ReceiptReading(note=note)


# -- x402 (issue 13) ------------------------------------------------------------------

#: x402 settlement failures that mean no transfer happened: the facilitator
#: refused the authorization before submitting it, or its transaction reverted.
#: Any other failure after a payment (``settlement_pending``, an unexpected
#: error, a reason we do not know) leaves the outcome in doubt.
_X402_NOTHING_MOVED = frozenset(
    {
        "transaction_failed",
        "network_mismatch",
        "unsupported_scheme",
        "missing_eip712_domain",
        "asset_not_deployed_contract",
        "insufficient_funds",
    }
)


def _settlement_value(response: httpx.Response, requirement: X402Requirement) -> str | None:
    value: str | None = response.headers.get(requirement.settlement_header)
    if value is None:
        # As for Payment-Receipt: the redirect that accepted the payment carries it.
        for earlier in reversed(response.history):
            if earlier.status_code == 402:
                break
            value = earlier.headers.get(requirement.settlement_header)
            if value is not None:
                break
    return value


def _read_x402_settlement(response: httpx.Response, requirement: X402Requirement) -> ReceiptReading:
    """The x402 settlement header of a paid 2xx, as a receipt (method ``x402``)."""
    from ..protocol import parse_x402_settlement  # noqa: PLC0415 - loaded with the offer

    header = requirement.settlement_header
    value = _settlement_value(response, requirement)
    if value is None:
        return ReceiptReading()
    try:
        settlement = parse_x402_settlement(value)
    except ProtocolError as exc:
        logger.warning("ignoring a malformed %s: %s", header, exc.message)
        return ReceiptReading(note=f"the server's {header} was malformed ({exc.message}); not kept")
    if not settlement.success:
        reason = printable(settlement.error_reason or "no reason given", 80)
        return ReceiptReading(note=f"its {header} says settlement failed ({reason})", failed=True)
    if settlement.network is not None and settlement.network != requirement.network:
        note = (
            f"the server's {header} names network {printable(settlement.network, 40)!r}, "
            f"not {requirement.network!r}; not kept"
        )
        logger.warning("%s", note)
        return ReceiptReading(note=note)
    receipt = settlement.receipt()
    if receipt is None:
        return ReceiptReading(note=f"the server's {header} names no transaction; not kept")
    return ReceiptReading(receipt)


def read_x402_refusal(response: httpx.Response, challenge: Challenge) -> tuple[str, str | None]:
    """What a 402 after an x402 payment means: ``(reason, doubt)``.

    ``reason`` is the server's code (its settlement's ``errorReason``, or the
    fresh ``PAYMENT-REQUIRED``'s ``error``). ``doubt`` is None when nothing
    can have moved (the server refused the authorization, or its settlement
    failed before or without a transfer) and otherwise says why the outcome
    is unknown: a settlement still pending, one that failed for a reason
    that does not rule a transfer out, a settlement header that cannot be
    read, or one that claims success on a 402.
    """
    requirement = challenge.x402
    if requirement is None:  # pragma: no cover - only called for x402 offers
        raise TypeError("not an x402 offer")
    from ..protocol import parse_x402_required, parse_x402_settlement  # noqa: PLC0415 - as above

    header = requirement.settlement_header
    value = response.headers.get(header)
    if value is not None:
        try:
            settlement = parse_x402_settlement(value)
        except ProtocolError as exc:
            return "unreadable settlement", (
                f"the server answered 402 with a malformed {header} ({exc.message}) "
                "after an x402 payment"
            )
        reason = printable(settlement.error_reason or "no reason given", 80)
        if settlement.success:
            return reason, f"the server answered 402 with a {header} that says it settled"
        if not (
            (settlement.error_reason or "").startswith("invalid_")
            or settlement.error_reason in _X402_NOTHING_MOVED
        ):
            tx = settlement.transaction
            named = f", transaction {printable(tx, 80)}" if tx else ""
            return reason, f"the server's x402 settlement failed ({reason}{named})"
        return reason, None
    fresh = response.headers.get("payment-required")
    if fresh is not None:
        try:
            error = parse_x402_required(fresh).error
        except ChallengeError:  # the fresh terms are unreadable: no reason to give
            error = None
        if error:
            return printable(error, 80), None
    return "no reason given", None
