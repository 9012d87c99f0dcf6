"""The storage interface: what a ledger needs from a store, in primitive operations.

The ledger's algorithm (reservations, settlements, totals, chains, heads,
verification, exports) is written once (:mod:`._core`) over a :class:`Store`:
a source of transactions (:class:`Tx`) offering the primitive reads and
writes below. Memory, SQLite and PostgreSQL implement it.

The contract:

* ``Store.write()`` is one atomic transaction: all of it or none of it. The
  ledger reads what it checks *after* taking the locks it needs (``lock``
  arguments, :meth:`Tx.lock_scope`), so what it checks cannot change before
  it commits. Reads in a write transaction need not see the same
  transaction's own writes (the ledger never relies on it).
* ``Store.read()`` is one consistent snapshot.
* Every operation the paid path uses is an index lookup or a range bounded
  by what it returns; the ones marked *reports* may scan.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from ._chain import Entry, SignedHead
from ._legacy import AuditEvent, Checkpoint
from ._record import PaymentRecord, record_json
from ._totals import Cells, Filter, tagset, to_nano, us

__all__ = ["AtOnce", "Check", "PaymentRow", "Reading", "Settled", "Store", "Tx", "Window"]


@dataclass(slots=True)
class PaymentRow:
    """A payment as stored: the record's text and the columns budgets are counted over.

    ``rev`` is the record's revision in the current log format (0 at
    reservation, one more per change); ``log_chain`` and ``log_seq`` name the
    entry that wrote this revision. All three are None for a record whose
    last change is in the legacy chain.
    """

    id: str
    created_us: int
    updated_us: int
    status: str
    scope: str
    payee: str
    method: str
    currency: str
    charge_nano: int
    tagset: str
    challenge: str | None
    record: str
    rev: int | None = None
    log_chain: str | None = None
    log_seq: int | None = None

    @classmethod
    def of(cls, record: PaymentRecord, chain: str, seq: int) -> PaymentRow:
        """The stored row of ``record`` (revision 0), logged at ``chain``/``seq``."""
        return cls(
            id=record.id,
            created_us=us(record.created_at),
            updated_us=us(record.updated_at or record.created_at),
            status=record.status,
            scope=record.scope or "",
            payee=record.payee,
            method=record.method,
            currency=record.charge.currency,
            charge_nano=to_nano(record.charge),
            tagset=tagset(record.tags),
            challenge=record.challenge_key,
            record=record_json(record),
            rev=0,
            log_chain=chain,
            log_seq=seq,
        )

    def columns(self) -> list[Any]:
        """What an entry's header says about this payment (see :mod:`._chain`)."""
        return [
            self.status,
            self.scope,
            self.payee,
            self.method,
            self.currency,
            self.charge_nano,
            self.created_us,
            self.updated_us,
            self.tagset,
            self.challenge,
        ]


@dataclass(frozen=True, slots=True)
class Window:
    """One "count and sum since T" a reservation checks: a filter's bucket ranges, and
    the exact part ``[start_us, end_us)`` of its first second (empty when end <= start)."""

    filter_id: int
    scope: str
    ranges: Sequence[tuple[int, int, int | None]]
    start_us: int
    end_us: int


@dataclass(slots=True)
class Reading:
    """What a reservation reads before it writes (see :meth:`Tx.read_for_reservation`)."""

    #: The payment that already answered the challenge, if any.
    owner: str | None
    #: True when a payment with the record's id exists.
    taken: bool
    #: The registered filters of the scope for the payee (locked for update).
    filters: list[Filter]
    #: Per window: (currency, count, nano) from the buckets, and the exact part's payments.
    sums: list[list[tuple[str, int, int]]]
    exact: list[list[PaymentRow]]


@dataclass(frozen=True, slots=True)
class Check:
    """One limit of a reservation, as data: the window it reads (an index into
    :attr:`AtOnce.windows`), its rate and its cap (in billionths, with its currency)."""

    window: int
    max_count: int | None
    cap_nano: int | None
    cap_currency: str | None


@dataclass(frozen=True, slots=True)
class AtOnce:
    """A whole reservation, prepared before it reaches the database (:meth:`Store.reserve_at_once`).

    ``filter_ids`` are the registered filters of the payment's scope and payee
    the ledger last read, and ``cells`` what ``row`` adds to their totals: the
    store writes them only if the registry still holds exactly those filters.
    ``entry`` and ``head`` extend the writer's chain by this reservation.
    """

    row: PaymentRow
    windows: Sequence[tuple[Window, Filter]]
    checks: Sequence[Check]
    charge_nano: int
    filter_ids: Sequence[int]
    cells: Cells
    entry: Entry
    head: SignedHead


