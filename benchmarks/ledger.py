"""How does the ledger scale? Cost per paid request by history size, a fleet, and verify().

Run it with ``.venv/bin/python benchmarks/ledger.py`` (or ``./run bench``);
``--quick`` is a short run (about a minute) with the same code paths.
PostgreSQL comes from ``--postgres URL`` (default ``$MPP_TEST_POSTGRES_URL``,
else ``postgresql://postgres@127.0.0.1:5432/test``); when it is not reachable
its rows are left out.

What is measured
----------------
1. **Cost per paid request by history size.** The ledger and policy work of
   one paid request, as the flow does it: ``Policy.decide`` with a realistic
   policy (three budgets, two rates, approval for new payees, an anomaly check
   and a circuit breaker, so every history-reading rule runs), then
   ``reserve`` and ``commit``; no HTTP. On SQLite and PostgreSQL ledgers
   holding 0, 10k, 100k and 1M past payments (``--quick``: 0 and 10k) over the
   last 30 days, to 50 payees, in the policy's scope. Each request is timed
   on its own; the rows give the median, the 99th percentile and the maximum,
   and the median's ratio to the empty ledger's. Goals: the 1M median within
   1.3x of the empty one; no request slower than 10x the median.

2. **Fleet.** 1, 4 and 8 processes (``--quick``: 1 and 2) on one PostgreSQL
   budget, each with a ledger of its own, reserving and committing as fast as
   they can; the cap is 90% of what they try, so the last attempts are
   refused. Pairs per second of wall time, their ratio to one process, and the
   overspend (what counts above the cap: must be 0). Goals: 8 processes at
   least 3x one, and 2,000 pairs/s. The single process also reports the CPU
   a pair costs, its own and its PostgreSQL backend's (read from ``/proc``
   when the server is local): the machine's cores divided by it bound what
   any number of processes can reach.

3. **verify().** ``ledger.verify()`` over the 100k ledger (``--quick``: 10k),
   in log entries per second, against plain SHA-256 over the same entries'
   bytes, read into memory beforehand (the fastest anything checking them
   could go). Goal: a ratio of at least 0.5. Also against reading the entries
   from the store and hashing them, and against reading every row verify()
   must read (entries hashed, payments, totals) without checking anything:
   what the store alone costs, which bounds the first ratio.

Method
------
Big ledgers are filled through ``Ledger.import_records`` (one transaction per
2,000 records, logged and counted like any other: ``verify()`` holds) with
the policy's filters registered first, and cached on disk (SQLite files under
``$XDG_CACHE_HOME/mpp-client-bench``, PostgreSQL tables under the prefix
``mppbench_<key>_``), keyed by a hash of the ledger's code, so later runs
reuse them; a run adds its own few hundred payments to them. ``--fresh``
rebuilds them, ``--drop-cache`` deletes them. Section 1 runs in rounds; in
each round every (store, size) gets a block of requests, in alternating
order, so drift and load on the machine hit all of them alike; one warm-up
block each is discarded. The fleet rows alternate too (1, 4, 8, 8, 4, 1...).
Every write is durable (SQLite ``synchronous=FULL``; PostgreSQL's own
``synchronous_commit``). The script reports and never fails.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mpp_client
from mpp_client import Amount, BudgetExceeded
from mpp_client.ledger import PaymentRecord, PostgresLedger, SqliteLedger, StoreLedger
from mpp_client.methods import Quote
from mpp_client.policy import Limit, PaymentContext, Policy
from mpp_client.protocol import Challenge

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_decisions import PAYEES, realistic_policy

DEFAULT_PG = os.environ.get("MPP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SCOPE = "bench"
#: Bump when the shape of the cached history changes.
HISTORY_VERSION = 1
LEDGER_CODE = Path(mpp_client.__file__).parent / "ledger"


def policy() -> Policy:
    data = realistic_policy().to_dict()
    data.update(scope=SCOPE, not_before="2020-01-01T00:00:00Z", expires="2100-01-01T00:00:00Z")
    return Policy.from_mapping(data)


POLICY = policy()


@dataclass(frozen=True, slots=True)
class Settings:
    sizes: tuple[int, ...]
    rounds: int
    block: int
    fleet: tuple[int, ...]
    fleet_pairs: int
    fleet_rounds: int
    verify_size: int
    verify_runs: int


QUICK = Settings((0, 10_000), 3, 20, (1, 2), 60, 1, 10_000, 2)
FULL = Settings((0, 10_000, 100_000, 1_000_000), 6, 40, (1, 4, 8), 250, 2, 100_000, 3)


# -- history and requests ------------------------------------------------------------------


def history(size: int, now: datetime, seed: int = 402) -> Iterator[PaymentRecord]:
    """``size`` committed payments to the policy's payees over 30 days, up to a minute ago."""
    rng = random.Random(seed)
    step = timedelta(days=30) / max(size, 1)
    start = now - timedelta(days=30, minutes=1)
    for n in range(size):
        at = start + n * step
        charge = Amount(rng.randint(20, 60), "USD", 2)
        yield PaymentRecord(
            id=uuid.UUID(int=rng.getrandbits(128)).hex,
            created_at=at,
            status="committed",
            http_method="GET",
            url="https://api.example.com/paid",
            realm="api",
            method="dev",
            intent="charge",
            amount=charge,
            charge=charge,
            payee=PAYEES[n % len(PAYEES)],
            challenge_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            scope=SCOPE,
            updated_at=at,
        )


