"""What every framework's paid tool does, once: call, pay under the user's client, report.

A tool must not raise through an agent loop, and must tell the model what it
can act on. :class:`ToolReport` is that answer: ``text`` for the model (the
result, or why nothing was paid, the price and what remains of the budget),
``status`` and ``record`` for the program. An outcome that may have cost
money is reported as ``unknown``, never as "not paid".

==================================  =========  ==================================
what happened                       status     the model is told
==================================  =========  ==================================
answered (paid or free)             ``ok``     the body, what was paid, the budget
the policy or the call refused      ``refused``  NOT PAID, the reason, the price,
                                                 what remains of the budget
no offer the wallet can pay,        ``failed``   NOT PAID and why
a malformed challenge, the
wallet failed, the server
refused the credential
paid, and no clear answer           ``unknown``  MAY HAVE BEEN PAID: do not retry
anything else (bad arguments,       ``error``    the error, nothing paid
a network error before paying)
==================================  =========  ==================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio.to_thread
import httpx

from .._decision import Limit
from .._exceptions import (
    ChallengeError,
    InsecureTransport,
    NoAcceptableChallenge,
    PaymentError,
    PaymentFailed,
    PaymentOutcomeUnknown,
    PaymentRejected,
    PolicyDenied,
)
from .._flow import CallOptions, Engine
from .._text import printable
from ..auth import PaymentAuth
from ..client import AsyncClient, Client, payment_record
from ..ledger import PaymentRecord
from ..money import Amount, MoneyError
from ..policy import Decision, PaymentContext
from ..protocol import Challenge, Quote
from ._args import PaidRequestArgs

if TYPE_CHECKING:
    from .mcp import PaidMcpSession

__all__ = [
    "PAID_REQUEST_DESCRIPTION",
    "PAID_REQUEST_SCHEMA",
    "ToolReport",
    "budget_left",
    "call_options",
    "engine_of",
    "paid_mcp_call",
    "paid_request",
    "paid_request_async",
    "paid_request_with",
    "report_error",
]

Status = Literal["ok", "refused", "failed", "unknown", "error"]

#: Characters of a response body shown to the model (the rest is cut, and it says so).
MAX_BODY_CHARS = 4000

PAID_REQUEST_DESCRIPTION = (
    "Make an HTTP request that may cost money. If the server asks for payment "
    "(HTTP 402), it is paid automatically within the owner's spending policy. "
    "Set max_amount (e.g. '0.50 USD') to refuse anything dearer, payee to refuse "
    "any other recipient, and purpose to say why you pay. The answer says what "
    "was paid and what remains of the budget, or why nothing was paid."
)

#: The JSON schema of the paid HTTP request tool's arguments.
PAID_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "description": "The URL to request (https)."},
        "method": {
            "type": "string",
            "description": "HTTP method.",
            "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"],
            "default": "GET",
        },
        "body": {"type": "string", "description": "Request body (JSON text), if any."},
        "max_amount": {
            "type": "string",
            "description": "Refuse to pay more than this for this call, e.g. '0.50 USD'.",
        },
        "payee": {"type": "string", "description": "Refuse to pay anyone but this payee."},
        "purpose": {"type": "string", "description": "Why this is paid (recorded)."},
        "tags": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Labels recorded with the payment.",
        },
    },
    "required": ["url"],
}


def engine_of(payment: Client | AsyncClient | PaymentAuth) -> Engine:
    """The payment configuration behind a user's client (policy, ledger, approver, methods)."""
    auth = payment.payment_auth if isinstance(payment, Client | AsyncClient) else payment
    if not isinstance(auth, PaymentAuth):
        raise TypeError(
            "pass an mpp_client.Client or AsyncClient built with methods=[...], or a PaymentAuth"
        )
    return auth._engine


def call_options(
    *,
    purpose: str | None = None,
    tags: Mapping[str, str] | None = None,
    max_amount: Amount | str | None = None,
    payee: str | None = None,
    pay: bool = True,
) -> CallOptions:
    """Per-call options, checked exactly as ``extensions={"mpp": ...}`` is on HTTP."""
    given = {"purpose": purpose, "tags": tags, "max_amount": max_amount, "payee": payee}
    raw: dict[str, Any] = {"pay": pay, **{k: v for k, v in given.items() if v is not None}}
    return CallOptions.from_mapping(raw)


@dataclass(frozen=True, slots=True)
class ToolReport:
    """A paid tool call's outcome: ``text`` for the model, the rest for the program.

    ``record`` is the ledger record of the payment (committed, or unknown),
    ``records`` every payment the call made; ``paid`` is True when money was
    or may have been spent.
    """

    status: Status
    text: str
    record: PaymentRecord | None = None
    records: tuple[PaymentRecord, ...] = ()
    decision: Decision | None = None
    http_status: int | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def paid(self) -> bool:
        return self.status == "unknown" or any(
            r.status in ("committed", "unknown") for r in self.records
        )

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no credential, no signature: the record's public terms)."""
        out: dict[str, Any] = {"status": self.status, "paid": self.paid}
        if self.http_status is not None:
            out["http_status"] = self.http_status
        record = self.record
        if record is not None:
            out["payment"] = {
                "record_id": record.id,
                "status": record.status,
                "amount": str(record.amount),
                "payee": record.payee,
                "method": record.method,
                "challenge_id": record.challenge_id,
                "receipt": record.receipt.reference if record.receipt is not None else None,
            }
        return out


