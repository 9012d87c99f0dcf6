"""A payment agent run in a subprocess by ``tests/test_ledger_faults.py``.

Run it from the repository root (``python -m tests.ledger_worker ...``) so it
imports ``mpp_client`` from the checkout. Two commands:

``jobs``
    Do numbered logical calls (``POST <url>`` with ``Idempotency-Key: job-N``
    and tag ``job=job-N``) one after another through :class:`mpp_client.Client`
    (``--driver sync``) or :class:`mpp_client.AsyncClient` (``--driver async``),
    skipping every job the ledger already counts (reserved, committed or
    unknown): that is how a restarted agent resumes without paying a job twice.
    ``--crash STEP --at N`` injects a fault: at the N-th time the flow reaches
    STEP the worker prints ``STEP <name>`` on stdout and blocks, so the parent
    can kill it with SIGKILL exactly there. The steps:

    * ``in-reserve-txn``: inside the reservation's write transaction, after the
      row and its audit event were written, before COMMIT (the write lock held);
    * ``after-reserve``: the reservation committed, nothing paid yet;
    * ``during-pay``: inside ``PaymentMethod.pay``, the voucher signed, not sent;
    * ``after-pay``: the paid retry was answered 200, the ledger not yet committed;
    * ``after-commit``: the ledger committed the payment.

``stress``
    ``--tasks`` concurrent callers making ``--attempts`` payments each against
    one budget: through the client against the parent's server (``--mode
    client``; asyncio tasks sharing one :class:`mpp_client.AsyncClient` with
    ``--driver async``, threads sharing one :class:`mpp_client.Client` with
    ``--driver sync``), or straight on the ledger with ``reserve`` then
    ``commit``/``release``/``mark_unknown`` in worker threads (``--mode
    direct``). With ``--barrier`` it prints ``READY`` once set up and waits for
    a line on stdin before the first call, so the parent can start every
    worker's calls at once.

Both print one JSON summary as the last stdout line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx

import mpp_client
from mpp_client import (
    Amount,
    AsyncClient,
    BudgetExceeded,
    Client,
    DevWallet,
    PaymentError,
    SimplePolicy,
    payment_record,
)
from mpp_client.ledger import COUNTED, Ledger, PaymentRecord, PostgresLedger, SqliteLedger
from mpp_client.ledger._sql import Cursor
from mpp_client.policy import Limit
from mpp_client.protocol import Challenge, Receipt

STEPS = ("in-reserve-txn", "after-reserve", "during-pay", "after-pay", "after-commit")
DRIVERS = ("sync", "async")
#: How long a worker stopped at a step waits to be killed before giving up.
BLOCK_SECONDS = 60.0


class Faults:
    """Stops the process at the ``at``-th time ``step`` is reached."""

    def __init__(self, step: str | None, at: int) -> None:
        if step is not None and step not in STEPS:
            raise SystemExit(f"unknown step {step!r}; expected one of {STEPS}")
        self.step = step
        self.at = at
        self.seen = 0

    def hit(self, step: str) -> None:
        if step != self.step:
            return
        self.seen += 1
        if self.seen != self.at:
            return
        print(f"STEP {step}", flush=True)
        time.sleep(BLOCK_SECONDS)
        # Nobody killed us: leave without settling anything (like a crash would).
        os._exit(3)


class _FaultyLedger:
    """Mixed into a SQL ledger: calls ``faults.hit`` at the ledger's steps."""

    faults: Faults

    def _append(
        self, cur: Cursor, kind: str, record: PaymentRecord | None, extra: Mapping[str, Any]
    ) -> Any:
        event = super()._append(cur, kind, record, extra)  # type: ignore[misc]
        if kind == "reserve":
            self.faults.hit("in-reserve-txn")
        return event

    def reserve(self, record: PaymentRecord, limits: Sequence[Limit]) -> PaymentRecord:
        held: PaymentRecord = super().reserve(record, limits)  # type: ignore[misc]
        self.faults.hit("after-reserve")
        return held

    def commit(
        self, record_id: str, receipt: Receipt | None, *, reason: str | None = None
    ) -> PaymentRecord:
        self.faults.hit("after-pay")
        done: PaymentRecord = super().commit(record_id, receipt, reason=reason)  # type: ignore[misc]
        self.faults.hit("after-commit")
        return done


class FaultySqlite(_FaultyLedger, SqliteLedger):
    pass


class FaultyPostgres(_FaultyLedger, PostgresLedger):
    pass


class FaultyWallet(DevWallet):
    """A dev wallet that can stop inside ``pay``, after signing the voucher."""

    def __init__(self, faults: Faults) -> None:
        super().__init__(seed=b"\x07" * 32)
        self.faults = faults

    def pay(self, challenge: Challenge, quote: Any = None) -> Mapping[str, Any]:
        payload = super().pay(challenge, quote)
        self.faults.hit("during-pay")
        return payload

    async def apay(self, challenge: Challenge, quote: Any = None) -> Mapping[str, Any]:
        return self.pay(challenge, quote)


