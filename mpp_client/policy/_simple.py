"""The simplest correct policy: a per-call cap and a total budget, one currency."""

from __future__ import annotations

from collections.abc import Iterable

from .._decision import program_scope
from ..money import Amount
from ._base import Decision, Limit, Outcome, PaymentContext, RuleResult, SpendPolicy

__all__ = ["SimplePolicy"]


class SimplePolicy(SpendPolicy):
    """Allow a payment when it is in the policy currency, within the per-call cap,
    by an allowed method, and within the caller's own ``max_amount``.
    The total ``budget`` is handed to the ledger to enforce atomically.

    Anything else is refused, with the reason: an asset in another currency,
    a method not named in ``methods`` (when given), a payee other than the one
    the caller expected.

    The budget belongs to ``scope``: payments of other scopes on the same
    ledger never use it up. By default the scope is the running program
    (:func:`~mpp_client.policy.program_scope`); programs that should share
    one budget (a fleet) name the same scope.

    >>> policy = SimplePolicy(max_per_call="0.50 USD", budget="5.00 USD", scope="nightly-report")
    """

    def __init__(
        self,
        *,
        max_per_call: Amount | str,
        budget: Amount | str | None = None,
        methods: Iterable[str] | None = None,
        scope: str | None = None,
    ) -> None:
        self.max_per_call = Amount.coerce(max_per_call)
        self.budget = Amount.coerce(budget) if budget is not None else None
        self.currency = self.max_per_call.currency
        if self.budget is not None and self.budget.currency != self.currency:
            raise ValueError("max_per_call and budget must be in the same currency")
        self.methods = frozenset(methods) if methods is not None else None
        self.scope = scope if scope is not None else program_scope()

    def decide(self, context: PaymentContext) -> Decision:
        amount = context.quote.amount
        rules: list[RuleResult] = []
        if amount.currency != self.currency:
            rules.append(
                RuleResult(
                    "asset",
                    False,
                    f"asset {amount.currency} is not covered by this policy "
                    f"(it budgets in {self.currency})",
                )
            )
            return Decision("deny", tuple(rules), scope=self.scope)
        rules.append(RuleResult("asset", True, f"asset {amount.currency} is the policy currency"))
        if self.methods is not None:
            ok = context.quote.method in self.methods
            rules.append(
                RuleResult(
                    "method",
                    ok,
                    f"method {context.quote.method!r} is "
                    + ("allowed" if ok else f"not in the allowed methods {sorted(self.methods)}"),
                )
            )
        if amount.units < 0:
            rules.append(RuleResult("amount", False, f"amount {amount} is negative"))
        ok = amount <= self.max_per_call
        rules.append(
            RuleResult(
                "max_per_call",
                ok,
                f"amount {amount} "
                + ("is within" if ok else "exceeds")
                + f" the per-call cap {self.max_per_call}",
            )
        )
        if context.max_amount is not None:
            if context.max_amount.currency != self.currency:
                rules.append(
                    RuleResult(
                        "call.max_amount",
                        False,
                        f"the call's max_amount {context.max_amount} is not in {self.currency}",
                    )
                )
            else:
                ok = amount <= context.max_amount
                rules.append(
                    RuleResult(
                        "call.max_amount",
                        ok,
                        f"amount {amount} "
                        + ("is within" if ok else "exceeds")
                        + f" the call's max_amount {context.max_amount}",
                    )
                )
        if context.expected_payee is not None:
            ok = context.quote.payee == context.expected_payee
            rules.append(
                RuleResult(
                    "call.payee",
                    ok,
                    f"payee {context.quote.payee!r} "
                    + ("is" if ok else "is not")
                    + f" the payee the call expected ({context.expected_payee!r})",
                )
            )
        limits = (
            (Limit("budget", self.budget, scope=self.scope),) if self.budget is not None else ()
        )
        outcome: Outcome = "allow" if all(r.passed for r in rules) else "deny"
        return Decision(outcome, tuple(rules), limits, charge=amount, scope=self.scope)

    def __repr__(self) -> str:
        return (
            f"SimplePolicy(max_per_call={self.max_per_call}, budget={self.budget}, "
            f"scope={self.scope!r})"
        )
