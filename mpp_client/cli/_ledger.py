"""``mpp ledger``: report, verify, export, resolve, path (and ``serve``, the dashboard).

Everything here reads through the ledger's public API (``records``,
``verify``, ``export_jsonl``, ``export_csv``, ``resolve``); only
``resolve`` writes, and it writes through the ledger, the one writer of
spend state.
"""

from __future__ import annotations

import csv
import io
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..ledger import Ledger, default_ledger_path, open_ledger
from ._common import err, fail, out, parse_when, print_json, safe, say
from ._exit import ExitCode
from ._report import Report, build_report

if TYPE_CHECKING:
    from ..ledger import VerifyReport
    from ..policy import Policy

__all__ = [
    "export",
    "ledger_path",
    "open_for_cli",
    "render_report",
    "report",
    "resolve",
    "verify",
]

#: Verification shows a progress bar from this many records on, on a terminal.
PROGRESS_FROM = 1_000


class AuditedLedger(Protocol):
    """The read API of a ledger with an audit log (SQLite, PostgreSQL)."""

    def records(self) -> list[Any]: ...
    def verify(
        self, *, trusted_agents: Any = None, require_signatures: bool = False
    ) -> VerifyReport: ...
    def export_csv(self) -> str: ...
    def export_jsonl(self) -> Any: ...


def ledger_path(target: str | None) -> str:
    """What ``--ledger`` (or ``$MPP_CLIENT_LEDGER``, or the default) points at."""
    return target if target else str(default_ledger_path())


def open_for_cli(target: str | None, *, must_exist: bool = True) -> Ledger:
    """Open the ledger without creating one by accident (a typo must not make a new file)."""
    where = ledger_path(target)
    if must_exist and not where.startswith(("postgresql://", "postgres://", "memory:")):
        path = Path(where.removeprefix("sqlite:///")).expanduser()
        if not path.is_file():
            fail(f"no ledger at {str(path)!r} (give --ledger, or set $MPP_CLIENT_LEDGER)")
    return open_ledger(where)


def _audited(ledger: Ledger) -> AuditedLedger:
    if not all(hasattr(ledger, name) for name in ("verify", "export_csv", "export_jsonl")):
        fail(f"{type(ledger).__name__} keeps no audit log to verify or export")
    audited: AuditedLedger = ledger  # type: ignore[assignment]
    return audited


# -- report -------------------------------------------------------------------------------


def report(
    target: str | None,
    *,
    policy: Policy | None,
    since: str | None,
    as_json: bool,
    as_csv: bool,
) -> ExitCode:
    ledger = open_for_cli(target)
    start = parse_when(since, past=True) if since else None
    built = build_report(ledger.records(), policy=policy, since=start)
    if as_json:
        print_json({"ledger": ledger_path(target), **built.to_dict()})
    elif as_csv:
        buffer = io.StringIO()
        csv.writer(buffer).writerows(built.csv_rows())
        sys.stdout.write(buffer.getvalue())
    else:
        render_report(built, ledger_path(target))
    return ExitCode.OK


def render_report(built: Report, where: str) -> None:
    console = out()
    span = f" since {built.since:%Y-%m-%d %H:%M}" if built.since else ""
    console.print(
        Text("ledger ", style="bold")
        + safe(where, 300)
        + Text(f": {built.payments} payments{span}")
    )
    for title, rows, label in (
        ("Spend by payee", built.by_payee, "payee"),
        ("Spend by method", built.by_method, "method"),
        (f"Spend by day ({built.timezone})", built.by_day, "day"),
    ):
        table = Table(title=title, title_justify="left")
        table.add_column(label, overflow="fold")
        for column in ("payments", "committed", "held", "counted"):
            table.add_column(column, justify="right")
        for row in rows:
            table.add_row(
                safe(row.key, 80),
                str(row.payments),
                str(row.committed),
                str(row.held),
                Text(str(row.counted), style="bold"),
            )
        if not rows:
            table.add_row("(none)", "", "", "", "")
        console.print(table)
    if built.budgets:
        table = Table(title="Budgets", title_justify="left")
        for column in ("budget", "period", "scope"):
            table.add_column(column)
        for column in ("limit", "used", "remaining"):
            table.add_column(column, justify="right")
        for budget in built.budgets:
            low = budget.remaining.units == 0
            table.add_row(
                safe(budget.name, 60),
                safe(budget.period, 60),
                safe(budget.scope, 80),
                str(budget.limit),
                str(budget.used),
                Text(str(budget.remaining), style="bold red" if low else "bold green"),
            )
        console.print(table)
    else:
        console.print("(no --policy given: budgets not shown)")
    if built.unknown:
        table = Table(title="Unknown outcomes to resolve (mpp ledger resolve ID --paid|--not-paid)")
        for column in ("id", "created", "amount", "payee", "reason"):
            table.add_column(column, overflow="fold")
        for record in built.unknown:
            table.add_row(
                record.id,
                f"{record.created_at:%Y-%m-%d %H:%M}",
                str(record.amount),
                safe(record.payee, 60),
                safe(record.reason or "", 200),
            )
        console.print(table)


