"""One logical request's payments: every decision and every record, without I/O.

A :class:`Call` holds what the payment loop (:mod:`._loop`) needs to decide
and record: it chooses and checks an offer, asks the policy, reserves, builds
the credential, and settles what the paid retry's response means. It never
sends, reads a body or waits; the loop asks for that as effects, and the sync
and async drivers in :mod:`mpp_client.auth` perform them. The shared
configuration and the shapes a payment takes on its way live in
:mod:`._engine`; reading a 402's offers in :mod:`._offers`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

import httpx

if TYPE_CHECKING:
    pass

from .._exceptions import (
    ApprovalRequired,
    BudgetExceeded,
    ChallengeError,
    ChallengeExpired,
    NoAcceptableChallenge,
    PaymentError,
    PaymentFailed,
    PaymentOutcomeUnknown,
    PaymentRejected,
    PolicyDenied,
)
from .._headers import hide_credentials, mask_credentials
from .._text import get_logger, printable
from ..ledger import PaymentRecord
from ..methods import PaymentMethod
from ..money import Amount
from ..policy import ApprovalRequest, Decision, PaymentContext, RuleResult
from ..protocol import (
    Challenge,
    Credential,
    Problem,
    Quote,
    digest_matches,
)
from ._engine import ApproverFailed, DryRun, Engine, Offer, Pending, Plan, Target
from ._offers import canonical_payee, http_offers, same_payee
from ._options import CallOptions
from ._receipts import ReceiptReading, read_receipt, read_x402_refusal
from ._transport import UNSAFE_METHODS, check_transport

__all__ = [
    "ApproverFailed",
    "Call",
    "DryRun",
    "Engine",
    "Offer",
    "Pending",
    "Plan",
    "Target",
    "prepare_request",
]

logger = get_logger("mpp_client")


def prepare_request(engine: Engine, request: httpx.Request) -> CallOptions:
    """Give an HTTP request what a paid retry needs before it is first sent; its options.

    ``Accept-Payment`` (unless the caller set it) and, for unsafe methods, an
    ``Idempotency-Key`` the paid retry will repeat. Bad ``extensions["mpp"]``
    options raise here, before anything is sent. This runs for every request,
    paid or not, so it stays cheap: most requests never see a 402.
    """
    headers = request.headers
    if engine.accept_payment and not _has_header(headers, b"accept-payment"):
        headers["Accept-Payment"] = engine.accept_payment
    if request.method in UNSAFE_METHODS and not _has_header(headers, b"idempotency-key"):
        headers["Idempotency-Key"] = uuid.uuid4().hex
    return CallOptions.from_request(request)


def _has_header(headers: httpx.Headers, name: bytes) -> bool:
    """``name in headers`` for a lowercase ASCII ``name``, without decoding the headers.

    ``httpx.Headers.__contains__`` first settles the text encoding of every
    header (about 2 us on a fresh request, more than the rest of an unpaid
    request's flow); the lowercased raw names httpx keeps are bytes already.
    """
    try:
        for _, key, _ in headers._list:  # httpx's (raw name, lowercased name, value)
            if key == name:
                return True
    except (AttributeError, ValueError):  # pragma: no cover - another httpx layout
        return name.decode("ascii") in headers
    return False


class Call:
    """One logical request: at most ``max_payments`` payments, each recorded."""

    def __init__(self, engine: Engine, options: CallOptions) -> None:
        self.engine = engine
        self.options = options
        self.payments = 0
        self.record: PaymentRecord | None = None

    @property
    def wants_payment(self) -> bool:
        return self.options.pay and self.payments < self.engine.max_payments

    # -- deciding -----------------------------------------------------------------

    def plan_http(self, response: httpx.Response) -> Plan | Pending | DryRun:
        """:meth:`plan` for a 402 response: its challenges, its request, its transport."""
        request = response.request
        offers, broken = http_offers(response, self.engine.clock())
        if not offers:
            detail = f": {broken[0].message}" if broken else ""
            raise ChallengeError(
                f"402 response has no usable Payment challenge{detail}", response=response
            )
        check_transport(
            request.url, response, allow_insecure_localhost=self.engine.allow_insecure_localhost
        )
        return self.plan(offers, broken, Target.of(request), response=response)

    def plan(
        self,
        offers: Sequence[Challenge],
        broken: Sequence[ChallengeError],
        target: Target,
        *,
        response: httpx.Response | None = None,
    ) -> Plan | Pending | DryRun:
        """Choose, check and decide one payment among ``offers``.

        Returns a reserved :class:`Plan` ready to pay, a :class:`Pending`
        decision that needs a human approval first, or a :class:`DryRun`
        decision (never paid). Raises a typed error when nothing can be paid;
        ``response`` (the HTTP answer that asked, if any) rides on the error.
        The transport must already have checked that a credential may go
        where ``target`` points.
        """
        engine = self.engine
        now = engine.clock()
        redacted = target.url
        passed_over: list[str] = [f"malformed challenge: {e.message}" for e in broken]
        first_error: PaymentError | None = None

        def passed(challenge: Challenge, error: PaymentError) -> None:
            nonlocal first_error
            passed_over.append(f"{challenge.key} {challenge.id!r}: {error.message}")
            # A policy refusal explains more than a malformed offer does.
            if first_error is None or (
                isinstance(error, PolicyDenied) and not isinstance(first_error, PolicyDenied)
            ):
                first_error = error

        for method, challenge in self._candidates(offers, passed_over):
            try:
                offer, decision = self.evaluate(method, challenge, target, now)
            except ChallengeError as exc:
                passed(challenge, exc)
                continue
            quote = offer.quote
            if decision.mode == "dry-run":
                logger.info("dry run: %s %s for %s", decision.outcome, quote.amount, redacted)
                return DryRun(offer, decision)
            if decision.shadow is not None and not decision.shadow.allowed:
                logger.warning(
                    "shadow policy would have %s paying %s to %s: %s",
                    "asked approval for"
                    if decision.shadow.outcome == "needs_approval"
                    else "refused",
                    quote.amount,
                    quote.payee,
                    "; ".join(decision.shadow.reasons),
                )
            if decision.outcome == "needs_approval" and engine.approver is not None:
                return Pending(offer, decision)
            if not decision.allowed:
                refusal = self._refusal(offer, decision, response)
                self._log_refusal(offer, decision, refusal)
                passed(challenge, refusal)
                continue
            try:
                return self.reserve(offer, decision, response)
            except PaymentError as exc:
                passed(challenge, exc)
                continue
        if first_error is not None:
            first_error.response = response
            raise first_error
        reused = [c for c in offers if engine.was_used(c)]
        if reused:
            raise ChallengeError(
                f"the server re-sent challenge {reused[0].id!r}, which was already answered: "
                "challenges are single use, refusing to pay it again",
                response=response,
            )
        raise NoAcceptableChallenge(
            "the server asked for payment, but no offer matches a configured method "
            f"(offered: {', '.join(sorted({c.key for c in offers}))}; "
            f"configured: {', '.join(m.name for m in engine.methods) or 'none'})",
            reasons=tuple(passed_over),
            response=response,
        )

    def evaluate(
        self, method: PaymentMethod, challenge: Challenge, target: Target, now: datetime
    ) -> tuple[Offer, Decision]:
        """Quote one offer with ``method``, check its terms, and ask the policy.

        The decision includes the call's own narrowing. Nothing is written:
        no challenge is claimed, nothing reserved, nothing logged, so quoting
        (``Client.quote``) runs this alone, and :meth:`plan` runs it for each
        candidate before it reserves. Raises :class:`ChallengeError` for terms
        that cannot be paid.
        """
        quote = canonical_payee(method._flow_quote(challenge))
        self._check_terms(challenge, quote, target, now)
        decided = self._decide(method, challenge, quote, target=target, now=now)
        return Offer(challenge, method, quote, target, now), self._narrow(decided, quote)

    def reserve(
        self, offer: Offer, decision: Decision, response: httpx.Response | None = None
    ) -> Plan:
        """Claim the challenge and hold the amount; raises if either fails."""
        engine = self.engine
        challenge, quote = offer.challenge, offer.quote
        if not engine.claim(challenge):
            raise ChallengeError("challenge already answered", response=response)
        try:
            record = engine.ledger.reserve(self._new_record(offer, decision), decision.limits)
        except BudgetExceeded as exc:
            exc.decision = exc.decision or decision
            exc.response = response
            self._log_refusal(offer, decision, exc)
            raise
        logger.info(
            "paying %s via %s for %s (challenge %s, payee %s)",
            quote.amount,
            challenge.key,
            record.url,
            challenge.id,
            quote.payee,
        )
        return Plan(challenge, offer.method, quote, decision, record, offer.target)

    def approval_request(self, pending: Pending) -> ApprovalRequest:
        offer, decision = pending.offer, pending.decision
        return ApprovalRequest(
            url=offer.target.url,
            http_method=offer.target.method,
            realm=offer.challenge.realm,
            method=offer.challenge.method,
            intent=offer.challenge.intent,
            amount=offer.quote.amount,
            charge=decision.charge,
            payee=offer.quote.payee,
            reasons=tuple(r.reason for r in decision.rules if r.approval),
            purpose=self.options.purpose,
            tags=self.options.tags or {},
            decision=decision,
        )

    def approved(
        self,
        pending: Pending,
        answer: bool | ApproverFailed | None,
        response: httpx.Response | None = None,
    ) -> Plan:
        """Continue after the approver answered (None: no answer in time)."""
        offer, decision = pending.offer, pending.decision
        if answer is not True:
            if isinstance(answer, ApproverFailed):
                why = f"the approver failed ({answer.kind}): not approved"
            elif answer is False:
                why = "the approver declined"
            else:
                why = "no answer from the approver in time"
            rule = RuleResult("approval", False, why)
            refused = dataclasses.replace(decision, outcome="deny", rules=(*decision.rules, rule))
            refusal = self._refusal(offer, refused, response)
            self._log_refusal(offer, refused, refusal)
            raise refusal
        # An approval can take minutes: the terms must still be fresh now.
        try:
            self._check_fresh(offer.challenge, offer.quote, self.engine.clock())
        except ChallengeExpired as exc:
            exc.response = response
            raise
        rule = RuleResult("approval", True, "approved by the approver")
        allowed = dataclasses.replace(decision, outcome="allow", rules=(*decision.rules, rule))
        return self.reserve(offer, allowed, response)

    def _candidates(
        self, offers: Sequence[Challenge], passed_over: list[str]
    ) -> list[tuple[PaymentMethod, Challenge]]:
        """Offers we could pay, in our method preference order, then the server's."""
        ranked: list[tuple[int, int, PaymentMethod, Challenge]] = []
        for position, challenge in enumerate(offers):
            for rank, method in enumerate(self.engine.methods):
                if method.supports(challenge):
                    if self.engine.was_used(challenge):
                        passed_over.append(f"{challenge.key} {challenge.id!r}: already answered")
                    else:
                        ranked.append((rank, position, method, challenge))
                    break
            else:
                passed_over.append(f"{challenge.key} {challenge.id!r}: no configured method")
        ranked.sort(key=lambda item: (item[0], item[1]))
        return [(method, challenge) for _, _, method, challenge in ranked]

    def _check_terms(
        self, challenge: Challenge, quote: Quote, target: Target, now: datetime
    ) -> None:
        self._check_fresh(challenge, quote, now)
        if not isinstance(quote.amount, Amount) or quote.amount.units < 0:
            raise ChallengeError("the method quoted an invalid amount")
        if challenge.digest is not None and not digest_matches(
            challenge.digest, target.body or b""
        ):
            raise ChallengeError(
                "challenge digest does not match the request body; "
                "refusing to pay for a different body"
            )

    def _check_fresh(self, challenge: Challenge, quote: Quote, now: datetime) -> None:
        """Refuse terms that have expired, or will within the clock skew.

        The skew only ever makes us stricter: a credential is never sent for a
        challenge our own clock says has expired, and one that expires within
        ``clock_skew`` would likely be stale by the time the server reads it.
        """
        deadline = now + self.engine.clock_skew
        if challenge.expires is not None and challenge.expires <= deadline:
            state = "expired" if challenge.expires <= now else "expires too soon to pay"
            raise ChallengeExpired(
                f"challenge {state} ({printable(challenge.expires_raw or '', 40)}; "
                f"allowing {self.engine.clock_skew.total_seconds():g} s of clock skew)"
            )
        if quote.expires is not None and quote.expires <= deadline:
            state = "expired" if quote.expires <= now else "expires too soon to pay"
            raise ChallengeExpired(f"payment request {state} ({quote.expires.isoformat()})")

    def _narrow(self, decision: Decision, quote: Quote) -> Decision:
        """Apply the call's own limits (``max_amount``, ``payee``), whatever the policy did.

        The policy is given them and may explain them in its own rules, but a
        user's ``SpendPolicy`` could ignore them: the flow enforces them after
        every decision, so a call can narrow any policy and never widen one.
        """
        options = self.options
        failed: list[RuleResult] = []
        if options.max_amount is not None:
            cap = options.max_amount
            charge = decision.charge or quote.amount
            if cap.currency == charge.currency:
                ok, amount = charge <= cap, charge
            elif cap.currency == quote.amount.currency:
                ok, amount = quote.amount <= cap, quote.amount
            else:
                ok, amount = False, None
            if not ok:
                reason = (
                    f"amount {amount} exceeds the call's max_amount {cap}"
                    if amount is not None
                    else f"the call's max_amount {cap} cannot be compared with "
                    f"{quote.amount} ({charge.currency} against the policy)"
                )
                failed.append(RuleResult("call.max_amount", False, reason))
        if options.payee is not None and not same_payee(options.payee, quote.payee):
            failed.append(
                RuleResult(
                    "call.payee",
                    False,
                    f"payee {quote.payee!r} is not the payee the call expected ({options.payee!r})",
                )
            )
        if not failed:
            return decision
        known = {(r.rule, r.passed) for r in decision.rules}
        extra = tuple(r for r in failed if (r.rule, False) not in known)
        # A passing rule of the same name (a policy that got it wrong) is replaced.
        names = {r.rule for r in failed}
        rules = tuple(r for r in decision.rules if not (r.rule in names and r.passed))
        return dataclasses.replace(decision, outcome="deny", rules=(*rules, *extra))

    def _decide(
        self,
        method: PaymentMethod,
        challenge: Challenge,
        quote: Quote,
        *,
        target: Target,
        now: datetime,
    ) -> Decision:
        policy = self.engine.policy
        if policy is None:
            return Decision(
                "deny",
                (
                    RuleResult(
                        "policy", False, "no spending policy is configured (deny by default)"
                    ),
                ),
            )
        context = PaymentContext(
            url=target.url,
            http_method=target.method,
            host=target.host,
            challenge=challenge,
            quote=quote,
            now=now,
            purpose=self.options.purpose,
            tags=self.options.tags or {},
            max_amount=self.options.max_amount,
            expected_payee=self.options.payee,
            history=self.engine.ledger,
            # Where the key that authorises this payment lives, for rules that
            # require hardware above an amount. A wallet without a signer seam
            # signs in the process.
            signer_location=getattr(getattr(method, "signer", None), "location", "process"),
            signer_hardware=getattr(getattr(method, "signer", None), "hardware", False) is True,
        )
        return policy.decide(context)

    @staticmethod
    def _refusal(offer: Offer, decision: Decision, response: httpx.Response | None) -> PolicyDenied:
        reasons = "; ".join(decision.reasons) or "no reason given"
        text = f"policy refused to pay {offer.quote.amount} to {offer.quote.payee!r}: {reasons}"
        if decision.outcome == "needs_approval":
            text = (
                f"approval required to pay {offer.quote.amount} to {offer.quote.payee!r} "
                f"({reasons}), and no approver is configured"
            )
            return ApprovalRequired(text, decision=decision, response=response)
        if any(r.rule == "approval" for r in decision.rules):
            return ApprovalRequired(text, decision=decision, response=response)
        refused = [r for r in decision.rules if not r.passed and not r.approval]
        if refused and all(r.rule.startswith("budget.") for r in refused):
            return BudgetExceeded(reasons, decision=decision, response=response)
        return PolicyDenied(text, decision=decision, response=response)

    def _log_refusal(self, offer: Offer, decision: Decision, error: PaymentError) -> None:
        """Refusals go to the audit log too: what was asked, and why it was not paid."""
        try:
            self.engine.ledger.log_refusal(self._new_record(offer, decision), error.message)
        except PaymentError as exc:
            logger.warning("could not log a refusal in the ledger: %s", exc.message)

    def _new_record(self, offer: Offer, decision: Decision) -> PaymentRecord:
        challenge, quote = offer.challenge, offer.quote
        record = PaymentRecord(
            id=uuid.uuid4().hex,
            created_at=offer.now,
            status="reserved",
            http_method=offer.target.method,
            url=offer.target.url,
            realm=challenge.realm,
            method=challenge.method,
            intent=challenge.intent,
            amount=quote.amount,
            charge=decision.charge or quote.amount,
            payee=quote.payee,
            challenge_id=challenge.id,
            decision=decision,
            purpose=self.options.purpose,
            tags=self.options.tags or {},
            # The decision's budget scope (None: the ledger takes its limits').
            scope=decision.scope,
        )
        agent = self.engine.agent_key
        if agent is None:
            return record
        from ..identity import sign_record  # noqa: PLC0415 - pynacl only when an agent signs

        record = dataclasses.replace(record, agent=agent.did)
        return dataclasses.replace(record, signature=sign_record(agent, record.decision_record()))

    # -- paying -------------------------------------------------------------------

    def pay_failed(self, plan: Plan, exc: BaseException) -> PaymentError:
        """The method raised: nothing moved unless the method says it may have."""
        ledger = self.engine.ledger
        if isinstance(exc, PaymentOutcomeUnknown) or (
            plan.quote.moves_funds and not isinstance(exc, PaymentFailed)
        ):
            reason = (
                f"payment method {plan.method.name!r} failed mid-payment ({type(exc).__name__})"
            )
            record = ledger.mark_unknown(plan.record.id, reason)
            self.record = record
            return PaymentOutcomeUnknown(
                f"{reason}; the amount stays counted until resolved", record=record
            )
        reason = f"payment method {plan.method.name!r} failed: {type(exc).__name__}"
        self.record = ledger.release(plan.record.id, reason)
        if isinstance(exc, PaymentFailed):
            return exc
        return PaymentFailed(f"{reason}; nothing was paid")

    def pay_interrupted(self, plan: Plan) -> None:
        """Cancelled while paying: release, or keep it counted if money may have moved."""
        reason = f"payment with {plan.method.name!r} was interrupted"
        ledger = self.engine.ledger
        if plan.quote.moves_funds:
            self.record = ledger.mark_unknown(plan.record.id, reason)
        else:
            self.record = ledger.release(plan.record.id, reason + "; nothing was paid")

    def credential(self, plan: Plan, payload: Mapping[str, Any]) -> tuple[str, str]:
        """The header name and value carrying the credential."""
        if not isinstance(payload, Mapping):
            raise TypeError("payment methods must return the payload as a mapping")
        challenge, quote = plan.challenge, plan.quote
        plan.moved = plan.method._flow_moved(challenge, quote, payload)
        if challenge.x402 is not None:  # x402 (issue 13): its own payment header
            from ..protocol import x402_payment_header  # noqa: PLC0415 - loaded with the offer

            value = x402_payment_header(challenge.x402, payload)
        else:
            value = Credential.for_challenge(challenge, payload, source=quote.payer).to_header()
        self.payments += 1
        return plan.challenge.credential_header, value

    def retry_request(self, plan: Plan) -> httpx.Request:
        """A copy of the request that got the challenge, body intact, same Idempotency-Key."""
        target = plan.target.request
        if target is None:  # pragma: no cover - only HTTP calls are retried as requests
            raise TypeError("this payment was not for an HTTP request")
        retry = httpx.Request(
            target.method,
            target.url,
            headers=target.headers,
            content=target.content,
            # A copy: what the flow notes on the paid retry stays off the first request.
            extensions=dict(target.extensions),
        )
        hide_credentials(retry)  # it is about to carry one
        return retry

    # -- settling -----------------------------------------------------------------

    def retry_lost(self, plan: Plan) -> PaymentOutcomeUnknown:
        """The paid retry never produced a response (transport error, cancellation)."""
        reason = "the paid request failed before a response arrived"
        record = self.engine.ledger.mark_unknown(plan.record.id, reason)
        self.record = record
        return PaymentOutcomeUnknown(
            f"{reason}; {record.amount} to {record.payee!r} stays counted until resolved "
            f"(ledger record {record.id})",
            record=record,
        )

    def settle(self, plan: Plan, response: httpx.Response) -> bool:
        """Record what the paid retry's HTTP response means. True: pay again (a fresh 402).

        Raises a typed error when the outcome is a failure.
        """
        mask_credentials(response)
        status = response.status_code
        if 200 <= status < 300:
            self.settle_accepted(
                plan, read_receipt(response, plan.challenge), f"HTTP {status}", response=response
            )
            return False
        if status == 402:
            if plan.challenge.x402 is not None:  # x402 (issue 13): its refusal, or its doubt
                code, doubt = read_x402_refusal(response, plan.challenge)
                if doubt is not None:
                    self.settle_unknown(plan, doubt, response=response)
                return self.settle_refused(plan, None, response=response, code=code)
            problem = Problem.parse(response.content, response.headers.get("content-type"))
            return self.settle_refused(plan, problem, response=response)
        self.settle_unknown(plan, f"paid request answered HTTP {status}", response=response)
        raise AssertionError("unreachable")  # pragma: no cover

    # The three answers any transport can give to a paid request.

    def settle_accepted(
        self,
        plan: Plan,
        reading: ReceiptReading,
        answer: str,
        *,
        response: httpx.Response | None = None,
    ) -> None:
        """The server accepted the credential: commit, with the receipt when one is kept.

        A receipt saying the payment did not succeed contradicts the
        acceptance: the outcome is then unknown (raised).
        """
        if reading.failed:
            self.settle_unknown(plan, f"{answer}, but {reading.note}", response=response)
        self.record = self.engine.ledger.commit(
            plan.record.id, reading.receipt, reason=reading.note
        )

    def settle_refused(
        self,
        plan: Plan,
        problem: Problem | None,
        *,
        response: httpx.Response | None = None,
        code: str | None = None,
    ) -> bool:
        """The server refused the credential with a fresh challenge. True: pay again.

        Nothing was spent unless the payment moved funds itself (then the
        outcome is unknown, raised, and never paid again). ``code`` names the
        refusal when there is no problem detail (x402's error reason).
        """
        ledger = self.engine.ledger
        if code is None:
            code = problem.code if problem is not None and problem.code else "no problem type"
        moved = plan.moved if plan.moved is not None else plan.quote.moves_funds
        if moved:
            reason = f"server refused ({code}) after a payment that moved funds"
            self.record = ledger.mark_unknown(plan.record.id, reason)
            raise PaymentOutcomeUnknown(
                f"{reason}; not paying again (ledger record {plan.record.id})",
                record=self.record,
                response=response,
            )
        self.record = ledger.release(plan.record.id, f"server refused the credential ({code})")
        if self.wants_payment:
            return True
        detail = f": {problem.detail}" if problem is not None and problem.detail else ""
        raise PaymentRejected(
            f"server refused the payment credential ({code}){detail}",
            problem=problem,
            response=response,
        )

    def settle_unknown(
        self, plan: Plan, reason: str, *, response: httpx.Response | None = None
    ) -> NoReturn:
        """Paid, then an answer that says neither yes nor no: keep it counted, and raise."""
        self.record = self.engine.ledger.mark_unknown(plan.record.id, reason)
        raise PaymentOutcomeUnknown(
            f"{reason}; {plan.record.amount} to {plan.record.payee!r} stays counted "
            f"until resolved (ledger record {plan.record.id})",
            record=self.record,
            response=response,
        )

    def finish(self, response: httpx.Response, dry_run: DryRun | None = None) -> None:
        if self.record is not None:
            response.extensions["mpp"] = self.record
        if dry_run is not None:
            response.extensions["mpp_decision"] = dry_run.decision