def budget_left(
    engine: Engine, decision: Decision | None = None, record: PaymentRecord | None = None
) -> list[str]:
    """What remains of each budget, as the ledger counts it now.

    The budgets are the limits ``decision`` named (a refusal's). After a
    payment, the stored record may no longer carry them: the policy is then
    asked (it only reads) which limits the same payment would count against.
    """
    limits = decision.limits if decision is not None else ()
    if not limits and record is not None:
        limits = _limits_for(engine, record)
    lines: list[str] = []
    for limit in limits:
        cap = limit.cap
        if cap is None:
            continue
        try:
            used = engine.ledger.spent(
                cap.currency,
                since=limit.since,
                payee=limit.payee,
                method=limit.method,
                tags=dict(limit.tags) or None,
            )
            room = max(cap - used, Amount.zero(cap.currency, cap.decimals))
        except (PaymentError, MoneyError, ValueError):
            continue
        lines.append(f"Budget {limit.name!r}: {room} of {cap} remains")
    return lines


def _limits_for(engine: Engine, record: PaymentRecord) -> tuple[Limit, ...]:
    policy = engine.policy
    if policy is None:
        return ()
    probe = Challenge.create(
        id="budget-probe",
        realm=record.realm,
        method=record.method,
        intent=record.intent,
        request={},
    )
    quote = Quote(record.amount, record.payee, record.method, record.intent)
    context = PaymentContext(
        url=record.url,
        http_method=record.http_method,
        host=httpx.URL(record.url).host if "://" in record.url else "",
        challenge=probe,
        quote=quote,
        now=engine.clock(),
        purpose=record.purpose,
        tags=record.tags,
        history=engine.ledger,
    )
    try:
        return policy.decide(context).limits
    except Exception:  # a policy that cannot answer a probe: no budget line
        return ()


def _budget_text(
    engine: Engine, decision: Decision | None, record: PaymentRecord | None = None
) -> str:
    lines = budget_left(engine, decision, record)
    return (" " + "; ".join(lines) + ".") if lines else ""


def report_error(engine: Engine, exc: BaseException) -> ToolReport:
    """A short, actionable report of a refusal or failure (never raises)."""
    if isinstance(exc, PaymentOutcomeUnknown):
        record = exc.record if isinstance(exc.record, PaymentRecord) else None
        return ToolReport(
            "unknown",
            f"PAYMENT OUTCOME UNKNOWN: {exc.message}. The money may have been paid and stays "
            "counted against the budget; do not retry this call.",
            record=record,
            records=(record,) if record is not None else (),
        )
    if isinstance(exc, PolicyDenied):
        decision = exc.decision
        price = f" Price: {decision.charge}." if decision and decision.charge else ""
        return ToolReport(
            "refused",
            f"NOT PAID: {exc.message}.{price}{_budget_text(engine, decision)} Nothing was paid.",
            decision=decision,
        )
    if isinstance(exc, NoAcceptableChallenge | ChallengeError | InsecureTransport):
        return ToolReport("failed", f"NOT PAID: {exc.message}. Nothing was paid.")
    if isinstance(exc, PaymentFailed):
        return ToolReport(
            "failed", f"NOT PAID: the wallet failed: {exc.message}. Nothing was paid."
        )
    if isinstance(exc, PaymentRejected):
        return ToolReport(
            "failed",
            f"NOT PAID: {exc.message}. The payment was not accepted and nothing stays counted.",
        )
    if isinstance(exc, PaymentError):
        return ToolReport("error", f"ERROR: {exc.message}. Nothing was paid.")
    if isinstance(exc, httpx.HTTPError):
        return ToolReport(
            "error", f"ERROR: the request failed ({type(exc).__name__}). Nothing was paid."
        )
    return ToolReport(
        "error", f"ERROR: {type(exc).__name__}: {printable(exc, 200)}. Nothing was paid."
    )


def _paid_text(engine: Engine, records: list[PaymentRecord]) -> str:
    parts = []
    for record in records:
        receipt = f", receipt {record.receipt.reference}" if record.receipt is not None else ""
        parts.append(f"Paid {record.amount} to {record.payee!r} via {record.method}{receipt}.")
    last = records[-1] if records else None
    decision = last.decision if last is not None else None
    return " ".join(parts) + _budget_text(engine, decision, last)


def _body(text: str) -> str:
    if len(text) <= MAX_BODY_CHARS:
        return text
    return text[:MAX_BODY_CHARS] + f"\n[... {len(text) - MAX_BODY_CHARS} more characters cut]"