def context(ledger: StoreLedger, rng: random.Random, now: datetime) -> PaymentContext:
    challenge = Challenge.create(
        id=uuid.uuid4().hex, realm="api", method="dev", intent="charge", request={}
    )
    quote = Quote(
        Amount(rng.randint(20, 60), "USD", 2),
        rng.choice(PAYEES),
        "dev",
        "charge",
        currency="usd",
        expires=now + timedelta(minutes=5),
    )
    return PaymentContext(
        url="https://api.example.com/paid",
        http_method="GET",
        host="api.example.com",
        challenge=challenge,
        quote=quote,
        now=now,
        history=ledger,
    )


def paid_request(ledger: StoreLedger, rng: random.Random) -> None:
    """decide, reserve, commit: the ledger and policy work of one paid request."""
    now = datetime.now(UTC)
    ctx = context(ledger, rng, now)
    decision = POLICY.decide(ctx)
    # A payee seen for the first time needs an approval: granted at once, as an
    # approver would (the empty ledger has only new payees at first).
    if decision.outcome not in ("allow", "needs_approval") or decision.charge is None:
        raise SystemExit(f"the benchmark policy refused: {decision.reasons}")
    record = PaymentRecord(
        id=uuid.uuid4().hex,
        created_at=now,
        status="reserved",
        http_method=ctx.http_method,
        url=ctx.url,
        realm=ctx.challenge.realm,
        method="dev",
        intent="charge",
        amount=ctx.quote.amount,
        charge=decision.charge,
        payee=ctx.quote.payee,
        challenge_id=ctx.challenge.id,
        decision=decision,
        scope=decision.scope,
    )
    held = ledger.reserve(record, decision.limits)
    ledger.commit(held.id, None)


def register(ledger: StoreLedger) -> None:
    """Register the policy's filters (before an import, so it fills their totals)."""
    now = datetime.now(UTC)
    limits = [Limit(b.name, b.limit, scope=SCOPE) for b in POLICY.budgets]
    limits += [Limit(f"p-{p}", max_count=1, since=now, payee=p, scope=SCOPE) for p in PAYEES]
    for limit in limits:
        ledger.usage(limit)


# -- the cache of filled ledgers -----------------------------------------------------------


