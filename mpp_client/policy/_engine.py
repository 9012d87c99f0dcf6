"""How a :class:`Policy` decides: every rule evaluated, every outcome explained.

Rules run in a fixed order and all of them run, even after one refused, so
the decision records the complete picture for the audit trail. Budgets and
rates are also handed to the ledger as :class:`Limit` objects, because only
the ledger can check them atomically against concurrent payments.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, time, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from ..money import Amount
from ._base import Decision, Limit, Outcome, PaymentContext, RuleResult
from ._model import Budget, Lists, Policy

__all__ = ["decide", "period_start"]


def period_start(now: datetime, calendar: str, zone: ZoneInfo) -> datetime:
    """The first instant of the current day, week (Monday) or month in ``zone``.

    Computed as a local wall-clock midnight, then normalised: where a DST jump
    skips midnight, the period starts at the first instant that exists.
    """
    local = now.astimezone(zone)
    day = local.date()
    if calendar == "week":
        day -= timedelta(days=day.weekday())
    elif calendar == "month":
        day = day.replace(day=1)
    start = datetime.combine(day, time(0), tzinfo=zone)
    # A skipped midnight maps to an instant after the jump; round-tripping finds it.
    roundtrip = start.astimezone(UTC).astimezone(zone)
    if roundtrip.replace(tzinfo=None) != start.replace(tzinfo=None):
        start = roundtrip
    return start.astimezone(now.tzinfo)


def host_matches(pattern: str, host: str) -> bool:
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def _listed(values: Iterable[object], value: object, *, host: bool = False) -> bool:
    for entry in values:
        if entry == "*":
            return True
        if host and isinstance(entry, str) and isinstance(value, str):
            if host_matches(entry, value):
                return True
        elif isinstance(entry, str) and isinstance(value, str):
            if entry.lower() == value.lower():
                return True
        elif entry == value:
            return True
    return False


def _tags_match(when: Mapping[str, str], tags: Mapping[str, str]) -> bool:
    return all(tags.get(key) == value for key, value in when.items())


class _Rules:
    """Collects rule results for one decision."""

    def __init__(self) -> None:
        self.results: list[RuleResult] = []

    def check(self, rule: str, ok: bool, good: str, bad: str) -> bool:
        self.results.append(RuleResult(rule, ok, good if ok else bad))
        return ok

    def approve(self, rule: str, reason: str) -> None:
        self.results.append(RuleResult(rule, False, reason, approval=True))

    def outcome(self) -> Outcome:
        if any(not r.passed and not r.approval for r in self.results):
            return "deny"
        if any(r.approval for r in self.results):
            return "needs_approval"
        return "allow"


def _lists(rules: _Rules, allow: Lists, deny: Lists, dimension: str, value: object) -> None:
    host = dimension == "hosts"
    label = dimension.rstrip("s").replace("_", " ")
    if _listed(getattr(deny, dimension), value, host=host):
        rules.check(f"deny.{dimension}", False, "", f"{label} {value!r} is on deny.{dimension}")
        return
    allowed = _listed(getattr(allow, dimension), value, host=host)
    rules.check(
        f"allow.{dimension}",
        allowed,
        f"{label} {value!r} is allowed",
        f'{label} {value!r} is not in allow.{dimension} (deny by default; "*" allows any)',
    )


def _budget_limit(budget: Budget, now: datetime, zone: ZoneInfo, scope: str) -> Limit:
    since: datetime | None = None
    if budget.window is not None:
        since = now - budget.window
    elif budget.calendar is not None:
        since = period_start(now, budget.calendar, zone)
    return Limit(
        budget.name,
        budget.limit,
        since=since,
        payee=budget.payee,
        method=budget.method,
        tags=dict(budget.when),
        scope=scope,
    )


def _budget_rule(rules: _Rules, context: PaymentContext, limit: Limit, charge: Amount) -> None:
    """Say where a budget stands. The ledger re-checks it atomically when reserving;
    checking here too means nobody is asked to approve a payment it would refuse."""
    history = context.history
    cap = limit.cap
    if (
        history is None
        or cap is None
        or (limit.payee is not None and limit.payee != context.quote.payee)
    ):
        return
    if limit.method is not None and limit.method != context.quote.method:
        return
    # From the ledger's running totals: the same cost at the millionth payment.
    used = history.usage(limit).spent or Amount.zero(cap.currency, cap.decimals)
    rules.check(
        f"budget.{limit.name}",
        used + charge <= cap,
        f"budget {limit.name!r}: {used} of {cap} used, {charge} fits",
        limit.budget_refusal(charge, used, history.location),
    )


def decide(policy: Policy, context: PaymentContext) -> Decision:
    """Evaluate every rule of ``policy`` for ``context``."""
    rules = _Rules()
    now = context.now
    quote = context.quote
    challenge = context.challenge
    payee = quote.payee
    tags = dict(context.tags)
    scope = policy.budget_scope

    # Where the authority comes from, and whether it is still in force.
    if policy.mandate is not None:
        mandate = policy.mandate
        rules.check(
            "mandate",
            True,
            f"delegated by {mandate.owner} to {mandate.agent} (mandate {mandate.id})",
            "",
        )
    if policy.not_before is not None:
        rules.check(
            "not_before",
            now >= policy.not_before,
            "policy is in force",
            f"policy is not in force before {policy.not_before.isoformat()}",
        )
    if policy.expires is not None:
        rules.check(
            "expires",
            now < policy.expires,
            "policy has not expired",
            f"policy expired at {policy.expires.isoformat()}",
        )

    # Who, where and how: allow and deny lists.
    _lists(rules, policy.allow, policy.deny, "hosts", context.host)
    _lists(rules, policy.allow, policy.deny, "realms", challenge.realm)
    _lists(rules, policy.allow, policy.deny, "payees", payee)
    _lists(rules, policy.allow, policy.deny, "methods", quote.method)
    _lists(rules, policy.allow, policy.deny, "intents", quote.intent)
    if quote.chain_id is not None:
        _lists(rules, policy.allow, policy.deny, "chain_ids", quote.chain_id)

    # What: the asset, valued in the policy currency.
    entry = policy.registry.lookup(quote.method, quote.currency, quote.chain_id)
    charge: Amount | None = None
    where = f" on chain {quote.chain_id}" if quote.chain_id is not None else ""
    if entry is None:
        rules.check(
            "asset",
            False,
            "",
            f"asset {quote.currency!r} via {quote.method}{where} is not in the asset registry",
        )
    elif entry.asset != policy.currency:
        rules.check(
            "asset",
            False,
            "",
            f"asset {entry.name or quote.currency} is worth {entry.asset}, "
            f"not the policy currency {policy.currency}",
        )
    else:
        charge = Amount(quote.amount.units, policy.currency, entry.decimals)
        rules.check("asset", True, f"asset {entry.name or quote.currency} counts as {charge}", "")
        names = [n for n in (entry.name, quote.currency) if n]
        denied = [n for n in names if _listed(policy.deny.assets, n)]
        allowed = any(_listed(policy.allow.assets, n) for n in names)
        if denied:
            rules.check("deny.assets", False, "", f"asset {denied[0]!r} is on deny.assets")
        else:
            rules.check(
                "allow.assets",
                allowed,
                f"asset {names[0]!r} is allowed",
                f'asset {names[0]!r} is not in allow.assets (deny by default; "*" allows any)',
            )

    # When: how long the challenge asks us to commit to.
    if policy.max_challenge_validity is not None:
        expires = quote.expires or challenge.expires
        limit = policy.max_challenge_validity
        if expires is None:
            rules.check("max_challenge_validity", False, "", "challenge has no expiry")
        else:
            rules.check(
                "max_challenge_validity",
                expires - now <= limit,
                "challenge validity is within the accepted window",
                f"challenge stays valid for {expires - now}, longer than the accepted {limit}",
            )

    limits: list[Limit] = []
    if charge is not None:
        _amount_rules(rules, policy, context, charge, tags, scope=scope)
        # Budgets: explained here, held atomically by the ledger at reservation.
        for budget in policy.budgets:
            if _tags_match(budget.when, tags):
                held = _budget_limit(budget, now, policy.zone, scope)
                limits.append(held)
                _budget_rule(rules, context, held, charge)
    _velocity(rules, policy, context, tags, limits, scope=scope)
    _breaker(rules, policy, context, scope)

    outcome = rules.outcome()
    timeout = policy.approval.timeout.total_seconds() if policy.approval else 60.0
    decision = Decision(
        outcome,
        tuple(rules.results),
        tuple(limits),
        charge=charge,
        mode=policy.mode,
        approval_timeout=timeout,
        scope=scope,
    )
    if policy.mode == "shadow":
        # Pay as a permissive policy would, but keep what this one would decide.
        return Decision(
            "allow",
            (RuleResult("mode", True, "shadow mode: paying as a permissive policy would"),),
            (),
            charge=charge
            or Amount(quote.amount.units, quote.amount.currency, quote.amount.decimals),
            mode="shadow",
            shadow=decision,
            scope=scope,
        )
    return decision


def _amount_rules(
    rules: _Rules,
    policy: Policy,
    context: PaymentContext,
    charge: Amount,
    tags: dict[str, str],
    *,
    scope: str,
) -> None:
    payee = context.quote.payee
    per_call = policy.per_call
    # Keyed like the payee lists match: case-insensitively.
    per_payee = {name.lower(): cap for name, cap in policy.per_payee.items()}
    for override in policy.overrides:
        if _tags_match(override.when, tags):
            per_call = override.per_call or per_call
            per_payee.update((name.lower(), cap) for name, cap in override.per_payee.items())
    rules.check(
        "per_call",
        charge <= per_call,
        f"{charge} is within the per-call cap {per_call}",
        f"amount {charge} exceeds the per-call cap {per_call}",
    )
    payee_cap = per_payee.get(payee.lower())
    if payee_cap is not None:
        rules.check(
            "per_payee",
            charge <= payee_cap,
            f"{charge} is within the cap for {payee!r} ({payee_cap})",
            f"amount {charge} exceeds the per-call cap for {payee!r} ({payee_cap})",
        )
    if context.max_amount is not None:
        if context.max_amount.currency != charge.currency:
            rules.check(
                "call.max_amount",
                False,
                "",
                f"the call's max_amount {context.max_amount} is not in {charge.currency}",
            )
        else:
            rules.check(
                "call.max_amount",
                charge <= context.max_amount,
                f"{charge} is within the call's max_amount",
                f"amount {charge} exceeds the call's max_amount {context.max_amount}",
            )
    _signing(rules, policy, context, charge)
    if context.expected_payee is not None:
        rules.check(
            "call.payee",
            payee == context.expected_payee,
            "payee is the one the call expected",
            f"payee {payee!r} is not the payee the call expected ({context.expected_payee!r})",
        )
    history = context.history
    approval = policy.approval
    if approval is not None:
        if approval.above is not None and charge > approval.above:
            rules.approve(
                "approval.above", f"{charge} is above the approval threshold {approval.above}"
            )
        if approval.new_payee and history is not None and not history.has_paid(payee, scope=scope):
            rules.approve("approval.new_payee", f"{payee!r} has never been paid before")
    anomaly = policy.anomaly
    if anomaly is not None and history is not None:
        recent = [
            c
            for c in history.recent_charges(payee, anomaly.history, scope=scope)
            if c.currency == charge.currency
        ]
        if len(recent) >= anomaly.min_history:
            scale = max(c.decimals for c in [*recent, charge])
            median = statistics.median(Fraction(c.rescale(scale).units) for c in recent)
            unusual = Fraction(charge.rescale(scale).units) > anomaly.factor * median
            if unusual:
                reason = (
                    f"{charge} is more than {anomaly.factor} times the median of the last "
                    f"{len(recent)} payments to {payee!r}"
                )
                if anomaly.action == "deny":
                    rules.check("anomaly", False, "", reason)
                else:
                    rules.approve("anomaly", reason)
            else:
                rules.check("anomaly", True, "amount is in line with recent payments", "")


def _signing(rules: _Rules, policy: Policy, context: PaymentContext, charge: Amount) -> None:
    threshold = policy.signing.hardware_above if policy.signing else None
    if threshold is None:
        return
    where = context.signer_location or "an unknown place"
    if charge <= threshold:
        rules.check(
            "signing.hardware_above",
            True,
            f"{charge} is not above {threshold}: a key in {where} may sign it",
            "",
        )
        return
    rules.check(
        "signing.hardware_above",
        context.signer_hardware,
        f"{charge} is above {threshold} and the signing key is hardware-held ({where})",
        f"amount {charge} is above signing.hardware_above {threshold} and the key that "
        f"would sign it is not hardware-held (it lives in {where})",
    )


def _velocity(
    rules: _Rules,
    policy: Policy,
    context: PaymentContext,
    tags: dict[str, str],
    limits: list[Limit],
    *,
    scope: str,
) -> None:
    payee = context.quote.payee
    for velocity in policy.velocity:
        if not _tags_match(velocity.when, tags):
            continue
        since = context.now - velocity.window
        who = payee if velocity.per_payee else None
        limit = Limit(velocity.name, max_count=velocity.max, since=since, payee=who, scope=scope)
        limits.append(limit)
        if context.history is None:
            continue
        made = context.history.usage(limit).count
        target = f" to {payee!r}" if who else ""
        rules.check(
            f"velocity.{velocity.name}",
            made < velocity.max,
            f"{made} of {velocity.max} payments{target} in the last {velocity.window}",
            f"already {made} payments{target} in the last {velocity.window} "
            f"(at most {velocity.max})",
        )


def _breaker(rules: _Rules, policy: Policy, context: PaymentContext, scope: str) -> None:
    breaker = policy.circuit_breaker
    if breaker is None or context.history is None:
        return
    payee = context.quote.payee
    streak, latest = context.history.failure_streak(payee, scope=scope)
    tripped = (
        streak >= breaker.failures
        and latest is not None
        and context.now - latest < breaker.cooldown
    )
    rules.check(
        "circuit_breaker",
        not tripped,
        f"{payee!r} has {streak} recent failures after payment",
        f"{payee!r} failed {streak} times in a row after being paid; "
        f"not paying it until {(latest or context.now) + breaker.cooldown:%Y-%m-%d %H:%M:%S %Z}",
    )
