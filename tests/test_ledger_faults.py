"""Durable ledgers under crashes and contention, with real processes.

Crash tests: a worker process (``tests/ledger_worker.py``) pays numbered jobs
through ``mpp_client.Client`` or ``mpp_client.AsyncClient`` (the two drivers of
the one payment loop) against a ``PaidServer`` served by this process, and
stops at one step of the flow (inside the reservation's transaction, after
reserve, inside ``pay``, after the paid retry was answered but before commit,
after commit). The test kills it there with SIGKILL, then checks the books:
the audit log verifies, every payment the server accepted has exactly one
ledger record that still counts against the budget, and nothing exceeds the
cap. Then a restarted worker resumes the jobs under the same budget, the
reservation the crash left behind is resolved from the server's truth, and a
last run uses the room a release gave back: never an overspend, never a job
paid twice. The crash and the last run use the driver under test; the restart
uses the other one, so the two drivers are also shown to read the books the
same way (each crash step runs once per driver).

Concurrency tests: processes released at once pay against one small budget
on one SQLite file and on one PostgreSQL prefix: 4 processes of 50 threads
sharing one ``Client``, 4 of 50 asyncio tasks sharing one ``AsyncClient``, and
8 of 50 tasks reserving straight on the ledger.

PostgreSQL tests use ``$MPP_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``) and are skipped when it is not
reachable.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mpp_client import Amount, PaymentError
from mpp_client.ledger import COUNTED, PaymentRecord, PostgresLedger, SqliteLedger, Status
from mpp_client.testing import LocalServer, PaidServer

from .ledger_worker import DRIVERS, STEPS

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL"), reason="needs POSIX signals (SIGKILL)"
)

REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("MPP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
USD = "USD"
#: The durable ledgers under test.
Durable = SqliteLedger | PostgresLedger


def _postgres_reachable() -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


_PG_OK = _postgres_reachable()


# -- stores ---------------------------------------------------------------------------


@dataclass
class Store:
    """One ledger as the worker's command line names it, and as this process opens it."""

    kind: str
    args: list[str]
    opener: Callable[[], Durable]
    path: Path | None = None

    def open(self) -> Durable:
        return self.opener()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        path = tmp_path / "ledger.sqlite3"
        yield Store("sqlite", ["--sqlite", str(path)], lambda: SqliteLedger(path), path)
        return
    if not _PG_OK:
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    prefix = f"faults_{uuid.uuid4().hex[:10]}_"
    yield Store(
        "postgres",
        ["--postgres", PG_URL, "--prefix", prefix],
        lambda: PostgresLedger(PG_URL, prefix=prefix),
    )
    ledger = PostgresLedger(PG_URL, prefix=prefix)
    try:
        ledger.drop()
    finally:
        ledger.close()


@pytest.fixture
def opened(store: Store) -> Iterator[Callable[[], Durable]]:
    """Opens the store in this process; closes every ledger it opened at the end."""
    ledgers: list[Durable] = []

    def open_() -> Durable:
        ledger = store.open()
        ledgers.append(ledger)
        return ledger

    yield open_
    for ledger in ledgers:
        ledger.close()


# -- workers --------------------------------------------------------------------------


