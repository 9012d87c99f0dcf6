"""What a request would cost, and what the policy would say: a quote, never a payment.

``Client.quote(url)`` sends the request without paying (the flow's
``pay: False``), reads every offer of the 402, quotes each with the
configured methods and asks the policy about it, exactly as the payment flow
would (:meth:`~._call.Call.evaluate`, the step :meth:`~._call.Call.plan` runs
for each candidate), and stops there: no challenge is claimed, nothing is
reserved or written to the ledger, no wallet is asked to pay. A policy reads
the ledger and never writes it, so asking it is already a dry run; its
``dry-run`` mode only changes what the result says would happen.

The result is advisory in time too: budgets move and challenges expire, so
the payment made later decides afresh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from .._exceptions import ChallengeError, InsecureTransport
from .._text import printable
from ..methods import PaymentMethod
from ..money import Amount
from ..policy import Decision
from ..protocol import Challenge, ChargeTerms, Quote, charge_terms
from ._call import Call
from ._engine import Engine, Target
from ._offers import http_offers
from ._options import CallOptions
from ._transport import check_transport, redact_url

__all__ = ["QuoteResult", "QuotedOffer", "quote_response"]


@dataclass(frozen=True, slots=True)
class QuotedOffer:
    """One offer of a 402, and what this client would make of it.

    ``method`` is the configured payment method that would pay it (None when
    no configured method supports it); ``quote`` is that method's reading of
    the terms and ``decision`` the policy's answer, with every rule (both
    None when the offer could not be quoted: ``error`` says why). ``terms``
    are the raw ``charge`` terms as the server wrote them, for display when
    no wallet could quote the offer. ``description`` is the server's text:
    display only, never trusted.
    """

    challenge: Challenge
    method: str | None = None
    quote: Quote | None = None
    decision: Decision | None = None
    error: str | None = None
    terms: ChargeTerms | None = None
    chosen: bool = False

    @property
    def key(self) -> str:
        """``method/intent`` of the offer."""
        return self.challenge.key

    @property
    def intent(self) -> str:
        return self.challenge.intent

    @property
    def amount(self) -> Amount | None:
        """What paying would cost, in the method's asset (None if not quoted)."""
        return self.quote.amount if self.quote is not None else None

    @property
    def charge(self) -> Amount | None:
        """What it would count for against budgets, in the policy currency."""
        return self.decision.charge if self.decision is not None else None

    @property
    def payee(self) -> str | None:
        if self.quote is not None:
            return self.quote.payee
        return self.terms.recipient if self.terms is not None else None

    @property
    def expires(self) -> datetime | None:
        if self.quote is not None and self.quote.expires is not None:
            return self.quote.expires
        if self.terms is not None and self.terms.expires is not None:
            return self.terms.expires
        return self.challenge.expires

    @property
    def allowed(self) -> bool:
        """True when the policy would allow paying it (possibly after an approval)."""
        return self.decision is not None and self.decision.outcome in ("allow", "needs_approval")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: public terms only (server strings as received)."""
        terms = self.terms
        return {
            "method": self.challenge.method,
            "intent": self.challenge.intent,
            "realm": self.challenge.realm,
            "challenge_id": self.challenge.id,
            "paid_with": self.method,
            "amount": str(self.amount) if self.amount is not None else None,
            "charge": str(self.charge) if self.charge is not None else None,
            "requested": (
                {"amount": str(terms.amount), "currency": terms.currency}
                if terms is not None
                else None
            ),
            "payee": self.payee,
            "expires": self.expires.isoformat() if self.expires is not None else None,
            "description": self.challenge.description,
            "chosen": self.chosen,
            "decision": self.decision.to_dict() if self.decision is not None else None,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class QuoteResult:
    """What a request would cost and what the policy would decide. Nothing was paid.

    ``offers`` are the 402's offers in the server's order; ``chosen`` the
    one the payment flow would pick (the first, in the client's method
    preference, that quotes and that the policy allows or would send for
    approval), or None. ``would_pay`` is True when the flow would go on to
    pay it; otherwise ``reasons`` say why not (the policy's refusal, a
    dry-run policy, plain HTTP, no offer the client can pay...).
    ``decision`` is the chosen offer's decision, or the refusal that
    explains most when none was chosen.
    """

    url: str
    http_method: str
    status_code: int
    offers: tuple[QuotedOffer, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def payment_required(self) -> bool:
        """True when the server answered 402."""
        return self.status_code == 402

    @property
    def chosen(self) -> QuotedOffer | None:
        return next((offer for offer in self.offers if offer.chosen), None)

    @property
    def would_pay(self) -> bool:
        return self.chosen is not None and not self.reasons

    @property
    def needs_approval(self) -> bool:
        """True when paying the chosen offer would first ask the approver."""
        chosen = self.chosen
        return (
            chosen is not None
            and chosen.decision is not None
            and chosen.decision.outcome == "needs_approval"
        )

    @property
    def decision(self) -> Decision | None:
        chosen = self.chosen
        if chosen is not None:
            return chosen.decision
        decided = [offer.decision for offer in self.offers if offer.decision is not None]
        return decided[0] if decided else None

    def to_dict(self) -> dict[str, Any]:
        decision = self.decision
        return {
            "url": self.url,
            "http_method": self.http_method,
            "status_code": self.status_code,
            "payment_required": self.payment_required,
            "would_pay": self.would_pay,
            "needs_approval": self.needs_approval,
            "chosen": self.offers.index(self.chosen) if self.chosen is not None else None,
            "decision": decision.to_dict() if decision is not None else None,
            "reasons": list(self.reasons),
            "offers": [offer.to_dict() for offer in self.offers],
        }


def quote_options(extensions: Mapping[str, Any] | None) -> dict[str, Any]:
    """The request extensions for a quote: the caller's, with payment switched off."""
    merged = dict(extensions or {})
    options = merged.get("mpp")
    merged["mpp"] = {**(options if isinstance(options, Mapping) else {}), "pay": False}
    return merged


