"""``mpp get|post|request``, ``mpp quote`` and ``mpp discover``: HTTP that pays, like curl.

A request is sent with ``mpp_client.Client``: when the server answers 402,
the flow decides under the policy (``--policy`` or a verified ``--mandate``),
pays with the configured wallets (``--wallet``), retries, and records the
payment in the ledger. Without a policy every payment is refused (deny by
default), so ``mpp get`` on a free URL is plain curl. ``--dry-run`` (and
``mpp quote``) shows what would be paid and what the policy would say, and
pays nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from rich.table import Table
from rich.text import Text

from .._text import printable
from ..client import Client, payment_record
from ..policy import ApprovalRequest, Decision
from . import _common
from ._common import (
    PASSPHRASE_ENV,
    fail,
    load_agent_key,
    load_policy,
    make_wallets,
    out,
    parse_amount,
    parse_tags,
    print_json,
    safe,
    say,
)
from ._exit import ExitCode

if TYPE_CHECKING:
    from .._flow import QuoteResult
    from ..ledger import PaymentRecord
    from ..protocol import Discovery

__all__ = ["Payer", "RequestSpec", "discover", "quote", "send"]

#: The most of a response body ``--json`` embeds (``-o FILE`` has no limit).
MAX_JSON_BODY = 8 * 1024 * 1024


@dataclass
class Payer:
    """How to pay: the wallets, the policy (file or mandate), the ledger, the agent key."""

    wallets: Sequence[str] = ("dev",)
    policy: Path | None = None
    mandate: Path | None = None
    owners: Sequence[str] = ()
    agent_key: str | None = None
    revocations: Path | None = None
    ledger: str | None = None
    chain_id: int | None = None
    rpc_url: str | None = None
    insecure_localhost: bool = False
    passphrase_env: str | None = PASSPHRASE_ENV
    passphrase_keyring: str | None = None

    def client(self, *, timeout: float, follow_redirects: bool, quiet: bool) -> Client:
        agent = (
            load_agent_key(
                self.agent_key, env=self.passphrase_env, keyring_entry=self.passphrase_keyring
            )
            if self.agent_key
            else None
        )
        policy = load_policy(
            policy=self.policy,
            mandate=self.mandate,
            owners=self.owners,
            agent=agent,
            revocations=self.revocations,
        )
        return Client(
            methods=make_wallets(self.wallets, chain_id=self.chain_id, rpc_url=self.rpc_url),
            policy=policy,
            ledger=self.ledger,
            agent_key=agent,
            approver=_terminal_approver(quiet) if _common.interactive() else None,
            allow_insecure_localhost=self.insecure_localhost,
            timeout=timeout,
            follow_redirects=follow_redirects,
        )


@dataclass
class RequestSpec:
    """What to send: curl's ``-X``, ``-H``, ``-d``, and per-call payment limits."""

    method: str
    url: str
    headers: Sequence[str] = ()
    data: str | None = None
    json_body: str | None = None
    max_amount: str | None = None
    payee: str | None = None
    purpose: str | None = None
    tags: Sequence[str] = field(default_factory=list)

    def options(self) -> dict[str, Any]:
        """``build_request`` arguments (headers, body, and the payment extensions)."""
        headers: list[tuple[str, str]] = []
        for header in self.headers:
            name, sep, value = header.partition(":")
            if not sep or not name.strip():
                fail(f"headers are written 'Name: value', not {header!r}")
            headers.append((name.strip(), value.strip()))
        if self.data is not None and self.json_body is not None:
            fail("give -d/--data or -J/--json-body, not both")
        content: bytes | None = None
        if self.data is not None:
            content = _body(self.data)
        elif self.json_body is not None:
            content = _body(self.json_body)
            if not any(name.lower() == "content-type" for name, _ in headers):
                headers.append(("Content-Type", "application/json"))
            if not any(name.lower() == "accept" for name, _ in headers):
                headers.append(("Accept", "application/json"))
        mpp: dict[str, Any] = {}
        if self.max_amount is not None:
            mpp["max_amount"] = parse_amount(self.max_amount, "--max")
        if self.payee is not None:
            mpp["payee"] = self.payee
        if self.purpose is not None:
            mpp["purpose"] = self.purpose
        if self.tags:
            mpp["tags"] = parse_tags(self.tags)
        options: dict[str, Any] = {"headers": headers}
        if content is not None:
            options["content"] = content
        if mpp:
            options["extensions"] = {"mpp": mpp}
        return options


