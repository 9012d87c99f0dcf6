"""Properties of policy + ledger together: budgets hold whatever the sequence or the race.

A generated sequence of steps (clock moves of seconds to days, payments of
random sizes and assets to a few payees, later settlements) runs against a
policy with a lifetime, a rolling and a calendar-day budget, a rate limit and
a per-call cap. A small independent model of the ledger predicts every
decision and every reservation; after each step the invariants are checked.
Then threads and asyncio tasks race for one budget and one rate limit.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mpp_client import Amount, BudgetExceeded, MemoryLedger
from mpp_client.ledger import COUNTED, PaymentRecord, Status
from mpp_client.methods import Quote
from mpp_client.policy import PaymentContext, Policy
from mpp_client.protocol import Challenge

from .helpers import Clock

ZONE = ZoneInfo("America/New_York")
USDC_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
OPEN = {
    key: ["*"] for key in ("hosts", "realms", "payees", "methods", "intents", "assets", "chain_ids")
}
PAYEES = ("alpha", "beta", "gamma", "delta")
PER_CALL = Amount.parse("2.00 USD")
LIFETIME = Amount.parse("8.00 USD")
HOURLY = Amount.parse("3.00 USD")
DAILY = Amount.parse("5.00 USD")
RATE_MAX, RATE_WINDOW = 4, timedelta(minutes=10)

POLICY = Policy.from_mapping(
    {
        "currency": "USD",
        "timezone": "America/New_York",
        "per_call": str(PER_CALL),
        "budgets": [
            {"name": "lifetime", "limit": str(LIFETIME)},
            {"name": "hourly", "limit": str(HOURLY), "window": "1h"},
            {"name": "daily", "limit": str(DAILY), "calendar": "day"},
        ],
        "velocity": [{"name": "burst", "max": RATE_MAX, "window": "10m"}],
        "allow": OPEN,
    }
)

_ids = itertools.count()


def context(
    units: int, *, asset: str = "dev", payee: str = "alpha", now: datetime, history: Any = None
) -> PaymentContext:
    """A payment of ``units`` base units: dev USD cents, or USDC on Base (6 decimals)."""
    if asset == "dev":
        method, currency, chain, amount = "dev", "usd", None, Amount(units, "USD", 2)
    else:
        method, currency, chain, amount = "evm", USDC_BASE, 8453, Amount(units, "USDC", 6)
    challenge = Challenge.create(
        id="ch", realm="api", method=method, intent="charge", request={"amount": str(units)}
    )
    quote = Quote(amount, payee, method, "charge", currency=currency, chain_id=chain)
    return PaymentContext(
        url="https://api.example.com/paid",
        http_method="GET",
        host="api.example.com",
        challenge=challenge,
        quote=quote,
        now=now,
        history=history,
    )


def record_for(ctx: PaymentContext, charge: Amount) -> PaymentRecord:
    record_id = f"p-{next(_ids)}"
    return PaymentRecord(
        id=record_id,
        created_at=ctx.now,
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
    )


# -- the generated sequence ------------------------------------------------------------------


@dataclass(frozen=True)
class Advance:
    seconds: int


@dataclass(frozen=True)
class Pay:
    asset: str
    units: int
    payee: int
    then: str  # commit, release, unknown or keep (stay reserved)


@dataclass(frozen=True)
class Settle:
    pick: int  # which open (reserved or unknown) record, modulo their number
    to: str  # commit, release or unknown


@dataclass
class Held:
    """The model's view of one record the ledger accepted."""

    id: str
    created_at: datetime
    charge: Amount
    status: str