class Worker:
    """A ``tests.ledger_worker`` subprocess importing mpp_client from this checkout."""

    def __init__(self, tmp: Path, *args: str, barrier: bool = False) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self._stderr_path = tmp / f"worker-{uuid.uuid4().hex[:8]}.stderr"
        self._stderr = self._stderr_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.ledger_worker", *args, *(["--barrier"] * barrier)],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE if barrier else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    @property
    def stderr(self) -> str:
        return self._stderr_path.read_text()[-4000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._stderr.close()

    def wait_for(self, wanted: str, timeout: float = 30.0) -> None:
        """Wait until the worker prints ``wanted`` (it then blocks there)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self.kill()
                pytest.fail(f"worker never printed {wanted!r} in {timeout}s:\n{self.stderr}")
            if line is None:
                self.kill()
                pytest.fail(f"worker ended before printing {wanted!r}:\n{self.stderr}")
            if line == wanted:
                return

    def go(self) -> None:
        """Release a ``--barrier`` worker that printed READY."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("GO\n")
        self.proc.stdin.close()

    def result(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for the worker to finish; its JSON summary (the last stdout line)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"worker did not finish in {timeout}s:\n{self.stderr}")
        self._reader.join(timeout=10)
        lines: list[str] = []
        while (line := self._lines.get_nowait()) is not None:
            lines.append(line)
        self._stderr.close()
        assert self.proc.returncode == 0, f"worker failed:\n{self.stderr}"
        summary: dict[str, Any] = json.loads(lines[-1])
        # The worker ran this checkout's package, not some installed copy.
        assert Path(summary["package"]).resolve().is_relative_to(REPO)
        return summary


def other(driver: str) -> str:
    return "async" if driver == "sync" else "sync"


def crash(tmp: Path, step: str, *args: str) -> None:
    """Run a worker until it reaches ``step`` the third time, and SIGKILL it there."""
    worker = Worker(tmp, *args, "--crash", step, "--at", "3")
    worker.wait_for(f"STEP {step}")
    worker.kill()
    assert worker.proc.returncode == -signal.SIGKILL


# -- the books ------------------------------------------------------------------------


def counted(records: Sequence[PaymentRecord]) -> Amount:
    total = Amount.zero(USD, 2)
    for record in records:
        if record.status in COUNTED:
            total = total + record.charge
    return total


def check_books(ledger: Durable, server: PaidServer | None, cap: Amount) -> list[PaymentRecord]:
    """What must hold after anything, crashes included. Returns the records."""
    report = ledger.verify()
    assert report.ok, str(report)
    records = ledger.records()
    challenges = [r.challenge_id for r in records]
    assert len(set(challenges)) == len(challenges), "two records for one challenge"
    spent = counted(records)
    assert ledger.spent(USD) == spent
    assert spent <= cap, f"budget overspent: {spent} counted against a cap of {cap}"
    if server is None:
        return records
    by_challenge = {r.challenge_id: r for r in records}
    paid = [p.challenge_id for p in server.payments]
    assert len(set(paid)) == len(paid), "the server accepted one challenge twice"
    for payment in server.payments:
        record = by_challenge.get(payment.challenge_id)
        assert record is not None, f"server payment {payment.challenge_id} has no ledger record"
        # Money the server received is never released: it keeps counting.
        assert record.status in COUNTED, f"server was paid, yet the record is {record.status}"
        assert record.charge == payment.amount
        if payment.idempotency_key is not None:
            assert record.tags.get("job") == payment.idempotency_key
    keys = [p.idempotency_key for p in server.payments if p.idempotency_key is not None]
    assert len(set(keys)) == len(keys), f"a logical call was paid twice: {sorted(keys)}"
    assert server.total_received <= cap, f"server received {server.total_received} > {cap}"
    return records


def by_job(records: Sequence[PaymentRecord]) -> dict[str, list[str]]:
    jobs: dict[str, list[str]] = {}
    for record in records:
        jobs.setdefault(record.tags["job"], []).append(record.status)
    return jobs


def server_jobs(server: PaidServer) -> list[str]:
    return sorted(p.idempotency_key or "?" for p in server.payments)


def sqlite_intact(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# -- crash tests ----------------------------------------------------------------------

CAP = Amount.coerce("1.00 USD")
PRICE = "0.25 USD"
C, R = "committed", "reserved"

#: After the crash at job-3: the server's paid jobs, and each job's ledger statuses.
AFTER_CRASH: dict[str, tuple[list[str], dict[str, list[str]]]] = {
    # The killed transaction left nothing: not the row, not its audit event.
    "in-reserve-txn": (["job-1", "job-2"], {"job-1": [C], "job-2": [C]}),
    "after-reserve": (["job-1", "job-2"], {"job-1": [C], "job-2": [C], "job-3": [R]}),
    "during-pay": (["job-1", "job-2"], {"job-1": [C], "job-2": [C], "job-3": [R]}),
    # Paid, not committed: the reservation keeps the money counted.
    "after-pay": (["job-1", "job-2", "job-3"], {"job-1": [C], "job-2": [C], "job-3": [R]}),
    "after-commit": (["job-1", "job-2", "job-3"], {"job-1": [C], "job-2": [C], "job-3": [C]}),
}
#: What the restarted worker does with jobs 1-6 (it skips jobs the ledger counts).
RESTART = {
    "in-reserve-txn": {"job-3": "paid", "job-4": "paid"},
    "after-reserve": {"job-4": "paid"},
    "during-pay": {"job-4": "paid"},
    "after-pay": {"job-4": "paid"},
    "after-commit": {"job-4": "paid"},
}
#: How the reservation the crash left is resolved, from the server's records.
RESOLVED = {"after-reserve": "released", "during-pay": "released", "after-pay": "committed"}


def _outcomes(summary: dict[str, Any], paid: dict[str, str], skipped: set[str]) -> None:
    expected = {}
    for n in range(1, 7):
        job = f"job-{n}"
        expected[job] = paid.get(job, "skipped" if job in skipped else "refused")
    assert summary["outcomes"] == expected


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("driver_name", DRIVERS)
def test_crash_then_restart(
    driver_name: str, step: str, store: Store, opened: Callable[[], Durable], tmp_path: Path
) -> None:
    server = PaidServer({"/paid": PRICE})
    with LocalServer(server) as live:
        jobs = [*store.args, "--url", live.url + "/paid", "--budget", str(CAP), "--jobs", "6"]

        # 1. Jobs 1 and 2 are paid; job 3 is killed at `step`.
        crash(tmp_path, step, "jobs", "--driver", driver_name, *jobs)
        if store.path is not None:
            # Killed processes do not checkpoint: the state is in the WAL, and
            # reopening recovers it whole.
            assert Path(f"{store.path}-wal").stat().st_size > 0
            sqlite_intact(store.path)
        ledger = opened()
        records = check_books(ledger, server, CAP)
        paid_jobs, statuses = AFTER_CRASH[step]
        assert server_jobs(server) == paid_jobs
        assert by_job(records) == statuses
        kinds = Counter(json.loads(line)["event"]["kind"] for line in ledger.export_jsonl())
        assert kinds["reserve"] == len(records)

        # 2. Restart with the same ledger and budget, through the other driver:
        #    it resumes the jobs the ledger does not count, within what the
        #    budget has left.
        summary = Worker(tmp_path, "jobs", "--driver", other(driver_name), *jobs).result()
        assert summary["driver"] == other(driver_name)
        counted_jobs = {job for job, st in statuses.items() if set(st) & COUNTED}
        _outcomes(summary, RESTART[step], counted_jobs)
        records = check_books(ledger, server, CAP)
        assert counted(records) == CAP  # the budget is used up, exactly

        # 3. Resolve what the crash left, from what the server says it received.
        received = {p.challenge_id for p in server.payments}
        left = [r for r in records if r.status == "reserved"]
        assert len(left) == (1 if step in RESOLVED else 0)
        for record in left:
            status: Status = "committed" if record.challenge_id in received else "released"
            assert status == RESOLVED[step]
            resolved = ledger.resolve(record.id, status, "reconciled with the server's records")
            assert resolved.status == status
            assert resolved.reason == "reconciled with the server's records"
            with pytest.raises(PaymentError, match="already"):
                ledger.resolve(record.id, "released", "twice")
        job3 = next(r for r in ledger.records() if r.tags["job"] == "job-3")
        if not left:
            # Nothing to resolve: a committed payment cannot be resolved away.
            assert job3.status == "committed"
            with pytest.raises(PaymentError, match="already committed"):
                ledger.resolve(job3.id, "released", "not allowed")
        with pytest.raises(ValueError, match="resolve to"):
            ledger.resolve(job3.id, "unknown", "not a final status")
        records = check_books(ledger, server, CAP)
        assert not [r for r in records if r.status == "reserved"]
        kinds = Counter(json.loads(line)["event"]["kind"] for line in ledger.export_jsonl())
        assert kinds["resolve"] == len(left)

        # 4. Run again: a release gave room back, and only the released job is
        #    paid with it; otherwise nothing more is paid.
        summary = Worker(tmp_path, "jobs", "--driver", driver_name, *jobs).result()
        assert summary["driver"] == driver_name
        paid_now = {"job-3": "paid"} if RESOLVED.get(step) == "released" else {}
        skipped = {f"job-{n}" for n in range(1, 5)} - set(paid_now)
        _outcomes(summary, paid_now, skipped)
        records = check_books(ledger, server, CAP)

    assert server.total_received == CAP
    assert counted(records) == CAP
    assert server_jobs(server) == ["job-1", "job-2", "job-3", "job-4"]
    assert ledger.verify().ok
    if store.path is not None:
        sqlite_intact(store.path)


@pytest.mark.parametrize("driver_name", DRIVERS)
def test_kill_inside_reservation_releases_the_write_lock(
    driver_name: str, store: Store, opened: Callable[[], Durable], tmp_path: Path
) -> None:
    """A process killed while holding the write lock does not block the others.

    The async driver holds it from a worker thread (ledger I/O runs off the
    event loop), the sync driver from the calling thread.
    """
    server = PaidServer({"/paid": PRICE})
    with LocalServer(server) as live:
        jobs = [*store.args, "--url", live.url + "/paid", "--budget", str(CAP), "--jobs", "6"]
        crash(tmp_path, "in-reserve-txn", "jobs", "--driver", driver_name, *jobs)
        ledger = opened()
        before = len(list(ledger.export_jsonl()))
        record = PaymentRecord(
            id=uuid.uuid4().hex,
            created_at=datetime.now(UTC),
            status="reserved",
            http_method="GET",
            url="http://127.0.0.1/x",
            realm="r",
            method="dev",
            intent="charge",
            amount=Amount.coerce("0.10 USD"),
            charge=Amount.coerce("0.10 USD"),
            payee="merchant-1",
            challenge_id=uuid.uuid4().hex,
        )
        # Succeeds rather than waiting out the busy timeout and raising: the lock is free.
        held = ledger.reserve(record, [])
        ledger.release(held.id, "test")
        assert len(list(ledger.export_jsonl())) == before + 2
        check_books(ledger, server, CAP)


# -- concurrency ----------------------------------------------------------------------

#: Processes, and concurrent callers in each, straight on the ledger.
PROCESSES = 8
TASKS = 50
#: Through a client: the test runs once per driver, with half the processes each
#: (together as many processes and calls as one run of the direct test).
CLIENT_PROCESSES = PROCESSES // 2
BUDGET = Amount.coerce("2.00 USD")
PRICES = [f"0.0{cents} USD" for cents in range(1, 6)]


def _stress(
    store: Store,
    tmp: Path,
    mode: str,
    url: str,
    attempts: int,
    processes: int = PROCESSES,
    driver: str | None = None,
) -> Counter[str]:
    """Run the stress workers, all released at once; their counts added up."""
    workers = [
        Worker(
            tmp,
            "stress",
            *store.args,
            *(["--driver", driver] if driver is not None else []),
            "--url",
            url,
            "--budget",
            str(BUDGET),
            "--mode",
            mode,
            "--tasks",
            str(TASKS),
            "--attempts",
            str(attempts),
            "--paths",
            ",".join(f"/p{cents}" for cents in range(1, 6)),
            "--prices",
            ",".join(PRICES),
            "--seed",
            str(seed),
            barrier=True,
        )
        for seed in range(processes)
    ]
    # Every worker set up before any pays: the contention is real, not staggered.
    for worker in workers:
        worker.wait_for("READY")
    for worker in workers:
        worker.go()
    total: Counter[str] = Counter()
    for worker in workers:
        summary = worker.result(timeout=60)
        assert summary["driver"] == driver
        total.update(summary["counts"])
    return total


@pytest.mark.parametrize("driver_name", DRIVERS)
def test_concurrent_clients_share_one_budget(
    driver_name: str, store: Store, opened: Callable[[], Durable], tmp_path: Path
) -> None:
    """4 processes x 50 callers (threads on one Client, or tasks on one AsyncClient)."""
    server = PaidServer({f"/p{cents}": price for cents, price in enumerate(PRICES, start=1)})
    with LocalServer(server) as live:
        counts = _stress(
            store, tmp_path, "client", live.url, 2, processes=CLIENT_PROCESSES, driver=driver_name
        )
    assert set(counts) <= {"paid", "refused"}, counts
    assert counts.total() == CLIENT_PROCESSES * TASKS * 2
    assert counts["refused"] > counts["paid"] > 0  # most attempts must be refused

    ledger = opened()
    records = check_books(ledger, server, BUDGET)
    committed = [r for r in records if r.status == "committed"]
    # Every payment the server accepted is one committed record, and vice versa.
    assert len(committed) == len(records) == len(server.payments) == counts["paid"]
    assert {r.challenge_id for r in committed} == {p.challenge_id for p in server.payments}
    assert server.total_received == counted(records)
    # Refusals were real: nothing is released here, so once one was refused the
    # room left stayed under that price. The budget is used up to within 0.05.
    assert counted(records) > BUDGET - Amount.coerce(PRICES[-1])


def test_concurrent_reservations_share_one_budget(
    store: Store, opened: Callable[[], Durable], tmp_path: Path
) -> None:
    """8 processes x 50 tasks reserving straight on the ledger (in threads), one budget.

    Each held amount is then committed, released, marked unknown or left held.
    """
    counts = _stress(store, tmp_path, "direct", "", attempts=4)
    assert set(counts) <= {"paid", "refused", "released", "unknown", "reserved"}, counts
    assert counts.total() == PROCESSES * TASKS * 4
    assert counts["refused"] > counts["paid"] > 0

    ledger = opened()
    records = check_books(ledger, None, BUDGET)
    statuses = Counter(r.status for r in records)
    assert statuses["committed"] == counts["paid"]
    assert statuses["released"] == counts["released"]
    assert statuses["unknown"] == counts["unknown"]
    assert statuses["reserved"] == counts["reserved"]
    # Releases give room back at any time, so the budget need not end full.
    assert counted(records) > Amount.coerce("1.50 USD")