def _body(value: str) -> bytes:
    """curl's ``@file`` and ``@-`` (stdin), or the text itself."""
    if value == "@-":
        return sys.stdin.buffer.read()
    if value.startswith("@"):
        return Path(value[1:]).expanduser().read_bytes()
    return value.encode("utf-8")


def _terminal_approver(quiet: bool) -> Any:
    """Ask the person at the terminal (stderr prompt) when the policy wants an approval."""
    import typer  # noqa: PLC0415

    def approve(request: ApprovalRequest) -> bool:
        why = "; ".join(request.reasons) or "the policy asks for an approval"
        say(
            f"approval needed to pay {request.amount} to {printable(request.payee, 100)!r} "
            f"for {request.http_method} {printable(request.url, 200)}: {printable(why, 500)}"
        )
        return bool(typer.confirm("Pay?", default=False, err=True))

    return approve


# -- mpp get / post / request ----------------------------------------------------------------


def send(
    spec: RequestSpec,
    payer: Payer,
    *,
    output: Path | None,
    include: bool,
    fail_on_error: bool,
    follow: bool,
    timeout: float,
    as_json: bool,
    quiet: bool,
) -> ExitCode:
    """Send (and pay for) one request; write the body; say what was paid."""
    options = spec.options()
    with payer.client(timeout=timeout, follow_redirects=follow, quiet=quiet) as client:
        with client.stream(spec.method, spec.url, **options) as response:
            body = _read(response, output, limit=MAX_JSON_BODY if as_json and not output else None)
        record = payment_record(response)
    code = ExitCode.HTTP_ERROR if fail_on_error and response.status_code >= 400 else ExitCode.OK
    if as_json:
        print_json(_response_json(response, record, body))
        return code
    if include:
        _write_head(response)
    if body is not None:
        _write_body(body)
    _say_payment(response, record, quiet)
    if code is ExitCode.HTTP_ERROR:
        say(f"HTTP {response.status_code}", quiet=False)
    return code


def _read(response: httpx.Response, output: Path | None, *, limit: int | None) -> bytes | None:
    """Stream the body to ``output`` (returns None) or read it (bounded for ``--json``)."""
    if output is not None and str(output) != "-":
        with output.open("wb") as sink:
            for chunk in response.iter_bytes():
                sink.write(chunk)
        return None
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if limit is not None and size > limit:
            fail(f"the response body is over {limit} bytes: write it to a file with -o")
        chunks.append(chunk)
    return b"".join(chunks)


def _write_head(response: httpx.Response) -> None:
    lines = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
    lines += [f"{name}: {value}" for name, value in response.headers.multi_items()]
    text = "\n".join(printable(line, 8000) for line in lines) + "\n\n"
    sys.stdout.write(text)
    sys.stdout.flush()


def _write_body(body: bytes) -> None:
    """Raw bytes to a pipe or file; to a terminal, text with control characters escaped."""
    if not sys.stdout.isatty():
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        return
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        fail("the response is binary: write it to a file with -o FILE", ExitCode.USAGE)
    lines = text.split("\n")
    sys.stdout.write("\n".join(printable(line).replace("\\t", "\t") for line in lines))
    if not text.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()


def _say_payment(response: httpx.Response, record: PaymentRecord | None, quiet: bool) -> None:
    if record is None:
        return
    receipt = f", receipt {record.receipt.reference}" if record.receipt is not None else ""
    say(
        f"paid {record.amount} to {printable(record.payee, 100)!r} via {record.method} "
        f"(ledger record {record.id}{printable(receipt, 120)}) -> HTTP {response.status_code}",
        quiet=quiet,
    )


