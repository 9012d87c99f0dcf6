"""``mpp policy check FILE``: validate a policy, then say what it allows in plain words.

The sentences follow the engine's rules one by one (mpp_client/policy/_engine.py),
in the order it evaluates them, so what an owner reads is what the agent
will be held to. Warnings point at settings that refuse everything (an
empty allow list) or allow a great deal (``"*"`` hosts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._common import duration

if TYPE_CHECKING:
    from ..policy import Policy
    from ..policy._model import Lists

__all__ = ["Explanation", "explain"]

_DIMENSIONS = (
    ("hosts", "hosts"),
    ("realms", "realms"),
    ("payees", "payees"),
    ("methods", "payment methods"),
    ("intents", "intents"),
    ("assets", "assets"),
)


@dataclass
class Explanation:
    """What a policy does, as sentences grouped by topic, and the warnings."""

    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, title: str, *lines: str) -> None:
        lines_ = [line for line in lines if line]
        if lines_:
            self.sections.append((title, lines_))

    def to_dict(self) -> dict[str, object]:
        return {
            "sections": [{"title": t, "rules": lines} for t, lines in self.sections],
            "warnings": self.warnings,
        }


def _names(values: tuple[object, ...]) -> str:
    return ", ".join(str(v) for v in values)


def _list_rules(policy: Policy, explanation: Explanation) -> list[str]:
    allow: Lists = policy.allow
    deny: Lists = policy.deny
    lines = []
    for attr, words in (*_DIMENSIONS, ("chain_ids", "chains")):
        allowed: tuple[object, ...] = getattr(allow, attr)
        denied: tuple[object, ...] = getattr(deny, attr)
        if attr == "chain_ids":
            if allowed:
                lines.append(
                    "Payments on a chain: any chain."
                    if "*" in allowed
                    else f"Payments on a chain: only chains {_names(allowed)}."
                )
            else:
                lines.append("Payments that name a chain are refused (no allow.chain_ids).")
        elif "*" in allowed:
            lines.append(f"Any {words[:-1] if words.endswith('s') else words} is allowed.")
            if attr == "hosts":
                explanation.warnings.append(
                    'allow.hosts is "*": the agent may pay any server on the internet'
                )
        elif allowed:
            lines.append(f"Only these {words}: {_names(allowed)}.")
        else:
            lines.append(f"No {words[:-1]} is allowed: every payment is refused.")
            explanation.warnings.append(
                f"allow.{attr} is empty: every payment is refused (deny by default)"
            )
        if denied:
            lines.append(f"Never these {words}, whatever else allows them: {_names(denied)}.")
    return lines


def explain(policy: Policy) -> Explanation:
    """The policy, rule by rule, in plain words."""
    explanation = Explanation()
    mode = {
        "enforce": "Payments the rules allow are made; every other one is refused.",
        "dry-run": "Dry run: every decision is reported and nothing is ever paid.",
        "shadow": (
            "Shadow mode: payments are made as a permissive policy would, and what this "
            "policy would have refused is logged."
        ),
    }[policy.mode]
    if policy.mode == "shadow":
        explanation.warnings.append("mode is shadow: the rules below are not enforced")
    validity = []
    if policy.not_before is not None:
        validity.append(f"In force from {policy.not_before.isoformat()}.")
    if policy.expires is not None:
        validity.append(f"Expires at {policy.expires.isoformat()}; after that nothing is paid.")
    explanation.add(
        "Authority",
        mode,
        f"Amounts count in {policy.currency}; calendar periods follow {policy.timezone}.",
        *validity,
    )
    explanation.add("Who, where and how", *_list_rules(policy, explanation))
    registry = (
        "Assets are valued with the built-in registry (USDC, pathUSD, Stripe usd...)"
        if policy.builtin_assets
        else "Only the assets listed in this policy are known"
    )
    extra = f", plus {len(policy.assets)} listed here" if policy.assets else ""
    explanation.add(
        "What",
        f"{registry}{extra}; an asset that is not worth {policy.currency} is refused.",
        (
            "Terms that stay open longer than "
            f"{duration(policy.max_challenge_validity)} are refused."
            if policy.max_challenge_validity is not None
            else ""
        ),
    )
    amounts = [f"No single payment above {policy.per_call}."]
    amounts += [f"At most {cap} per payment to {payee}." for payee, cap in policy.per_payee.items()]
    for override in policy.overrides:
        tags = ", ".join(f"{k}={v}" for k, v in override.when.items())
        parts = []
        if override.per_call is not None:
            parts.append(f"up to {override.per_call} per payment")
        parts += [f"up to {cap} to {payee}" for payee, cap in override.per_payee.items()]
        amounts.append(f"Calls tagged {tags} may pay {' and '.join(parts) or 'as above'}.")
    if policy.signing is not None and policy.signing.hardware_above is not None:
        amounts.append(
            f"Above {policy.signing.hardware_above}, only a hardware-held key may sign a payment."
        )
    explanation.add("How much", *amounts)
    budgets = []
    for budget in policy.budgets:
        if budget.window is not None:
            period = f"in any {duration(budget.window)} (rolling)"
        elif budget.calendar is not None:
            period = f"per calendar {budget.calendar}"
        else:
            period = "in total (lifetime)"
        scope = []
        if budget.payee:
            scope.append(f"to {budget.payee}")
        if budget.method:
            scope.append(f"via {budget.method}")
        if budget.when:
            scope.append(
                "for calls tagged " + ", ".join(f"{k}={v}" for k, v in budget.when.items())
            )
        where = f" {' '.join(scope)}" if scope else ""
        budgets.append(f"Budget {budget.name!r}: at most {budget.limit} {period}{where}.")
    if budgets:
        budgets.append("Payments held, made or of unknown outcome all count until settled.")
    else:
        explanation.warnings.append("no budget: only the per-call caps limit total spend")
    explanation.add("Budgets", *budgets)
    pace = []
    for velocity in policy.velocity:
        each = " to each payee" if velocity.per_payee else ""
        pace.append(
            f"Rate {velocity.name!r}: at most {velocity.max} payments{each} "
            f"per {duration(velocity.window)}."
        )
    if policy.circuit_breaker is not None:
        breaker = policy.circuit_breaker
        pace.append(
            f"After {breaker.failures} paid-then-failed calls in a row to a payee, it is not "
            f"paid for {duration(breaker.cooldown)}."
        )
    explanation.add("Pace", *pace)
    people = []
    approval = policy.approval
    if approval is not None:
        if approval.above is not None:
            people.append(f"A person must approve any payment above {approval.above}.")
        if approval.new_payee:
            people.append("A person must approve the first payment to a payee never paid before.")
        people.append(
            f"Without an answer within {duration(approval.timeout)}, the payment is refused."
        )
    if policy.anomaly is not None:
        anomaly = policy.anomaly
        action = "needs an approval" if anomaly.action == "approve" else "is refused"
        people.append(
            f"A payment over {anomaly.factor} times the median of the last {anomaly.history} "
            f"payments to the same payee {action} (once {anomaly.min_history} exist)."
        )
    explanation.add("People", *people)
    return explanation
