"""``mpp`` as a real process: against the embedded server, and in a real terminal (tmux).

The subprocess tests run ``python -m mpp_client.cli`` (what the ``mpp``
console script calls) against ``PaidServer`` on a loopback socket. The tmux
tests run it in a real pseudo-terminal (``scripts/ui-tools.sh`` installs
tmux) to see what a person sees: the tables drawn with their borders, the
approval prompt answered by keystrokes, a passphrase typed and never shown.
Each tmux session runs on a private socket and is killed at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mpp_client.ledger import SqliteLedger
from mpp_client.testing import LocalServer, PaidServer

ROOT = Path(__file__).resolve().parents[1]
PASSPHRASE = "tmux typed passphrase 7"
POLICY = """
currency = "USD"
per_call = "0.50 USD"

[[budgets]]
name = "total"
limit = "1.00 USD"

[allow]
hosts = ["127.0.0.1"]
realms = ["*"]
payees = ["*"]
methods = ["dev"]
intents = ["charge"]
assets = ["*"]
"""


def environment(ledger: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPP_", "COLUMNS"))}
    env.update(PYTHONPATH=str(ROOT), MPP_CLIENT_LEDGER=str(ledger), **extra)
    return env


def run(ledger: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mpp_client.cli", *args],
        capture_output=True,
        text=True,
        env=environment(ledger, **extra),
        timeout=120,
        check=False,
    )


@pytest.fixture
def server() -> Iterator[tuple[PaidServer, str]]:
    paid = PaidServer({"/paid": "0.25 USD", "/dear": "0.75 USD"})
    with LocalServer(paid) as running:
        yield paid, running.url


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


def test_a_real_process_pays_refuses_quotes_reports_and_verifies(
    server: tuple[PaidServer, str], policy_file: Path, tmp_path: Path
) -> None:
    paid, url = server
    ledger = tmp_path / "ledger.sqlite3"
    policy = ["--policy", str(policy_file), "--insecure-localhost"]

    got = run(ledger, "get", url + "/paid", *policy)
    assert got.returncode == 0, got.stderr
    assert got.stdout == '{"ok":true}' and "paid 0.25 USD to 'merchant-1'" in got.stderr

    refused = run(ledger, "get", url + "/dear", *policy)
    assert refused.returncode == 3 and "per-call cap" in refused.stderr

    quoted = run(ledger, "quote", url + "/paid", "--json", *policy)
    assert quoted.returncode == 0
    assert json.loads(quoted.stdout)["would_pay"] is True

    report = run(ledger, "ledger", "report", "--policy", str(policy_file), "--json")
    data = json.loads(report.stdout)
    assert data["by_payee"][0]["counted"] == "0.25 USD"
    assert data["budgets"][0]["remaining"] == "0.75 USD"
    verified = run(ledger, "ledger", "verify")
    assert verified.returncode == 0 and "ledger verified" in verified.stdout
    assert len(paid.payments) == 1 and len(SqliteLedger(ledger).records()) == 1


def test_a_real_process_keeps_the_passphrase_to_itself(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    key = tmp_path / "agent.key"
    made = run(ledger, "key", "new", str(key), "--kdf", "min", MPP_PASSPHRASE=PASSPHRASE)
    assert made.returncode == 0, made.stderr
    shown = run(ledger, "key", "show", str(key), "--json", MPP_PASSPHRASE=PASSPHRASE)
    assert json.loads(shown.stdout)["did"] == made.stdout.strip()
    for result in (made, shown):
        assert PASSPHRASE not in result.stdout + result.stderr


def test_without_the_cli_extra_it_names_the_install() -> None:
    code = (
        "import sys; sys.modules['typer'] = None\n"
        "from mpp_client.cli import main\n"
        "sys.exit(main(['--help']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=environment(Path("unused")),
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert 'pip install "mpp-client[cli]"' in result.stderr


def test_the_console_script_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["mpp"] == "mpp_client.cli:main"
    extras = project["project"]["optional-dependencies"]
    assert any(dep.startswith("typer") for dep in extras["cli"])
    assert any(dep.startswith("rich") for dep in extras["cli"])
    assert any(dep.startswith("uvicorn") for dep in extras["dashboard"])


# -- a real terminal ------------------------------------------------------------------------


class Tmux:
    """One tmux session on a private socket: type into it, read its screen."""

    def __init__(self, command: str, *, width: int = 150, height: int = 50) -> None:
        tmux = shutil.which("tmux")
        if tmux is None:  # scripts/ui-tools.sh installs it; ./run test calls that
            raise RuntimeError("tmux is missing: run scripts/ui-tools.sh")
        self.tmux = tmux
        self.socket = f"mpp-test-{secrets.token_hex(4)}"
        self.name = "mpp"
        self._tmux(
            "new-session",
            "-d",
            "-s",
            self.name,
            "-x",
            str(width),
            "-y",
            str(height),
            # Keep the pane after the command ends, so its last screen can be read.
            f"{command}; echo __mpp_done_$?__; sleep 600",
        )

    def _tmux(self, *args: str) -> str:
        result = subprocess.run(
            [self.tmux, "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-t", self.name, "-S", "-200")

    def wait_for(self, text: str, timeout: float = 90.0) -> str:
        """The screen once ``text`` is on it (polls; fails after a generous bound)."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; the screen:\n{screen}")
            time.sleep(0.2)

    def type(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys)

    def close(self) -> None:
        subprocess.run(
            [self.tmux, "-L", self.socket, "kill-server"], capture_output=True, check=False
        )