ADVANCE = st.builds(
    Advance,
    st.one_of(
        st.integers(1, 600),  # seconds to minutes: the rate limit and the rolling hour
        st.integers(600, 3 * 3600),  # within a day: the calendar budget
        st.integers(3600, 3 * 86400),  # across days and DST changes
    ),
)
PAY = st.one_of(
    st.builds(
        Pay,
        st.just("dev"),
        st.integers(1, 260),  # up to 2.60 USD: some over the 2.00 per-call cap
        st.integers(0, len(PAYEES) - 1),
        st.sampled_from(["commit", "release", "unknown", "keep"]),
    ),
    st.builds(
        Pay,
        st.just("usdc"),
        st.integers(1, 2_600_000),
        st.integers(0, len(PAYEES) - 1),
        st.sampled_from(["commit", "release", "unknown", "keep"]),
    ),
)
SETTLE = st.builds(Settle, st.integers(0, 50), st.sampled_from(["commit", "release", "unknown"]))
STEPS = st.lists(st.one_of(ADVANCE, ADVANCE, PAY, PAY, PAY, SETTLE), min_size=20, max_size=100)
STARTS = st.sampled_from(
    [
        datetime(2026, 3, 7, 22, 0, tzinfo=UTC),  # New York springs forward on 3-8
        datetime(2026, 10, 31, 20, 0, tzinfo=UTC),  # ... and falls back on 11-1
        datetime(2026, 6, 15, 3, 59, tzinfo=UTC),  # a minute before local midnight
    ]
)


def local_midnight(now: datetime) -> datetime:
    """Independent of the engine: New York's midnights always exist and are unambiguous."""
    local = now.astimezone(ZONE)
    return datetime(local.year, local.month, local.day, tzinfo=ZONE).astimezone(UTC)


def windows(now: datetime) -> list[tuple[str, Amount, datetime | None]]:
    return [
        ("lifetime", LIFETIME, None),
        ("hourly", HOURLY, now - timedelta(hours=1)),
        ("daily", DAILY, local_midnight(now)),
    ]


def counted(model: list[Held], since: datetime | None) -> Amount:
    total = Amount(0, "USD", 6)
    for held in model:
        if held.status in COUNTED and (since is None or held.created_at >= since):
            total += held.charge
    return total


def rate_count(model: list[Held], now: datetime) -> int:
    since = now - RATE_WINDOW
    return sum(1 for h in model if h.status in COUNTED and h.created_at >= since)


def settle(ledger: MemoryLedger, held: Held, to: str) -> None:
    """Move ``held`` to ``to`` the way the flow would (``resolve`` for an unknown)."""
    statuses: dict[str, Status] = {
        "commit": "committed",
        "release": "released",
        "unknown": "unknown",
    }
    status = statuses[to]
    if held.status == "reserved":
        if to == "commit":
            ledger.commit(held.id, None)
        elif to == "release":
            ledger.release(held.id, "nothing paid")
        else:
            ledger.mark_unknown(held.id, "timed out")
    elif held.status == "unknown" and to != "unknown":
        ledger.resolve(held.id, status, "reconciled")
    else:
        return
    held.status = status


def check_invariants(
    ledger: MemoryLedger, model: list[Held], refused: set[str], now: datetime
) -> None:
    records = {r.id: r for r in ledger.records()}
    # Exactly what the ledger accepted is recorded, with the statuses the model expects;
    # nothing the policy denied or the ledger refused is.
    assert {h.id: h.status for h in model} == {i: r.status for i, r in records.items()}
    assert not refused & records.keys()
    for record in records.values():
        assert record.charge <= PER_CALL
    # Every budget holds in its window as of now, counted two ways.
    for name, limit, since in windows(now):
        used = counted(model, since)
        assert used <= limit, f"budget {name}: {used} > {limit}"
    window = timedelta(hours=1)
    assert ledger.spent("USD", window=window) == counted(model, now - window)
    assert ledger.spent("USD") == counted(model, None)
    assert rate_count(model, now) <= RATE_MAX


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(start=STARTS, offset=st.integers(0, 2 * 86400), steps=STEPS)
def test_budgets_hold_over_any_sequence(start: datetime, offset: int, steps: list[Any]) -> None:
    clock = Clock(start + timedelta(seconds=offset))
    ledger = MemoryLedger(clock=clock)
    model: list[Held] = []
    refused: set[str] = set()
    for step in steps:
        now = clock.now
        if isinstance(step, Advance):
            clock.now = now + timedelta(seconds=step.seconds)
        elif isinstance(step, Settle):
            open_ = [h for h in model if h.status in ("reserved", "unknown")]
            if open_:
                settle(ledger, open_[step.pick % len(open_)], step.to)
        else:
            ctx = context(
                step.units, asset=step.asset, payee=PAYEES[step.payee], now=now, history=ledger
            )
            decision = POLICY.decide(ctx)
            charge = decision.charge
            assert charge is not None
            assert charge == (
                Amount(step.units, "USD", 2)
                if step.asset == "dev"
                else Amount(step.units, "USD", 6)
            )
            over_cap = charge > PER_CALL
            too_fast = rate_count(model, now) >= RATE_MAX
            fits = all(counted(model, since) + charge <= limit for _, limit, since in windows(now))
            # The decision explains budgets too; the ledger re-checks them atomically.
            assert decision.allowed is not (over_cap or too_fast or not fits), decision.reasons
            record = record_for(ctx, charge)
            if not decision.allowed:
                event(
                    "denied: " + ("per-call cap" if over_cap else "rate" if too_fast else "budget")
                )
                refused.add(record.id)
            else:
                try:
                    ledger.reserve(record, decision.limits)
                except BudgetExceeded as exc:
                    error: str | None = str(exc)
                else:
                    error = None
                if error is not None:
                    assert not fits, f"refused although every budget had room: {error}"
                    event(f"refused by the ledger: {error.split(' of ')[0].split()[-1]}")
                    refused.add(record.id)
                else:
                    assert fits, "reserved although a budget had no room"
                    event("reserved")
                    held = Held(record.id, record.created_at, charge, "reserved")
                    model.append(held)
                    if step.then != "keep":
                        settle(ledger, held, step.then)
        check_invariants(ledger, model, refused, clock.now)


