"""How fast are the durable ledgers? SQLite and PostgreSQL side by side, MemoryLedger for reference.

Run it with ``.venv/bin/python benchmarks/ledger.py`` (or ``./run bench``);
``--quick`` is a short smoke run (under 10 s) with the same code paths.
PostgreSQL comes from ``--postgres URL`` (default ``$MPP_TEST_POSTGRES_URL``,
else ``postgresql://postgres@127.0.0.1:5432/test``); when it is not reachable
its column is left out. Tables go to a fresh prefix, dropped at the end; the
SQLite file goes to a temporary directory.

Method
------
Every figure is a median over rounds. In each round every row is measured
on every store; stores take turns in alternating order (memory, SQLite,
PostgreSQL, then the reverse), so drift and other load on the machine hit all
of them alike, and all rows see the ledgers at similar sizes. One warm-up
block per row and store is discarded first. Records are built before the
clock starts.

1. ``reserve+commit``: one payment's whole ledger work, the two write
   transactions a paid request costs, each with its audit event (and a Merkle
   checkpoint every 256 events). The reservation checks one budget ``Limit``
   that never refuses, so the budget sum runs as in real use. Rows:

   * 1 thread: a block of pairs, back to back; pairs per second of the block;
   * N threads, one shared ledger object (what one process with a thread pool
     or an ``AsyncClient`` does): the block split over N threads started
     together; pairs per second of wall time;
   * N threads, a ledger object each (how N processes on one machine or a
     fleet use one store: separate connections contending for the store's
     write lock, SQLite's ``BEGIN IMMEDIATE`` or the PostgreSQL advisory
     lock). MemoryLedger cannot share state between objects: no figure.

   Every write is durable: SQLite in WAL mode with ``synchronous=FULL``,
   PostgreSQL with the server's own ``synchronous_commit``. So these rows are
   mostly the machine's fsync rate. The budget is checked by a SQL sum over
   every counted payment, so they also fall as the ledger grows: compare runs
   at the same ledger size (the size reached is printed as ``records``).

2. ``verify``: ``ledger.verify()`` over the ledger the first part filled:
   re-hash the whole audit chain, rebuild the checkpoints' Merkle roots, and
   compare every payment row with its last event. Records (payments) per
   second and events per second, median over several runs.

Reading the results
-------------------
Columns are medians; ``sqlite/mem`` and ``pg/sqlite`` are quotients of them
(above 1: the first is faster). The script reports and never fails.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import mpp_client
from mpp_client import Amount
from mpp_client.ledger import (
    Ledger,
    MemoryLedger,
    PaymentRecord,
    PostgresLedger,
    SqliteLedger,
    SqlLedger,
)
from mpp_client.policy import Limit

PRICE = Amount.coerce("0.01 USD")
LIMITS = (Limit("budget", cap=Amount.coerce("100000000.00 USD")),)
DEFAULT_PG = os.environ.get("MPP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True, slots=True)
class Settings:
    rounds: int
    block: int
    verify_runs: int


QUICK = Settings(rounds=3, block=30, verify_runs=3)
FULL = Settings(rounds=5, block=120, verify_runs=5)


@dataclass
class Store:
    """One ledger under test: how to open another object on it, and its samples."""

    name: str
    opener: Callable[[], Ledger]
    #: True when separate objects share the state (durable stores).
    shared: bool
    main: Ledger = field(init=False)
    extra: list[Ledger] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.main = self.opener()

    def others(self, n: int) -> list[Ledger]:
        while len(self.extra) < n:
            self.extra.append(self.opener())
        return self.extra[:n]

    def add(self, row: str, value: float) -> None:
        self.samples.setdefault(row, []).append(value)

    def median(self, row: str) -> float | None:
        values = self.samples.get(row)
        return statistics.median(values) if values else None

    def close(self) -> None:
        for ledger in [self.main, *self.extra]:
            close = getattr(ledger, "close", None)
            if close is not None:
                close()


def new_records(n: int) -> list[PaymentRecord]:
    now = datetime.now(UTC)
    return [
        PaymentRecord(
            id=uuid.uuid4().hex,
            created_at=now,
            status="reserved",
            http_method="GET",
            url="http://127.0.0.1/bench",
            realm="bench.test",
            method="dev",
            intent="charge",
            amount=PRICE,
            charge=PRICE,
            payee="merchant-1",
            challenge_id=uuid.uuid4().hex,
        )
        for _ in range(n)
    ]


def pairs(ledger: Ledger, records: Sequence[PaymentRecord]) -> None:
    for record in records:
        held = ledger.reserve(record, LIMITS)
        ledger.commit(held.id, None)


def single(ledger: Ledger, n: int) -> float:
    """Pairs per second, one thread."""
    records = new_records(n)
    started = time.perf_counter_ns()
    pairs(ledger, records)
    return n / ((time.perf_counter_ns() - started) / 1e9)


def threaded(ledgers: Sequence[Ledger], n: int) -> float:
    """Pairs per second of wall time, ``n`` pairs split over one thread per ledger."""
    share = max(n // len(ledgers), 1)
    batches = [new_records(share) for _ in ledgers]
    barrier = threading.Barrier(len(ledgers) + 1)
    errors: list[BaseException] = []

    def work(ledger: Ledger, records: list[PaymentRecord]) -> None:
        barrier.wait()
        try:
            pairs(ledger, records)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(ledger, batch))
        for ledger, batch in zip(ledgers, batches, strict=True)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter_ns()
    for thread in threads:
        thread.join()
    elapsed = (time.perf_counter_ns() - started) / 1e9
    if errors:
        raise errors[0]
    return share * len(ledgers) / elapsed


def open_stores(args: argparse.Namespace, workdir: Path) -> tuple[list[Store], str | None]:
    stores = [Store("memory", MemoryLedger, shared=False)]
    path = workdir / "bench.sqlite3"
    stores.append(Store("sqlite", lambda: SqliteLedger(path), shared=True))
    if args.no_postgres:
        return stores, "postgres: skipped (--no-postgres)"
    prefix = f"bench_{uuid.uuid4().hex[:10]}_"
    try:
        stores.append(
            Store("postgres", lambda: PostgresLedger(args.postgres, prefix=prefix), shared=True)
        )
    except mpp_client.PaymentError as exc:
        return stores, f"postgres: skipped ({exc.message})"
    return stores, None


def run(settings: Settings, stores: list[Store], threads: int) -> None:
    def one(store: Store) -> float | None:
        return single(store.main, settings.block)

    def shared(store: Store) -> float | None:
        return threaded([store.main] * threads, settings.block)

    def own(store: Store) -> float | None:
        return threaded(store.others(threads), settings.block) if store.shared else None

    rows: dict[str, Callable[[Store], float | None]] = {
        "1 thread": one,
        f"{threads} threads, shared": shared,
        f"{threads} threads, own": own,
    }
    for measure in rows.values():
        for store in stores:  # warm-up, discarded
            measure(store)
    # Rows take turns inside each round, so they all see the ledgers at similar sizes.
    for round_no in range(settings.rounds):
        order = stores if round_no % 2 == 0 else stores[::-1]
        for row, measure in rows.items():
            for store in order:
                value = measure(store)
                if value is not None:
                    store.add(row, value)
    for store in stores:
        if not isinstance(store.main, SqlLedger):
            continue
        size = len(store.main.records())
        for _ in range(settings.verify_runs):
            started = time.perf_counter_ns()
            report = store.main.verify()
            elapsed = (time.perf_counter_ns() - started) / 1e9
            if not report.ok:
                raise SystemExit(f"{store.name}: {report}")
            store.add("verify, records/s", size / elapsed)
            store.add("verify, events/s", report.events / elapsed)
        store.add("records", size)


def table(stores: list[Store]) -> list[str]:
    by_name = {s.name: s for s in stores}
    names = [s.name for s in stores]
    rows: list[str] = []
    for store in stores:
        for row in store.samples:
            if row not in rows:
                rows.append(row)
    head = f"{'median':<24}" + "".join(f"{n:>10}" for n in names)
    head += f"{'sqlite/mem':>12}{'pg/sqlite':>11}"
    lines = [head, "-" * len(head)]

    def ratio(a: str, b: str, row: str) -> str:
        x = by_name[a].median(row) if a in by_name else None
        y = by_name[b].median(row) if b in by_name else None
        return f"{x / y:.2f}" if x and y else "-"

    for row in rows:
        cells = "".join(
            f"{value:>10.0f}" if (value := by_name[n].median(row)) is not None else f"{'-':>10}"
            for n in names
        )
        ratios = ""
        if row != "records":
            ratios = f"{ratio('sqlite', 'memory', row):>12}{ratio('postgres', 'sqlite', row):>11}"
        lines.append(f"{row:<24}{cells}{ratios}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run (under 10 s)")
    parser.add_argument("--threads", type=int, default=4, help="threads for the threaded rows")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="PostgreSQL URL")
    parser.add_argument("--no-postgres", action="store_true", help="leave PostgreSQL out")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mpp-ledger-bench-") as workdir:
        stores, note = open_stores(args, Path(workdir))
        try:
            run(settings, stores, args.threads)
        finally:
            for store in stores:
                if isinstance(store.main, PostgresLedger):
                    store.main.drop()
                store.close()
    elapsed = time.perf_counter() - started
    mode = "quick" if args.quick else "full"
    print(f"mpp_client {mpp_client.__version__}; ledger throughput, {mode} run")
    print("reserve+commit rows: pairs/s; verify rows: per second; records: ledger size")
    print()
    print("\n".join(table(stores)))
    if note:
        print(note)
    print()
    print(
        f"({elapsed:.1f} s; medians of {settings.rounds} rounds of {settings.block} pairs, "
        f"{settings.verify_runs} verify runs; see the docstring for method)"
    )


if __name__ == "__main__":
    main()
