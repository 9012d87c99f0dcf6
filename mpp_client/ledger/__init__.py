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
from typing import TYPE_CHECKING, Any

from .._exceptions import LedgerIntegrityError
from .._lazy import load
from ._base import COUNTED, Ledger, PaymentRecord, Status, Usage

if TYPE_CHECKING:
    from ..identity import AgentKey
    from ._chain import SignedHead
    from ._core import StoreLedger
    from ._export import verify_exported_proof
    from ._heads import HeadFiles
    from ._memory import MemoryLedger
    from ._postgres import PostgresLedger
    from ._sql import SqlLedger
    from ._sqlite import SqliteLedger, default_ledger_path
    from ._verify import VerifyReport

# The stores and the verifier load when first named (or when open_ledger
# opens one): a program that imports the client pays for the interface only.
_LAZY = {
    "HeadFiles": "._heads",
    "MemoryLedger": "._memory",
    "PostgresLedger": "._postgres",
    "SignedHead": "._chain",
    "SqlLedger": "._sql",
    "SqliteLedger": "._sqlite",
    "StoreLedger": "._core",
    "VerifyReport": "._verify",
    "default_ledger_path": "._sqlite",
    "verify_exported_proof": "._export",
}


def __getattr__(name: str) -> Any:
    return load(__name__, _LAZY, name, globals())


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
    # Each store is imported where it is chosen: only the one asked for loads.
    if target is None:
        from ._sqlite import SqliteLedger  # noqa: PLC0415

        return SqliteLedger(agent_key=agent_key)
    text = os.fspath(target)
    if text.startswith(("postgresql://", "postgres://")):
        from ._postgres import PostgresLedger  # noqa: PLC0415

        return PostgresLedger(text, agent_key=agent_key)
    if text == "memory:":
        from ._memory import MemoryLedger  # noqa: PLC0415

        return MemoryLedger(agent_key=agent_key)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    from ._sqlite import SqliteLedger  # noqa: PLC0415

    return SqliteLedger(Path(text), agent_key=agent_key)