# -- races ------------------------------------------------------------------------------------

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
BUDGET = Amount.parse("1.00 USD")
RACE_POLICY = Policy.from_mapping(
    {
        "currency": "USD",
        "per_call": "0.10 USD",
        "budgets": [{"name": "total", "limit": str(BUDGET)}],
        "allow": OPEN,
    }
)


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads as often as possible, so decide and reserve interleave."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def counted_total(ledger: MemoryLedger) -> Amount:
    total = Amount(0, "USD", 2)
    for record in ledger.records():
        if record.status in COUNTED:
            total += record.charge
    return total


@pytest.mark.usefixtures("busy_switching")
def test_threads_never_overspend_one_budget() -> None:
    threads, attempts = 16, 50
    ledger = MemoryLedger(clock=lambda: NOW)
    barrier = threading.Barrier(threads)
    reserved: list[PaymentRecord] = []
    refused: list[PaymentRecord] = []
    errors: list[str] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        for _ in range(attempts):
            ctx = context(rng.randint(1, 7), payee=rng.choice(PAYEES), now=NOW, history=ledger)
            decision = RACE_POLICY.decide(ctx)
            assert decision.charge is not None
            record = record_for(ctx, decision.charge)
            if not decision.allowed:
                # Seen as spent already: only budget rules may refuse here.
                assert all(r.rule.startswith("budget.") for r in decision.rules if not r.passed)
                errors.append("; ".join(decision.reasons))
                refused.append(record)
                continue
            try:
                held = ledger.reserve(record, decision.limits)
            except BudgetExceeded as exc:
                errors.append(str(exc))
                refused.append(record)
                continue
            reserved.append(held)
            # Settle some; never release, so the budget only fills up.
            roll = rng.random()
            if roll < 0.4:
                ledger.commit(held.id, None)
            elif roll < 0.5:
                ledger.mark_unknown(held.id, "timed out")

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker, n) for n in range(threads)]:
            future.result()  # re-raises a worker's failure

    assert len(reserved) + len(refused) == threads * attempts
    assert all("would exceed budget 'total' of 1.00 USD" in e for e in errors)
    assert {r.id for r in ledger.records()} == {r.id for r in reserved}
    total = counted_total(ledger)
    assert total == sum((r.charge for r in reserved), Amount(0, "USD", 2))
    assert total <= BUDGET
    # Nothing is released, so once a 0.07 payment could not fit, none ever will again,
    # and ~32 USD of attempts cannot all have fitted: the budget ends nearly full.
    assert total > BUDGET - Amount.parse("0.07 USD")
    assert refused