def open_store(args: argparse.Namespace, faults: Faults | None = None) -> Ledger:
    """The ledger named on the command line, with fault injection when asked."""
    if args.sqlite:
        if faults is None:
            return SqliteLedger(args.sqlite)
        store: Any = FaultySqlite(args.sqlite)
    else:
        if faults is None:
            return PostgresLedger(args.postgres, prefix=args.prefix)
        store = FaultyPostgres(args.postgres, prefix=args.prefix)
        if faults.step == "in-reserve-txn":
            # A reservation at once holds its locks inside one statement, never while
            # the client runs: the crash with the locks held is the general path's.
            store.store.at_once = False
    store.faults = faults
    return store  # type: ignore[no-any-return]


def _jobs_setup(args: argparse.Namespace) -> tuple[list[str], set[str | None], dict[str, Any]]:
    """The jobs, those the ledger already counts, and the client's arguments (faults wired)."""
    faults = Faults(args.crash, args.at)
    ledger = open_store(args, faults)
    done = {r.tags.get("job") for r in ledger.records() if r.status in COUNTED}
    options: dict[str, Any] = {
        "methods": [FaultyWallet(faults)],
        "policy": SimplePolicy(max_per_call="1.00 USD", budget=args.budget),
        "ledger": ledger,
        "allow_insecure_localhost": True,
        "timeout": 30.0,
    }
    return [f"job-{n}" for n in range(1, args.jobs + 1)], done, options


def _job_call(job: str) -> dict[str, Any]:
    """The keyword arguments of job ``job``'s POST."""
    return {"headers": {"Idempotency-Key": job}, "extensions": {"mpp": {"tags": {"job": job}}}}


def _job_outcome(response: httpx.Response | PaymentError) -> str:
    if isinstance(response, BudgetExceeded):
        return "refused"
    if isinstance(response, PaymentError):
        return type(response).__name__
    paid = response.status_code == 200 and payment_record(response) is not None
    return "paid" if paid else f"http {response.status_code}"


def run_jobs(args: argparse.Namespace) -> dict[str, Any]:
    """The jobs, one after another, through ``Client``."""
    jobs, done, options = _jobs_setup(args)
    outcomes: dict[str, str] = {}
    with Client(**options) as client:
        for job in jobs:
            if job in done:
                outcomes[job] = "skipped"
                continue
            try:
                response: httpx.Response | PaymentError = client.post(args.url, **_job_call(job))
            except PaymentError as exc:
                response = exc
            outcomes[job] = _job_outcome(response)
    return {"outcomes": outcomes, "driver": "sync", "package": mpp_client.__file__}


async def run_jobs_async(args: argparse.Namespace) -> dict[str, Any]:
    """The same jobs, one after another, through ``AsyncClient``."""
    jobs, done, options = _jobs_setup(args)
    outcomes: dict[str, str] = {}
    async with AsyncClient(**options) as client:
        for job in jobs:
            if job in done:
                outcomes[job] = "skipped"
                continue
            try:
                response: httpx.Response | PaymentError = await client.post(
                    args.url, **_job_call(job)
                )
            except PaymentError as exc:
                response = exc
            outcomes[job] = _job_outcome(response)
    return {"outcomes": outcomes, "driver": "async", "package": mpp_client.__file__}


def _stress_outcome(response: httpx.Response | PaymentError) -> str:
    if isinstance(response, BudgetExceeded):
        return "refused"
    if isinstance(response, PaymentError):
        return f"{type(response).__name__}: {response.message[:80]}"
    record = payment_record(response)
    if response.status_code == 200 and record is not None and record.status == "committed":
        return "paid"
    return f"http {response.status_code}"


async def _client_task(
    client: AsyncClient, url: str, paths: Sequence[str], attempts: int, rng: random.Random
) -> list[str]:
    results: list[str] = []
    for _ in range(attempts):
        try:
            response: httpx.Response | PaymentError = await client.get(url + rng.choice(paths))
        except PaymentError as exc:
            response = exc
        results.append(_stress_outcome(response))
    return results


def _client_thread(
    client: Client, url: str, paths: Sequence[str], attempts: int, rng: random.Random
) -> list[str]:
    results: list[str] = []
    for _ in range(attempts):
        try:
            response: httpx.Response | PaymentError = client.get(url + rng.choice(paths))
        except PaymentError as exc:
            response = exc
        results.append(_stress_outcome(response))
    return results


def _record(price: Amount) -> PaymentRecord:
    return PaymentRecord(
        id=uuid.uuid4().hex,
        created_at=datetime.now(UTC),
        status="reserved",
        http_method="GET",
        url="http://127.0.0.1/direct",
        realm="direct.test",
        method="dev",
        intent="charge",
        amount=price,
        charge=price,
        payee="merchant-1",
        challenge_id=uuid.uuid4().hex,
    )


