"""The spend ledger: reservations, commits, releases and unknown outcomes."""

from ._base import COUNTED, Ledger, PaymentRecord, Status
from ._memory import MemoryLedger

__all__ = ["COUNTED", "Ledger", "MemoryLedger", "PaymentRecord", "Status"]