def _response_json(
    response: httpx.Response, record: PaymentRecord | None, body: bytes | None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "status": response.status_code,
        "url": str(response.request.url.copy_with(query=None)),
        "headers": dict(response.headers.multi_items()),
        "paid": record is not None,
        "payment": _record_json(record) if record is not None else None,
    }
    if body is not None:
        try:
            data["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            import base64  # noqa: PLC0415

            data["body_base64"] = base64.b64encode(body).decode("ascii")
    return data


def _record_json(record: PaymentRecord) -> dict[str, Any]:
    data = record.to_dict()
    data.pop("signature", None)  # the agent's, over its decision: public, but noise here
    return data


# -- mpp quote / --dry-run ------------------------------------------------------------------


def quote(spec: RequestSpec, payer: Payer, *, timeout: float, as_json: bool) -> ExitCode:
    """Quote one request: the offers, the chosen one, the decision. Pays nothing."""
    options = spec.options()
    with payer.client(timeout=timeout, follow_redirects=False, quiet=True) as client:
        result = client.quote(spec.url, spec.method, **options)
    if as_json:
        print_json(result.to_dict())
    else:
        render_quote(result)
    if not result.payment_required or result.would_pay:
        return ExitCode.OK
    return ExitCode.REFUSED


def render_quote(result: QuoteResult) -> None:
    console = out()
    head = Text(f"{result.http_method} ", style="bold") + safe(result.url, 300)
    console.print(head + Text(f"  HTTP {result.status_code}"))
    if result.offers:
        table = Table(title="Offers", title_justify="left")
        for column in ("", "method/intent", "amount", "charge", "payee", "expires", "verdict"):
            table.add_column(column)
        for offer in result.offers:
            amount = (
                str(offer.amount)
                if offer.amount is not None
                else (
                    f"{offer.terms.amount} {offer.terms.currency} (base units)"
                    if offer.terms is not None
                    else "?"
                )
            )
            table.add_row(
                "→" if offer.chosen else "",
                safe(offer.key, 60),
                safe(amount, 80),
                str(offer.charge) if offer.charge is not None else "",
                safe(offer.payee or "", 60),
                offer.expires.strftime("%Y-%m-%d %H:%M:%S") if offer.expires else "",
                _verdict(offer.decision, offer.error),
            )
        console.print(table)
    decision = result.decision
    if decision is not None:
        console.print(rules_table(decision))
    if result.would_pay:
        chosen = result.chosen
        assert chosen is not None
        verb = "would ask for approval, then pay" if result.needs_approval else "would pay"
        console.print(
            Text(f"{verb} ", style="bold green")
            + Text(str(chosen.amount))
            + Text(" to ")
            + safe(chosen.payee or "?", 100)
            + Text(f" via {chosen.method}")
        )
    elif result.payment_required:
        console.print(Text("would not pay:", style="bold red"))
        for reason in result.reasons:
            console.print(Text("  - ") + safe(reason, 600))
    else:
        console.print(safe(result.reasons[0] if result.reasons else "no payment needed"))


def _verdict(decision: Decision | None, error: str | None) -> Text:
    if decision is None:
        return Text("unusable: ", style="yellow") + safe(error or "", 160)
    styles = {"allow": "green", "deny": "red", "needs_approval": "yellow"}
    words = {"allow": "allowed", "deny": "refused", "needs_approval": "needs approval"}
    return Text(words[decision.outcome], style=styles[decision.outcome])


def rules_table(decision: Decision, title: str = "Policy decision") -> Table:
    """Every rule of a decision: its verdict and its reason."""
    table = Table(
        title=f"{title}: {decision.outcome} ({decision.mode})", title_justify="left", expand=False
    )
    table.add_column("rule")
    table.add_column("")
    table.add_column("reason", overflow="fold")
    for rule in decision.rules:
        mark = (
            Text("✓", style="green")
            if rule.passed
            else Text("?", style="yellow")
            if rule.approval
            else Text("✗", style="red")
        )
        table.add_row(safe(rule.rule, 60), mark, safe(rule.reason, 500))
    if decision.shadow is not None:
        table.caption = f"shadow mode: the real policy would {decision.shadow.outcome}"
    return table


# -- mpp discover ---------------------------------------------------------------------------


def discover(
    origin: str, *, timeout: float, as_json: bool, headers: Sequence[str] = ()
) -> ExitCode:
    """List the priced operations ``origin`` advertises (advisory: the 402 wins)."""
    spec = RequestSpec("GET", origin, headers=headers)
    with Client(timeout=timeout) as client:
        found = client.discover(origin, headers=spec.options()["headers"])
    if as_json:
        print_json(found.to_dict())
    else:
        render_discovery(found)
    return ExitCode.OK


def render_discovery(found: Discovery) -> None:
    console = out()
    console.print(
        Text("service ", style="bold")
        + safe(found.title, 120)
        + Text(" ")
        + safe(found.version, 40)
        + Text(f" (OpenAPI {printable(found.openapi, 20)})")
    )
    table = Table(title="Priced operations (advisory: the 402 challenge decides)")
    for column in ("operation", "summary", "method/intent", "amount", "currency", "note"):
        table.add_column(column, overflow="fold")
    for operation in found.operations:
        for index, offer in enumerate(operation.offers):
            table.add_row(
                safe(f"{operation.http_method} {operation.path}", 120) if index == 0 else "",
                safe(operation.summary or "", 80) if index == 0 else "",
                safe(offer.key, 60),
                str(offer.amount) if offer.amount is not None else "per request",
                safe(offer.currency or "", 66),
                safe(offer.description or "", 120),
            )
    console.print(table)
    if not found.operations:
        console.print("no operation advertises a price")
