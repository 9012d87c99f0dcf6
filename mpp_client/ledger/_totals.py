"""Running totals: what budgets and rates are checked with, at a cost that does not grow.

A :class:`Filter` is what a limit counts: the payments of one scope, and
optionally of one payee, one method and carrying some tags. The ledger keeps,
per registered filter and currency, the count and the sum (in billionths, see
:func:`to_nano`) of the counted payments (reserved, committed, unknown) in
*dyadic time buckets*: level ``L`` (0 to 7) sums aligned ``16**L``-second
intervals of creation time, level 8 is the lifetime total. A write that makes
a record enter or leave the counted statuses adds or takes away its count and
charge in the nine buckets of its creation time, for every registered filter
of its scope that it matches, in the same transaction as the record.

"Count and sum since ``T``", for rolling windows and calendar periods alike,
is then the suffix ``[ceil_second(T), ...)``, which falls into at most 15
aligned buckets per level (:func:`suffix_ranges`), plus an exact look at the
records created in the one second ``[T, ceil_second(T))`` (through an index
on scope and creation time). Both are bounded by the window's length in base
16, never by the size of the ledger; the edges are exact to the microsecond.

A filter is registered the first time a limit with it is checked, and
backfilled then from the records of its scope: one pass over them, once (see
:func:`backfill`); from then on every write keeps it up to date.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .._decision import Limit
from ..money import Amount
from ._record import COUNTED

if TYPE_CHECKING:
    from ._store import PaymentRow

__all__ = [
    "LEVELS",
    "LIFETIME",
    "MAX_NANO",
    "Cells",
    "Filter",
    "add_row",
    "backfill",
    "cap_nano",
    "from_nano",
    "since_parts",
    "suffix_ranges",
    "tag_token",
    "tagset",
    "to_nano",
    "us",
]

NANO = 9
#: Charges and sums are kept in signed 64-bit integers.
MAX_NANO = 2**63 - 1
#: Bucket levels 0..LEVELS-1 sum aligned 16**level seconds; LIFETIME is everything.
LEVELS = 8
LIFETIME = LEVELS
_BITS = 4  # base 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = 1_000_000

#: (filter id, level, bucket, currency) -> [count, nano]
Cells = dict[tuple[int, int, int, str], list[int]]


def _pow10(exponent: int) -> int:
    return int(10**exponent)


def to_nano(amount: Amount) -> int:
    """The amount in billionths of its currency, rounded up (never undercounts)."""
    if amount.decimals <= NANO:
        return amount.units * _pow10(NANO - amount.decimals)
    return -((-amount.units) // _pow10(amount.decimals - NANO))


def cap_nano(cap: Amount) -> int:
    """A cap in billionths, rounded down (never overcounts the room left)."""
    if cap.decimals <= NANO:
        return cap.units * _pow10(NANO - cap.decimals)
    return cap.units // _pow10(cap.decimals - NANO)


def from_nano(nano: int, currency: str) -> Amount:
    """Billionths as an Amount, with as few decimals as are exact (at least 2)."""
    amount = Amount(nano, currency, NANO)
    for decimals in range(2, NANO):
        try:
            return amount.rescale(decimals)
        except ValueError:
            continue
    return amount


def us(moment: datetime) -> int:
    """Exact microseconds since the epoch (no float rounding)."""
    if moment.tzinfo is None:
        raise ValueError("ledger times must be timezone-aware")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def tag_token(key: str, value: str) -> str:
    """One tag as a token: JSON quoting makes each pair unambiguous inside a tagset."""
    return json.dumps([key, value], ensure_ascii=False)


def tagset(tags: Mapping[str, str]) -> str:
    """All tags of a payment, one searchable token per pair, in key order."""
    return "".join(tag_token(k, v) for k, v in sorted(tags.items()))


@dataclass(frozen=True, slots=True)
class Filter:
    """What a limit counts: one scope's payments, maybe narrowed by payee, method and tags."""

    scope: str
    payee: str | None = None
    method: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    #: A stable 63-bit id (the same in every process), from the description.
    id: int = field(init=False, compare=False)
    tokens: tuple[str, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256(self.key().encode("utf-8")).digest()
        object.__setattr__(self, "id", int.from_bytes(digest[:8], "big") >> 1)
        object.__setattr__(self, "tokens", tuple(tag_token(k, v) for k, v in self.tags))

    @classmethod
    def of(cls, limit: Limit) -> Filter:
        return _filter_of(limit.scope, limit.payee, limit.method, tuple(sorted(limit.tags.items())))

    @classmethod
    def from_key(cls, key: str) -> Filter:
        scope, payee, method, tags = json.loads(key)
        return cls(scope, payee, method, tuple((str(k), str(v)) for k, v in tags))

    def key(self) -> str:
        """The description, as stored: JSON of scope, payee, method, tags."""
        return json.dumps(
            [self.scope, self.payee, self.method, [list(t) for t in self.tags]],
            ensure_ascii=False,
            separators=(",", ":"),
        )

    def matches(self, scope: str, payee: str, method: str, tags_text: str) -> bool:
        """Whether a payment of ``scope`` with these columns counts for this filter."""
        return (
            scope == self.scope
            and (self.payee is None or payee == self.payee)
            and (self.method is None or method == self.method)
            and all(token in tags_text for token in self.tokens)
        )

    def matches_row(self, row: PaymentRow) -> bool:
        return self.matches(row.scope, row.payee, row.method, row.tagset)

    def __str__(self) -> str:
        parts = [f"scope {self.scope!r}"]
        if self.payee is not None:
            parts.append(f"payee {self.payee!r}")
        if self.method is not None:
            parts.append(f"method {self.method!r}")
        if self.tags:
            parts.append(f"tags {dict(self.tags)}")
        return ", ".join(parts)


@lru_cache(maxsize=4096)
def _filter_of(
    scope: str, payee: str | None, method: str | None, tags: tuple[tuple[str, str], ...]
) -> Filter:
    # A policy names the same few filters on every payment: hash each description once.
    return Filter(scope, payee, method, tags)


def buckets(created_us: int) -> list[tuple[int, int]]:
    """The (level, bucket) of every total a payment created at ``created_us`` is in."""
    sec = created_us // _US
    cells = [(level, sec >> (_BITS * level)) for level in range(LEVELS)]
    cells.append((LIFETIME, 0))
    return cells


def add_row(cells: Cells, filter_id: int, row: PaymentRow, sign: int) -> None:
    """Add (``sign`` 1) or take away (-1) one payment in every bucket it is in."""
    n, nano, currency = sign, sign * row.charge_nano, row.currency
    for level, bucket in buckets(row.created_us):
        cell = cells.setdefault((filter_id, level, bucket, currency), [0, 0])
        cell[0] += n
        cell[1] += nano


def suffix_ranges(sec: int) -> list[tuple[int, int, int | None]]:
    """Bucket ranges ``(level, first, end)`` covering creation seconds ``>= sec``.

    Climbing from level 0, each level takes the at most 15 buckets up to the
    next boundary of the level above; the top level takes everything from
    there on (``end`` None).
    """
    ranges: list[tuple[int, int, int | None]] = []
    start = sec
    for level in range(LEVELS):
        first = start >> (_BITS * level)  # ``start`` is aligned to this level here
        if level == LEVELS - 1:
            ranges.append((level, first, None))
            break
        end = (first + 15) & ~15
        if end > first:
            ranges.append((level, first, end))
        start = end << (_BITS * level)
    return ranges


def since_parts(since_us: int | None) -> tuple[list[tuple[int, int, int | None]], int, int]:
    """How to answer "since ``since_us``": bucket ranges, and the exact part ``[start, end)``.

    None (all time) is the lifetime bucket alone.
    """
    if since_us is None:
        return [(LIFETIME, 0, None)], 0, 0
    sec = -(-since_us // _US)
    return suffix_ranges(sec), since_us, sec * _US


def backfill(flt: Filter, rows: Iterable[PaymentRow]) -> Cells:
    """The totals of a newly registered filter, from the records of its scope (one pass)."""
    cells: Cells = {}
    for row in rows:
        if row.status in COUNTED and flt.matches_row(row):
            add_row(cells, flt.id, row, 1)
    return cells


class Recount:
    """Every registered filter's totals, recomputed from the payments (for ``verify``).

    Fed one payment at a time (:meth:`add`); each is tried only against the
    filters of its scope for any payee or its own payee, and counted in its
    one-second bucket; :meth:`cells` then sums the levels above from the
    ones below, so the work is the payments plus the buckets, not the
    payments times the filters times the levels.
    """

    def __init__(self, filters: Sequence[Filter]) -> None:
        # Each filter as (id, method, tag tokens): all a payment is matched on.
        self._any: dict[str, list[tuple[int, str | None, tuple[str, ...]]]] = {}
        self._payee: dict[tuple[str, str], list[tuple[int, str | None, tuple[str, ...]]]] = {}
        for flt in filters:
            entry = (flt.id, flt.method, flt.tokens)
            if flt.payee is None:
                self._any.setdefault(flt.scope, []).append(entry)
            else:
                self._payee.setdefault((flt.scope, flt.payee), []).append(entry)
        self._seconds: dict[tuple[int, str], dict[int, list[int]]] = {}

    def add_row(self, row: PaymentRow) -> None:
        self.add(
            (row.id, row.created_us, row.updated_us, row.status, row.scope, row.payee,
             row.method, row.currency, row.charge_nano, row.tagset)
        )  # fmt: skip

    def add(self, row: Sequence[Any]) -> None:
        """One payment, as :meth:`~._store.Tx.payment_rows` gives it (its first ten columns)."""
        _, created_us, _, status, scope, payee, method, currency, nano, tags = row[:10]
        if status not in COUNTED:
            return
        candidates = self._any.get(scope, ())
        own = self._payee.get((scope, payee))
        if own:
            candidates = [*candidates, *own]
        second = created_us // _US
        for filter_id, flt_method, tokens in candidates:
            if (flt_method is None or flt_method == method) and all(t in tags for t in tokens):
                cells = self._seconds.get((filter_id, currency))
                if cells is None:
                    cells = self._seconds[(filter_id, currency)] = {}
                cell = cells.get(second)
                if cell is None:
                    cells[second] = [1, nano]
                else:
                    cell[0] += 1
                    cell[1] += nano

    def rows(self) -> list[tuple[int, int, int, str, int, int]]:
        """Every non-zero (filter id, level, bucket, currency, count, nano), sorted: the
        form :meth:`~._store.Tx.total_rows` reads the stored totals in."""
        out: list[tuple[int, int, int, str, int, int]] = []
        append = out.append
        for (filter_id, currency), seconds in self._seconds.items():
            level: dict[int, list[int]] = seconds
            count = total = 0
            for depth in range(LEVELS):
                upper: dict[int, list[int]] = {}
                for bucket, (n, nano) in level.items():
                    if n or nano:
                        append((filter_id, depth, bucket, currency, n, nano))
                    cell = upper.get(bucket >> _BITS)
                    if cell is None:
                        upper[bucket >> _BITS] = [n, nano]
                    else:
                        cell[0] += n
                        cell[1] += nano
                if depth == 0:
                    count = sum(n for n, _ in level.values())
                    total = sum(nano for _, nano in level.values())
                level = upper
            if count or total:
                append((filter_id, LIFETIME, 0, currency, count, total))
        out.sort()
        return out

    def cells(self) -> Cells:
        """:meth:`rows` keyed by (filter id, level, bucket, currency)."""
        return {
            (f, level, bucket, cur): [n, nano] for f, level, bucket, cur, n, nano in self.rows()
        }