@pytest.fixture
def terminal() -> Iterator[Any]:
    opened: list[Tmux] = []

    def open_(command: str, **kwargs: Any) -> Tmux:
        session = Tmux(command, **kwargs)
        opened.append(session)
        return session

    yield open_
    for session in opened:
        session.close()


def shell(ledger: Path, *args: str, **extra: str) -> str:
    env = " ".join(
        f"{k}={shlex.quote(v)}"
        for k, v in environment(ledger, **extra).items()
        if k in ("PYTHONPATH", "MPP_CLIENT_LEDGER", "PATH", "HOME", *extra)
    )
    argv = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "mpp_client.cli", *args))
    return f"env -i TERM=xterm-256color {env} {argv}"


def test_the_report_tables_render_in_a_real_terminal(
    terminal: Any, server: tuple[PaidServer, str], policy_file: Path, tmp_path: Path
) -> None:
    _, url = server
    ledger = tmp_path / "ledger.sqlite3"
    for _ in range(2):
        assert (
            run(
                ledger, "get", url + "/paid", "--policy", str(policy_file), "--insecure-localhost"
            ).returncode
            == 0
        )
    session = terminal(shell(ledger, "ledger", "report", "--policy", str(policy_file)))
    screen = session.wait_for("__mpp_done_")
    assert "__mpp_done_0__" in screen
    lines = screen.splitlines()
    # Tables with their borders, one row per payee with its amounts on the same line.
    assert any(line.startswith("┏") for line in lines) and any(
        line.startswith("└") for line in lines
    )
    for title in ("Spend by payee", "Spend by method", "Spend by day (UTC)", "Budgets"):
        assert title in screen

    def cells(row: str) -> list[str]:
        return [cell.strip() for cell in row.split("│")[1:-1]]

    payee_row = next(line for line in lines if "merchant-1" in line)
    assert cells(payee_row) == ["merchant-1", "2", "0.50 USD", "0.00 USD", "0.50 USD"]
    budget_row = next(line for line in lines if "lifetime" in line)
    assert cells(budget_row) == [
        "total",
        "lifetime",
        "every payment",
        "1.00 USD",
        "0.50 USD",
        "0.50 USD",
    ]


def test_an_approval_is_asked_and_answered_at_the_terminal(
    terminal: Any, server: tuple[PaidServer, str], tmp_path: Path
) -> None:
    paid, url = server
    policy = tmp_path / "approval.toml"
    policy.write_text(POLICY + '\n[approval]\nabove = "0.20 USD"\n')
    ledger = tmp_path / "ledger.sqlite3"
    session = terminal(
        shell(ledger, "get", url + "/paid", "--policy", str(policy), "--insecure-localhost")
    )
    screen = session.wait_for("Pay? [y/N]")
    assert "approval needed to pay 0.25 USD to 'merchant-1'" in screen
    assert "0.25 USD is above the approval threshold 0.20 USD" in screen
    session.type("y", "Enter")
    screen = session.wait_for("__mpp_done_")
    assert "__mpp_done_0__" in screen and "paid 0.25 USD to 'merchant-1'" in screen
    assert len(paid.payments) == 1
    (record,) = SqliteLedger(ledger).records()
    assert record.decision is not None
    assert any(r.rule == "approval" and r.passed for r in record.decision.rules)


def test_a_typed_passphrase_is_never_shown(terminal: Any, tmp_path: Path) -> None:
    key = tmp_path / "owner.key"
    session = terminal(
        shell(
            tmp_path / "l.sqlite3",
            "key",
            "new",
            str(key),
            "--kind",
            "owner",
            "--kdf",
            "min",
            "--passphrase-env",
            "",
        )
    )
    session.wait_for("Passphrase for the new owner key")
    session.type(PASSPHRASE, "Enter")
    session.wait_for("Repeat for confirmation")
    session.type(PASSPHRASE, "Enter")
    screen = session.wait_for("__mpp_done_")
    assert "__mpp_done_0__" in screen and "did:key:z6Mk" in screen
    assert PASSPHRASE not in screen
    from mpp_client.identity import OwnerKey

    assert OwnerKey.load(key, PASSPHRASE).did in screen