def _direct_attempt(ledger: Ledger, limits: Sequence[Limit], price: Amount, fate: str) -> str:
    try:
        held = ledger.reserve(_record(price), limits)
    except BudgetExceeded:
        return "refused"
    if fate == "commit":
        ledger.commit(held.id, None)
        return "paid"
    if fate == "release":
        ledger.release(held.id, "nothing was paid")
        return "released"
    if fate == "unknown":
        ledger.mark_unknown(held.id, "outcome unclear")
        return "unknown"
    return "reserved"  # left held, as a crash would


async def _direct_task(
    ledger: Ledger, limits: Sequence[Limit], prices: Sequence[Amount], attempts: int, seed: int
) -> list[str]:
    rng = random.Random(seed)
    results: list[str] = []
    for _ in range(attempts):
        price = rng.choice(prices)
        fate = rng.choices(("commit", "release", "unknown", "hold"), (14, 3, 2, 1))[0]
        try:
            results.append(await asyncio.to_thread(_direct_attempt, ledger, limits, price, fate))
        except PaymentError as exc:
            results.append(type(exc).__name__)
    return results


def _barrier(args: argparse.Namespace) -> None:
    """With ``--barrier``: say READY, then wait for the parent's go (a line on stdin)."""
    if args.barrier:
        print("READY", flush=True)
        sys.stdin.readline()


def run_stress(args: argparse.Namespace) -> dict[str, Any]:
    ledger = open_store(args)
    paths: list[str] = args.paths.split(",")
    rng = random.Random(args.seed)
    batches: Sequence[list[str]]
    if args.mode == "client":
        seeds = [rng.random() for _ in range(args.tasks)]
        options: dict[str, Any] = {
            "methods": [DevWallet()],
            "policy": SimplePolicy(max_per_call="1.00 USD", budget=args.budget),
            "ledger": ledger,
            "allow_insecure_localhost": True,
            "timeout": 60.0,
        }
        if args.driver == "sync":
            with (
                Client(**options) as client,
                ThreadPoolExecutor(args.tasks) as pool,
            ):
                _barrier(args)
                batches = list(
                    pool.map(
                        lambda seed: _client_thread(
                            client, args.url, paths, args.attempts, random.Random(seed)
                        ),
                        seeds,
                    )
                )
        else:

            async def tasks() -> list[list[str]]:
                async with AsyncClient(**options) as client:
                    _barrier(args)
                    return await asyncio.gather(
                        *(
                            _client_task(client, args.url, paths, args.attempts, random.Random(s))
                            for s in seeds
                        )
                    )

            batches = asyncio.run(tasks())
    else:
        prices = [Amount.coerce(p) for p in args.prices.split(",")]
        limits = [Limit("budget", cap=Amount.coerce(args.budget))]

        async def direct() -> list[list[str]]:
            _barrier(args)
            return await asyncio.gather(
                *(
                    _direct_task(ledger, limits, prices, args.attempts, rng.randrange(1 << 30))
                    for _ in range(args.tasks)
                )
            )

        batches = asyncio.run(direct())
    counts = Counter(result for batch in batches for result in batch)
    return {"counts": dict(counts), "driver": args.driver, "package": mpp_client.__file__}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ledger_worker")
    parser.add_argument("command", choices=("jobs", "stress"))
    store = parser.add_mutually_exclusive_group(required=True)
    store.add_argument("--sqlite", help="path of the SQLite ledger")
    store.add_argument("--postgres", help="PostgreSQL URL of the ledger")
    parser.add_argument("--prefix", default="mpp_", help="PostgreSQL table prefix")
    parser.add_argument("--url", default="", help="the paid URL (jobs) or the server base (stress)")
    parser.add_argument("--budget", required=True, help='the total budget, e.g. "1.00 USD"')
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--driver", choices=DRIVERS, help="Client or AsyncClient (jobs, client)")
    parser.add_argument("--barrier", action="store_true", help="stress: wait for a go on stdin")
    parser.add_argument("--crash", choices=STEPS)
    parser.add_argument("--at", type=int, default=1, help="crash the N-th time the step is hit")
    parser.add_argument("--mode", choices=("client", "direct"), default="client")
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--attempts", type=int, default=2)
    parser.add_argument("--paths", default="/p1", help="comma-separated paths (stress, client)")
    parser.add_argument("--prices", default="0.01 USD", help="comma-separated (stress, direct)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.driver is None and (args.command == "jobs" or args.mode == "client"):
        parser.error("--driver is needed to pay through a client")
    if args.command == "stress":
        summary = run_stress(args)
    elif args.driver == "sync":
        summary = run_jobs(args)
    else:
        summary = asyncio.run(run_jobs_async(args))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