@dataclass(frozen=True, slots=True)
class Settled:
    """What a reservation at once came to.

    ``outcome`` is ``ok`` (written), ``refused`` (a check failed: nothing
    written), ``owner`` (the challenge was answered by payment ``owner``),
    ``taken`` (the id exists) or ``filters`` (the registry changed: nothing
    written, read it again). ``sums`` are each window's (currency, count,
    nano) before this payment, exact to the microsecond.
    """

    outcome: str
    owner: str | None = None
    sums: Sequence[Sequence[tuple[str, int, int]]] = ()


class Tx(abc.ABC):
    """One transaction's primitive operations."""

    def read_for_reservation(
        self, *, record_id: str, challenge: str, scope: str, payee: str, windows: Sequence[Window]
    ) -> Reading:
        """Everything a reservation reads, after locking (the scope shared, its filters):
        one call, so a store with round trips can send it all at once."""
        self.lock_scope(scope, exclusive=False)
        owner = self.challenge_owner(challenge)
        taken = self.payment(record_id) is not None
        filters = self.filters_for(scope, payee, lock=True)
        sums = [self.bucket_sums(w.filter_id, w.ranges) for w in windows]
        exact = [
            self.payments_created(w.scope, w.start_us, w.end_us) if w.end_us > w.start_us else []
            for w in windows
        ]
        return Reading(owner, taken, filters, sums, exact)

    # -- payments ------------------------------------------------------------------

    @abc.abstractmethod
    def payment(self, record_id: str, *, lock: bool = False) -> PaymentRow | None:
        """One payment by id; ``lock``: held for update until the transaction ends."""

    @abc.abstractmethod
    def challenge_owner(self, key: str) -> str | None:
        """The id of the payment that answered challenge ``key``, if any (unique index)."""

    @abc.abstractmethod
    def insert_payment(self, row: PaymentRow) -> None:
        """Add a payment. A challenge key already taken raises ChallengeReused."""

    def insert_payments(self, rows: Sequence[PaymentRow]) -> None:
        """Add many payments (a bulk import)."""
        for row in rows:
            self.insert_payment(row)

    @abc.abstractmethod
    def update_payment(self, row: PaymentRow) -> None:
        """Replace a payment's status, record and log columns."""

    @abc.abstractmethod
    def payments_created(self, scope: str, start_us: int, end_us: int) -> list[PaymentRow]:
        """Payments of ``scope`` created in ``[start_us, end_us)`` (at most a second of them)."""

    @abc.abstractmethod
    def counted_payments(self, scope: str, payee: str | None) -> Iterator[PaymentRow]:
        """Counted payments of ``scope`` (and ``payee``): a new filter's backfill (O(n), once)."""

    # -- filters and totals --------------------------------------------------------

    def lock_scope(self, scope: str, *, exclusive: bool) -> None:  # noqa: B027 - optional
        """Writers take it shared; registering a filter takes it exclusive.

        Only needed where writers of one scope run concurrently (PostgreSQL):
        a new filter is backfilled while no write of its scope is in flight.
        """

    @abc.abstractmethod
    def filters_for(self, scope: str, payee: str, *, lock: bool = False) -> list[Filter]:
        """Registered filters of ``scope`` for any payee or for ``payee``, by id.

        ``lock``: each is held for update until the transaction ends, taken in
        id order, so writers of one budget queue on its rows alone.
        """

    @abc.abstractmethod
    def has_filter(self, filter_id: int) -> bool: ...

    @abc.abstractmethod
    def insert_filter(self, flt: Filter) -> None: ...

    @abc.abstractmethod
    def bucket_sums(
        self, filter_id: int, ranges: Sequence[tuple[int, int, int | None]]
    ) -> list[tuple[str, int, int]]:
        """(currency, count, nano) summed over the buckets in ``ranges`` of one filter."""

    @abc.abstractmethod
    def add_totals(self, cells: Cells) -> None:
        """Add each cell's (count, nano) to the stored totals (creating rows as needed)."""

    # -- the log -------------------------------------------------------------------

    @abc.abstractmethod
    def insert_entries(self, entries: Sequence[Entry]) -> None: ...

    @abc.abstractmethod
    def put_head(self, head: SignedHead) -> None:
        """Store (replace) the tree head of ``head.chain``."""

    @abc.abstractmethod
    def put_checkpoint(self, head: SignedHead) -> None:
        """Keep a tree head for good (a checkpoint)."""

    @abc.abstractmethod
    def meta(self, key: str) -> str | None: ...

    @abc.abstractmethod
    def set_meta(self, key: str, value: str) -> None:
        """Set ``key`` unless it is set already (the first value stays)."""

    # -- history for policies --------------------------------------------------------

    @abc.abstractmethod
    def has_paid(self, scope: str | None, payee: str) -> bool:
        """A payment to ``payee`` committed or unknown (one index probe)."""

    @abc.abstractmethod
    def recent_committed(self, scope: str | None, payee: str, n: int) -> list[tuple[int, str, int]]:
        """Charges (units, currency, decimals: exact) of the last ``n`` committed payments
        to ``payee``, newest first."""

    @abc.abstractmethod
    def failure_streak(self, scope: str | None, payee: str) -> tuple[int, int | None]:
        """Unknown payments to ``payee`` created after its last committed one, and the
        update time of the newest of them (bounded by the streak)."""

    # -- reports (may scan) ------------------------------------------------------------

    @abc.abstractmethod
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
        """(count, nano) of counted payments matching every filter given (reports)."""

    @abc.abstractmethod
    def all_payments(self) -> Iterator[PaymentRow]:
        """Every payment, oldest first."""

    @abc.abstractmethod
    def all_entries(self) -> Iterator[Entry]:
        """Every entry; each chain's in seq order (chains may interleave)."""

    @abc.abstractmethod
    def chain_entries(self, chain: str, size: int) -> list[Entry]:
        """The first ``size`` entries of ``chain``, in order."""

    @abc.abstractmethod
    def chain_size(self, chain: str) -> int:
        """One more than the highest seq stored for ``chain`` (0 for none)."""

    @abc.abstractmethod
    def heads(self) -> list[SignedHead]: ...

    @abc.abstractmethod
    def checkpoints(self) -> list[SignedHead]: ...

    @abc.abstractmethod
    def all_filters(self) -> list[Filter]: ...

    @abc.abstractmethod
    def all_totals(self) -> Iterator[tuple[tuple[int, int, int, str], tuple[int, int]]]: ...

    @abc.abstractmethod
    def all_meta(self) -> dict[str, str]: ...

    # -- bulk reads for verify (plain tuples: no object per row) ----------------------

    def log_rows(self) -> Iterator[tuple[Any, ...]]:
        """Every entry as ``(chain, seq, record_id, entry)``, as :meth:`all_entries` orders them."""
        return ((e.chain, e.seq, e.record_id, e.entry) for e in self.all_entries())

    def payment_rows(self) -> Iterator[tuple[Any, ...]]:
        """Every payment as a tuple of :class:`PaymentRow`'s fields in order, in any order."""
        return (
            (r.id, r.created_us, r.updated_us, r.status, r.scope, r.payee, r.method, r.currency,
             r.charge_nano, r.tagset, r.challenge, r.record, r.rev, r.log_chain, r.log_seq)
            for r in self.all_payments()
        )  # fmt: skip

    def total_rows(self) -> Iterator[tuple[Any, ...]]:
        """Every non-zero total as ``(filter_id, level, bucket, currency, n, nano)``."""
        return ((*key, n, nano) for key, (n, nano) in self.all_totals() if n or nano)

    # -- the legacy chain (ledgers written before chains per writer) -----------------

    def legacy_events(self) -> list[AuditEvent]:
        return []

    def legacy_checkpoints(self) -> list[Checkpoint]:
        return []

    def put_legacy_checkpoint(self, checkpoint: Checkpoint) -> None:
        raise NotImplementedError


