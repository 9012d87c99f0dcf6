"""The delegated spending policy (``Policy``): every rule, with its boundaries.

Tables of cases (``pytest.mark.parametrize``) check each rule at the edge
where it flips: exactly at a cap and one base unit over, a record just inside
and just outside a window, a calendar period starting across a DST change.
Budgets and rates are exercised where they are enforced: the ledger's
``reserve`` with ``decision.limits``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from mpp_client import Amount, BudgetExceeded, MemoryLedger
from mpp_client.ledger import PaymentRecord
from mpp_client.methods import Quote
from mpp_client.policy import Decision, Limit, PaymentContext, Policy, PolicyError, RuleResult
from mpp_client.policy._engine import host_matches, period_start
from mpp_client.protocol import Challenge

from . import helpers

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
USDC_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
USDC_ETHEREUM = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
PATH_USD = "0x20c0000000000000000000000000000000000000"
US = timedelta(microseconds=1)

#: Every list open ("*"), so a test only names the dimension it is about.
OPEN: dict[str, list[Any]] = {
    key: ["*"] for key in ("hosts", "realms", "payees", "methods", "intents", "assets", "chain_ids")
}

# Keywords for ``ctx``: method, currency as written, chain id, quote code and decimals.
DEV: dict[str, Any] = {
    "method": "dev",
    "currency": "usd",
    "chain_id": None,
    "code": "USD",
    "decimals": 2,
}
USDC: dict[str, Any] = {
    "method": "evm",
    "currency": USDC_BASE,
    "chain_id": 8453,
    "code": "USDC",
    "decimals": 6,
}
PATH: dict[str, Any] = {
    "method": "tempo",
    "currency": PATH_USD,
    "chain_id": 4217,
    "code": "PATHUSD",
    "decimals": 6,
}


def make_policy(**fields: Any) -> Policy:
    """A USD policy with a 1.00 USD per-call cap and every list open, plus ``fields``.

    Its budgets are in the scope ``""``: the tests here put past payments
    straight into the ledger (``past``), without a scope, and the policy must
    see them.
    """
    allow = {**OPEN, **fields.pop("allow", {})}
    fields.setdefault("scope", "")
    data: dict[str, Any] = {"currency": "USD", "per_call": "1.00 USD", "allow": allow, **fields}
    return Policy.from_mapping(data)


def ctx(
    units: int = 50,
    *,
    method: str = "dev",
    currency: str = "usd",
    chain_id: int | None = None,
    code: str = "USD",
    decimals: int = 2,
    payee: str = "merchant",
    host: str = "api.example.com",
    realm: str = "api",
    intent: str = "charge",
    now: datetime = NOW,
    expires: datetime | None = None,
    challenge_expires: datetime | None = None,
    history: MemoryLedger | None = None,
    tags: Mapping[str, str] | None = None,
    max_amount: str | None = None,
    expected_payee: str | None = None,
) -> PaymentContext:
    """A prospective payment of ``units`` base units (dev USD cents by default)."""
    challenge = Challenge.create(
        id="ch-1",
        realm=realm,
        method=method,
        intent=intent,
        request={"amount": str(units), "currency": currency, "recipient": payee},
        expires=challenge_expires,
    )
    quote = Quote(
        amount=Amount(units, code, decimals),
        payee=payee,
        method=method,
        intent=intent,
        expires=expires,
        currency=currency,
        chain_id=chain_id,
    )
    return PaymentContext(
        url=f"https://{host}/paid",
        http_method="GET",
        host=host,
        challenge=challenge,
        quote=quote,
        now=now,
        tags=dict(tags or {}),
        max_amount=Amount.parse(max_amount) if max_amount is not None else None,
        expected_payee=expected_payee,
        history=history,
    )


_ids = itertools.count()


def record_for(context: PaymentContext, charge: Amount) -> PaymentRecord:
    """The record the flow would reserve for ``context``, created at ``context.now``."""
    quote = context.quote
    record_id = f"rec-{next(_ids)}"
    return PaymentRecord(
        id=record_id,
        created_at=context.now,
        status="reserved",
        http_method=context.http_method,
        url=context.url,
        realm=context.challenge.realm,
        method=quote.method,
        intent=quote.intent,
        amount=quote.amount,
        charge=charge,
        payee=quote.payee,
        challenge_id=f"{context.challenge.id}/{record_id}",  # each payment its own challenge
        tags=dict(context.tags),
    )


def pay(policy: Policy, ledger: MemoryLedger, units: int, **kwargs: Any) -> PaymentRecord:
    """Decide (with the ledger as history) and reserve; the decision must allow."""
    context = ctx(units, history=ledger, **kwargs)
    decision = policy.decide(context)
    failed = [r for r in decision.rules if not r.passed]
    if failed and all(r.rule.startswith("budget.") for r in failed):
        # The decision already sees the budget is spent; the flow raises this.
        raise BudgetExceeded("; ".join(decision.reasons))
    assert decision.allowed, decision.reasons
    assert decision.charge is not None
    return ledger.reserve(record_for(context, decision.charge), decision.limits)


def past(
    ledger: MemoryLedger,
    charge: str,
    *,
    payee: str = "merchant",
    at: datetime = NOW,
    status: str = "committed",
    method: str = "dev",
) -> PaymentRecord:
    """Put a past payment straight into the ledger (no limits), settled to ``status``."""
    amount = Amount.parse(charge)
    context = ctx(amount.units, payee=payee, now=at, method=method)
    held = ledger.reserve(record_for(context, amount), [])
    if status == "committed":
        return ledger.commit(held.id, None)
    if status == "released":
        return ledger.release(held.id, "nothing paid")
    if status == "unknown":
        return ledger.mark_unknown(held.id, "timed out")
    return held


def rule(decision: Decision, name: str) -> RuleResult:
    matches = [r for r in decision.rules if r.rule == name]
    assert len(matches) == 1, f"expected one {name!r} rule in {decision.rules}"
    return matches[0]


def rule_names(decision: Decision) -> list[str]:
    return [r.rule for r in decision.rules]


class Clock(helpers.Clock):
    """The shared hand-moved clock, starting at ``NOW``."""

    def __init__(self, now: datetime = NOW) -> None:
        super().__init__(now)


# -- per-call caps ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "asset", "allowed", "charge"),
    [
        (50, DEV, True, Amount(50, "USD", 2)),
        (49, DEV, True, Amount(49, "USD", 2)),
        (0, DEV, True, Amount(0, "USD", 2)),
        (51, DEV, False, Amount(51, "USD", 2)),
        (500_000, USDC, True, Amount(500_000, "USD", 6)),
        (500_001, USDC, False, Amount(500_001, "USD", 6)),
        (500_000, {**USDC, "currency": USDC_BASE.lower()}, True, Amount(500_000, "USD", 6)),
        (500_001, {**USDC, "currency": USDC_BASE.upper()}, False, Amount(500_001, "USD", 6)),
        (500_000, {**USDC, "method": "usdc"}, True, Amount(500_000, "USD", 6)),
        (500_000, PATH, True, Amount(500_000, "USD", 6)),
        (500_001, PATH, False, Amount(500_001, "USD", 6)),
    ],
)
def test_per_call_cap_in_base_units_of_the_registry(
    units: int, asset: dict[str, Any], allowed: bool, charge: Amount
) -> None:
    decision = make_policy(per_call="0.50 USD").decide(ctx(units, **asset))
    assert decision.allowed is allowed
    assert decision.charge == charge
    assert decision.charge is not None and decision.charge.decimals == charge.decimals
    assert rule(decision, "per_call").passed is allowed
    if not allowed:
        assert decision.outcome == "deny"
        assert decision.reasons == (f"amount {charge} exceeds the per-call cap 0.50 USD",)


def test_quote_decimals_do_not_matter_only_the_registry() -> None:
    # A method that (wrongly) quotes USDC with 2 decimals: the registry still says 6.
    decision = make_policy(per_call="0.50 USD").decide(ctx(500_001, **{**USDC, "decimals": 2}))
    assert decision.charge == Amount(500_001, "USD", 6)
    assert not decision.allowed


@pytest.mark.parametrize(
    ("payee", "units", "allowed", "reason"),
    [
        ("small", 10, True, None),
        ("small", 11, False, "amount 0.11 USD exceeds the per-call cap for 'small' (0.10 USD)"),
        ("large", 50, True, None),
        ("other", 50, True, None),
        ("other", 51, False, "amount 0.51 USD exceeds the per-call cap 0.50 USD"),
        # A payee cap above the global cap does not widen it.
        ("large", 60, False, "amount 0.60 USD exceeds the per-call cap 0.50 USD"),
        # Payees are matched like the allow/deny lists: case-insensitively.
        ("SMALL", 11, False, "amount 0.11 USD exceeds the per-call cap for 'SMALL' (0.10 USD)"),
    ],
)
def test_per_payee_caps(payee: str, units: int, allowed: bool, reason: str | None) -> None:
    policy = make_policy(per_call="0.50 USD", per_payee={"small": "0.10 USD", "large": "0.90 USD"})
    decision = policy.decide(ctx(units, payee=payee))
    assert decision.allowed is allowed
    if reason is not None:
        assert reason in decision.reasons
    if payee == "other":
        assert "per_payee" not in rule_names(decision)


OVERRIDES = [
    {"when": {"env": "peak"}, "per_call": "0.75 USD", "per_payee": {"small": "0.20 USD"}},
    {"when": {"env": "night", "team": "ops"}, "per_call": "0.90 USD"},
]


@pytest.mark.parametrize(
    ("tags", "payee", "units", "allowed"),
    [
        ({}, "merchant", 50, True),
        ({}, "merchant", 51, False),
        ({"env": "peak"}, "merchant", 75, True),
        ({"env": "peak"}, "merchant", 76, False),
        ({"env": "offpeak"}, "merchant", 51, False),
        ({"env": "PEAK"}, "merchant", 51, False),
        ({"env": "peak", "extra": "x"}, "merchant", 75, True),
        ({"team": "peak"}, "merchant", 51, False),
        ({}, "small", 11, False),
        ({"env": "peak"}, "small", 20, True),
        ({"env": "peak"}, "small", 21, False),
        # Every tag of ``when`` must match.
        ({"env": "night"}, "merchant", 51, False),
        ({"team": "ops"}, "merchant", 51, False),
        ({"env": "night", "team": "ops"}, "merchant", 90, True),
        ({"env": "night", "team": "ops"}, "merchant", 91, False),
    ],
)
def test_tag_overrides_apply_only_when_every_tag_matches(
    tags: dict[str, str], payee: str, units: int, allowed: bool
) -> None:
    policy = make_policy(per_call="0.50 USD", per_payee={"small": "0.10 USD"}, overrides=OVERRIDES)
    assert policy.decide(ctx(units, payee=payee, tags=tags)).allowed is allowed


@pytest.mark.parametrize(
    ("units", "max_amount", "expected_payee", "allowed", "reason"),
    [
        (30, "0.30 USD", None, True, None),
        (31, "0.30 USD", None, False, "amount 0.31 USD exceeds the call's max_amount 0.30 USD"),
        (30, "0.300001 USD", None, True, None),
        # The call cannot widen the policy's cap.
        (51, "5.00 USD", None, False, "amount 0.51 USD exceeds the per-call cap 0.50 USD"),
        (10, "1.00 EUR", None, False, "the call's max_amount 1.00 EUR is not in USD"),
        (10, None, "merchant", True, None),
        (
            10,
            None,
            "someone-else",
            False,
            "payee 'merchant' is not the payee the call expected ('someone-else')",
        ),
    ],
)
def test_call_max_amount_and_payee_only_narrow(
    units: int,
    max_amount: str | None,
    expected_payee: str | None,
    allowed: bool,
    reason: str | None,
) -> None:
    policy = make_policy(per_call="0.50 USD")
    context = ctx(units, max_amount=max_amount, expected_payee=expected_payee)
    decision = policy.decide(context)
    assert decision.allowed is allowed
    if reason is not None:
        assert reason in decision.reasons
    if max_amount == "5.00 USD":
        assert rule(decision, "call.max_amount").passed


# -- allow and deny lists ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("*.example.com", "sub.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "SUB.Example.COM", True),
        ("*.example.com", "sub.example.com.", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "badexample.com", False),
        ("*.example.com", ".example.com", False),
        ("*.example.com", "example.com.evil.test", False),
        ("api.example.com", "api.example.com", True),
        ("api.example.com", "API.EXAMPLE.COM", True),
        ("api.example.com", "x.api.example.com", False),
        ("api.example.com", "example.com", False),
        ("*", "anything.test", True),
    ],
)
def test_host_patterns(pattern: str, host: str, matches: bool) -> None:
    assert host_matches(pattern, host) is matches
    policy = make_policy(allow={"hosts": [pattern]})
    assert policy.decide(ctx(host=host)).allowed is matches


def _not_allowed(label: str, value: object, dimension: str) -> str:
    return f'{label} {value!r} is not in allow.{dimension} (deny by default; "*" allows any)'


LIST_CASES: list[tuple[str, list[Any], list[Any], dict[str, Any], str | None]] = [
    # (dimension, allow, deny, context keywords, expected failing reason or None)
    ("hosts", ["api.test", "*.example.com"], [], {"host": "api.test"}, None),
    ("hosts", ["api.test", "*.example.com"], [], {"host": "a.b.example.com"}, None),
    (
        "hosts",
        ["api.test", "*.example.com"],
        [],
        {"host": "example.com"},
        _not_allowed("host", "example.com", "hosts"),
    ),
    (
        "hosts",
        ["*.example.com"],
        ["ads.example.com"],
        {"host": "ads.example.com"},
        "host 'ads.example.com' is on deny.hosts",
    ),
    (
        "hosts",
        ["*"],
        ["*.tracker.test"],
        {"host": "x.tracker.test"},
        "host 'x.tracker.test' is on deny.hosts",
    ),
    ("hosts", [], [], {"host": "api.test"}, _not_allowed("host", "api.test", "hosts")),
    ("realms", ["api", "shop"], [], {"realm": "shop"}, None),
    ("realms", ["api"], [], {"realm": "other"}, _not_allowed("realm", "other", "realms")),
    ("realms", ["api"], ["api"], {"realm": "api"}, "realm 'api' is on deny.realms"),
    ("payees", ["alice", "bob"], [], {"payee": "bob"}, None),
    ("payees", ["alice", "bob"], [], {"payee": "BOB"}, None),
    ("payees", ["alice"], [], {"payee": "mallory"}, _not_allowed("payee", "mallory", "payees")),
    ("payees", ["*"], ["mallory"], {"payee": "mallory"}, "payee 'mallory' is on deny.payees"),
    ("payees", ["mallory"], ["mallory"], {"payee": "mallory"}, "payee 'mallory' is on deny.payees"),
    ("methods", ["dev", "stripe"], [], {"method": "stripe"}, None),
    ("methods", ["dev"], [], {"method": "stripe"}, _not_allowed("method", "stripe", "methods")),
    ("methods", ["*"], ["card"], {"method": "card"}, "method 'card' is on deny.methods"),
    ("intents", ["charge"], [], {"intent": "charge"}, None),
    (
        "intents",
        ["charge"],
        [],
        {"intent": "session"},
        _not_allowed("intent", "session", "intents"),
    ),
    ("intents", ["*"], ["session"], {"intent": "session"}, "intent 'session' is on deny.intents"),
    ("assets", ["dev-usd"], [], DEV, None),
    ("assets", ["usdc"], [], USDC, None),
    ("assets", ["pathUSD"], [], PATH, None),
    ("assets", [USDC_BASE.lower()], [], USDC, None),
    ("assets", ["usd"], [], DEV, None),  # the raw currency of the dev method
    ("assets", ["USDC"], [], DEV, _not_allowed("asset", "dev-usd", "assets")),
    ("assets", ["dev-usd", "pathUSD"], [], USDC, _not_allowed("asset", "USDC", "assets")),
    ("assets", ["*"], ["USDC"], USDC, "asset 'USDC' is on deny.assets"),
    ("assets", ["USDC"], [USDC_BASE.upper()], USDC, f"asset {USDC_BASE!r} is on deny.assets"),
    ("chain_ids", [8453, 1], [], USDC, None),
    ("chain_ids", [1], [], USDC, _not_allowed("chain id", 8453, "chain_ids")),
    ("chain_ids", ["*"], [8453], USDC, "chain id 8453 is on deny.chain_ids"),
    ("chain_ids", [8453], [8453], USDC, "chain id 8453 is on deny.chain_ids"),
    ("chain_ids", [], [], USDC, _not_allowed("chain id", 8453, "chain_ids")),
    # A payment with no chain is not subject to the chain list at all.
    ("chain_ids", [], [], DEV, None),
]


@pytest.mark.parametrize(("dimension", "allow", "deny", "kwargs", "reason"), LIST_CASES)
def test_allow_and_deny_lists(
    dimension: str, allow: list[Any], deny: list[Any], kwargs: dict[str, Any], reason: str | None
) -> None:
    policy = make_policy(allow={dimension: allow}, deny={dimension: deny})
    decision = policy.decide(ctx(**kwargs))
    if reason is None:
        assert decision.allowed, decision.reasons
        if kwargs.get("chain_id", 0) is None and dimension == "chain_ids":
            assert "allow.chain_ids" not in rule_names(decision)
        else:
            assert rule(decision, f"allow.{dimension}").passed
    else:
        assert decision.outcome == "deny"
        assert decision.reasons == (reason,)
        kind = "deny" if "is on deny" in reason else "allow"
        assert not rule(decision, f"{kind}.{dimension}").passed


def test_default_policy_refuses_everything_not_named() -> None:
    policy = Policy.from_mapping({"currency": "USD", "per_call": "1 USD"})
    decision = policy.decide(ctx(**USDC, units=1))
    failed = sorted(r.rule for r in decision.rules if not r.passed)
    assert failed == [
        "allow.assets",
        "allow.chain_ids",
        "allow.hosts",
        "allow.intents",
        "allow.methods",
        "allow.payees",
        "allow.realms",
    ]


# -- the asset registry -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("asset", "reason"),
    [
        (
            {**DEV, "currency": "eur", "code": "EUR"},
            "asset 'eur' via dev is not in the asset registry",
        ),
        (
            {**USDC, "chain_id": 1},  # Base's USDC address is not USDC on Ethereum
            f"asset {USDC_BASE!r} via evm on chain 1 is not in the asset registry",
        ),
        (
            {**USDC, "chain_id": None},
            f"asset {USDC_BASE!r} via evm is not in the asset registry",
        ),
        (
            {**USDC, "method": "tempo"},
            f"asset {USDC_BASE!r} via tempo on chain 8453 is not in the asset registry",
        ),
        (
            {**USDC, "currency": USDC_ETHEREUM},
            f"asset {USDC_ETHEREUM!r} via evm on chain 8453 is not in the asset registry",
        ),
    ],
)
def test_unknown_assets_are_refused(asset: dict[str, Any], reason: str) -> None:
    decision = make_policy(budgets=[{"name": "all", "limit": "5 USD"}]).decide(ctx(1, **asset))
    assert decision.outcome == "deny"
    assert decision.reasons == (reason,)
    assert decision.charge is None
    # Without a charge there is nothing for a budget to count.
    assert decision.limits == ()


def test_usdc_is_known_on_ethereum_with_its_own_address() -> None:
    decision = make_policy().decide(ctx(1, **{**USDC, "currency": USDC_ETHEREUM, "chain_id": 1}))
    assert decision.allowed
    assert decision.charge == Amount(1, "USD", 6)
    assert "asset USDC counts as 0.000001 USD" in decision.reasons


CREDITS = {"method": "voucher", "currency": "credits", "asset": "usd", "decimals": 3}


@pytest.mark.parametrize(
    ("fields", "asset", "units", "outcome", "reason"),
    [
        # A custom entry: 3 decimals, so 500 units = 0.500 USD.
        ({"assets": [CREDITS]}, {"method": "voucher", "currency": "CREDITS"}, 500, "allow", None),
        (
            {"assets": [CREDITS]},
            {"method": "voucher", "currency": "credits"},
            501,
            "deny",
            "amount 0.501 USD exceeds the per-call cap 0.50 USD",
        ),
        # Named for the allow list.
        (
            {"assets": [{**CREDITS, "name": "credits"}], "allow": {"assets": ["credits"]}},
            {"method": "voucher", "currency": "credits"},
            1,
            "allow",
            None,
        ),
        # A wildcard method entry matches any method.
        (
            {"assets": [{**CREDITS, "method": "*"}]},
            {"method": "other", "currency": "credits"},
            1,
            "allow",
            None,
        ),
        # An entry on a chain does not match off the chain.
        (
            {"assets": [{**CREDITS, "chain_id": 10}]},
            {"method": "voucher", "currency": "credits", "chain_id": 11},
            1,
            "deny",
            "asset 'credits' via voucher on chain 11 is not in the asset registry",
        ),
        # No built-ins: the dev wallet's usd is unknown ...
        (
            {"builtin_assets": False},
            DEV,
            1,
            "deny",
            "asset 'usd' via dev is not in the asset registry",
        ),
        # ... but custom entries still work.
        (
            {"builtin_assets": False, "assets": [CREDITS]},
            {"method": "voucher", "currency": "credits"},
            1,
            "allow",
            None,
        ),
        # A custom entry replaces a built-in with the same key.
        (
            {"assets": [{"method": "dev", "currency": "usd", "asset": "USD", "decimals": 6}]},
            {**DEV, "decimals": 2},
            500_001,
            "deny",
            "amount 0.500001 USD exceeds the per-call cap 0.50 USD",
        ),
        # An asset worth another currency cannot count against a USD policy.
        (
            {"assets": [{"method": "dev", "currency": "eur", "asset": "EUR", "decimals": 2}]},
            {**DEV, "currency": "eur"},
            1,
            "deny",
            "asset eur is worth EUR, not the policy currency USD",
        ),
        (
            {
                "assets": [
                    {
                        "method": "dev",
                        "currency": "eur",
                        "asset": "EUR",
                        "decimals": 2,
                        "name": "dev-eur",
                    }
                ]
            },
            {**DEV, "currency": "eur"},
            1,
            "deny",
            "asset dev-eur is worth EUR, not the policy currency USD",
        ),
    ],
)
def test_custom_assets(
    fields: dict[str, Any], asset: dict[str, Any], units: int, outcome: str, reason: str | None
) -> None:
    decision = make_policy(per_call="0.50 USD", **fields).decide(ctx(units, **asset))
    assert decision.outcome == outcome, decision.reasons
    if reason is not None:
        assert decision.reasons == (reason,)


def test_registry_sizes() -> None:
    assert len(make_policy(builtin_assets=False).registry) == 0
    assert len(make_policy(builtin_assets=False, assets=[CREDITS]).registry) == 1
    builtin = len(make_policy().registry)
    assert builtin > 10
    assert len(make_policy(assets=[CREDITS]).registry) == builtin + 1


# -- calendar periods -------------------------------------------------------------------

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
SANTIAGO = ZoneInfo("America/Santiago")
HAVANA = ZoneInfo("America/Havana")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type, misc]


@pytest.mark.parametrize(
    ("now", "calendar", "zone", "start"),
    [
        # New York springs forward at 02:00 on 2026-03-08: that day is 23 hours long.
        (utc(2026, 3, 8, 16), "day", NY, utc(2026, 3, 8, 5)),
        (utc(2026, 3, 9, 3, 59, 59), "day", NY, utc(2026, 3, 8, 5)),
        (utc(2026, 3, 9, 4), "day", NY, utc(2026, 3, 9, 4)),
        (utc(2026, 3, 8, 4, 59, 59), "day", NY, utc(2026, 3, 7, 5)),
        (utc(2026, 3, 8, 5), "day", NY, utc(2026, 3, 8, 5)),
        # ... and falls back at 02:00 on 2026-11-01: 25 hours, midnight still EDT.
        (utc(2026, 11, 1, 17), "day", NY, utc(2026, 11, 1, 4)),
        (utc(2026, 11, 1, 6, 30), "day", NY, utc(2026, 11, 1, 4)),  # 01:30 EST, the 2nd one
        (utc(2026, 11, 2, 4, 59, 59), "day", NY, utc(2026, 11, 1, 4)),
        (utc(2026, 11, 2, 5), "day", NY, utc(2026, 11, 2, 5)),
        # Weeks start on Monday; 2026-03-08 is a Sunday.
        (utc(2026, 3, 8, 16), "week", NY, utc(2026, 3, 2, 5)),
        (utc(2026, 3, 9, 3, 59, 59), "week", NY, utc(2026, 3, 2, 5)),
        (utc(2026, 3, 9, 4), "week", NY, utc(2026, 3, 9, 4)),
        (utc(2026, 11, 4, 12), "week", NY, utc(2026, 11, 2, 5)),
        (utc(2026, 3, 31, 12), "month", NY, utc(2026, 3, 1, 5)),
        (utc(2026, 11, 15), "month", NY, utc(2026, 11, 1, 4)),
        (utc(2026, 11, 1, 3, 59, 59), "month", NY, utc(2026, 10, 1, 4)),
        # London: GMT until 2026-03-29 01:00 UTC, BST until 2026-10-25 01:00 UTC.
        (utc(2026, 3, 29, 12), "day", LONDON, utc(2026, 3, 29, 0)),
        (utc(2026, 3, 30, 12), "day", LONDON, utc(2026, 3, 29, 23)),
        (utc(2026, 10, 25, 12), "day", LONDON, utc(2026, 10, 24, 23)),
        (utc(2026, 10, 24, 23), "day", LONDON, utc(2026, 10, 24, 23)),
        (utc(2026, 10, 24, 22, 59, 59), "day", LONDON, utc(2026, 10, 23, 23)),
        (utc(2026, 4, 15), "month", LONDON, utc(2026, 3, 31, 23)),
        (utc(2026, 3, 31, 22, 59, 59), "month", LONDON, utc(2026, 3, 1, 0)),
        (utc(2026, 3, 29, 12), "week", LONDON, utc(2026, 3, 23, 0)),
        # Santiago skips midnight on 2026-09-06 (00:00 -04 becomes 01:00 -03):
        # the day starts at the first instant that exists, 01:00 local.
        (utc(2026, 9, 6, 15), "day", SANTIAGO, utc(2026, 9, 6, 4)),
        (utc(2026, 9, 6, 4), "day", SANTIAGO, utc(2026, 9, 6, 4)),
        (utc(2026, 9, 6, 3, 59, 59), "day", SANTIAGO, utc(2026, 9, 5, 4)),
        (utc(2026, 9, 7, 2, 59, 59), "day", SANTIAGO, utc(2026, 9, 6, 4)),
        (utc(2026, 9, 7, 3), "day", SANTIAGO, utc(2026, 9, 7, 3)),
        # Havana skips midnight on 2026-03-08 and repeats it on 2026-11-01.
        (utc(2026, 3, 8, 15), "day", HAVANA, utc(2026, 3, 8, 5)),
        (utc(2026, 3, 8, 4, 59, 59), "day", HAVANA, utc(2026, 3, 7, 5)),
        (utc(2026, 11, 1, 15), "day", HAVANA, utc(2026, 11, 1, 4)),  # the first midnight
        (utc(2026, 11, 1, 5, 30), "day", HAVANA, utc(2026, 11, 1, 4)),  # in the repeated hour
    ],
)
def test_period_start(now: datetime, calendar: str, zone: ZoneInfo, start: datetime) -> None:
    got = period_start(now, calendar, zone)
    assert got == start
    assert got.tzinfo is UTC
    assert got <= now
    # The start is a real instant: it survives a round trip through the zone.
    local = got.astimezone(zone)
    assert local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None)
    # The same instant given in the policy's own zone or another one: the same start,
    # as a real (normalised) wall time of that zone. (Compared in UTC: ``==`` between
    # zones is always False for an ambiguous wall time such as Havana's repeated midnight.)
    for other in (zone, LONDON):
        local_start = period_start(now.astimezone(other), calendar, zone)
        assert local_start.astimezone(UTC) == start
        assert local_start.tzinfo is other
        wall = local_start.replace(tzinfo=None)
        assert local_start.astimezone(UTC).astimezone(other).replace(tzinfo=None) == wall


def test_midnight_really_is_skipped_in_the_zones_used() -> None:
    # Guards the table above: the tz database says these midnights do not exist.
    for zone, day in ((SANTIAGO, (2026, 9, 6)), (HAVANA, (2026, 3, 8))):
        wall = datetime(*day, tzinfo=zone)
        assert wall.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall.replace(
            tzinfo=None
        )
        assert period_start(datetime(*day, 12, tzinfo=zone), "day", zone).astimezone(zone).hour == 1
    for day in ((2026, 3, 8), (2026, 11, 1)):  # New York's midnights exist
        wall = datetime(*day, tzinfo=NY)
        assert wall.astimezone(UTC).astimezone(NY) == wall


# -- budgets, enforced by the ledger ----------------------------------------------------


def test_lifetime_budget_exactly_at_the_limit_then_one_unit_over() -> None:
    policy = make_policy(budgets=[{"name": "total", "limit": "1.00 USD"}])
    ledger = MemoryLedger(clock=lambda: NOW)
    pay(policy, ledger, 60)
    with pytest.raises(
        BudgetExceeded,
        match=r"paying 0\.41 USD would exceed budget 'total' of 1\.00 USD: "
        r"0\.60 USD already spent or held, 0\.40 USD remains",
    ):
        pay(policy, ledger, 41)
    pay(policy, ledger, 40)
    with pytest.raises(BudgetExceeded, match=r"0\.00 USD remains"):
        pay(policy, ledger, 1)
    assert ledger.spent("USD") == Amount.parse("1.00 USD")
    assert len(ledger.records()) == 2


def test_budget_counts_across_assets_with_different_decimals() -> None:
    policy = make_policy(budgets=[{"name": "total", "limit": "1.00 USD"}])
    ledger = MemoryLedger(clock=lambda: NOW)
    pay(policy, ledger, 50)  # 0.50 USD via dev (2 decimals)
    pay(policy, ledger, 499_999, **USDC)  # 0.499999 USD via USDC (6 decimals)
    with pytest.raises(BudgetExceeded, match=r"0\.000001 USD remains"):
        pay(policy, ledger, 2, **USDC)
    pay(policy, ledger, 1, **PATH)
    assert ledger.spent("USD") == Amount.parse("1.00 USD")


@pytest.mark.parametrize(
    ("status", "counts"),
    [("reserved", True), ("committed", True), ("unknown", True), ("released", False)],
)
def test_what_counts_against_a_budget(status: str, counts: bool) -> None:
    policy = make_policy(budgets=[{"name": "total", "limit": "1.00 USD"}])
    ledger = MemoryLedger(clock=lambda: NOW)
    past(ledger, "0.60 USD", status=status, payee="elsewhere")
    if counts:
        with pytest.raises(BudgetExceeded, match=r"0\.40 USD remains"):
            pay(policy, ledger, 41)
        pay(policy, ledger, 40)
    else:
        pay(policy, ledger, 100)


@pytest.mark.parametrize(
    ("age", "counts"),
    [
        (timedelta(0), True),
        (timedelta(minutes=59, seconds=59), True),
        (timedelta(hours=1), True),  # exactly on the window's edge: inside
        (timedelta(hours=1) + US, False),  # one microsecond older: outside
        (timedelta(days=3), False),
    ],
)
def test_rolling_window_edge(age: timedelta, counts: bool) -> None:
    policy = make_policy(budgets=[{"name": "hourly", "limit": "1.00 USD", "window": "1h"}])
    ledger = MemoryLedger(clock=lambda: NOW)
    past(ledger, "0.60 USD", at=NOW - age)
    decision = policy.decide(ctx(41, history=ledger))
    assert decision.limits == (
        Limit("hourly", Amount.parse("1.00 USD"), since=NOW - timedelta(hours=1)),
    )
    if counts:
        with pytest.raises(BudgetExceeded, match=r"budget 'hourly'.*0\.40 USD remains"):
            pay(policy, ledger, 41)
    else:
        pay(policy, ledger, 100)


@pytest.mark.parametrize(
    ("zone", "calendar", "now", "start"),
    [
        ("America/New_York", "day", utc(2026, 3, 8, 16), utc(2026, 3, 8, 5)),
        ("America/New_York", "day", utc(2026, 11, 1, 17), utc(2026, 11, 1, 4)),
        ("America/New_York", "week", utc(2026, 3, 8, 16), utc(2026, 3, 2, 5)),
        ("Europe/London", "month", utc(2026, 4, 15), utc(2026, 3, 31, 23)),
        ("America/Santiago", "day", utc(2026, 9, 6, 15), utc(2026, 9, 6, 4)),
        ("UTC", "day", utc(2026, 3, 8, 16), utc(2026, 3, 8)),
    ],
)
@pytest.mark.parametrize(("offset", "counts"), [(timedelta(0), True), (-US, False)])
def test_calendar_budget_resets_at_local_period_start(
    zone: str, calendar: str, now: datetime, start: datetime, offset: timedelta, counts: bool
) -> None:
    policy = make_policy(
        timezone=zone, budgets=[{"name": "cal", "limit": "1.00 USD", "calendar": calendar}]
    )
    ledger = MemoryLedger(clock=lambda: now)
    past(ledger, "0.60 USD", at=start + offset)
    decision = policy.decide(ctx(41, now=now, history=ledger))
    assert decision.limits == (Limit("cal", Amount.parse("1.00 USD"), since=start),)
    if counts:
        with pytest.raises(BudgetExceeded, match="budget 'cal'"):
            pay(policy, ledger, 41, now=now)
    else:
        pay(policy, ledger, 100, now=now)


def test_budget_limits_handed_to_the_ledger() -> None:
    policy = make_policy(
        timezone="Europe/London",
        budgets=[
            {"name": "total", "limit": "10 USD"},
            {"name": "daily", "limit": "5 USD", "calendar": "day"},
            {"name": "rolling", "limit": "2 USD", "window": "90m"},
            {"name": "alice", "limit": "1 USD", "payee": "alice"},
            {"name": "evm", "limit": "3 USD", "method": "evm"},
            {"name": "peak", "limit": "0.30 USD", "when": {"env": "peak"}},
        ],
    )
    decision = policy.decide(ctx(1))
    assert decision.limits == (
        Limit("total", Amount.parse("10 USD")),
        Limit("daily", Amount.parse("5 USD"), since=utc(2026, 6, 14, 23)),
        Limit("rolling", Amount.parse("2 USD"), since=NOW - timedelta(minutes=90)),
        Limit("alice", Amount.parse("1 USD"), payee="alice"),
        Limit("evm", Amount.parse("3 USD"), method="evm"),
    )
    tagged = policy.decide(ctx(1, tags={"env": "peak"}))
    assert tagged.limits[-1] == Limit("peak", Amount.parse("0.30 USD"), tags={"env": "peak"})
    assert len(tagged.limits) == 6


def test_per_payee_budget() -> None:
    policy = make_policy(budgets=[{"name": "alice", "limit": "0.50 USD", "payee": "alice"}])
    ledger = MemoryLedger(clock=lambda: NOW)
    pay(policy, ledger, 50, payee="alice")
    with pytest.raises(BudgetExceeded, match=r"budget 'alice' of 0\.50 USD"):
        pay(policy, ledger, 1, payee="alice")
    # Other payees are outside the budget's scope, and do not use it up.
    pay(policy, ledger, 100, payee="bob")
    pay(policy, ledger, 100, payee="carol")
    assert ledger.spent("USD", payee="alice") == Amount.parse("0.50 USD")


def test_per_method_budget() -> None:
    policy = make_policy(budgets=[{"name": "chain", "limit": "0.50 USD", "method": "evm"}])
    ledger = MemoryLedger(clock=lambda: NOW)
    pay(policy, ledger, 100)  # dev: not counted
    pay(policy, ledger, 500_000, **USDC)
    with pytest.raises(BudgetExceeded, match=r"budget 'chain'.*0\.0+ USD remains"):
        pay(policy, ledger, 1, **USDC)
    pay(policy, ledger, 100)


def test_tag_scoped_budget_applies_only_to_tagged_calls() -> None:
    policy = make_policy(budgets=[{"name": "peak", "limit": "0.30 USD", "when": {"env": "peak"}}])
    ledger = MemoryLedger(clock=lambda: NOW)
    pay(policy, ledger, 30, tags={"env": "peak"})
    with pytest.raises(BudgetExceeded, match="budget 'peak'"):
        pay(policy, ledger, 1, tags={"env": "peak", "team": "x"})
    pay(policy, ledger, 100, tags={"env": "night"})
    pay(policy, ledger, 100)
    # Untagged and other-tag spending does not count against the tag-scoped budget.
    assert ledger.spent("USD", tags={"env": "peak"}) == Amount.parse("0.30 USD")


# -- velocity ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ages", "allowed"),
    [
        ([], True),
        ([timedelta(seconds=1), timedelta(seconds=30)], True),
        ([timedelta(0), timedelta(seconds=30), timedelta(minutes=1)], False),
        ([timedelta(0), timedelta(seconds=30), timedelta(minutes=1) + US], True),
    ],
)
def test_global_velocity_counts_history(ages: list[timedelta], allowed: bool) -> None:
    policy = make_policy(velocity=[{"name": "burst", "max": 3, "window": "1m"}])
    ledger = MemoryLedger(clock=lambda: NOW)
    for n, age in enumerate(ages):
        past(ledger, "0.01 USD", payee=f"payee-{n}", at=NOW - age)
    decision = policy.decide(ctx(1, history=ledger))
    assert decision.allowed is allowed
    made = sum(1 for age in ages if age <= timedelta(minutes=1))
    if allowed:
        assert (
            rule(decision, "velocity.burst").reason == f"{made} of 3 payments in the last 0:01:00"
        )
    else:
        assert decision.reasons == ("already 3 payments in the last 0:01:00 (at most 3)",)
    assert Limit("burst", max_count=3, since=NOW - timedelta(minutes=1)) in (decision.limits)


@pytest.mark.parametrize("status", ["reserved", "committed", "unknown", "released"])
def test_velocity_counts_every_held_payment_but_released(status: str) -> None:
    policy = make_policy(velocity=[{"max": 1, "window": "1h"}])
    ledger = MemoryLedger(clock=lambda: NOW)
    past(ledger, "0.01 USD", status=status)
    assert policy.decide(ctx(1, history=ledger)).allowed is (status == "released")


def test_per_payee_velocity() -> None:
    policy = make_policy(velocity=[{"name": "each", "max": 2, "window": "10m", "per_payee": True}])
    ledger = MemoryLedger(clock=lambda: NOW)
    past(ledger, "0.01 USD", payee="alice", at=NOW - timedelta(minutes=9))
    past(ledger, "0.01 USD", payee="alice", at=NOW - timedelta(minutes=1))
    past(ledger, "0.01 USD", payee="bob")
    denied = policy.decide(ctx(1, payee="alice", history=ledger))
    assert denied.reasons == ("already 2 payments to 'alice' in the last 0:10:00 (at most 2)",)
    allowed = policy.decide(ctx(1, payee="bob", history=ledger))
    assert allowed.allowed
    assert rule(allowed, "velocity.each").reason == "1 of 2 payments to 'bob' in the last 0:10:00"
    assert allowed.limits == (
        Limit("each", max_count=2, since=NOW - timedelta(minutes=10), payee="bob"),
    )
    # Ten minutes after it, the oldest payment to alice is on the window's edge (still in);
    # a microsecond later it has left.
    edge = NOW + timedelta(minutes=1)
    assert not policy.decide(ctx(1, payee="alice", history=ledger, now=edge)).allowed
    assert policy.decide(ctx(1, payee="alice", history=ledger, now=edge + US)).allowed


def test_velocity_limit_makes_the_ledger_refuse_atomically() -> None:
    policy = make_policy(velocity=[{"name": "burst", "max": 2, "window": "1m"}])
    ledger = MemoryLedger(clock=lambda: NOW)
    past(ledger, "0.01 USD", at=NOW - timedelta(seconds=5))
    # Two payments decide before either reserves: both see room for one more.
    first, second = ctx(1, history=ledger), ctx(2, history=ledger)
    d1, d2 = policy.decide(first), policy.decide(second)
    assert d1.allowed and d2.allowed
    assert d1.charge is not None and d2.charge is not None
    ledger.reserve(record_for(first, d1.charge), d1.limits)
    with pytest.raises(
        BudgetExceeded,
        match="would exceed the rate limit 'burst': at most 2 payments, 2 already made or held",
    ):
        ledger.reserve(record_for(second, d2.charge), d2.limits)
    assert len(ledger.records()) == 2


def test_velocity_only_for_tagged_calls() -> None:
    policy = make_policy(velocity=[{"max": 1, "window": "1h", "when": {"env": "batch"}}])
    ledger = MemoryLedger(clock=lambda: NOW)
    past(ledger, "0.01 USD")
    untagged = policy.decide(ctx(1, history=ledger))
    assert untagged.allowed and untagged.limits == ()
    assert not policy.decide(ctx(1, history=ledger, tags={"env": "batch"})).allowed


# -- approval ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "outcome"),
    [(19, "allow"), (20, "allow"), (21, "needs_approval"), (100, "needs_approval")],
)
def test_approval_above_threshold(units: int, outcome: str) -> None:
    policy = make_policy(approval={"above": "0.20 USD", "timeout": "30s"})
    decision = policy.decide(ctx(units))
    assert decision.outcome == outcome
    assert decision.approval_timeout == 30.0
    if outcome == "needs_approval":
        assert not decision.allowed
        charge = Amount(units, "USD", 2)
        assert decision.reasons == (f"{charge} is above the approval threshold 0.20 USD",)
        result = rule(decision, "approval.above")
        assert result.approval and not result.passed
    else:
        assert "approval.above" not in rule_names(decision)


def test_a_refusal_beats_an_approval() -> None:
    policy = make_policy(per_call="0.50 USD", approval={"above": "0.20 USD"})
    decision = policy.decide(ctx(51))
    assert decision.outcome == "deny"
    # The reasons are the refusals; the approval that was also wanted stays in the rules.
    assert decision.reasons == ("amount 0.51 USD exceeds the per-call cap 0.50 USD",)
    assert rule(decision, "approval.above").approval


@pytest.mark.parametrize(
    ("status", "needs"),
    [
        (None, True),
        ("reserved", True),  # not paid yet
        ("released", True),  # nothing was paid
        ("committed", False),
        ("unknown", False),  # may have been paid
    ],
)
def test_approval_for_a_new_payee(status: str | None, needs: bool) -> None:
    policy = make_policy(approval={"new_payee": True})
    ledger = MemoryLedger(clock=lambda: NOW)
    past(ledger, "0.10 USD", payee="someone-else")
    if status is not None:
        past(ledger, "0.10 USD", status=status)
    decision = policy.decide(ctx(10, history=ledger))
    if needs:
        assert decision.outcome == "needs_approval"
        assert decision.reasons == ("'merchant' has never been paid before",)
    else:
        assert decision.outcome == "allow"


def test_new_payee_approval_needs_history() -> None:
    # Without a ledger to read, the policy cannot tell; it does not guess.
    assert make_policy(approval={"new_payee": True}).decide(ctx(10)).outcome == "allow"


# -- anomaly ----------------------------------------------------------------------------


def anomaly_ledger(charges: list[str], *, payee: str = "merchant") -> MemoryLedger:
    ledger = MemoryLedger(clock=lambda: NOW)
    for n, charge in enumerate(charges):  # oldest first
        past(ledger, charge, payee=payee, at=NOW - timedelta(minutes=len(charges) - n))
    return ledger


@pytest.mark.parametrize(
    ("anomaly", "history", "units", "outcome"),
    [
        # Median 0.20; factor 3: 0.60 is exactly 3x, allowed; 0.61 is flagged.
        ({"factor": 3}, ["0.10", "0.20", "0.30"], 60, "allow"),
        ({"factor": 3}, ["0.10", "0.20", "0.30"], 61, "needs_approval"),
        ({"factor": 3, "action": "deny"}, ["0.10", "0.20", "0.30"], 61, "deny"),
        ({"factor": 3, "action": "deny"}, ["0.10", "0.20", "0.30"], 60, "allow"),
        # A decimal factor, as a string.
        ({"factor": "2.5"}, ["0.20", "0.20", "0.20"], 50, "allow"),
        ({"factor": "2.5"}, ["0.20", "0.20", "0.20"], 51, "needs_approval"),
        # Even count: the median is the mean of the middle two (0.25).
        ({"factor": 2}, ["0.10", "0.20", "0.30", "0.40"], 50, "allow"),
        ({"factor": 2}, ["0.10", "0.20", "0.30", "0.40"], 51, "needs_approval"),
        # Too little history: no judgement at all.
        ({"factor": 3}, ["0.10", "0.10"], 90, "allow"),
        ({"factor": 3, "min_history": 2}, ["0.10", "0.10"], 31, "needs_approval"),
        ({"factor": 3, "min_history": 4}, ["0.10", "0.10", "0.10"], 90, "allow"),
        # Only the last ``history`` payments count: the old 0.90s are forgotten.
        (
            {"factor": 3, "history": 3},
            ["0.90", "0.90", "0.90", "0.10", "0.10", "0.10"],
            31,
            "needs_approval",
        ),
        (
            {"factor": 3, "history": 6},
            ["0.90", "0.90", "0.90", "0.10", "0.10", "0.10"],
            31,
            "allow",
        ),
    ],
)
def test_anomaly(anomaly: dict[str, Any], history: list[str], units: int, outcome: str) -> None:
    policy = make_policy(anomaly=anomaly)
    ledger = anomaly_ledger([f"{c} USD" for c in history])
    decision = policy.decide(ctx(units, history=ledger))
    assert decision.outcome == outcome
    if outcome == "allow" and len(history) >= anomaly.get("min_history", 3):
        assert rule(decision, "anomaly").reason == "amount is in line with recent payments"
    elif outcome == "allow":
        assert "anomaly" not in rule_names(decision)
    else:
        result = rule(decision, "anomaly")
        assert result.approval is (outcome == "needs_approval")
        n = min(len(history), anomaly.get("history", 10))
        factor = Fraction(str(anomaly["factor"]))
        assert result.reason == (
            f"{Amount(units, 'USD', 2)} is more than {factor} times the median "
            f"of the last {n} payments to 'merchant'"
        )


@pytest.mark.parametrize("status", ["reserved", "unknown", "released"])
def test_anomaly_reads_only_committed_payments_to_the_same_payee(status: str) -> None:
    policy = make_policy(anomaly={"factor": 2})
    ledger = MemoryLedger(clock=lambda: NOW)
    for n in range(5):
        past(ledger, "0.10 USD", status=status, at=NOW - timedelta(minutes=n + 1))
        past(ledger, "0.10 USD", payee="other", at=NOW - timedelta(minutes=n + 1))
    decision = policy.decide(ctx(90, history=ledger))
    assert decision.outcome == "allow"
    assert "anomaly" not in rule_names(decision)
    assert policy.decide(ctx(90, payee="other", history=ledger)).outcome == "needs_approval"


def test_anomaly_median_is_exact_for_many_decimals() -> None:
    # An 18-decimal token: a float median would round 1e18 + 1.5 to 1e18.
    token = {"method": "erc20", "currency": "tok", "asset": "USD", "decimals": 18}
    policy = make_policy(per_call="10 USD", assets=[token], anomaly={"factor": 2, "min_history": 2})
    ledger = MemoryLedger(clock=lambda: NOW)
    for n, units in enumerate([10**18 + 1, 10**18 + 2]):
        amount = Amount(units, "USD", 18)
        context = ctx(
            units, method="erc20", currency="tok", code="TOK", decimals=18, now=NOW - (2 - n) * US
        )
        ledger.commit(ledger.reserve(record_for(context, amount), []).id, None)
    asset: dict[str, Any] = {"method": "erc20", "currency": "tok", "code": "TOK", "decimals": 18}
    exactly = policy.decide(ctx(2 * 10**18 + 3, history=ledger, **asset))
    assert exactly.outcome == "allow", exactly.reasons
    assert rule(exactly, "anomaly").passed
    above = policy.decide(ctx(2 * 10**18 + 4, history=ledger, **asset))
    assert above.outcome == "needs_approval"


# -- circuit breaker --------------------------------------------------------------------


def breaker_ledger(clock: Clock, outcomes: list[str], payee: str = "merchant") -> MemoryLedger:
    """One payment a minute ending at ``clock.now``, settled to each of ``outcomes``."""
    ledger = MemoryLedger(clock=clock)
    start = clock.now
    for n, status in enumerate(outcomes):
        clock.now = start - timedelta(minutes=len(outcomes) - 1 - n)
        past(ledger, "0.10 USD", payee=payee, at=clock.now, status=status)
    clock.now = start
    return ledger


@pytest.mark.parametrize(
    ("outcomes", "tripped"),
    [
        ([], False),
        (["unknown", "unknown"], False),
        (["unknown", "unknown", "unknown"], True),
        (["committed", "unknown", "unknown", "unknown"], True),
        (["unknown", "unknown", "unknown", "committed"], False),  # a success resets it
        (["unknown", "unknown", "unknown", "committed", "unknown", "unknown"], False),
        (["unknown", "unknown", "released", "unknown"], True),  # nothing paid: no reset
        (["unknown", "unknown", "reserved", "unknown"], True),
    ],
)
def test_circuit_breaker_trips_after_consecutive_unknowns(
    outcomes: list[str], tripped: bool
) -> None:
    policy = make_policy(circuit_breaker={"failures": 3, "cooldown": "10m"})
    clock = Clock()
    ledger = breaker_ledger(clock, outcomes)
    decision = policy.decide(ctx(1, history=ledger))
    assert decision.allowed is not tripped
    streak = ledger.failure_streak("merchant")[0]
    if tripped:
        assert decision.reasons == (
            f"'merchant' failed {streak} times in a row after being paid; "
            "not paying it until 2026-06-15 12:10:00 UTC",
        )
    else:
        assert rule(decision, "circuit_breaker").reason == (
            f"'merchant' has {streak} recent failures after payment"
        )
    # Other payees are not affected.
    assert policy.decide(ctx(1, payee="other", history=ledger)).allowed


@pytest.mark.parametrize(
    ("after", "tripped"),
    [
        (timedelta(0), True),
        (timedelta(minutes=10) - US, True),
        (timedelta(minutes=10), False),
        (timedelta(hours=5), False),
    ],
)
def test_circuit_breaker_cooldown(after: timedelta, tripped: bool) -> None:
    policy = make_policy(circuit_breaker={"failures": 2, "cooldown": "10m"})
    clock = Clock()
    ledger = breaker_ledger(clock, ["unknown", "unknown"])
    assert not policy.decide(ctx(1, history=ledger)).allowed
    decision = policy.decide(ctx(1, history=ledger, now=NOW + after))
    assert decision.allowed is not tripped


def test_circuit_breaker_cooldown_runs_from_when_the_outcome_became_unknown() -> None:
    # Reserved at 12:00, found unknown at 12:30: the cooldown runs from 12:30.
    policy = make_policy(circuit_breaker={"failures": 1, "cooldown": "10m"})
    clock = Clock()
    ledger = MemoryLedger(clock=clock)
    held = past(ledger, "0.10 USD", status="reserved")
    clock.now = NOW + timedelta(minutes=30)
    ledger.mark_unknown(held.id, "timed out")
    assert not policy.decide(ctx(1, history=ledger, now=NOW + timedelta(minutes=39))).allowed
    assert policy.decide(ctx(1, history=ledger, now=NOW + timedelta(minutes=40))).allowed


def test_a_commit_resets_the_streak_even_within_one_clock_tick() -> None:
    # Same created_at for every record (a coarse clock): insertion order decides.
    policy = make_policy(circuit_breaker={"failures": 3})
    ledger = MemoryLedger(clock=lambda: NOW)
    for _ in range(3):
        past(ledger, "0.10 USD", status="unknown")
    assert not policy.decide(ctx(1, history=ledger)).allowed
    past(ledger, "0.10 USD", status="committed")
    assert ledger.failure_streak("merchant") == (0, None)
    assert policy.decide(ctx(1, history=ledger)).allowed
    assert ledger.recent_charges("merchant", 1) == [Amount.parse("0.10 USD")]


# -- validity ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "now", "reason"),
    [
        ({"not_before": "2026-06-15T12:00:00Z"}, NOW, None),
        ({"not_before": "2026-06-15T12:00:00Z"}, NOW - US, "policy is not in force before"),
        ({"expires": "2026-06-15T12:00:00Z"}, NOW - US, None),
        ({"expires": "2026-06-15T12:00:00Z"}, NOW, "policy expired at 2026-06-15T12:00:00+00:00"),
        ({"expires": "2026-06-15T14:00:00+02:00"}, NOW, "policy expired at"),
        (
            {"not_before": "2026-06-01T00:00:00Z", "expires": "2026-07-01T00:00:00Z"},
            NOW,
            None,
        ),
    ],
)
def test_policy_validity_window(fields: dict[str, str], now: datetime, reason: str | None) -> None:
    decision = make_policy(**fields).decide(ctx(1, now=now))
    if reason is None:
        assert decision.allowed
    else:
        assert decision.outcome == "deny"
        assert len(decision.reasons) == 1 and decision.reasons[0].startswith(reason)


@pytest.mark.parametrize(
    ("quote_expires", "challenge_expires", "reason"),
    [
        (None, None, "challenge has no expiry"),
        (NOW + timedelta(minutes=15), None, None),
        (NOW + timedelta(minutes=15, seconds=1), None, "longer than the accepted 0:15:00"),
        (None, NOW + timedelta(minutes=10), None),
        (None, NOW + timedelta(hours=1), "challenge stays valid for 1:00:00"),
        # The method's quote (the earlier of the two expiries) wins.
        (NOW + timedelta(minutes=5), NOW + timedelta(hours=1), None),
    ],
)
def test_max_challenge_validity(
    quote_expires: datetime | None, challenge_expires: datetime | None, reason: str | None
) -> None:
    policy = make_policy(max_challenge_validity="15m")
    decision = policy.decide(ctx(1, expires=quote_expires, challenge_expires=challenge_expires))
    if reason is None:
        assert decision.allowed
        assert rule(decision, "max_challenge_validity").passed
    else:
        assert decision.outcome == "deny"
        assert len(decision.reasons) == 1 and reason in decision.reasons[0]


# -- modes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "outcome"), [(10, "allow"), (51, "deny"), (30, "needs_approval")]
)
def test_dry_run_decides_for_real_and_says_so(units: int, outcome: str) -> None:
    policy = make_policy(
        mode="dry-run",
        per_call="0.50 USD",
        approval={"above": "0.20 USD"},
        budgets=[{"name": "b", "limit": "1 USD"}],
    )
    decision = policy.decide(ctx(units))
    assert decision.mode == "dry-run"
    assert decision.outcome == outcome
    assert decision.shadow is None
    assert decision.limits == (Limit("b", Amount.parse("1 USD")),)


def test_shadow_mode_allows_and_keeps_the_real_decision() -> None:
    policy = make_policy(
        mode="shadow",
        per_call="0.50 USD",
        allow={"hosts": ["api.test"]},
        budgets=[{"name": "b", "limit": "1 USD"}],
    )
    decision = policy.decide(ctx(51))
    assert decision.outcome == "allow" and decision.allowed
    assert decision.mode == "shadow"
    assert decision.charge == Amount.parse("0.51 USD")
    assert decision.rules == (
        RuleResult("mode", True, "shadow mode: paying as a permissive policy would"),
    )
    assert decision.limits == ()
    real = decision.shadow
    assert real is not None
    assert real.outcome == "deny"
    assert real.reasons == (
        "host 'api.example.com' is not in allow.hosts (deny by default; \"*\" allows any)",
        "amount 0.51 USD exceeds the per-call cap 0.50 USD",
    )
    assert real.limits == (Limit("b", Amount.parse("1 USD")),)
    assert decision.to_dict()["shadow"] == real.to_dict()


def test_shadow_mode_with_an_unknown_asset_charges_the_quoted_amount() -> None:
    decision = make_policy(mode="shadow").decide(ctx(7, currency="eur", code="EUR"))
    assert decision.allowed
    assert decision.charge == Amount(7, "EUR", 2)
    assert decision.shadow is not None and decision.shadow.outcome == "deny"


# -- loading ----------------------------------------------------------------------------

TOML = """
currency = "usd"
timezone = "Europe/Paris"
per_call = "0.50 USD"
max_challenge_validity = "15m"
not_before = 2026-01-01T00:00:00Z
expires = "2027-01-01T00:00:00Z"

