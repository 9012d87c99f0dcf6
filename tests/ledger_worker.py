"""A payment agent run in a subprocess by ``tests/test_ledger_faults.py``.

Run it from the repository root (``python -m tests.ledger_worker ...``) so it
imports ``mpp_client`` from the checkout. Two commands:

``jobs``
    Do numbered logical calls (``POST <url>`` with ``Idempotency-Key: job-N``
    and tag ``job=job-N``) one after another through :class:`mpp_client.Client`,
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
    ``--tasks`` concurrent asyncio tasks making ``--attempts`` payments each
    against one budget: through :class:`mpp_client.AsyncClient` against the
    parent's server (``--mode client``), or straight on the ledger with
    ``reserve`` then ``commit``/``release``/``mark_unknown`` in worker threads
    (``--mode direct``).

Both print one JSON summary as the last stdout line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

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

    def pay(self, challenge: Challenge) -> Mapping[str, Any]:
        payload = super().pay(challenge)
        self.faults.hit("during-pay")
        return payload

    async def apay(self, challenge: Challenge) -> Mapping[str, Any]:
        return self.pay(challenge)


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
    store.faults = faults
    return store  # type: ignore[no-any-return]


def run_jobs(args: argparse.Namespace) -> dict[str, Any]:
    faults = Faults(args.crash, args.at)
    ledger = open_store(args, faults)
    done = {r.tags.get("job") for r in ledger.records() if r.status in COUNTED}
    outcomes: dict[str, str] = {}
    policy = SimplePolicy(max_per_call="1.00 USD", budget=args.budget)
    with Client(
        methods=[FaultyWallet(faults)],
        policy=policy,
        ledger=ledger,
        allow_insecure_localhost=True,
        timeout=30.0,
    ) as client:
        for n in range(1, args.jobs + 1):
            job = f"job-{n}"
            if job in done:
                outcomes[job] = "skipped"
                continue
            try:
                response = client.post(
                    args.url,
                    headers={"Idempotency-Key": job},
                    extensions={"mpp": {"tags": {"job": job}}},
                )
            except BudgetExceeded:
                outcomes[job] = "refused"
                continue
            except PaymentError as exc:
                outcomes[job] = type(exc).__name__
                continue
            paid = response.status_code == 200 and payment_record(response) is not None
            outcomes[job] = "paid" if paid else f"http {response.status_code}"
    return {"outcomes": outcomes, "package": mpp_client.__file__}


async def _client_task(
    client: AsyncClient, url: str, paths: Sequence[str], attempts: int, rng: random.Random
) -> list[str]:
    results: list[str] = []
    for _ in range(attempts):
        try:
            response = await client.get(url + rng.choice(paths))
        except BudgetExceeded:
            results.append("refused")
            continue
        except PaymentError as exc:
            results.append(f"{type(exc).__name__}: {exc.message[:80]}")
            continue
        record = payment_record(response)
        if response.status_code == 200 and record is not None and record.status == "committed":
            results.append("paid")
        else:
            results.append(f"http {response.status_code}")
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


async def run_stress(args: argparse.Namespace) -> dict[str, Any]:
    ledger = open_store(args)
    paths: list[str] = args.paths.split(",")
    rng = random.Random(args.seed)
    if args.mode == "client":
        async with AsyncClient(
            methods=[DevWallet()],
            policy=SimplePolicy(max_per_call="1.00 USD", budget=args.budget),
            ledger=ledger,
            allow_insecure_localhost=True,
            timeout=60.0,
        ) as client:
            batches = await asyncio.gather(
                *(
                    _client_task(client, args.url, paths, args.attempts, random.Random(seed))
                    for seed in [rng.random() for _ in range(args.tasks)]
                )
            )
    else:
        prices = [Amount.coerce(p) for p in args.prices.split(",")]
        limits = [Limit("budget", cap=Amount.coerce(args.budget))]
        batches = await asyncio.gather(
            *(
                _direct_task(ledger, limits, prices, args.attempts, rng.randrange(1 << 30))
                for _ in range(args.tasks)
            )
        )
    counts = Counter(result for batch in batches for result in batch)
    return {"counts": dict(counts), "package": mpp_client.__file__}


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
    parser.add_argument("--crash", choices=STEPS)
    parser.add_argument("--at", type=int, default=1, help="crash the N-th time the step is hit")
    parser.add_argument("--mode", choices=("client", "direct"), default="client")
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--attempts", type=int, default=2)
    parser.add_argument("--paths", default="/p1", help="comma-separated paths (stress, client)")
    parser.add_argument("--prices", default="0.01 USD", help="comma-separated (stress, direct)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    summary = run_jobs(args) if args.command == "jobs" else asyncio.run(run_stress(args))
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
