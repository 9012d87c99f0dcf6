"""The in-memory store: correct under threads and tasks, gone when the process ends.

It keeps the same state as the SQL stores (payments, the log with its
chains and heads, running totals) in dicts and sorted lists, so the one
algorithm runs on it unchanged, ``verify()`` and the exports included. The
indexes the SQL stores get from their databases are kept by hand: by scope
and creation time (the exact part of a window, a filter's backfill), and per
payee and scope (committed and unknown payments, for the policy's history).
"""

from __future__ import annotations

import bisect
import itertools
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .._exceptions import ChallengeReused, PaymentError
from ._chain import Entry, SignedHead
from ._core import StoreLedger
from ._heads import HeadSink
from ._record import COUNTED
from ._store import PaymentRow, Store, Tx
from ._totals import MAX_NANO, Cells, Filter

if TYPE_CHECKING:
    from ..identity import AgentKey

__all__ = ["MemoryLedger", "MemoryStore"]

_Key = tuple[int, int, str]  # (created_us, insertion number, id): one sort order for ties


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MemoryStore(Store):
    """Every table in memory, behind one lock (held for in-memory work only)."""

    location = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._numbers = itertools.count()
        self.payments: dict[str, PaymentRow] = {}
        self.keys: dict[str, _Key] = {}
        self.challenges: dict[str, str] = {}
        self.by_scope: dict[str, list[_Key]] = {}
        #: (scope, payee) -> committed payments; unknown payments, both by creation.
        self.committed: dict[tuple[str, str], list[_Key]] = {}
        self.unknown: dict[tuple[str, str], list[_Key]] = {}
        self.scopes_of: dict[str, set[str]] = {}
        self.filters: dict[int, Filter] = {}
        self.filters_by_scope: dict[str, list[Filter]] = {}
        self.totals: dict[tuple[int, int, int, str], list[int]] = {}
        self.currencies: dict[int, set[str]] = {}
        self.charges: dict[str, tuple[int, str, int]] = {}
        self.entries: dict[str, list[Entry]] = {}
        self.heads: dict[str, SignedHead] = {}
        self.checkpoints: list[SignedHead] = []
        self.meta: dict[str, str] = {}
        #: Rows, cells and index entries the primitive operations touched: a test
        #: reads it to show the paid path does not grow with history.
        self.visited = 0

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self._lock:
            tx = _MemoryTx(self)
            yield tx
            for step in tx.pending:  # all or nothing: applied only once the work succeeded
                step()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self._lock:
            yield _MemoryTx(self)

    def charge(self, record_id: str) -> tuple[int, str, int]:
        """A committed payment's exact charge (read from its record once, then kept)."""
        charge = self.charges.get(record_id)
        if charge is None:
            data = json.loads(self.payments[record_id].record)
            charge = (int(data["charge_units"]), data["charge_currency"], data["charge_decimals"])
            self.charges[record_id] = charge  # a committed payment's charge never changes
        return charge

    # -- index upkeep (under the lock) ----------------------------------------------

    def _index(self, row: PaymentRow, old: PaymentRow | None) -> None:
        key = self.keys[row.id]
        pair = (row.scope, row.payee)
        if old is not None and old.status == "unknown" and row.status != "unknown":
            keys = self.unknown[pair]
            del keys[bisect.bisect_left(keys, key)]
        if row.status == "unknown" and (old is None or old.status != "unknown"):
            bisect.insort(self.unknown.setdefault(pair, []), key)
        if row.status == "committed" and (old is None or old.status != "committed"):
            bisect.insort(self.committed.setdefault(pair, []), key)