[per_payee]
"merchant-1" = "0.45 USD"

[[budgets]]
name = "daily"
limit = "5.00 USD"
calendar = "day"

[[budgets]]
name = "hourly"
limit = "2.00 USD"
window = "1h"
when = { env = "peak" }

[[velocity]]
name = "burst"
max = 20
window = "1m"
per_payee = true

[allow]
hosts = ["localhost", "*.example.com"]
payees = ["merchant-1"]
chain_ids = [8453, "*"]

[deny]
hosts = ["ads.example.com"]

[approval]
above = "0.40 USD"
new_payee = true
timeout = "30s"

[anomaly]
factor = "2.5"
history = 5
action = "deny"

[circuit_breaker]
failures = 2
cooldown = "1h30m"

[[overrides]]
when = { env = "peak" }
per_call = "0.75 USD"
per_payee = { "merchant-1" = "0.70 USD" }

[[assets]]
method = "voucher"
currency = "credits"
asset = "usd"
decimals = 3
name = "credits"
"""

JSON = {
    "currency": "USD",
    "timezone": "Europe/Paris",
    "per_call": "0.50 USD",
    "max_challenge_validity": 900,
    "not_before": "2026-01-01T00:00:00Z",
    "expires": "2027-01-01T01:00:00+01:00",
    "per_payee": {"merchant-1": "0.45 USD"},
    "budgets": [
        {"name": "daily", "limit": "5 USD", "calendar": "day"},
        {"name": "hourly", "limit": "2 USD", "window": "60m", "when": {"env": "peak"}},
    ],
    "velocity": [{"name": "burst", "max": 20, "window": "60s", "per_payee": True}],
    "allow": {
        "hosts": ["localhost", "*.example.com"],
        "payees": ["merchant-1"],
        "chain_ids": [8453, "*"],
    },
    "deny": {"hosts": ["ads.example.com"]},
    "approval": {"above": "0.4 USD", "new_payee": True, "timeout": 30},
    "anomaly": {"factor": "2.50", "history": 5, "action": "deny"},
    "circuit_breaker": {"failures": 2, "cooldown": "90m"},
    "overrides": [
        {
            "when": {"env": "peak"},
            "per_call": "0.75 USD",
            "per_payee": {"merchant-1": "0.70 USD"},
        }
    ],
    "assets": [
        {
            "method": "voucher",
            "currency": "credits",
            "asset": "usd",
            "decimals": 3,
            "name": "credits",
        }
    ],
}


def test_toml_and_json_load_the_same_policy(tmp_path: Path) -> None:
    from_toml = Policy.from_toml(TOML)
    from_json = Policy.from_json(json.dumps(JSON))
    assert from_toml == from_json
    assert from_toml.to_dict() == from_json.to_dict()
    (tmp_path / "p.toml").write_text(TOML, encoding="utf-8")
    (tmp_path / "p.JSON").write_text(json.dumps(JSON), encoding="utf-8")
    assert Policy.from_file(tmp_path / "p.toml") == Policy.from_file(str(tmp_path / "p.JSON"))
    # The values landed where they should.
    assert from_toml.currency == "USD"
    assert from_toml.circuit_breaker is not None
    assert from_toml.circuit_breaker.cooldown == timedelta(minutes=90)
    assert from_toml.anomaly is not None and from_toml.anomaly.factor == Fraction(5, 2)
    assert from_toml.zone == ZoneInfo("Europe/Paris")
    assert from_toml.registry.lookup("voucher", "CREDITS", None) is not None
    assert from_toml.expires == utc(2027, 1, 1)
    assert from_toml != make_policy()


def test_to_dict_round_trips() -> None:
    policy = Policy.from_toml(TOML)
    data = policy.to_dict()
    assert data["anomaly"]["factor"] in ("2.5", "5/2")
    assert data["circuit_breaker"]["cooldown"] == "5400s"
    again = Policy.from_mapping(data)
    assert again == policy
    assert again.to_dict() == data
    assert Policy.from_json(json.dumps(data)) == policy
    # The same decisions, too.
    context = ctx(45, payee="merchant-1", host="shop.example.com", tags={"env": "peak"})
    assert again.decide(context) == policy.decide(context)
    # Defaults are left out.
    assert Policy.from_mapping({"currency": "USD", "per_call": "1 USD"}).to_dict() == {
        "currency": "USD",
        "per_call": "1.00 USD",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"budget": []}, "budget: Extra inputs are not permitted"),
        ({"budgets": [{"name": "a", "limit": "1 USD", "windw": "1h"}]}, "budgets.0.windw"),
        ({"allow": {"host": ["x"]}}, "allow.host: Extra inputs"),
        ({"approval": {"above": "1 USD", "timout": "1m"}}, "approval.timout"),
        ({"budgets": [{"name": "a", "limit": "5 EUR"}]}, "budget 'a' is in EUR"),
        ({"per_payee": {"x": "1 GBP"}}, "per_payee['x'] is in GBP; this policy counts in USD"),
        ({"approval": {"above": "1 EUR"}}, "approval.above is in EUR"),
        ({"overrides": [{"when": {"a": "b"}, "per_call": "1 EUR"}]}, "override {'a': 'b'}"),
        ({"overrides": [{"when": {}, "per_call": "1 USD"}]}, "needs at least one tag"),
        ({"max_challenge_validity": "15 minutes"}, "durations are written like"),
        ({"max_challenge_validity": "1.5h"}, "durations are written like"),
        ({"max_challenge_validity": ""}, "durations are written like"),
        ({"max_challenge_validity": -5}, "durations are written like"),
        ({"max_challenge_validity": 1.5}, "durations are written like"),
        ({"per_call": "2,50 USD"}, "per_call: cannot read '2,50 USD'"),
        ({"per_call": "-1 USD"}, "per_call: cannot read"),
        ({"per_call": "USD 2"}, "per_call: cannot read"),
        ({"per_call": 2.5}, "per_call: amounts are written like"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"timezone": "../etc/passwd"}, "unknown time zone"),
        ({"anomaly": {"factor": 2.5}}, "not floats"),
        ({"anomaly": {"factor": True}}, "not floats"),
        ({"anomaly": {"factor": "1"}}, "greater than 1"),
        ({"anomaly": {"factor": "abc"}}, "not a ratio"),
        ({"anomaly": {"factor": "Infinity"}}, "anomaly.factor"),
        ({"anomaly": {"factor": "NaN"}}, "anomaly.factor"),
        (
            {"budgets": [{"name": "a", "limit": "1 USD", "window": "1h", "calendar": "day"}]},
            "a rolling window or a calendar",
        ),
        ({"budgets": [{"name": "a", "limit": "1 USD", "calendar": "year"}]}, "budgets.0.calendar"),
        (
            {"budgets": [{"name": "a", "limit": "1 USD"}, {"name": "a", "limit": "2 USD"}]},
            "budget names must be unique",
        ),
        (
            {"not_before": "2026-02-01T00:00:00Z", "expires": "2026-02-01T00:00:00Z"},
            "expires must come after not_before",
        ),
        ({"expires": "tomorrow"}, "expires"),
        ({"mode": "yolo"}, "mode"),
        ({"version": 2}, "version"),
        ({"velocity": [{"max": 0, "window": "1m"}]}, "velocity.0.max"),
        ({"allow": {"chain_ids": ["8453x"]}}, "allow.chain_ids"),
    ],
)
def test_invalid_policies_are_refused_with_the_setting_named(
    change: dict[str, Any], message: str
) -> None:
    data: dict[str, Any] = {"currency": "USD", "per_call": "1 USD", **change}
    with pytest.raises(PolicyError, match="invalid policy: ") as info:
        Policy.from_mapping(data)
    assert message in str(info.value)


def test_currency_is_required_and_documents_must_parse() -> None:
    with pytest.raises(PolicyError, match="currency: Field required"):
        Policy.from_mapping({"per_call": "1 USD"})
    with pytest.raises(PolicyError, match="not valid TOML"):
        Policy.from_toml("currency = ")
    with pytest.raises(PolicyError, match="not valid JSON"):
        Policy.from_json("{")


# -- the decision itself ----------------------------------------------------------------


def test_every_rule_runs_and_reasons_name_the_failures() -> None:
    policy = make_policy(
        per_call="0.50 USD", allow={"hosts": ["api.test"]}, deny={"payees": ["merchant"]}
    )
    decision = policy.decide(ctx(51))
    assert decision.reasons == (
        "host 'api.example.com' is not in allow.hosts (deny by default; \"*\" allows any)",
        "payee 'merchant' is on deny.payees",
        "amount 0.51 USD exceeds the per-call cap 0.50 USD",
    )
    assert rule_names(decision) == [
        "allow.hosts",
        "allow.realms",
        "deny.payees",
        "allow.methods",
        "allow.intents",
        "asset",
        "allow.assets",
        "per_call",
    ]


def test_allowed_decision_reasons_and_to_dict() -> None:
    decision = make_policy(per_call="0.50 USD").decide(ctx(25))
    assert decision.outcome == "allow"
    assert decision.reasons == tuple(r.reason for r in decision.rules)
    assert "asset dev-usd counts as 0.25 USD" in decision.reasons
    assert "0.25 USD is within the per-call cap 0.50 USD" in decision.reasons
    data = decision.to_dict()
    assert data["outcome"] == "allow"
    assert data["mode"] == "enforce"
    assert data["charge"] == "0.25 USD"
    assert "shadow" not in data
    assert data["rules"][0] == {
        "rule": "allow.hosts",
        "passed": True,
        "approval": False,
        "reason": "host 'api.example.com' is allowed",
    }
    assert len(data["rules"]) == len(decision.rules)
    json.dumps(data)  # JSON-ready


def test_needs_approval_to_dict_marks_the_approval_rule() -> None:
    decision = make_policy(approval={"above": "0.10 USD"}).decide(ctx(11))
    data = decision.to_dict()
    assert data["outcome"] == "needs_approval"
    flagged = [r for r in data["rules"] if r["approval"]]
    assert flagged == [
        {
            "rule": "approval.above",
            "passed": False,
            "approval": True,
            "reason": "0.11 USD is above the approval threshold 0.10 USD",
        }
    ]
    denied = make_policy(mode="dry-run").decide(ctx(1, currency="eur", code="EUR")).to_dict()
    assert denied["charge"] is None
    assert denied["mode"] == "dry-run"