def code_key() -> str:
    digest = hashlib.sha256(str(HISTORY_VERSION).encode())
    for path in sorted(LEDGER_CODE.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mpp-client-bench"


def fill(ledger: StoreLedger, size: int) -> float:
    register(ledger)
    started = time.perf_counter()
    ledger.import_records(history(size, datetime.now(UTC)))
    return time.perf_counter() - started


def forget_other_versions(url: str | None) -> None:
    """Caches of other versions of the ledger code are of no use: delete them."""
    key = code_key()
    for stale in cache_root().glob("*"):
        if stale.is_dir() and stale.name != key:
            shutil.rmtree(stale, ignore_errors=True)
    if url is None:
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema() AND table_name LIKE 'mppbench\\_%%' AND table_name NOT LIKE %s",
            (f"mppbench\\_{key}\\_%",),
        ).fetchall()
        for (table,) in rows:  # only what this benchmark created, under another key
            if not table.startswith(("mppbench_fleet_", "mppbench_tmp_", "mppbench_probe_")):
                conn.execute(f'DROP TABLE IF EXISTS "{table}"')


def sqlite_ledger(size: int, fresh: bool, workdir: Path) -> tuple[StoreLedger, str]:
    if size == 0:
        return SqliteLedger(workdir / "empty.sqlite3"), "new"
    directory = cache_root() / code_key()
    path = directory / f"sqlite-{size}.sqlite3"
    done = path.with_name(path.name + ".complete")
    if fresh or not done.exists():
        for stale in directory.glob(f"sqlite-{size}.sqlite3*"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        directory.mkdir(parents=True, exist_ok=True)
        ledger = SqliteLedger(path)
        seconds = fill(ledger, size)
        done.write_text(f"{seconds:.1f}\n")
        return ledger, f"built in {seconds:.0f} s"
    return SqliteLedger(path), "cached"


def pg_prefix(size: int) -> str:
    return f"mppbench_{code_key()}_{size}_"


def pg_ledger(url: str, size: int, fresh: bool) -> tuple[StoreLedger, str]:
    if size == 0:
        return PostgresLedger(url, prefix=f"mppbench_tmp_{uuid.uuid4().hex[:8]}_"), "new"
    prefix = pg_prefix(size)
    ledger = PostgresLedger(url, prefix=prefix)
    complete = ledger._transact(lambda tx: tx.meta("bench:complete"), write=False)
    if complete and not fresh:
        return ledger, "cached"
    ledger.drop()
    ledger.close()
    ledger = PostgresLedger(url, prefix=prefix)
    seconds = fill(ledger, size)
    ledger._transact(lambda tx: tx.set_meta("bench:complete", f"{seconds:.1f}"))
    return ledger, f"built in {seconds:.0f} s"


def drop_cache(url: str | None) -> None:
    shutil.rmtree(cache_root(), ignore_errors=True)
    if url is None:
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema() AND table_name LIKE 'mppbench\\_%'"
        ).fetchall()
        for (table,) in rows:  # only what this benchmark created
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')


# -- 1. cost per paid request ----------------------------------------------------------------


@dataclass
class Row:
    store: str
    size: int
    ledger: StoreLedger | None
    note: str
    samples: list[float] = field(default_factory=list)
    bare: sqlite3.Connection | None = None

    def block(self, n: int, rng: random.Random, *, keep: bool = True) -> None:
        for _ in range(n):
            started = time.perf_counter_ns()
            if self.ledger is not None:
                paid_request(self.ledger, rng)
            else:
                self.two_commits()
            elapsed = (time.perf_counter_ns() - started) / 1e6
            if keep:
                self.samples.append(elapsed)

    def two_commits(self) -> None:
        """What the disk alone costs a paid request: two durable SQLite commits."""
        assert self.bare is not None
        for _ in range(2):
            self.bare.execute("BEGIN IMMEDIATE")
            self.bare.execute("INSERT INTO t (v) VALUES (?)", ("x" * 1000,))
            self.bare.execute("COMMIT")


