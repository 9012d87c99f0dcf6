"""Answering "count and sum since T" for a limit, from the running totals.

A limit's usage depends on its filter and its start; a reservation reads each
distinct one once (:func:`distinct`, :func:`windows_of`), and adds the exact
part of the first second to what the buckets say (:func:`usage_of`).
"""

from __future__ import annotations

from collections.abc import Sequence

from .._decision import Limit
from ._record import COUNTED
from ._store import PaymentRow, Tx, Window
from ._totals import Filter, since_parts, us

__all__ = ["distinct", "limit_key", "read_window", "usage_of", "window_of", "windows_of"]


def limit_key(limit: Limit) -> tuple[int, int | None]:
    """What a limit's usage depends on: its filter and its start."""
    return Filter.of(limit).id, us(limit.since) if limit.since is not None else None


def distinct(limits: Sequence[Limit]) -> list[tuple[tuple[int, int | None], Filter]]:
    """Each distinct (filter, start) of ``limits`` once, in order."""
    seen: dict[tuple[int, int | None], Filter] = {}
    for limit in limits:
        seen.setdefault(limit_key(limit), Filter.of(limit))
    return list(seen.items())


def window_of(flt: Filter, since_us: int | None) -> Window:
    ranges, start, end = since_parts(since_us)
    return Window(flt.id, flt.scope, ranges, start, end)


def windows_of(limits: Sequence[Limit]) -> list[tuple[tuple[int, int | None], Window]]:
    return [(key, window_of(flt, key[1])) for key, flt in distinct(limits)]


def usage_of(
    flt: Filter, sums: Sequence[tuple[str, int, int]], exact: Sequence[PaymentRow]
) -> tuple[int, dict[str, int]]:
    """(count in every currency, sum per currency): the buckets, then the exact part."""
    count = 0
    totals: dict[str, int] = {}
    for currency, n, nano in sums:
        count += n
        totals[currency] = totals.get(currency, 0) + nano
    for row in exact:
        # The part of the first second the buckets do not split: exact, from the records.
        if row.status in COUNTED and flt.matches_row(row):
            count += 1
            totals[row.currency] = totals.get(row.currency, 0) + row.charge_nano
    return count, totals


def read_window(tx: Tx, flt: Filter, since_us: int | None) -> tuple[int, dict[str, int]]:
    """(count in every currency, sum per currency) of ``flt`` since ``since_us``."""
    window = window_of(flt, since_us)
    sums = tx.bucket_sums(flt.id, window.ranges)
    exact = (
        tx.payments_created(flt.scope, window.start_us, window.end_us)
        if window.end_us > window.start_us
        else []
    )
    return usage_of(flt, sums, exact)
