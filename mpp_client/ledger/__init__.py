"""The spend ledger: reservations, commits, releases, unknown outcomes, and the audit log.

``SqliteLedger`` (the default, one file) and ``PostgresLedger`` (a fleet's
shared budget) keep a tamper-evident, hash-chained, signed audit log;
``MemoryLedger`` keeps state in memory only.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..identity import AgentKey
from ._audit import VerifyReport, verify_exported_proof
from ._base import COUNTED, Ledger, PaymentRecord, Status
from ._memory import MemoryLedger
from ._postgres import PostgresLedger
from ._sql import SqlLedger
from ._sqlite import SqliteLedger, default_ledger_path

__all__ = [
    "COUNTED",
    "Ledger",
    "MemoryLedger",
    "PaymentRecord",
    "PostgresLedger",
    "SqlLedger",
    "SqliteLedger",
    "Status",
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
        return MemoryLedger()
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    return SqliteLedger(Path(text), agent_key=agent_key)
