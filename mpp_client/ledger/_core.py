"""The ledger's algorithm, written once over the storage interface (:mod:`._store`).

Reserving checks every limit against the running totals (:mod:`._totals`)
and holds the amount in one transaction with the record, the totals it
changes, and the log entry and tree head of this writer's chain
(:mod:`._chain`). Settling changes the record, takes it out of the totals when
it stops counting, and logs that. Nothing on these paths reads history: each
step is an index lookup, or a range bounded by what it returns. After a
transaction commits, the chain's new head is published outside the database
(:mod:`._heads`).

A store that can (PostgreSQL) takes the common reservation and settlement in
one statement instead (:meth:`~._store.Store.reserve_at_once`): the ledger
prepares the row, its cells for the filters it last read, the entry and the
head beforehand, and the store writes them only if every check passes under
the locks and the filters are still those.

Transactions that a store reports as *transient* (a busy SQLite file, a
PostgreSQL serialization failure or deadlock) were rolled back whole, so they
are simply run again, a few times with a growing random pause; they can
never pay twice, because nothing is paid inside them.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import tenacity

from .._decision import Limit, Usage
from .._exceptions import BudgetExceeded, LedgerIntegrityError, PaymentError
from ..money import Amount
from ..protocol import Receipt
from ._base import Ledger
from ._chain import ChainWriter, Draft, Entry, SignedHead
from ._heads import HeadFiles, HeadSink, LoadableHeads, published_problems, publisher
from ._merkle import leaf_hash
from ._merkle import root as merkle_root
from ._record import COUNTED, PaymentRecord, Status, record_json, reused_challenge
from ._reports import Reports
from ._store import AtOnce, Check, PaymentRow, Store, Tx, unique
from ._totals import (
    MAX_NANO,
    Cells,
    Filter,
    add_row,
    backfill,
    cap_nano,
    from_nano,
    to_nano,
    us,
)
from ._windows import distinct, limit_key, read_window, usage_of, window_of, windows_of

if TYPE_CHECKING:
    from ..identity import AgentKey

__all__ = ["StoreLedger"]

T = TypeVar("T")
_ATTEMPTS = 8


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Unregistered(Exception):
    """A limit's filter has no totals yet: register it, then run the reservation again."""

    def __init__(self, filters: list[Filter]) -> None:
        self.filters = filters