def _response_report(engine: Engine, response: httpx.Response) -> ToolReport:
    record = payment_record(response)
    records = [record] if record is not None else []
    head = f"HTTP {response.status_code}."
    if records:
        head += " " + _paid_text(engine, records)
    elif response.status_code == 402:
        head += " Payment was asked for and not made."
    status: Status = "ok" if response.status_code < 400 or records else "error"
    return ToolReport(
        status,
        f"{head}\n\n{_body(response.text)}",
        record=record,
        records=tuple(records),
        http_status=response.status_code,
    )


def _request_args(
    url: str,
    method: str,
    body: str | None,
    *,
    max_amount: str | None,
    payee: str | None,
    purpose: str | None,
    tags: Mapping[str, str] | None,
) -> dict[str, Any]:
    call_options(max_amount=max_amount, payee=payee, purpose=purpose, tags=tags)  # checks them
    given = {"max_amount": max_amount, "payee": payee, "purpose": purpose, "tags": tags}
    options = {k: v for k, v in given.items() if v is not None}
    return {
        "method": method.upper(),
        "url": url,
        "content": body.encode("utf-8") if body is not None else None,
        "headers": {"content-type": "application/json"} if body is not None else None,
        "extensions": {"mpp": options} if options else None,
    }


def paid_request(
    client: Client,
    url: str,
    method: str = "GET",
    body: str | None = None,
    *,
    max_amount: str | None = None,
    payee: str | None = None,
    purpose: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> ToolReport:
    """An HTTP request through the user's :class:`~mpp_client.Client`, reported (never raises)."""
    engine = engine_of(client)
    try:
        kwargs = _request_args(
            url, method, body, max_amount=max_amount, payee=payee, purpose=purpose, tags=tags
        )
        response = client.request(**kwargs)
    except Exception as exc:
        return report_error(engine, exc)
    return _response_report(engine, response)


async def paid_request_async(
    client: AsyncClient,
    url: str,
    method: str = "GET",
    body: str | None = None,
    *,
    max_amount: str | None = None,
    payee: str | None = None,
    purpose: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> ToolReport:
    """The async :func:`paid_request`, through the user's :class:`~mpp_client.AsyncClient`."""
    engine = engine_of(client)
    try:
        kwargs = _request_args(
            url, method, body, max_amount=max_amount, payee=payee, purpose=purpose, tags=tags
        )
        response = await client.request(**kwargs)
    except Exception as exc:
        return report_error(engine, exc)
    return _response_report(engine, response)


async def paid_request_with(client: Client | AsyncClient, args: PaidRequestArgs) -> ToolReport:
    """:func:`paid_request` or :func:`paid_request_async` (a sync client runs in a thread)."""
    if isinstance(client, AsyncClient):
        return await paid_request_async(
            client,
            args.url,
            args.method,
            args.body,
            max_amount=args.max_amount,
            payee=args.payee,
            purpose=args.purpose,
            tags=args.tags,
        )
    return await anyio.to_thread.run_sync(
        lambda: paid_request(
            client,
            args.url,
            args.method,
            args.body,
            max_amount=args.max_amount,
            payee=args.payee,
            purpose=args.purpose,
            tags=args.tags,
        )
    )


async def paid_mcp_call(
    session: PaidMcpSession,
    tool: str,
    arguments: Mapping[str, Any] | None = None,
    *,
    max_amount: Amount | str | None = None,
    payee: str | None = None,
    purpose: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> ToolReport:
    """A paid MCP tool call, reported (never raises)."""
    engine = session.engine
    try:
        paid = await session.call_tool(
            tool,
            dict(arguments or {}),
            max_amount=max_amount,
            payee=payee,
            purpose=purpose,
            tags=tags,
        )
    except Exception as exc:
        from mcp.shared.exceptions import MCPError  # noqa: PLC0415 - the mcp extra is installed

        if isinstance(exc, MCPError):
            return ToolReport(
                "error",
                f"ERROR: the tool call failed: {printable(exc.message, 200)}. Nothing was paid.",
            )
        return report_error(engine, exc)
    records = list(paid.records)
    if paid.result is None:
        if records:
            text = (
                _paid_text(engine, records) + " The tool asks for another payment, which this "
                "call may not make (one payment per call); the tool did not answer."
            )
        else:
            text = "NOT PAID: the tool asks for payment and this call does not pay." + _budget_text(
                engine, paid.decision
            )
        return ToolReport(
            "refused", text, records=tuple(records), record=paid.record, decision=paid.decision
        )
    head = _paid_text(engine, records) if records else "Not paid (free)."
    if paid.is_error:
        head = "The tool reported an error. " + head
    return ToolReport(
        "ok" if not paid.is_error else "error",
        f"{head}\n\n{_body(paid.text)}",
        record=paid.record,
        records=tuple(records),
    )
