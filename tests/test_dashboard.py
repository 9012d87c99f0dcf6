"""``mpp ledger serve``: the read-only dashboard, in unit tests and in headless Chromium.

The ledger is a real SQLite file filled through the ledger's own API
(reserve, commit, mark unknown) with payments over several days, payees and
methods, one needing an approval and one hostile payee. The page is checked
as HTML (escaping, read-only, loopback names only, no external asset), then
served on a real socket and screenshotted by Debian's Chromium
(``scripts/ui-tools.sh`` installs it), and the picture is checked: its size,
that it is not blank, and that each chart's colour is where that chart is.
The command itself is run as a process and asked for its page.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mpp_client.cli._dashboard import DAY_COLOUR, METHOD_COLOUR, PAYEE_COLOUR, Dashboard
from mpp_client.ledger import PaymentRecord, SqliteLedger
from mpp_client.money import Amount
from mpp_client.policy import Decision, Policy, RuleResult
from mpp_client.testing import LocalServer

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 3, 20, 15, 0, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script>\x1b[31m"

POLICY = Policy.from_mapping(
    {
        "currency": "USD",
        "scope": "shop-agent",
        "per_call": "1.00 USD",
        "budgets": [
            {"name": "total", "limit": "10.00 USD"},
            {"name": "daily", "limit": "1.00 USD", "calendar": "day"},
        ],
        "allow": {k: ["*"] for k in ("hosts", "realms", "payees", "methods", "intents", "assets")},
    }
)


def record(
    days_ago: int,
    cents: int,
    payee: str,
    method: str = "dev",
    *,
    purpose: str | None = None,
    tags: dict[str, str] | None = None,
    approved: bool = False,
) -> PaymentRecord:
    amount = Amount(cents, "USD", 2)
    rules = [
        RuleResult("allow.payees", True, f"payee {payee!r} is allowed"),
        RuleResult("per_call", True, f"{amount} is within the per-call cap 1.00 USD"),
    ]
    if approved:
        rules += [
            RuleResult("approval.above", False, f"{amount} is above 0.40 USD", approval=True),
            RuleResult("approval", True, "approved by the approver"),
        ]
    return PaymentRecord(
        id=uuid.uuid4().hex,
        created_at=NOW - timedelta(days=days_ago, minutes=cents),
        status="reserved",
        http_method="GET",
        url=f"https://{method}.example.com/paid",
        realm="shop.example",
        method=method,
        intent="charge",
        amount=amount,
        charge=amount,
        payee=payee,
        challenge_id=uuid.uuid4().hex,
        decision=Decision("allow", tuple(rules), charge=amount),
        purpose=purpose,
        tags=tags or {},
        scope="shop-agent",
    )


@pytest.fixture
def ledger(tmp_path: Path) -> SqliteLedger:
    store = SqliteLedger(tmp_path / "ledger.sqlite3", clock=lambda: NOW)
    plan = [
        record(0, 40, "merchant-1", purpose="weather lookup", tags={"job": "nightly"}),
        record(0, 60, "merchant-2", "tempo", approved=True),
        record(1, 25, "merchant-1"),
        record(3, 75, "merchant-3", "evm"),
        record(6, 30, "merchant-2", "tempo"),
        record(9, 55, "merchant-1"),
        record(14, 90, "merchant-3", "evm"),
        record(20, 45, HOSTILE),
    ]
    for entry in plan:
        store.reserve(entry, ())
        store.commit(entry.id, None)
    lost = record(0, 35, "merchant-2", "tempo")
    store.reserve(lost, ())
    store.mark_unknown(lost.id, "the paid request failed before a response arrived")
    return store


def get(app: Any, path: str = "/", *, method: str = "GET", host: str = "127.0.0.1") -> Any:
    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as client:
            return await client.request(method, path)

    return asyncio.run(fetch())


def test_the_page_shows_every_part_escaped(ledger: SqliteLedger) -> None:
    page = get(Dashboard(ledger, policy=POLICY, clock=lambda: NOW))
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    html = page.text
    for part in (
        "Last verification",
        "verified",
        "Budgets",
        "Spend per day, last 30 days (USD)",
        "Spend by payee (USD)",
        "Spend by method (USD)",
        "Unknown outcomes waiting to be resolved (1)",
        "Payments and their decisions",
    ):
        assert part in html, part
    # The budgets with what remains: daily holds today's 0.40 + 0.60 + 0.35 (unknown).
    assert "1.35 USD of 1.00 USD" in html and "0.00 USD</b> left" in html
    assert "4.55 USD of 10.00 USD" in html and "5.45 USD</b> left" in html
    # The decision context of a payment: its rules, purpose, tags and approval.
    assert "weather lookup" in html and "job=nightly" in html
    assert "approved by the approver" in html and "is within the per-call cap" in html
    assert "the paid request failed before a response arrived" in html
    # Server-chosen text is escaped; the page has no script and no external reference.
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[31m" in html
    assert "http://" not in html.replace(
        "http://www.w3.org", ""
    ) and "https://" not in html.replace("https://dev.example.com", "").replace(
        "https://tempo.example.com", ""
    ).replace("https://evm.example.com", "")
    assert "<link" not in html and "src=" not in html


def test_it_is_read_only_and_answers_loopback_names_only(ledger: SqliteLedger) -> None:
    app = Dashboard(ledger, clock=lambda: NOW)
    assert get(app, method="POST").status_code == 405
    assert get(app, method="DELETE").status_code == 405
    assert get(app, host="evil.example").status_code == 421  # DNS rebinding
    assert get(app, host="localhost:8402").status_code == 200
    assert get(app, "/nothing").status_code == 404
    data = get(app, "/report.json").json()
    assert data["verification"]["ok"] is True and len(data["unknown"]) == 1
    assert {row["key"] for row in data["by_method"]} == {"dev", "tempo", "evm"}
    assert get(Dashboard(ledger, loopback_only=False), host="evil.example").status_code == 200


def test_a_failed_verification_is_shown(ledger: SqliteLedger) -> None:
    import sqlite3

    with sqlite3.connect(ledger.path) as db:
        (table,) = [
            name
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if name.endswith("_log")
        ]
        db.execute(
            f"UPDATE {table} SET entry = "
            "CAST(replace(CAST(entry AS TEXT), '0.40 USD', '0.04 USD') AS BLOB)"
        )
    html = get(Dashboard(ledger, clock=lambda: NOW)).text
    assert "FAILED" in html and "modified" in html


def test_an_empty_ledger_is_a_page_too(tmp_path: Path) -> None:
    html = get(Dashboard(SqliteLedger(tmp_path / "empty.sqlite3"))).text
    assert "no payments yet" in html and "none: every payment is settled" in html


# -- in a browser ---------------------------------------------------------------------------


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:  # ./run test installs it (scripts/ui-tools.sh)
        subprocess.run(["bash", str(ROOT / "scripts" / "ui-tools.sh")], check=True, timeout=900)
        found = shutil.which("chromium")
    assert found is not None
    return found


def screenshot(url: str, out: Path, profile: Path) -> None:
    subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            "--window-size=1280,1600",
            url,
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )


def _hex(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def test_chromium_renders_the_charts(ledger: SqliteLedger, tmp_path: Path) -> None:
    from PIL import Image

    picture = tmp_path / "dashboard.png"
    app = Dashboard(ledger, policy=POLICY, title="test ledger", clock=lambda: NOW)
    with LocalServer(app) as server:
        screenshot(server.url + "/", picture, tmp_path / "profile")
    # Kept for a person to look at (pytest's tmp_path survives the run).
    shutil.copy(picture, tmp_path.parent / "dashboard-latest.png")
    image = Image.open(picture).convert("RGB")
    assert image.size == (1280, 1600)
    colours = image.getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 50  # not blank: text, charts, tables
    width = image.size[0]

    def where(colour: str) -> list[tuple[int, int]]:
        wanted = _hex(colour)
        pixels = image.load()
        assert pixels is not None
        return [
            (x, y)
            for y in range(0, image.size[1], 2)
            for x in range(0, width, 2)
            if pixels[x, y] == wanted
        ]

    days = where(DAY_COLOUR)
    payees = where(PAYEE_COLOUR)
    methods = where(METHOD_COLOUR)
    assert len(days) > 200 and len(payees) > 200 and len(methods) > 200
    # The day chart spans the page; the payee chart is in the left column, methods right.
    xs = [x for x, _ in days]
    assert max(xs) - min(xs) > width * 0.4
    assert max(x for x, _ in payees) < width * 0.55
    assert min(x for x, _ in methods) > width * 0.45
    # Under the day chart, side by side.
    assert min(y for _, y in payees) > max(y for _, y in days)
    assert abs(min(y for _, y in payees) - min(y for _, y in methods)) < 40


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_mpp_ledger_serve_serves_the_page(ledger: SqliteLedger, tmp_path: Path) -> None:
    port = _free_port()
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mpp_client.cli",
            "ledger",
            "serve",
            "--ledger",
            str(ledger.path),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(process.stderr.read().decode() if process.stderr else "")
                time.sleep(0.2)
        assert page.status_code == 200 and "Payments and their decisions" in page.text
        assert httpx.post(f"http://127.0.0.1:{port}/", timeout=5).status_code == 405
    finally:
        process.terminate()
        process.wait(timeout=30)