# -- verify -------------------------------------------------------------------------------


def verify(
    target: str | None,
    *,
    trusted: list[str],
    require_signatures: bool,
    as_json: bool,
    quiet: bool,
) -> ExitCode:
    ledger = _audited(open_for_cli(target))
    result = run_verify(
        ledger, trusted=trusted, require_signatures=require_signatures, show=not quiet
    )
    if as_json:
        print_json(
            {
                "ok": result.ok,
                "events": result.events,
                "signed": result.signed,
                "checkpoints": result.checkpoints,
                "problems": result.problems,
            }
        )
    else:
        console = out()
        style = "bold green" if result.ok else "bold red"
        console.print(Text(str(result).split(";")[0], style=style))
        for problem in result.problems:
            console.print(Text("  - ") + safe(problem, 500))
    return ExitCode.OK if result.ok else ExitCode.VERIFICATION_FAILED


def run_verify(
    ledger: AuditedLedger,
    *,
    trusted: list[str] | None = None,
    require_signatures: bool = False,
    show: bool = True,
) -> VerifyReport:
    """``ledger.verify()``, with a progress bar on a terminal when the log is long.

    The ledger verifies in one call and reports no progress, so the bar is a
    pulse with the elapsed time over the records being checked, not a
    percentage.
    """
    kwargs: dict[str, Any] = {"require_signatures": require_signatures}
    if trusted:
        kwargs["trusted_agents"] = trusted
    console = err()
    if not show or not console.is_terminal:
        return ledger.verify(**kwargs)
    count = len(ledger.records())
    if count < PROGRESS_FROM:
        return ledger.verify(**kwargs)
    done: dict[str, Any] = {}

    def work() -> None:
        try:
            done["report"] = ledger.verify(**kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            done["error"] = exc

    worker = threading.Thread(target=work, name="mpp-verify", daemon=True)
    with Progress(
        SpinnerColumn(),
        TextColumn(f"verifying the audit log of {count} payments"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        progress.add_task("verify", total=None)
        worker.start()
        while worker.is_alive():
            worker.join(0.1)
    if "error" in done:
        raise done["error"]
    result: VerifyReport = done["report"]
    return result


# -- export, resolve ----------------------------------------------------------------------


def export(target: str | None, *, fmt: str, output: Path | None) -> ExitCode:
    ledger = _audited(open_for_cli(target))
    if fmt == "csv":
        text = ledger.export_csv()
    elif fmt == "jsonl":
        text = "".join(line + "\n" for line in ledger.export_jsonl())
    else:
        fail(f"--format is jsonl or csv, not {fmt!r}")
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        output.write_text(text, encoding="utf-8")
        say(f"wrote {fmt} export of {ledger_path(target)} to {output}")
    return ExitCode.OK


def resolve(target: str | None, record_id: str, *, paid: bool, reason: str) -> ExitCode:
    ledger = open_for_cli(target)
    record = ledger.resolve(record_id, "committed" if paid else "released", reason)
    say(
        f"record {record.id}: {record.amount} to {record.payee!r} resolved as {record.status} "
        f"({'counted as spent' if paid else 'no longer counted'})"
    )
    return ExitCode.OK
