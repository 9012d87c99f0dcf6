"""The spend ledger: reservations, commits, releases, unknown outcomes, and the audit log.

``SqliteLedger`` (the default, one file), ``PostgresLedger`` (a fleet's
shared budget) and ``MemoryLedger`` (in memory only) run one algorithm over
three stores: budgets checked against running totals, a tamper-evident log
of per-writer hash chains with signed tree heads, published outside the
database, and ``verify()``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .._exceptions import LedgerIntegrityError
from ._base import COUNTED, Ledger, PaymentRecord, Status, Usage
from ._chain import SignedHead
from ._core import StoreLedger
from ._export import verify_exported_proof
from ._heads import HeadFiles
from ._memory import MemoryLedger
from ._postgres import PostgresLedger
from ._sql import SqlLedger
from ._sqlite import SqliteLedger, default_ledger_path
from ._verify import VerifyReport

if TYPE_CHECKING:
    from ..identity import AgentKey

__all__ = [
    "COUNTED",
    "HeadFiles",
    "Ledger",
    "LedgerIntegrityError",
    "MemoryLedger",
    "PaymentRecord",
    "PostgresLedger",
    "SignedHead",
    "SqlLedger",
    "SqliteLedger",
    "Status",
    "StoreLedger",
    "Usage",
    "VerifyReport",
    "default_ledger_path",
    "open_ledger",
    "verify_exported_proof",
]


def open_ledger(
    target: Ledger | str | os.PathLike[str] | None = None, *, agent_key: AgentKey | None = None
) -> Ledger:
    """A ledger from a description.

    ``None``: the default SQLite file (:func:`default_ledger_path`);
    ``"postgresql://..."``: a fleet ledger in PostgreSQL; ``"memory:"``: in
    memory only; ``"sqlite:///path"`` or a path: a SQLite file; a
    :class:`Ledger`: itself.
    """
    if isinstance(target, Ledger):
        return target
    if target is None:
        return SqliteLedger(agent_key=agent_key)
    text = os.fspath(target)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresLedger(text, agent_key=agent_key)
    if text == "memory:":
        return MemoryLedger(agent_key=agent_key)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    return SqliteLedger(Path(text), agent_key=agent_key)
