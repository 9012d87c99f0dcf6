"""How fast does the policy engine decide? Decisions per second with a realistic policy.

Run it with ``.venv/bin/python benchmarks/policy_decisions.py`` (or ``./run bench``);
``--quick`` is a short smoke run (a few seconds) with the same code paths.

Method
------
The policy is what an owner might really write, about twenty rules: a
validity window, allow and deny lists with several entries each (hosts with
wildcards, realms, ~50 payees, methods, intents, assets, chain ids), a
per-call cap, per-payee caps, an override for tagged calls, a challenge
validity limit, three budgets (lifetime, rolling 24 h, calendar day in
Europe/Paris), two rate limits (global and per payee), approval above a
threshold and for new payees, an anomaly check and a circuit breaker.

The history is a ``MemoryLedger`` holding 10,000 past payments to ~50
payees over the last 30 days (mostly committed, some released, a few
unknown). Each sample decides one payment drawn from a pre-built pool
(random payee, amount, host, dev USD or USDC on Base), so building contexts
is not timed. Rows:

* ``decide, no history``: ``Policy.decide`` with ``history=None``: the
  rules alone (lists, asset registry, caps, limits with the calendar
  period start); the history-reading rules are skipped.
* ``decide, history``: the full decision. The rules that read history
  (three budgets and two rates from the ledger's running totals, new payee,
  anomaly median, breaker streak from its indexes) cost the same whatever
  the ledger holds (see ``benchmarks/ledger.py`` for that, by history size).
* ``decide + reserve``: the full decision, then building the record and
  ``ledger.reserve(record, decision.limits)`` and a commit, as the flow
  does. Each reservation adds a record, so the ledger grows during the run
  (sizes are printed).

The policy and the history share one budget scope (``bench``): a ledger's
history counts only for policies of its own scope.

Each sample is timed with ``time.perf_counter_ns``; rows run in alternating
blocks (A B C, then C B A, ...) so drift and other load on the machine hit
them alike; one warm-up block per row is discarded. The garbage collector
stays on. ``median`` and ``p90`` are over all samples of a row;
``decisions/s`` is 1 / median. There are no targets: the script only reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from mpp_client import Amount, BudgetExceeded, MemoryLedger
from mpp_client.ledger import PaymentRecord
from mpp_client.methods import Quote
from mpp_client.policy import PaymentContext, Policy
from mpp_client.protocol import Challenge

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
USDC_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
PAYEES = [f"merchant-{n:02d}" for n in range(50)]
HOSTS = ["api.example.com", "data.example.com", "img.cdn.example.net", "localhost"]
HISTORY = 10_000


def realistic_policy() -> Policy:
    """About twenty rules, as an owner might delegate them."""
    return Policy.from_mapping(
        {
            "currency": "USD",
            "scope": "bench",
            "timezone": "Europe/Paris",
            "not_before": "2026-01-01T00:00:00Z",
            "expires": "2027-01-01T00:00:00Z",
            "per_call": "2.00 USD",
            "max_challenge_validity": "15m",
            "per_payee": {PAYEES[n]: "1.50 USD" for n in range(0, 50, 10)},
            "budgets": [
                {"name": "lifetime", "limit": "1000000 USD"},
                {"name": "rolling", "limit": "50000 USD", "window": "24h"},
                {"name": "daily", "limit": "50000 USD", "calendar": "day"},
            ],
            "velocity": [
                {"name": "burst", "max": 100_000, "window": "1m"},
                {"name": "per-payee", "max": 10_000, "window": "10m", "per_payee": True},
            ],
            "allow": {
                "hosts": ["*.example.com", "*.cdn.example.net", "localhost", "127.0.0.1"],
                "realms": ["api", "data", "images"],
                "payees": PAYEES,
                "methods": ["dev", "evm", "tempo"],
                "intents": ["charge"],
                "assets": ["dev-usd", "USDC", "pathUSD"],
                "chain_ids": [8453, 4217, 1],
            },
            "deny": {
                "hosts": ["ads.example.com", "tracker.example.com"],
                "payees": ["blocked-1", "blocked-2", "blocked-3"],
                "realms": ["admin"],
            },
            "approval": {"above": "1.90 USD", "new_payee": True, "timeout": "30s"},
            "anomaly": {"factor": "10", "history": 10, "min_history": 3, "action": "approve"},
            "circuit_breaker": {"failures": 5, "cooldown": "10m"},
            "overrides": [{"when": {"env": "peak"}, "per_call": "3.00 USD"}],
        }
    )


_ids = itertools.count()


def context(rng: random.Random, history: MemoryLedger | None, *, now: datetime) -> PaymentContext:
    payee = rng.choice(PAYEES)
    host = rng.choice(HOSTS)
    realm = rng.choice(["api", "data", "images"])
    if rng.random() < 0.5:
        units = rng.randint(1, 100)  # dev USD cents
        method, currency, chain, amount = "dev", "usd", None, Amount(units, "USD", 2)
    else:
        units = rng.randint(1, 1_000_000)  # USDC, 6 decimals
        method, currency, chain, amount = "evm", USDC_BASE, 8453, Amount(units, "USDC", 6)
    challenge = Challenge.create(
        id=f"ch-{next(_ids)}", realm=realm, method=method, intent="charge", request={}
    )
    quote = Quote(
        amount,
        payee,
        method,
        "charge",
        expires=now + timedelta(minutes=5),
        currency=currency,
        chain_id=chain,
    )
    return PaymentContext(
        url=f"https://{host}/paid",
        http_method="GET",
        host=host,
        challenge=challenge,
        quote=quote,
        now=now,
        tags={"env": "peak"} if rng.random() < 0.1 else {},
        history=history,
    )


def record_for(ctx: PaymentContext, charge: Amount, created: datetime) -> PaymentRecord:
    record_id = f"r-{next(_ids)}"
    return PaymentRecord(
        id=record_id,
        created_at=created,
        status="reserved",
        http_method=ctx.http_method,
        url=ctx.url,
        realm=ctx.challenge.realm,
        method=ctx.quote.method,
        intent=ctx.quote.intent,
        amount=ctx.quote.amount,
        charge=charge,
        payee=ctx.quote.payee,
        challenge_id=f"{ctx.challenge.id}/{record_id}",  # each payment its own challenge
        scope="bench",
    )


def filled_ledger(rng: random.Random, size: int) -> MemoryLedger:
    """``size`` past payments across the payees over the last 30 days, oldest first."""
    ledger = MemoryLedger(clock=lambda: NOW)
    ages = sorted((rng.uniform(60, 30 * 86400) for _ in range(size)), reverse=True)
    for age in ages:
        ctx = context(rng, None, now=NOW)
        charge = Amount(rng.randint(1, 100), "USD", 2)
        held = ledger.reserve(record_for(ctx, charge, NOW - timedelta(seconds=age)), [])
        roll = rng.random()
        if roll < 0.90:
            ledger.commit(held.id, None)
        elif roll < 0.98:
            ledger.release(held.id, "nothing paid")
        else:
            ledger.mark_unknown(held.id, "timed out")
    return ledger


@dataclass
class Row:
    label: str
    step: Callable[[], None]
    samples: list[int] = field(default_factory=list)

    def block(self, n: int, *, keep: bool = True) -> None:
        for _ in range(n):
            start = time.perf_counter_ns()
            self.step()
            elapsed = time.perf_counter_ns() - start
            if keep:
                self.samples.append(elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    rounds, block = (3, 20) if args.quick else (10, 50)

    rng = random.Random(402)
    built = time.perf_counter()
    policy = realistic_policy()
    ledger = filled_ledger(rng, HISTORY)
    built = time.perf_counter() - built
    pool_size = 512
    bare = [context(rng, None, now=NOW) for _ in range(pool_size)]
    full = [context(rng, ledger, now=NOW) for _ in range(pool_size)]
    sample = policy.decide(full[0])
    counts: dict[str, int] = {}
    pick = itertools.cycle(range(pool_size))

    def decide_bare() -> None:
        policy.decide(bare[next(pick)])

    def decide_full() -> None:
        decision = policy.decide(full[next(pick)])
        counts[decision.outcome] = counts.get(decision.outcome, 0) + 1

    def decide_reserve() -> None:
        ctx = full[next(pick)]
        decision = policy.decide(ctx)
        if decision.allowed and decision.charge is not None:
            try:
                held = ledger.reserve(record_for(ctx, decision.charge, ctx.now), decision.limits)
            except BudgetExceeded:
                return
            ledger.commit(held.id, None)

    rows = [
        Row("decide, no history", decide_bare),
        Row("decide, history = MemoryLedger (~10k records)", decide_full),
        Row("decide + reserve + commit (MemoryLedger)", decide_reserve),
    ]
    # Each payee's rate filter is registered (backfilled from the history, once)
    # the first time it is seen: do that for every payee before timing.
    for payee in PAYEES:
        ctx = context(rng, ledger, now=NOW)
        policy.decide(dataclasses.replace(ctx, quote=dataclasses.replace(ctx.quote, payee=payee)))
    for row in rows:
        row.block(block, keep=False)  # warm-up
    size_before = len(ledger.records())
    started = time.perf_counter()
    for n in range(rounds):
        for row in rows if n % 2 == 0 else reversed(rows):
            row.block(block)
    wall = time.perf_counter() - started
    size_after = len(ledger.records())

    print(
        f"policy: {len(sample.rules)} rule results and {len(sample.limits)} limits in a decision "
        f"(sample outcome: {sample.outcome}); history built in {built:.2f} s"
    )
    print(
        f"ledger: {size_before:,} records when timing starts, {size_after:,} at the end; "
        f"{rounds} rounds x {block} samples per row; {wall:.1f} s timed"
    )
    width = max(len(row.label) for row in rows)
    print(f"{'':{width}}  {'median µs':>10}  {'p90 µs':>9}  {'decisions/s':>11}")
    for row in rows:
        median = statistics.median(row.samples) / 1000
        p90 = statistics.quantiles(row.samples, n=10)[-1] / 1000
        print(f"{row.label:{width}}  {median:10.1f}  {p90:9.1f}  {1e6 / median:11,.0f}")
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"outcomes of the full decisions: {outcomes}")


if __name__ == "__main__":
    main()
