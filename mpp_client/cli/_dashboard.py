"""``mpp ledger serve``: a local, read-only page over a ledger.

What the agents spent and why: spend over time and by payee and method (SVG
charts drawn on the server), each budget with what remains, the unknown
outcomes waiting to be resolved, the last verification of the audit log, and
every payment with its decision (each rule, the purpose, the tags, the
approval).

It is a plain ASGI app (no framework), run by uvicorn, and it only reads:
``GET``/``HEAD`` only, nothing writes the ledger, and no external asset is
ever fetched (the page carries its CSS and its charts inline; the
Content-Security-Policy forbids anything else). Bound to 127.0.0.1 by
default; on a loopback address it also refuses requests whose ``Host`` is
not a loopback name, so a web page cannot reach it through DNS rebinding.
Every string a server or a record chose is escaped for HTML.
"""

from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from .._text import printable
from ..ledger import PaymentRecord
from ..money import Amount
from ._report import BudgetRow, Report, SpendRow, build_report

if TYPE_CHECKING:
    from ..ledger import Ledger, VerifyReport
    from ..policy import Policy

__all__ = ["Dashboard", "render_page"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: Colours of the charts (the tests look for them in the screenshot).
DAY_COLOUR = "#2563eb"
PAYEE_COLOUR = "#0891b2"
METHOD_COLOUR = "#9333ea"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
#: Nothing but the page itself: no script, no external style, font or image.
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


def esc(value: object, limit: int | None = 300) -> str:
    """Text for HTML: control characters escaped first (as in logs), then HTML-escaped."""
    return html.escape(printable("" if value is None else value, limit), quote=True)


@dataclass(frozen=True, slots=True)
class Verification:
    at: datetime
    ok: bool
    summary: str
    problems: tuple[str, ...]


class Dashboard:
    """The ASGI app: ``/`` the page, ``/report.json`` the same numbers as JSON."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        policy: Policy | None = None,
        title: str = "",
        loopback_only: bool = True,
        verify_every: float = 600.0,
        days: int = 30,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger = ledger
        self.policy = policy
        self.title = title
        self.loopback_only = loopback_only
        self.verify_every = verify_every
        self.days = days
        self.clock = clock
        self._verification: Verification | None = None
        self._verifying = threading.Lock()
        self._last_run = 0.0

    # -- verification -------------------------------------------------------------------

    def verification(self) -> Verification | None:
        """The last verification; run now if there is none, again in the background when old."""
        if self._verification is None:
            self._verify()
        elif time.monotonic() - self._last_run > self.verify_every and self._verifying.acquire(
            blocking=False
        ):
            self._verifying.release()
            threading.Thread(target=self._verify, name="mpp-dashboard-verify", daemon=True).start()
        return self._verification

    def _verify(self) -> None:
        verify = getattr(self.ledger, "verify", None)
        with self._verifying:
            self._last_run = time.monotonic()
            if verify is None:
                self._verification = Verification(
                    self.clock(), False, "this ledger keeps no audit log", ()
                )
                return
            try:
                result: VerifyReport = verify()
            except Exception as exc:
                self._verification = Verification(
                    self.clock(), False, f"verification failed to run ({type(exc).__name__})", ()
                )
                return
            head = (
                f"{result.events} events ({result.signed} signed), {result.checkpoints} checkpoints"
            )
            self._verification = Verification(self.clock(), result.ok, head, tuple(result.problems))

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, "text/plain", b"read-only\n", allow="GET, HEAD")
            return
        if self.loopback_only and not _loopback_host(scope):
            await _respond(send, 421, "text/plain", b"this dashboard answers loopback names only\n")
            return
        path = scope["path"]
        if path == "/":
            page = await anyio.to_thread.run_sync(self.page)
            body = page.encode("utf-8")
            await _respond(send, 200, "text/html; charset=utf-8", body, head=method == "HEAD")
        elif path == "/report.json":
            data = await anyio.to_thread.run_sync(self.report_json)
            body = json.dumps(data, ensure_ascii=True, indent=1).encode()
            await _respond(send, 200, "application/json", body, head=method == "HEAD")
        else:
            await _respond(send, 404, "text/plain", b"not found\n")

    def report(self) -> tuple[Report, list[PaymentRecord]]:
        records = self.ledger.records()
        return build_report(records, policy=self.policy, now=self.clock()), records

    def report_json(self) -> dict[str, Any]:
        report, _ = self.report()
        verification = self.verification()
        return {
            **report.to_dict(),
            "verification": (
                {
                    "at": verification.at.isoformat(),
                    "ok": verification.ok,
                    "summary": verification.summary,
                    "problems": list(verification.problems),
                }
                if verification is not None
                else None
            ),
        }

    def page(self) -> str:
        report, records = self.report()
        return render_page(
            report,
            records,
            verification=self.verification(),
            title=self.title,
            now=self.clock(),
            days=self.days,
            currency=self.policy.currency if self.policy is not None else None,
        )


def _loopback_host(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"host":
            host = value.decode("latin-1").strip().lower()
            if host.startswith("["):
                host = host.split("]", 1)[0] + "]"
            else:
                host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
            return host in _LOOPBACK_HOSTS
    return False


async def _respond(
    send: Send, status: int, kind: str, body: bytes, *, head: bool = False, allow: str = ""
) -> None:
    headers = [
        (b"content-type", kind.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"content-security-policy", _CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-store"),
    ]
    if allow:
        headers.append((b"allow", allow.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


# -- the page -------------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
margin:0;background:#f8fafc;color:#0f172a}
header{background:#0f172a;color:#f8fafc;padding:14px 24px}
header h1{font-size:20px;margin:0}header p{margin:4px 0 0;color:#cbd5e1}
main{padding:16px 24px;display:grid;grid-template-columns:1fr 1fr;gap:16px}
section{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:12px 16px}
section.wide{grid-column:1/3}h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 6px;
border-bottom:1px solid #e2e8f0;vertical-align:top}th{color:#475569;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#15803d;font-weight:600}.bad{color:#b91c1c;font-weight:600}
.badge{display:inline-block;padding:0 6px;border-radius:4px;font-size:12px}
.committed{background:#dcfce7}.unknown{background:#fee2e2}.reserved{background:#fef9c3}
.released{background:#e2e8f0}code{font-size:12px}details summary{cursor:pointer}
.muted{color:#64748b}svg text{font-size:11px;fill:#334155}
"""


def render_page(
    report: Report,
    records: Sequence[PaymentRecord],
    *,
    verification: Verification | None,
    title: str,
    now: datetime,
    days: int = 30,
    currency: str | None = None,
) -> str:
    """The whole page, as one HTML document with inline CSS and SVG."""
    main = currency or _main_currency(records)
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width,initial-scale=1'>",
        f"<title>mpp ledger {esc(title, 120)}</title><style>{_STYLE}</style></head><body>",
        f"<header><h1>mpp ledger</h1><p>{esc(title, 300)} · {len(records)} records · "
        f"shown at {now:%Y-%m-%d %H:%M:%S} UTC · read-only</p></header><main>",
        _verification_html(verification),
        _budgets_html(report.budgets),
        _section(
            f"Spend per day, last {days} days ({esc(main or '-', 20)})",
            _day_chart(report.by_day, main, now, days),
            wide=True,
        ),
        _section(
            f"Spend by payee ({esc(main or '-', 20)})",
            _bar_chart([r for r in report.by_payee if r.currency == main], PAYEE_COLOUR),
        ),
        _section(
            f"Spend by method ({esc(main or '-', 20)})",
            _bar_chart([r for r in report.by_method if r.currency == main], METHOD_COLOUR),
        ),
        _unknown_html(report.unknown),
        _payments_html(records),
        "</main></body></html>",
    ]
    return "".join(parts)


