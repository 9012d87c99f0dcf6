"""Reading the ``Payment-Receipt`` of a paid response, and what it says about the payment.

The draft sends a receipt only for a successful payment of the challenge that
was paid. Servers differ and some are hostile, so the receipt is checked
against the payment before it is kept, and anything odd is written in the
ledger record rather than dropped in silence.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from .._exceptions import ProtocolError
from .._text import get_logger, printable
from ..protocol import Challenge, Receipt

__all__ = ["ReceiptReading", "read_receipt"]

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
        status = Receipt.peek_status(value)
        if status is not None and status != "success":
            note = f"its Payment-Receipt says status {printable(status, 40)!r}"
            return ReceiptReading(note=note, failed=True)
        logger.warning("ignoring a malformed Payment-Receipt: %s", exc.message)
        return ReceiptReading(
            note=f"the server's Payment-Receipt was malformed ({exc.message}); not kept"
        )
    if receipt.method != challenge.method:
        note = (
            f"the server's Payment-Receipt names method {printable(receipt.method, 40)!r}, "
            f"not {challenge.method!r}; not kept"
        )
        logger.warning("%s", note)
        return ReceiptReading(note=note)
    named = receipt.data.get("challengeId")
    if named is not None and named != challenge.id:
        note = (
            f"the server's Payment-Receipt is for challenge {printable(named, 80)!r}, "
            f"not {challenge.id!r}; not kept"
        )
        logger.warning("%s", note)
        return ReceiptReading(note=note)
    return ReceiptReading(receipt)