class _MemoryTx(Tx):
    def __init__(self, store: MemoryStore) -> None:
        self.s = store
        self.pending: list[Callable[[], None]] = []

    def _visit(self, n: int = 1) -> None:
        self.s.visited += n

    # -- payments ------------------------------------------------------------------

    def payment(self, record_id: str, *, lock: bool = False) -> PaymentRow | None:
        self._visit()
        return self.s.payments.get(record_id)

    def challenge_owner(self, key: str) -> str | None:
        self._visit()
        return self.s.challenges.get(key)

    def insert_payment(self, row: PaymentRow) -> None:
        s = self.s
        if row.challenge is not None and row.challenge in s.challenges:
            raise ChallengeReused(f"challenge {row.challenge} was already answered")

        def apply() -> None:
            key = (row.created_us, next(s._numbers), row.id)
            s.payments[row.id] = row
            s.keys[row.id] = key
            if row.challenge is not None:
                s.challenges[row.challenge] = row.id
            bisect.insort(s.by_scope.setdefault(row.scope, []), key)
            s.scopes_of.setdefault(row.payee, set()).add(row.scope)
            s._index(row, None)

        self.pending.append(apply)

    def update_payment(self, row: PaymentRow) -> None:
        s = self.s

        def apply() -> None:
            old = s.payments[row.id]
            s.payments[row.id] = row
            s._index(row, old)

        self.pending.append(apply)

    def payments_created(self, scope: str, start_us: int, end_us: int) -> list[PaymentRow]:
        keys = self.s.by_scope.get(scope, [])
        lo = bisect.bisect_left(keys, (start_us,))
        hi = bisect.bisect_left(keys, (end_us,))
        self._visit(hi - lo + 1)
        return [self.s.payments[key[2]] for key in keys[lo:hi]]

    def counted_payments(self, scope: str, payee: str | None) -> Iterator[PaymentRow]:
        for key in list(self.s.by_scope.get(scope, [])):
            self._visit()
            row = self.s.payments[key[2]]
            if row.status in COUNTED and (payee is None or row.payee == payee):
                yield row

    # -- filters and totals ----------------------------------------------------------

    def filters_for(self, scope: str, payee: str, *, lock: bool = False) -> list[Filter]:
        found = [
            f for f in self.s.filters_by_scope.get(scope, ()) if f.payee is None or f.payee == payee
        ]
        self._visit(len(found) + 1)
        return sorted(found, key=lambda f: f.id)

    def has_filter(self, filter_id: int) -> bool:
        self._visit()
        return filter_id in self.s.filters

    def insert_filter(self, flt: Filter) -> None:
        def apply() -> None:
            if flt.id not in self.s.filters:
                self.s.filters[flt.id] = flt
                self.s.filters_by_scope.setdefault(flt.scope, []).append(flt)

        self.pending.append(apply)

    def bucket_sums(
        self, filter_id: int, ranges: Sequence[tuple[int, int, int | None]]
    ) -> list[tuple[str, int, int]]:
        totals = self.s.totals
        currencies = self.s.currencies.get(filter_id, set())
        sums: dict[str, list[int]] = {}
        for level, first, end in ranges:
            # The top level's buckets are 2**28 s: 16 of them reach 2106.
            stop = end if end is not None else first + 16
            for bucket in range(first, stop):
                for currency in currencies:
                    self._visit()
                    cell = totals.get((filter_id, level, bucket, currency))
                    if cell is not None:
                        acc = sums.setdefault(currency, [0, 0])
                        acc[0] += cell[0]
                        acc[1] += cell[1]
        return [(currency, n, nano) for currency, (n, nano) in sums.items()]

    def add_totals(self, cells: Cells) -> None:
        for key, (_, nano) in cells.items():
            cell = self.s.totals.get(key)
            if abs((cell[1] if cell else 0) + nano) > MAX_NANO:
                # As the SQL stores do: totals are 64-bit integers there.
                raise PaymentError("the ledger refused the write: a running total would overflow")

        def apply() -> None:
            totals = self.s.totals
            for key, (n, nano) in cells.items():
                self.s.currencies.setdefault(key[0], set()).add(key[3])
                cell = totals.setdefault(key, [0, 0])
                cell[0] += n
                cell[1] += nano

        self.pending.append(apply)

    # -- the log -------------------------------------------------------------------

    def insert_entries(self, entries: Sequence[Entry]) -> None:
        def apply() -> None:
            for entry in entries:
                self.s.entries.setdefault(entry.chain, []).append(entry)

        self.pending.append(apply)

    def put_head(self, head: SignedHead) -> None:
        def apply() -> None:
            self.s.heads[head.chain] = head

        self.pending.append(apply)

    def put_checkpoint(self, head: SignedHead) -> None:
        self.pending.append(lambda: self.s.checkpoints.append(head))

    def meta(self, key: str) -> str | None:
        return self.s.meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        def apply() -> None:
            self.s.meta.setdefault(key, value)

        self.pending.append(apply)

    # -- history ---------------------------------------------------------------------

    def _pairs(self, scope: str | None, payee: str) -> list[tuple[str, str]]:
        scopes = [scope] if scope is not None else sorted(self.s.scopes_of.get(payee, ()))
        return [(s, payee) for s in scopes]

    def has_paid(self, scope: str | None, payee: str) -> bool:
        self._visit()
        return any(
            self.s.committed.get(p) or self.s.unknown.get(p) for p in self._pairs(scope, payee)
        )

    def recent_committed(self, scope: str | None, payee: str, n: int) -> list[tuple[int, str, int]]:
        keys: list[_Key] = []
        for pair in self._pairs(scope, payee):
            keys.extend(self.s.committed.get(pair, [])[-n:])
        newest = sorted(keys, reverse=True)[:n]
        self._visit(len(newest) + 1)
        return [self.s.charge(key[2]) for key in newest]

    def failure_streak(self, scope: str | None, payee: str) -> tuple[int, int | None]:
        streak, newest = 0, None
        for pair in self._pairs(scope, payee):
            committed = self.s.committed.get(pair, [])
            unknown = self.s.unknown.get(pair, [])
            after = bisect.bisect_right(unknown, committed[-1]) if committed else 0
            streak += len(unknown) - after
            if len(unknown) > after and (newest is None or unknown[-1] > newest):
                newest = unknown[-1]
            self._visit(len(unknown) - after + 1)
        if newest is None:
            return streak, None
        return streak, self.s.payments[newest[2]].updated_us

    # -- reports -----------------------------------------------------------------------

    def sum_matching(
        self,
        *,
        scope: str | None,
        currency: str | None,
        since_us: int | None,
        payee: str | None,
        method: str | None,
        tags: Mapping[str, str],
    ) -> tuple[int, int]:
        flt = Filter("", payee, method, tuple(sorted(tags.items())))
        count = nano = 0
        self._visit(len(self.s.payments))
        for row in self.s.payments.values():
            if row.status not in COUNTED or (scope is not None and row.scope != scope):
                continue
            if currency is not None and row.currency != currency:
                continue
            if since_us is not None and row.created_us < since_us:
                continue
            if flt.matches("", row.payee, row.method, row.tagset):
                count += 1
                nano += row.charge_nano
        return count, nano

    def all_payments(self) -> Iterator[PaymentRow]:
        keys = sorted(self.s.keys.values())
        return iter([self.s.payments[key[2]] for key in keys])

    def all_entries(self) -> Iterator[Entry]:
        return iter([e for chain in self.s.entries.values() for e in chain])

    def chain_entries(self, chain: str, size: int) -> list[Entry]:
        return list(self.s.entries.get(chain, [])[:size])

    def chain_size(self, chain: str) -> int:
        entries = self.s.entries.get(chain)
        return entries[-1].seq + 1 if entries else 0

    def heads(self) -> list[SignedHead]:
        return list(self.s.heads.values())

    def checkpoints(self) -> list[SignedHead]:
        return list(self.s.checkpoints)

    def all_filters(self) -> list[Filter]:
        return list(self.s.filters.values())

    def all_totals(self) -> Iterator[tuple[tuple[int, int, int, str], tuple[int, int]]]:
        return iter([(key, (n, nano)) for key, (n, nano) in self.s.totals.items()])

    def all_meta(self) -> dict[str, str]:
        return dict(self.s.meta)


class MemoryLedger(StoreLedger):
    """A ledger in memory: the same algorithm, log and checks as the durable ones.

    The store's lock is held only for in-memory bookkeeping (never across
    I/O), so it is also safe to call from asyncio code.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = _utcnow,
        agent_key: AgentKey | None = None,
        trusted_agents: Sequence[str] = (),
        heads: HeadSink | None = None,
        checkpoint_every: int = 256,
    ) -> None:
        self.store = MemoryStore()
        super().__init__(
            self.store,
            agent_key=agent_key,
            trusted_agents=trusted_agents,
            heads=heads,
            checkpoint_every=checkpoint_every,
            clock=clock,
        )
        self._open()

    def __repr__(self) -> str:
        return "<MemoryLedger>"