class Store(abc.ABC):
    """Where a ledger keeps its state: transactions over one database (or memory)."""

    #: Where it is, for messages: a path, a host and database, "memory".
    location: str = "memory"
    #: True when transactions do disk or network I/O.
    blocking: bool = False
    #: The ledger's id, once the ledger read it (stores may keep heads without it).
    ledger_id: str = ""

    @abc.abstractmethod
    def write(self) -> AbstractContextManager[Tx]:
        """An atomic read-write transaction."""

    @abc.abstractmethod
    def read(self) -> AbstractContextManager[Tx]:
        """A consistent read-only snapshot."""

    #: True when the store can reserve, and settle without a change of totals, in
    #: one statement (:meth:`reserve_at_once`, :meth:`settle_at_once`).
    at_once: bool = False

    def reserve_at_once(self, plan: AtOnce) -> Settled:
        """Check and write a whole reservation in one atomic step, durable on return.

        Under the same locks, and with the same checks, as the reservation the
        ledger runs over :class:`Tx`; the ledger checks the returned sums again.
        """
        raise NotImplementedError

    def settle_at_once(
        self, row: PaymentRow, old: PaymentRow, entry: Entry, head: SignedHead
    ) -> bool:
        """Replace payment ``old`` by ``row`` (which counts where ``old`` did), log it, and
        store the head, in one atomic step, durable on return; only if the stored
        payment is still ``old`` (status, revision and entry): else nothing, and False."""
        raise NotImplementedError

    def peek(self) -> AbstractContextManager[Tx]:
        """A read whose statements need not share a snapshot (a few index lookups)."""
        return self.read()

    def transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` rolled a whole transaction back and it may simply run again
        (a busy database, a serialization failure, a deadlock): never an outcome
        that might have committed."""
        return False

    def settle_bulk(self) -> None:  # noqa: B027 - optional
        """Fold a bulk import's writes in now, so no later paid request waits for them."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections and files."""


def unique(values: Iterable[Filter]) -> list[Filter]:
    """Filters without repeats, by id (a fixed order for locking)."""
    seen: dict[int, Filter] = {}
    for value in values:
        seen.setdefault(value.id, value)
    return [seen[key] for key in sorted(seen)]