def bare_row(workdir: Path) -> Row:
    conn = sqlite3.connect(workdir / "bare.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    return Row("disk", 0, None, "two bare durable SQLite commits (the machine's floor)", bare=conn)


def request_costs(settings: Settings, rows: list[Row]) -> list[str]:
    rng = random.Random(7)
    for row in rows:
        row.block(settings.block, rng, keep=False)  # warm-up: first sight of payees, caches
    for round_no in range(settings.rounds):
        for row in rows if round_no % 2 == 0 else rows[::-1]:
            row.block(settings.block, rng)
    lines = [
        f"{'store':<9}{'past payments':>14}{'median ms':>11}{'p99 ms':>9}{'max ms':>9}"
        f"{'x empty':>9}{'max/median':>12}  ledger",
    ]
    empty = {
        r.store: statistics.median(r.samples) for r in rows if r.size == 0 and r.ledger is not None
    }
    for row in rows:
        median = statistics.median(row.samples)
        p99 = statistics.quantiles(row.samples, n=100)[-1]
        worst = max(row.samples)
        ratio = f"{median / empty[row.store]:.2f}" if row.store in empty else "-"
        size = f"{row.size:,}" if row.ledger is not None else "-"
        lines.append(
            f"{row.store:<9}{size:>14}{median:>11.2f}{p99:>9.1f}{worst:>9.1f}"
            f"{ratio:>9}{worst / median:>12.1f}  {row.note}"
        )
    for row in rows:
        if row.ledger is None:
            median = statistics.median(row.samples)
            slow = sum(s > 10 * median for s in row.samples)
            lines.append(
                f"  {row.store}: {slow} of {len(row.samples)} over 10x the median: the tail "
                "of this machine's disk, which every durable ledger inherits"
            )
    for store, base in empty.items():
        biggest = max((r for r in rows if r.store == store), key=lambda r: r.size)
        ratio = statistics.median(biggest.samples) / base
        slow = sum(
            s > 10 * statistics.median(r.samples)
            for r in rows
            if r.store == store
            for s in r.samples
        )
        lines.append(
            f"  {store}: {biggest.size:,} past payments cost {ratio:.2f}x the empty ledger "
            f"(goal <= 1.3: {'met' if ratio <= 1.3 else 'missed'}); requests over 10x their "
            f"row's median: {slow} (goal 0)"
        )
    return lines


# -- 2. fleet --------------------------------------------------------------------------------


PRICE = Amount.parse("0.01 USD")


def _fleet_worker(url: str, prefix: str, pairs: int, cap: str, start: Any, out: Any) -> None:
    ledger = PostgresLedger(url, prefix=prefix)
    limit = [Limit("fleet", cap=Amount.parse(cap), scope="fleet")]
    now = datetime.now(UTC)
    records = [
        PaymentRecord(
            id=uuid.uuid4().hex,
            created_at=now,
            status="reserved",
            http_method="GET",
            url="http://127.0.0.1/fleet",
            realm="fleet",
            method="dev",
            intent="charge",
            amount=PRICE,
            charge=PRICE,
            payee="merchant-1",
            challenge_id=uuid.uuid4().hex,
            scope="fleet",
        )
        for _ in range(pairs)
    ]
    ledger.usage(limit[0])  # connected and registered before the clock starts
    backend = _backend_cpu(ledger)
    start.wait()
    cpu, server = time.process_time(), backend()
    done = refused = 0
    for record in records:
        try:
            held = ledger.reserve(record, limit)
        except BudgetExceeded:
            refused += 1
            continue
        ledger.commit(held.id, None)
        done += 1
    finished = time.perf_counter()
    out.put((done, refused, finished, time.process_time() - cpu, backend() - server))
    ledger.close()


def _backend_cpu(ledger: PostgresLedger) -> Any:
    """A reader of the CPU seconds of this ledger's PostgreSQL backend (NaN if not local)."""
    pid = ledger._transact(lambda tx: tx._one("SELECT pg_backend_pid()", ()), write=False)[0]
    stat = Path(f"/proc/{pid}/stat")
    tick = os.sysconf("SC_CLK_TCK")

    def read() -> float:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the server runs elsewhere: its CPU is not this machine's
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / tick

    return read


def fleet(url: str, settings: Settings) -> list[str]:
    results: dict[int, list[float]] = {n: [] for n in settings.fleet}
    overspend: list[Amount] = []
    client_cpu: list[float] = []  # seconds of CPU per pair, one process
    server_cpu: list[float] = []
    order = list(settings.fleet)
    mp = multiprocessing.get_context("spawn")
    for round_no in range(settings.fleet_rounds * 2):
        for processes in order if round_no % 2 == 0 else order[::-1]:
            prefix = f"mppbench_fleet_{uuid.uuid4().hex[:8]}_"
            setup = PostgresLedger(url, prefix=prefix)
            cap_units = processes * settings.fleet_pairs * 9 // 10
            cap = Amount(cap_units, "USD", 2)
            start, out = mp.Barrier(processes + 1), mp.Queue()
            workers = [
                mp.Process(
                    target=_fleet_worker,
                    args=(url, prefix, settings.fleet_pairs, str(cap), start, out),
                )
                for _ in range(processes)
            ]
            for worker in workers:
                worker.start()
            start.wait()
            began = time.perf_counter()
            finished = [out.get(timeout=600) for _ in workers]
            for worker in workers:
                worker.join()
            wall = max(t for _, _, t, _, _ in finished) - began
            committed = sum(d for d, _, _, _, _ in finished)
            results[processes].append(committed / wall)
            if processes == 1 and committed:
                client_cpu.append(finished[0][3] / committed)
                server_cpu.append(finished[0][4] / committed)
            counted = setup.spent("USD", scope="fleet")
            overspend.append(max(counted - cap, Amount.zero("USD", 2)))
            if counted != Amount(committed, "USD", 2):
                raise SystemExit(f"fleet: {committed} committed but {counted} counted")
            setup.drop()
            setup.close()
    base = statistics.median(results[order[0]])
    lines = [f"{'processes':>10}{'pairs/s':>10}{'x one':>8}"]
    for processes in order:
        rate = statistics.median(results[processes])
        lines.append(f"{processes:>10}{rate:>10.0f}{rate / base:>8.2f}")
    most = max(order)
    rate = statistics.median(results[most])
    lines.append(
        f"  overspend: {max(overspend)} in {len(overspend)} runs (goal 0); {most} processes: "
        f"{rate / base:.2f}x one (goal >= 3), {rate:.0f} pairs/s (goal >= 2,000); "
        f"this machine has {os.cpu_count()} cores"
    )
    if client_cpu:
        client, server = statistics.median(client_cpu), statistics.median(server_cpu)
        cores = os.cpu_count() or 1
        if server == server:  # not NaN: the server's CPU was read on this machine
            ceiling = cores / (client + server)
            lines.append(
                f"  CPU per pair (one process): client {client * 1000:.2f} ms + PostgreSQL "
                f"backend {server * 1000:.2f} ms, so {cores} cores cap any fleet at about "
                f"{ceiling:,.0f} pairs/s ({ceiling / base:.1f}x one), WAL writes not counted"
            )
        else:
            lines.append(f"  CPU per pair (one process): client {client * 1000:.2f} ms")
    return lines


# -- 3. verify -------------------------------------------------------------------------------


def verify_speed(name: str, ledger: StoreLedger, runs: int) -> str:
    entries: list[bytes] = ledger._transact(
        lambda tx: [e.entry for e in tx.all_entries()], write=False
    )

    def read_and_hash() -> int:
        def work(tx: Any) -> int:
            count = 0
            for stored in tx.all_entries():
                hashlib.sha256(stored.entry).digest()
                count += 1
            return count

        return int(ledger._transact(work, write=False))

    def read_everything() -> int:
        """Every row verify() must read (log, payments, totals), entries hashed: its floor."""

        def work(tx: Any) -> int:
            count = 0
            for row in tx.log_rows():
                hashlib.sha256(row[3]).digest()
                count += 1
            for _ in tx.payment_rows():
                pass
            for _ in tx.total_rows():
                pass
            return count

        return int(ledger._transact(work, write=False))

    sha, read, floor, rates = [], [], [], []
    for _ in range(runs):
        started = time.perf_counter()
        for entry in entries:
            hashlib.sha256(entry).digest()
        sha.append(len(entries) / (time.perf_counter() - started))
        started = time.perf_counter()
        read.append(read_and_hash() / (time.perf_counter() - started))
        started = time.perf_counter()
        floor.append(read_everything() / (time.perf_counter() - started))
        started = time.perf_counter()
        report = ledger.verify()
        elapsed = time.perf_counter() - started
        if not report.ok:
            raise SystemExit(f"{name}: {report}")
        rates.append(report.events / elapsed)
    rate, plain, fetched = statistics.median(rates), statistics.median(sha), statistics.median(read)
    everything = statistics.median(floor)
    size = sum(map(len, entries)) / max(len(entries), 1)
    return (
        f"{name:<9}{len(entries):>9,} entries of {size:.0f} B: verify {rate:>8,.0f}/s\n"
        f"  SHA-256 of the entries in memory {plain:>10,.0f}/s: ratio {rate / plain:.2f} "
        "(goal >= 0.5)\n"
        f"  entries read from the store and SHA-256 {fetched:>10,.0f}/s: ratio "
        f"{rate / fetched:.2f}\n"
        f"  every row verify reads (log, payments, totals) {everything:>10,.0f}/s: ratio "
        f"{rate / everything:.2f} (reading alone, no checks: the floor on this store)"
    )


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="PostgreSQL URL")
    parser.add_argument("--no-postgres", action="store_true", help="leave PostgreSQL out")
    parser.add_argument("--fresh", action="store_true", help="rebuild the cached ledgers")
    parser.add_argument("--drop-cache", action="store_true", help="delete the cache and exit")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    url: str | None = None if args.no_postgres else args.postgres
    note = ""
    if url is not None:
        try:
            PostgresLedger(url, prefix="mppbench_probe_").drop()
        except mpp_client.PaymentError as exc:
            note, url = f"postgres: skipped ({exc.message})", None
    if args.drop_cache:
        drop_cache(url)
        print("dropped the benchmark's cached ledgers")
        return
    forget_other_versions(url)
    began = time.perf_counter()
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mpp-ledger-bench-") as work:
        rows: list[Row] = [bare_row(Path(work))]
        try:
            for size in settings.sizes:
                ledger, how = sqlite_ledger(size, args.fresh, Path(work))
                rows.append(Row("sqlite", size, ledger, how))
                if url is not None:
                    ledger, how = pg_ledger(url, size, args.fresh)
                    rows.append(Row("postgres", size, ledger, how))
            out += ["1. cost per paid request (decide + reserve + commit), by past payments", ""]
            out += request_costs(settings, rows)
            checks = [f"3. verify() over {settings.verify_size:,} past payments", ""]
            checks += [
                verify_speed(row.store, row.ledger, settings.verify_runs)
                for row in rows
                if row.size == settings.verify_size and row.ledger is not None
            ]
        finally:
            for row in rows:
                if row.size == 0 and isinstance(row.ledger, PostgresLedger):
                    row.ledger.drop()
                for thing in (row.ledger, row.bare):
                    close = getattr(thing, "close", None)
                    if close is not None:
                        close()
    if url is not None:
        out += ["", "2. fleet: processes on one PostgreSQL budget (reserve + commit pairs)", ""]
        out += fleet(url, settings)
    out += ["", *checks]
    elapsed = time.perf_counter() - began
    mode = "quick" if args.quick else "full"
    print(f"mpp_client {mpp_client.__version__}; ledger benchmark, {mode} run")
    print("\n".join(out))
    if note:
        print(note)
    print(
        f"\n({elapsed:.0f} s; {settings.rounds} rounds of {settings.block} requests per row; "
        f"see the docstring for method; cache: {cache_root()} and mppbench_* tables)"
    )


if __name__ == "__main__":
    main()