def _section(title: str, body: str, *, wide: bool = False) -> str:
    css = " class=wide" if wide else ""
    return f"<section{css}><h2>{title}</h2>{body}</section>"


def _main_currency(records: Sequence[PaymentRecord]) -> str | None:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.charge.currency] = counts.get(record.charge.currency, 0) + 1
    return max(counts, key=lambda c: counts[c]) if counts else None


def _verification_html(verification: Verification | None) -> str:
    if verification is None:
        return _section("Last verification", "<p class=muted>not run yet</p>")
    verdict = (
        "<span class=ok>verified</span>" if verification.ok else "<span class=bad>FAILED</span>"
    )
    problems = "".join(f"<li>{esc(p, 500)}</li>" for p in verification.problems[:50])
    more = (
        f"<p class=muted>and {len(verification.problems) - 50} more</p>"
        if len(verification.problems) > 50
        else ""
    )
    return _section(
        "Last verification",
        f"<p>{verdict}: {esc(verification.summary)}<br>"
        f"<span class=muted>at {verification.at:%Y-%m-%d %H:%M:%S} UTC</span></p>"
        + (f"<ul>{problems}</ul>{more}" if problems else ""),
    )


def _budgets_html(budgets: Sequence[BudgetRow]) -> str:
    if not budgets:
        return _section(
            "Budgets", "<p class=muted>start with --policy FILE to see each budget and its room</p>"
        )
    rows = []
    for budget in budgets:
        share = budget.share
        colour = "#16a34a" if share < 0.8 else "#d97706" if share < 1 else "#dc2626"
        bar = (
            "<svg width=160 height=12 role=img aria-label='used share'>"
            "<rect width=160 height=12 rx=3 fill='#e2e8f0'/>"
            f"<rect width={160 * share:.1f} height=12 rx=3 fill='{colour}'/></svg>"
        )
        rows.append(
            f"<tr><td>{esc(budget.name, 80)}<br><span class=muted>{esc(budget.period)}; "
            f"{esc(budget.scope)}</span></td><td>{bar}</td>"
            f"<td class=n>{esc(budget.used)} of {esc(budget.limit)}</td>"
            f"<td class=n><b>{esc(budget.remaining)}</b> left</td></tr>"
        )
    return _section("Budgets", f"<table>{''.join(rows)}</table>")