class StoreLedger(Reports, Ledger):
    """A ledger over a :class:`~._store.Store`: the one implementation of the algorithm.

    ``agent_key`` signs each chain's tree heads; ``trusted_agents`` are other
    agents whose heads ``verify`` accepts by default; ``heads`` publishes
    every new head outside the database (see :mod:`._heads`);
    ``checkpoint_every`` entries of a chain, its head is also kept as a
    checkpoint.
    """

    def __init__(
        self,
        store: Store,
        *,
        agent_key: AgentKey | None = None,
        trusted_agents: Sequence[str] = (),
        heads: HeadSink | None = None,
        checkpoint_every: int = 256,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._store = store
        self.blocking = store.blocking
        self._agent = agent_key
        self._trusted = tuple(trusted_agents)
        self._heads = heads
        self._publish = publisher(heads) if heads is not None else None
        self._clock = clock
        self._lock = threading.RLock()
        self._ledger_id = ""
        self._chain = ChainWriter(lambda: self._ledger_id, agent_key, clock, checkpoint_every)
        self._draft: Draft | None = None
        self._known: set[int] = set()
        self._noted_agent = False
        #: (scope, payee) -> its registered filters as last read (checked again by the
        #: store before a reservation at once relies on them).
        self._registered: dict[tuple[str, str], list[Filter]] = {}
        #: Reservations this object made and has not settled: id -> stored row and record,
        #: so settling one needs no read (the store checks it is unchanged).
        self._held: dict[str, tuple[PaymentRow, PaymentRecord]] = {}

    @property
    def location(self) -> str:
        return self._store.location

    @property
    def ledger_id(self) -> str:
        """This ledger's random id (bound into every tree head)."""
        return self._ledger_id

    # -- opening -------------------------------------------------------------------

    def _open(self) -> None:
        """Read (or make) the ledger id, and check the published heads."""
        self._ledger_id = self._transact(lambda tx: tx.meta("ledger"), write=False) or ""
        if not self._ledger_id:
            self._transact(lambda tx: tx.set_meta("ledger", secrets.token_hex(16)))
            self._ledger_id = self._transact(lambda tx: tx.meta("ledger"), write=False) or ""
        self._store.ledger_id = self._ledger_id
        self._adopt_legacy()
        if isinstance(self._heads, LoadableHeads):
            published = self._heads.load()
            if published:

                def check(tx: Tx) -> list[str]:
                    stored = {h.chain: h for h in tx.heads()}
                    return published_problems(published, self._ledger_id, tx.chain_size, stored)

                problems = self._transact(check, write=False)
                if problems:
                    raise LedgerIntegrityError(
                        f"the ledger at {self.location} is behind the heads it published "
                        f"({self._heads!r}): " + "; ".join(problems[:5]),
                        problems=problems,
                    )

    def _adopt_legacy(self) -> None:
        """Give a ledger's legacy chain (written before chains per writer) a head, once.

        From then on deleting its newest events is caught like any chain's;
        what happened to it before it was first opened by this version, only its
        own checkpoints and per-event signatures can tell.
        """

        def work(tx: Tx) -> SignedHead | None:
            if any(h.chain == "legacy" for h in tx.heads()):
                return None
            events = tx.legacy_events()
            if not events:
                return None
            leaves = [leaf_hash(e.body) for e in events]
            head = self._chain.sign("legacy", len(leaves), merkle_root(leaves).hex())
            tx.put_head(head)
            for agent in sorted({e.agent for e in events if e.agent is not None}):
                tx.set_meta(f"agent:{agent}", "legacy")
            return head

        with self._lock:
            head = self._transact(work)
        if head is not None and self._publish is not None:
            self._publish(head)

    # -- transactions ---------------------------------------------------------------

    def _transact(self, work: Callable[[Tx], T], *, write: bool = True, light: bool = False) -> T:
        """Run ``work`` in one transaction, again while the store says it may.

        Under the ledger's lock: a SQL store has one connection per ledger
        object, which threads take turns on. ``light`` reads need no snapshot
        across statements (the policy's questions: the reservation re-checks
        everything atomically), so a store may answer them without one.
        """
        with self._lock:
            return self._run(work, write=write, light=light)

    def _run(self, work: Callable[[Tx], T], *, write: bool, light: bool) -> T:
        store = self._store
        opener = store.write if write else store.peek if light else store.read
        try:
            with opener() as tx:
                return work(tx)
        except Exception as exc:
            if not store.transient(exc):
                raise
        # It was rolled back whole (busy, serialization failure, deadlock): again,
        # after a growing random pause, a bounded number of times.
        try:
            for attempt in tenacity.Retrying(
                stop=tenacity.stop_after_attempt(_ATTEMPTS - 1),
                wait=tenacity.wait_random_exponential(multiplier=0.005, max=0.5),
                retry=tenacity.retry_if_exception(store.transient),
                reraise=True,
            ):
                with attempt, opener() as tx:
                    return work(tx)
        except Exception as exc:
            if store.transient(exc):
                raise PaymentError(
                    f"the ledger at {self.location} stayed busy "
                    f"({type(exc).__name__} after {_ATTEMPTS} attempts); nothing was written"
                ) from exc
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _write(self, work: Callable[[Tx], T]) -> T:
        """A write transaction that may log entries: their head goes with them."""
        with self._lock:
            draft: Draft | None = None

            def run(tx: Tx) -> T:
                nonlocal draft
                draft = self._draft = self._chain.begin()
                result = work(tx)
                if draft.entries:
                    self._seal(tx, draft)
                return result

            try:
                result = self._transact(run)
            except BaseException:
                if draft is not None and draft.entries:
                    # If the failure left it unclear whether the entries were
                    # stored, a fresh chain avoids reusing their positions.
                    self._chain.restart()
                raise
            finally:
                self._draft = None
            if draft is not None and draft.entries:
                self._chain.adopt(draft)
                if self._publish is not None and draft.head is not None:
                    self._publish(draft.head)
            return result

    def _seal(self, tx: Tx, draft: Draft) -> None:
        draft.head = self._chain.head_of(draft)
        tx.put_head(draft.head)
        for size, root_hex in draft.marks:
            tx.put_checkpoint(self._chain.sign(draft.chain, size, root_hex))
        if self._agent is not None and not self._noted_agent:
            # Recorded once per writer: the ledger was written with a key, so
            # verify() is strict by default even for a reader without one.
            tx.set_meta(f"agent:{self._agent.did}", "1")
            self._noted_agent = True

    def _append(
        self, tx: Tx, kind: str, record: PaymentRecord | None, extra: Mapping[str, Any]
    ) -> Entry:
        """Log one entry in the current transaction: a payment's change (``extra`` holds
        its stored ``row``) or, with ``record`` None, a refusal (``extra`` is its body)."""
        draft = self._draft
        assert draft is not None, "entries are logged inside a write transaction"
        row = extra.get("row") if record is not None else None
        at_us = us(self._clock())
        if isinstance(row, PaymentRow):
            assert (row.log_chain, row.log_seq) == (draft.chain, draft.seq)
            entry = _log_row(draft, kind, row, at_us)
        else:
            body = json.dumps(dict(extra), sort_keys=True, separators=(",", ":"))
            entry = draft.append(
                kind, at_us=at_us, record_id=None, rev=None, columns=None, body=body.encode()
            )
        tx.insert_entries([entry])
        return entry

    # -- reserving --------------------------------------------------------------------

    def reserve(self, record: PaymentRecord, limits: Sequence[Limit]) -> PaymentRecord:
        if record.charge.units < 0:
            raise PaymentError(f"refusing to record a negative charge ({record.charge})")
        charge = to_nano(record.charge)
        if charge > MAX_NANO:  # would not fit the 64-bit integers budgets are summed in
            raise PaymentError(f"{record.charge} is too large for the ledger")
        scope = _scope_of(record, limits)
        held = dataclasses.replace(record.with_status("reserved", now=self._clock()), scope=scope)
        applicable = [limit for limit in limits if held.in_scope(limit)]
        needed = unique(Filter.of(limit) for limit in applicable)
        key = held.challenge_key

        windows = windows_of(applicable)

        def work(tx: Tx) -> PaymentRecord:
            reading = tx.read_for_reservation(
                record_id=held.id,
                challenge=key,
                scope=scope,
                payee=held.payee,
                windows=[window for _, window in windows],
            )
            if reading.owner is not None:
                raise reused_challenge(held, reading.owner)
            if reading.taken:
                raise PaymentError(f"ledger record {held.id!r} already exists")
            registered = reading.filters
            self._registered[(scope, held.payee)] = registered
            ids = {f.id for f in registered}
            missing = [f for f in needed if f.id not in ids]
            if missing:
                raise _Unregistered(missing)
            usage = {
                key: usage_of(flt, sums, exact)
                for (key, flt), sums, exact in zip(
                    distinct(applicable), reading.sums, reading.exact, strict=True
                )
            }
            self._check(held, applicable, charge, usage)
            draft = self._draft
            assert draft is not None
            row = PaymentRow.of(held, draft.chain, draft.seq)
            tx.insert_payment(row)
            cells: Cells = {}
            for flt in registered:
                if flt.matches_row(row):
                    add_row(cells, flt.id, row, 1)
            tx.add_totals(cells)
            self._append(tx, "reserve", held, {"row": row})
            self._keep(row, held)
            return held

        while True:
            try:
                if self._store.at_once:
                    done = self._reserve_at_once(held, applicable, needed, charge)
                    if done is not None:
                        return done
                return self._write(work)
            except _Unregistered as exc:
                self._register(exc.filters)

    def _keep(self, row: PaymentRow, held: PaymentRecord) -> None:
        if len(self._held) >= 4096:  # reservations never settled here: forget the oldest
            del self._held[next(iter(self._held))]
        self._held[row.id] = (row, held)

    def _reserve_at_once(
        self, held: PaymentRecord, limits: Sequence[Limit], needed: Sequence[Filter], charge: int
    ) -> PaymentRecord | None:
        """The reservation as one step of the store (see :meth:`Store.reserve_at_once`).

        None when it cannot be taken that way (nothing was written): the first
        reservation of a scope and payee (its filters not read yet), a filter to
        register, a checkpoint due, a transient failure. The store checks every
        limit where it holds the locks; the ledger checks the sums it returns
        again: a refusal raises its exact reason, and in the (never seen) case
        that the store accepted what the ledger refuses, the reservation is
        released at once and refused.
        """
        scope = held.scope or ""
        registered = self._registered.get((scope, held.payee))
        if registered is None:
            return None
        ids = {f.id for f in registered}
        if any(f.id not in ids for f in needed):
            return None
        if self._agent is not None and not self._noted_agent:
            return None
        pairs = distinct(limits)
        index = {key: n for n, (key, _) in enumerate(pairs)}
        checks = []
        for limit in limits:
            cap = limit.cap
            checks.append(
                Check(
                    index[limit_key(limit)],
                    limit.max_count,
                    cap_nano(cap) if cap is not None else None,
                    cap.currency if cap is not None else None,
                )
            )
        with self._lock:
            draft = self._chain.begin()
            row = PaymentRow.of(held, draft.chain, draft.seq)
            cells: Cells = {}
            for flt in registered:
                if flt.matches_row(row):
                    add_row(cells, flt.id, row, 1)
            entry = _log_row(draft, "reserve", row, us(self._clock()))
            if draft.marks:
                return None  # a checkpoint is due: the general path keeps it
            head = self._chain.head_of(draft)
            plan = AtOnce(
                row,
                [(window_of(flt, key[1]), flt) for key, flt in pairs],
                checks,
                charge,
                sorted(ids),
                cells,
                entry,
                head,
            )
            try:
                settled = self._store.reserve_at_once(plan)
            except Exception as exc:
                if self._store.transient(exc):
                    return None  # rolled back whole: the general path tries again
                self._chain.restart()  # it may or may not be stored: a fresh chain
                raise
            if settled.outcome == "ok":
                self._chain.adopt(draft)
                self._keep(row, held)
        if settled.outcome == "owner":
            raise reused_challenge(held, settled.owner or "")
        if settled.outcome == "taken":
            raise PaymentError(f"ledger record {held.id!r} already exists")
        if settled.outcome not in ("ok", "refused"):
            self._registered.pop((scope, held.payee), None)
            return None
        usage = {
            key: usage_of(flt, sums, ())
            for (key, flt), sums in zip(pairs, settled.sums, strict=True)
        }
        if settled.outcome == "refused":
            self._check(held, limits, charge, usage)  # raises the exact reason
            return None  # the ledger's own check would allow it: decided the general way
        if self._publish is not None:
            self._publish(head)
        try:
            self._check(held, limits, charge, usage)
        except BudgetExceeded:
            self.release(held.id, "the ledger's own check refused what the store accepted")
            raise
        return held

    def _check(
        self,
        held: PaymentRecord,
        limits: Sequence[Limit],
        charge: int,
        usage: Mapping[tuple[int, int | None], tuple[int, dict[str, int]]],
    ) -> None:
        """Raise BudgetExceeded if ``held`` does not fit one of ``limits``."""
        where = self.location
        for limit in limits:
            count, sums = usage[limit_key(limit)]
            if limit.max_count is not None and count + 1 > limit.max_count:
                # A rate counts payments in every currency (a cap, only its own).
                raise BudgetExceeded(limit.rate_refusal(count, where))
            cap = limit.cap
            if cap is None:
                continue
            if held.charge.currency != cap.currency:
                raise BudgetExceeded(limit.currency_refusal(held.charge, where))
            used = sums.get(cap.currency, 0)
            if used + charge > cap_nano(cap):
                spent = from_nano(used, cap.currency)
                raise BudgetExceeded(limit.budget_refusal(held.charge, spent, where))

    def _register(self, filters: Sequence[Filter]) -> None:
        """Start keeping totals for ``filters``, backfilled from their scope's records.

        One pass over the scope's counted records (or one payee's), once per
        filter: this is the only place the ledger reads history in bulk.
        """
        for scope in sorted({f.scope for f in filters}):
            mine = [f for f in filters if f.scope == scope]

            def work(tx: Tx, scope: str = scope, mine: list[Filter] = mine) -> None:
                # Exclusive: no write of this scope is in flight while it backfills,
                # so none can be missed (writers read the registry under the shared lock).
                tx.lock_scope(scope, exclusive=True)
                for flt in mine:
                    if tx.has_filter(flt.id):
                        continue
                    tx.insert_filter(flt)
                    tx.add_totals(backfill(flt, tx.counted_payments(flt.scope, flt.payee)))

            self._write(work)
        self._known.update(f.id for f in filters)

    # -- settling ---------------------------------------------------------------------

    def _settle(
        self,
        record_id: str,
        status: Status,
        *,
        kind: str,
        allowed_from: tuple[str, ...],
        receipt: Receipt | None = None,
        reason: str | None = None,
    ) -> PaymentRecord:
        kept = self._held.pop(record_id, None)
        if kept is not None and status in COUNTED and "reserved" in allowed_from:
            done = self._settle_at_once(kept, status, kind, receipt, reason)
            if done is not None:
                return done

        def work(tx: Tx) -> PaymentRecord:
            if status not in COUNTED:
                # It may stop counting: writers of its scope hold the shared lock.
                peek = tx.payment(record_id)
                if peek is None:
                    raise PaymentError(f"no ledger record {record_id!r}")
                tx.lock_scope(peek.scope, exclusive=False)
            row = tx.payment(record_id, lock=True)
            if row is None:
                raise PaymentError(f"no ledger record {record_id!r}")
            current = PaymentRecord.from_dict(json.loads(row.record))
            if current.status not in allowed_from:
                raise PaymentError(f"ledger record {record_id!r} is already {current.status}")
            now = self._clock()
            updated = current.with_status(status, now=now, receipt=receipt, reason=reason)
            draft = self._draft
            assert draft is not None
            new = _settled(row, updated, draft, now)
            tx.update_payment(new)
            if (row.status in COUNTED) != (status in COUNTED):
                cells: Cells = {}
                sign = 1 if status in COUNTED else -1
                for flt in tx.filters_for(row.scope, row.payee, lock=True):
                    if flt.matches_row(row):
                        add_row(cells, flt.id, row, sign)
                tx.add_totals(cells)
            self._append(tx, kind, updated, {"row": new})
            return updated

        return self._write(work)

    def _settle_at_once(
        self,
        kept: tuple[PaymentRow, PaymentRecord],
        status: Status,
        kind: str,
        receipt: Receipt | None,
        reason: str | None,
    ) -> PaymentRecord | None:
        """Settle a reservation this object made, in one step of the store, from what it
        kept (None, with nothing written, when the stored payment changed since, or the
        store cannot: the general path then reads it)."""
        if not self._store.at_once:
            return None
        row, current = kept
        if row.status != "reserved" or current.status != "reserved":
            return None
        now = self._clock()
        updated = current.with_status(status, now=now, receipt=receipt, reason=reason)
        with self._lock:
            draft = self._chain.begin()
            new = _settled(row, updated, draft, now)
            entry = _log_row(draft, kind, new, us(self._clock()))
            if draft.marks:
                return None
            head = self._chain.head_of(draft)
            try:
                done = self._store.settle_at_once(new, row, entry, head)
            except Exception as exc:
                if self._store.transient(exc):
                    return None
                self._chain.restart()
                raise
            if not done:
                return None
            self._chain.adopt(draft)
        if self._publish is not None:
            self._publish(head)
        return updated

    def commit(
        self, record_id: str, receipt: Receipt | None, *, reason: str | None = None
    ) -> PaymentRecord:
        return self._settle(
            record_id,
            "committed",
            kind="commit",
            allowed_from=("reserved",),
            receipt=receipt,
            reason=reason,
        )

    def release(self, record_id: str, reason: str) -> PaymentRecord:
        return self._settle(
            record_id, "released", kind="release", allowed_from=("reserved",), reason=reason
        )

    def mark_unknown(self, record_id: str, reason: str) -> PaymentRecord:
        return self._settle(
            record_id, "unknown", kind="unknown", allowed_from=("reserved",), reason=reason
        )

    def resolve(
        self, record_id: str, status: Status, reason: str, *, receipt: Receipt | None = None
    ) -> PaymentRecord:
        """Settle an ``unknown`` (or a reservation left by a crash) explicitly.

        ``status`` is ``committed`` (it was paid) or ``released`` (it was not).
        """
        if status not in ("committed", "released"):
            raise ValueError("resolve to 'committed' or 'released'")
        return self._settle(
            record_id,
            status,
            kind="resolve",
            allowed_from=("unknown", "reserved"),
            receipt=receipt,
            reason=reason,
        )

    def log_refusal(self, record: PaymentRecord, reason: str) -> None:
        """Log a refusal (it holds no money)."""
        body = {**record.to_dict(), "refusal": reason}
        self._write(lambda tx: self._append(tx, "refusal", None, body))

    def import_records(self, records: Iterable[PaymentRecord], *, batch: int = 2000) -> int:
        """Add ``records`` as they are, in bulk, without checking any limit.

        For imports from elsewhere and for benchmarks: one transaction per
        ``batch`` records, each logged (kind ``import``) and counted in the
        running totals like any other, so ``verify()`` holds. A record without
        a scope goes to ``""``. Returns how many were added.
        """
        added = 0
        pending = iter(records)
        while chunk := list(itertools.islice(pending, batch)):

            def work(tx: Tx, chunk: list[PaymentRecord] = chunk) -> None:
                draft = self._draft
                assert draft is not None
                scopes = sorted({r.scope or "" for r in chunk})
                for scope in scopes:
                    tx.lock_scope(scope, exclusive=False)
                filters: dict[str, list[Filter]] = {}
                for flt in tx.all_filters():
                    filters.setdefault(flt.scope, []).append(flt)
                rows: list[PaymentRow] = []
                cells: Cells = {}
                for record in chunk:
                    if record.charge.units < 0 or to_nano(record.charge) > MAX_NANO:
                        raise PaymentError(f"cannot import a charge of {record.charge}")
                    stamped = dataclasses.replace(record, scope=record.scope or "")
                    row = PaymentRow.of(stamped, draft.chain, draft.seq)
                    rows.append(row)
                    _log_row(draft, "import", row, row.updated_us)
                    if row.status in COUNTED:
                        for flt in filters.get(row.scope, ()):
                            if flt.matches_row(row):
                                add_row(cells, flt.id, row, 1)
                tx.insert_payments(rows)
                tx.insert_entries(draft.entries)
                tx.add_totals(cells)

            self._write(work)
            added += len(chunk)
        if added:
            with self._lock:
                self._store.settle_bulk()
        return added

    def checkpoint(self) -> SignedHead | None:
        """Keep this writer's current tree head as a checkpoint now (None before it wrote)."""

        def work(tx: Tx) -> SignedHead | None:
            head = self._chain.current_head()
            if head is not None:
                tx.put_checkpoint(head)
            return head

        with self._lock:
            return self._transact(work)

    # -- history, for policies ---------------------------------------------------------

    def usage(self, limit: Limit) -> Usage:
        flt = Filter.of(limit)
        since_us = us(limit.since) if limit.since is not None else None

        def work(tx: Tx) -> tuple[int, dict[str, int]] | None:
            if flt.id not in self._known and not tx.has_filter(flt.id):
                return None
            return read_window(tx, flt, since_us)

        window = self._transact(work, write=False, light=True)
        if window is None:
            self._register([flt])
            window = self._transact(work, write=False, light=True)
            assert window is not None
        self._known.add(flt.id)
        count, sums = window
        cap = limit.cap
        spent = from_nano(sums.get(cap.currency, 0), cap.currency) if cap is not None else None
        return Usage(count, spent)

    def has_paid(self, payee: str, *, scope: str | None = None) -> bool:
        return self._transact(lambda tx: tx.has_paid(scope, payee), write=False, light=True)

    def recent_charges(self, payee: str, n: int, *, scope: str | None = None) -> list[Amount]:
        charges = self._transact(
            lambda tx: tx.recent_committed(scope, payee, n), write=False, light=True
        )
        return [Amount(units, currency, decimals) for units, currency, decimals in charges]

    def failure_streak(
        self, payee: str, *, scope: str | None = None
    ) -> tuple[int, datetime | None]:
        streak, latest = self._transact(
            lambda tx: tx.failure_streak(scope, payee), write=False, light=True
        )
        when = _from_us(latest) if latest is not None else None
        return streak, when

    def close(self) -> None:
        with self._lock:
            self._store.close()
            if isinstance(self._heads, HeadFiles):
                self._heads.close()


def _log_row(draft: Draft, kind: str, row: PaymentRow, at_us: int) -> Entry:
    """Log a payment's change: the entry holds the row's revision, every column budgets
    are counted over, and the record, so ``verify()`` can hold the row to it."""
    return draft.append(
        kind,
        at_us=at_us,
        record_id=row.id,
        rev=row.rev,
        columns=row.columns(),
        body=row.record.encode("utf-8"),
    )


def _settled(row: PaymentRow, updated: PaymentRecord, draft: Draft, now: datetime) -> PaymentRow:
    """``row`` as it stands once ``updated`` (changed ``now``) is written: its next
    revision, logged at the draft's next entry."""
    return dataclasses.replace(
        row,
        status=updated.status,
        updated_us=us(now),
        record=record_json(updated),
        rev=row.rev + 1 if row.rev is not None else 0,
        log_chain=draft.chain,
        log_seq=draft.seq,
    )


def _scope_of(record: PaymentRecord, limits: Sequence[Limit]) -> str:
    """The record's scope; a record without one takes its limits' (all of one scope)."""
    if record.scope is not None:
        return record.scope
    scopes = {limit.scope for limit in limits}
    if len(scopes) > 1:
        raise PaymentError(f"the limits of one payment name several scopes: {sorted(scopes)}")
    return scopes.pop() if scopes else ""


def _from_us(value: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)