def quote_response(engine: Engine | None, response: httpx.Response) -> QuoteResult:
    """Quote every offer of ``response`` (the unpaid answer to its request).

    Runs the flow's own choosing and deciding for each offer, writes nothing.
    ``engine`` is None for a client that has no payment methods. Raises
    :class:`~mpp_client.ChallengeError` only for a ``WWW-Authenticate`` that
    cannot be read at all (oversized); everything else is in the result.
    """
    request = response.request
    url = redact_url(request.url)
    status = response.status_code
    if status != 402:
        return QuoteResult(
            url,
            request.method,
            status,
            reasons=(f"the server answered HTTP {status}: it did not ask for payment",),
        )
    # The offers the flow would pay from: MPP challenges and x402 terms alike.
    offers, broken = http_offers(response, engine.clock() if engine else datetime.now(UTC))
    reasons = [f"malformed challenge: {e.message}" for e in broken]
    if not offers:
        reasons.insert(0, "the 402 response has no usable Payment challenge")
        return QuoteResult(url, request.method, status, reasons=tuple(reasons))
    if engine is None:
        unquoted = tuple(_unquoted(c, "this client has no payment methods") for c in offers)
        reasons.insert(0, "this client has no payment methods: it pays nothing")
        return QuoteResult(url, request.method, status, unquoted, tuple(reasons))
    # The call's narrowing (max_amount, payee) applies to the quote as to a payment.
    call = Call(engine, CallOptions.from_request(request))
    quoted = _evaluate(call, offers, Target.of(request))
    chosen = next((q for q in quoted if q.chosen), None)
    blockers: list[str] = []
    try:
        check_transport(
            request.url, response, allow_insecure_localhost=engine.allow_insecure_localhost
        )
    except InsecureTransport as exc:
        blockers.append(exc.message)
    if engine.max_payments < 1:
        blockers.append("max_payments is 0: this client never pays")
    if chosen is None:
        blockers.extend(_refusals(quoted))
        blockers.extend(reasons)
    elif chosen.decision is not None and chosen.decision.mode == "dry-run":
        blockers.append("the policy is in dry-run mode: it reports decisions and never pays")
    ordered = tuple(sorted(quoted, key=lambda q: offers.index(q.challenge)))
    return QuoteResult(url, request.method, status, ordered, tuple(blockers))


def _evaluate(call: Call, offers: Sequence[Challenge], target: Target) -> list[QuotedOffer]:
    """Every offer quoted and decided, the chosen one marked, in preference order."""
    engine = call.engine
    now = engine.clock()
    # The same ranking as the flow's plan: configured method order, then the server's.
    candidates = call._candidates(offers, [])
    ranked = {id(challenge) for _, challenge in candidates}
    quoted: list[QuotedOffer] = []
    chosen = False
    for method, challenge in candidates:
        entry = _quote_one(call, method, challenge, target, now)
        outcome = entry.decision.outcome if entry.decision is not None else None
        wanted = outcome == "allow" or (outcome == "needs_approval" and engine.approver is not None)
        if wanted and not chosen:
            chosen = True
            entry = _replace_chosen(entry)
        quoted.append(entry)
    for challenge in offers:
        if id(challenge) not in ranked:
            why = (
                "already answered (challenges are single use)"
                if engine.was_used(challenge)
                else "no configured payment method supports it "
                f"(configured: {', '.join(m.name for m in engine.methods) or 'none'})"
            )
            quoted.append(_unquoted(challenge, why))
    return quoted


def _quote_one(
    call: Call, method: PaymentMethod, challenge: Challenge, target: Target, now: datetime
) -> QuotedOffer:
    terms = _terms(challenge)
    try:
        offer, decision = call.evaluate(method, challenge, target, now)
    except ChallengeError as exc:
        return QuotedOffer(challenge, method.name, error=exc.message, terms=terms)
    return QuotedOffer(challenge, method.name, offer.quote, decision, terms=terms)


def _replace_chosen(entry: QuotedOffer) -> QuotedOffer:
    return QuotedOffer(
        entry.challenge, entry.method, entry.quote, entry.decision, entry.error, entry.terms, True
    )


def _unquoted(challenge: Challenge, why: str) -> QuotedOffer:
    return QuotedOffer(challenge, error=why, terms=_terms(challenge))


def _terms(challenge: Challenge) -> ChargeTerms | None:
    if challenge.intent != "charge":
        return None
    try:
        return charge_terms(challenge)
    except ChallengeError:
        return None


def _refusals(quoted: Sequence[QuotedOffer]) -> list[str]:
    """Why each offer would not be paid, policy refusals first (they explain most)."""
    refused: list[str] = []
    unusable: list[str] = []
    for entry in quoted:
        where = f"{entry.key} {printable(entry.challenge.id, 80)!r}"
        decision = entry.decision
        if decision is not None:
            why = "; ".join(decision.reasons) or "no reason given"
            if decision.outcome == "needs_approval":
                why = f"needs an approval and no approver is configured ({why})"
            refused.append(f"{where}: {why}")
        elif entry.error is not None:
            unusable.append(f"{where}: {entry.error}")
    return refused + unusable