def _units(amount: Amount, decimals: int) -> int:
    return amount.rescale(decimals).units


def _day_chart(rows: Sequence[SpendRow], currency: str | None, now: datetime, days: int) -> str:
    width, height, left, bottom, top = 1180, 200, 60, 24, 12
    today = now.date()
    first = today - timedelta(days=days - 1)
    spend = {r.key: r.counted for r in rows if r.currency == currency}
    decimals = max((a.decimals for a in spend.values()), default=0)
    values = [
        _units(spend[d.isoformat()], decimals) if d.isoformat() in spend else 0
        for d in (first + timedelta(days=i) for i in range(days))
    ]
    peak = max(values, default=0)
    slot = (width - left) / days
    bars = []
    for index, value in enumerate(values):
        if value <= 0 or peak <= 0:
            continue
        h = (height - bottom - top) * value / peak
        x = left + index * slot + slot * 0.15
        y = height - bottom - h
        day: date = first + timedelta(days=index)
        label = f"{day.isoformat()}: {Amount(value, currency or 'X', decimals)}"
        bars.append(
            f"<rect x={x:.1f} y={y:.1f} width={slot * 0.7:.1f} height={h:.1f} "
            f"fill='{DAY_COLOUR}'><title>{esc(label)}</title></rect>"
        )
    ticks = "".join(
        f"<text x={left + i * slot + slot / 2:.1f} y={height - 6} text-anchor=middle>"
        f"{(first + timedelta(days=i)):%m-%d}</text>"
        for i in range(0, days, max(days // 10, 1))
    )
    top_label = esc(Amount(peak, currency, decimals)) if currency is not None and peak > 0 else "0"
    axis = (
        f"<line x1={left} y1={height - bottom} x2={width} y2={height - bottom} stroke='#94a3b8'/>"
        f"<text x={left - 6} y={top + 8} text-anchor=end>{top_label}</text>"
        f"<text x={left - 6} y={height - bottom} text-anchor=end>0</text>"
    )
    empty = "" if bars else f"<text x={width / 2} y={height / 2} text-anchor=middle>no spend</text>"
    return (
        f"<svg viewBox='0 0 {width} {height}' width='100%' role=img "
        f"aria-label='spend per day'>{axis}{''.join(bars)}{ticks}{empty}</svg>"
    )


def _bar_chart(rows: Sequence[SpendRow], colour: str, limit: int = 10) -> str:
    shown = list(rows[:limit])
    if not shown:
        return "<p class=muted>no spend</p>"
    decimals = max(r.counted.decimals for r in shown)
    peak = max(_units(r.counted, decimals) for r in shown) or 1
    width, row_h, label_w, value_w = 560, 26, 150, 110
    bars = []
    for index, row in enumerate(shown):
        y = index * row_h
        w = (width - label_w - value_w) * _units(row.counted, decimals) / peak
        bars.append(
            f"<text x={label_w - 6} y={y + 17} text-anchor=end>{esc(row.key, 22)}</text>"
            f"<rect x={label_w} y={y + 5} width={max(w, 1):.1f} height={row_h - 10} rx=3 "
            f"fill='{colour}'><title>{esc(row.key)}: {esc(row.counted)}</title></rect>"
            f"<text x={label_w + w + 6:.1f} y={y + 17}>{esc(row.counted)} ({row.payments})</text>"
        )
    height = row_h * len(shown)
    more = f"<p class=muted>and {len(rows) - limit} more</p>" if len(rows) > limit else ""
    return f"<svg viewBox='0 0 {width} {height}' width='100%' role=img>{''.join(bars)}</svg>{more}"


def _unknown_html(unknown: Sequence[PaymentRecord]) -> str:
    if not unknown:
        return _section(
            "Unknown outcomes", "<p class=ok>none: every payment is settled</p>", wide=True
        )
    rows = "".join(
        f"<tr><td><code>{esc(r.id, 64)}</code></td><td>{r.created_at:%Y-%m-%d %H:%M}</td>"
        f"<td class=n>{esc(r.amount)}</td><td>{esc(r.payee, 80)}</td>"
        f"<td>{esc(r.url, 120)}</td><td>{esc(r.reason or '', 300)}</td></tr>"
        for r in unknown
    )
    return _section(
        f"Unknown outcomes waiting to be resolved ({len(unknown)})",
        "<p class=muted>counted as spent until resolved: "
        "<code>mpp ledger resolve ID --paid</code> or <code>--not-paid</code></p>"
        "<table><tr><th>id</th><th>created</th><th>amount</th><th>payee</th><th>url</th>"
        f"<th>why</th></tr>{rows}</table>",
        wide=True,
    )


def _approval(record: PaymentRecord) -> str:
    decision = record.decision
    if decision is None:
        return "—"
    for rule in decision.rules:
        if rule.rule == "approval":
            return esc(rule.reason, 120)
    asked = [rule for rule in decision.rules if rule.approval]
    if asked:
        return "needed: " + esc("; ".join(r.reason for r in asked), 200)
    return "not needed"


def _payments_html(records: Sequence[PaymentRecord], limit: int = 200) -> str:
    newest = sorted(records, key=lambda r: r.created_at, reverse=True)[:limit]
    rows = []
    for record in newest:
        decision = record.decision
        if decision is not None:
            rules = "".join(
                f"<tr><td><code>{esc(rule.rule, 60)}</code></td>"
                f"<td>{'✓' if rule.passed else '?' if rule.approval else '✗'}</td>"
                f"<td>{esc(rule.reason, 400)}</td></tr>"
                for rule in decision.rules
            )
            context = (
                f"<details><summary>{len(decision.rules)} rules: {esc(decision.outcome)} "
                f"({esc(decision.mode)})</summary><table>{rules}</table></details>"
            )
        else:
            context = "<span class=muted>no decision stored</span>"
        tags = ", ".join(f"{k}={v}" for k, v in sorted(record.tags.items()))
        rows.append(
            f"<tr><td>{record.created_at:%Y-%m-%d %H:%M:%S}</td>"
            f"<td><span class='badge {esc(record.status, 20)}'>{esc(record.status, 20)}</span></td>"
            f"<td class=n>{esc(record.amount)}</td><td>{esc(record.payee, 80)}</td>"
            f"<td>{esc(record.method, 40)}</td><td>{esc(record.http_method, 10)} "
            f"{esc(record.url, 120)}</td><td>{esc(record.purpose or '', 200)}</td>"
            f"<td>{esc(tags, 200)}</td><td>{_approval(record)}</td><td>{context}</td></tr>"
        )
    more = (
        f"<p class=muted>the newest {limit} of {len(records)} are shown</p>"
        if len(records) > limit
        else ""
    )
    return _section(
        "Payments and their decisions",
        "<table><tr><th>when (UTC)</th><th>status</th><th>amount</th><th>payee</th>"
        "<th>method</th><th>request</th><th>purpose</th><th>tags</th><th>approval</th>"
        f"<th>decision</th></tr>{''.join(rows)}</table>{more}"
        if rows
        else "<p class=muted>no payments yet</p>",
        wide=True,
    )