async def test_asyncio_tasks_never_overspend_one_budget() -> None:
    tasks, attempts = 200, 2
    ledger = MemoryLedger(clock=lambda: NOW)
    reserved: list[PaymentRecord] = []
    refused: list[PaymentRecord] = []
    events: list[str] = []

    async def attempt(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(attempts):
            ctx = context(rng.randint(1, 7), payee=rng.choice(PAYEES), now=NOW, history=ledger)
            decision = RACE_POLICY.decide(ctx)
            events.append("decide")
            assert decision.charge is not None
            await asyncio.sleep(0)  # let every other task decide before this one reserves
            record = record_for(ctx, decision.charge)
            if not decision.allowed:
                assert all(r.rule.startswith("budget.") for r in decision.rules if not r.passed)
                refused.append(record)
                continue
            events.append("reserve")
            try:
                held = ledger.reserve(record, decision.limits)
            except BudgetExceeded:
                refused.append(record)
                continue
            reserved.append(held)
            await asyncio.sleep(0)
            if rng.random() < 0.5:
                ledger.commit(held.id, None)

    await asyncio.gather(*(attempt(n) for n in range(tasks)))

    # The decisions really were interleaved: many decided before the first reservation.
    assert events.index("reserve") >= tasks // 2
    assert len(reserved) + len(refused) == tasks * attempts
    assert {r.id for r in ledger.records()} == {r.id for r in reserved}
    total = counted_total(ledger)
    assert total == sum((r.charge for r in reserved), Amount(0, "USD", 2))
    assert BUDGET - Amount.parse("0.07 USD") < total <= BUDGET
    assert refused


RATE_POLICY = Policy.from_mapping(
    {
        "currency": "USD",
        "per_call": "1.00 USD",
        "velocity": [{"name": "per-minute", "max": 10, "window": "1m"}],
        "allow": OPEN,
    }
)


async def test_rate_limit_under_concurrent_tasks() -> None:
    ledger = MemoryLedger(clock=lambda: NOW)
    outcomes: list[str] = []

    async def attempt(n: int) -> None:
        ctx = context(1, payee=PAYEES[n % len(PAYEES)], now=NOW, history=ledger)
        decision = RATE_POLICY.decide(ctx)
        # Every task decides before any reserves: each sees no payment yet.
        assert decision.allowed, decision.reasons
        assert decision.charge is not None
        await asyncio.sleep(0)
        try:
            ledger.reserve(record_for(ctx, decision.charge), decision.limits)
        except BudgetExceeded as exc:
            outcomes.append(str(exc))
        else:
            outcomes.append("reserved")

    await asyncio.gather(*(attempt(n) for n in range(100)))
    assert outcomes.count("reserved") == 10
    refusals = [o for o in outcomes if o != "reserved"]
    assert len(refusals) == 90
    assert all(
        "rate limit 'per-minute': at most 10 payments, 10 already made or held" in o
        for o in refusals
    )
    assert ledger.count(since=NOW - timedelta(minutes=1)) == 10
    # A minute later (plus a microsecond), the window has room again.
    later = NOW + timedelta(minutes=1, microseconds=1)
    assert RATE_POLICY.decide(context(1, now=later, history=ledger)).allowed


@pytest.mark.usefixtures("busy_switching")
def test_rate_limit_under_concurrent_threads() -> None:
    ledger = MemoryLedger(clock=lambda: NOW)
    barrier = threading.Barrier(100)

    def attempt(n: int) -> str:
        barrier.wait()
        ctx = context(1, payee=PAYEES[n % len(PAYEES)], now=NOW, history=ledger)
        decision = RATE_POLICY.decide(ctx)
        if not decision.allowed:  # the history already showed ten
            assert decision.reasons == ("already 10 payments in the last 0:01:00 (at most 10)",)
            return "denied"
        assert decision.charge is not None
        try:
            ledger.reserve(record_for(ctx, decision.charge), decision.limits)
        except BudgetExceeded:
            return "refused"
        return "reserved"

    with ThreadPoolExecutor(100) as pool:
        outcomes = list(pool.map(attempt, range(100)))
    assert outcomes.count("reserved") == 10
    assert outcomes.count("denied") + outcomes.count("refused") == 90
    assert len(ledger.records()) == 10
