"""What a ledger tells its readers: records, reports, verification, proofs, exports.

Read only, and allowed to read every record (unlike the paid path): a
mixin of :class:`~._core.StoreLedger`, over the same transactions.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ..money import Amount
from . import _export
from ._chain import SignedHead
from ._heads import HeadSink, LoadableHeads, as_heads
from ._record import PaymentRecord
from ._store import Store, Tx
from ._totals import from_nano, us
from ._verify import VerifyReport, verify

if TYPE_CHECKING:
    from ..identity import AgentKey

__all__ = ["Reports"]

T = TypeVar("T")


class Reports:
    """Records, reports, ``verify()``, proofs and exports (see :class:`~._core.StoreLedger`)."""

    _store: Store
    _lock: threading.RLock
    _agent: AgentKey | None
    _trusted: tuple[str, ...]
    _heads: HeadSink | None
    _ledger_id: str
    _clock: Callable[[], datetime]

    def _transact(
        self, work: Callable[[Tx], T], *, write: bool = True, light: bool = False
    ) -> T:  # pragma: no cover - provided by StoreLedger
        raise NotImplementedError

    def records(self) -> list[PaymentRecord]:
        rows = self._transact(lambda tx: list(tx.all_payments()), write=False)
        return [PaymentRecord.from_dict(json.loads(row.record)) for row in rows]

    def get(self, record_id: str) -> PaymentRecord | None:
        row = self._transact(lambda tx: tx.payment(record_id), write=False)
        return PaymentRecord.from_dict(json.loads(row.record)) if row is not None else None

    def spent(
        self,
        currency: str,
        *,
        window: timedelta | None = None,
        since: datetime | None = None,
        payee: str | None = None,
        method: str | None = None,
        tags: Mapping[str, str] | None = None,
        scope: str | None = None,
    ) -> Amount:
        if window is not None:
            since = max(filter(None, (since, self._clock() - window)))
        _, nano = self._transact(
            lambda tx: tx.sum_matching(
                scope=scope,
                currency=currency,
                since_us=us(since) if since is not None else None,
                payee=payee,
                method=method,
                tags=dict(tags or {}),
            ),
            write=False,
        )
        return from_nano(nano, currency)

    def count(
        self,
        *,
        since: datetime | None = None,
        payee: str | None = None,
        method: str | None = None,
        scope: str | None = None,
    ) -> int:
        count, _ = self._transact(
            lambda tx: tx.sum_matching(
                scope=scope,
                currency=None,
                since_us=us(since) if since is not None else None,
                payee=payee,
                method=method,
                tags={},
            ),
            write=False,
        )
        return count

    # -- the audit log ------------------------------------------------------------------

    def verify(
        self,
        *,
        trusted_agents: Sequence[str] | None = None,
        against: Any = None,
        any_signer: bool = False,
        allow_unsigned: bool = False,
        require_signatures: bool | None = None,
    ) -> VerifyReport:
        """Check the whole ledger in one snapshot; every problem is named.

        Strict by default when this ledger has an agent key or was written
        with one: every chain's head must then be signed by a trusted agent
        (this ledger's own, ``trusted_agents`` given here or to the ledger).
        ``any_signer=True`` accepts any valid signature; ``allow_unsigned=True``
        accepts unsigned heads. ``against``: heads published outside the
        database (heads, their dicts, a heads directory); by default those
        the ledger's ``heads=`` sink can load (a SQLite ledger's head files).
        ``require_signatures`` (True or False) says explicitly whether
        unsigned heads are a problem.
        """
        published = as_heads(against) if against is not None else self._published()

        def work(tx: Tx) -> VerifyReport:
            meta = tx.all_meta()
            keyed = any(key.startswith("agent:") for key in meta)
            signed = any(h.agent is not None for h in [*published, *tx.heads()])
            strict = self._agent is not None or keyed or signed
            trusted: set[str] | None = None
            if not any_signer and (strict or trusted_agents is not None):
                trusted = {*self._trusted, *(trusted_agents or ())}
                if self._agent is not None:
                    trusted.add(self._agent.did)
            required = strict and not allow_unsigned
            if require_signatures is not None:
                required = require_signatures
            return verify(
                tx,
                ledger_id=self._ledger_id,
                trusted=trusted,
                require_signed=required,
                against=published,
            )

        with self._lock:
            return self._transact(work, write=False)

    def _published(self) -> list[SignedHead]:
        if isinstance(self._heads, LoadableHeads):
            return self._heads.load()
        return []

    def inclusion_proof(self, record_id: str) -> dict[str, Any]:
        """Prove that the latest entry of ``record_id`` is in its chain's signed head.

        The result is JSON data, checked offline by
        :func:`mpp_client.ledger.verify_exported_proof`.
        """
        with self._lock:
            return self._transact(
                lambda tx: _export.inclusion_proof(tx, record_id, self._agent, self._clock())
            )

    def export_jsonl(self) -> Iterator[str]:
        """The audit log as JSON Lines: one entry per line (see :mod:`._export`)."""
        lines = self._transact(lambda tx: list(_export.jsonl(tx)), write=False)
        yield from lines

    def export_csv(self) -> str:
        """Payments as CSV, one row each (public terms only)."""
        return _export.csv_text(self.records())

    def totals(self, currency: str, *, by: str, since: datetime | None = None) -> dict[str, Amount]:
        """Counted spend per ``payee``, ``method``, ``status`` or ``tag:<name>``."""
        return _export.totals_by(self.records(), currency, by=by, since=since)
