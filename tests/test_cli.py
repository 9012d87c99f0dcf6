"""The ``mpp`` command line, in process (typer's CliRunner), every command.

Paid commands run against the embedded ``PaidServer`` (or a scripted server
for the failures it does not make) on a real loopback socket; keys, mandates
and ledgers are real files in a temporary directory. Each test checks the
exit code scripts rely on, what reached stdout and stderr, and what happened
on the server and in the ledger. No secret may reach either stream.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mpp_client.cli import EXIT_CODES, ExitCode
from mpp_client.cli._app import app
from mpp_client.identity import KDF_MEMLIMIT_MIN, KDF_OPSLIMIT_MIN, AgentKey, OwnerKey
from mpp_client.ledger import SqliteLedger
from mpp_client.protocol import Problem
from mpp_client.testing import PaidServer

from .apps import Recorder, Scripted, challenge_402, charge

PASSPHRASE = "correct horse battery staple 42"

POLICY = """
currency = "USD"
per_call = "0.50 USD"

[[budgets]]
name = "total"
limit = "1.00 USD"

[[budgets]]
name = "daily"
limit = "0.60 USD"
calendar = "day"

[allow]
hosts = ["127.0.0.1"]
realms = ["*"]
payees = ["*"]
methods = ["dev"]
intents = ["charge"]
assets = ["*"]
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def ledger_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.sqlite3"
    monkeypatch.setenv("MPP_CLIENT_LEDGER", str(path))
    return path


def mpp(runner: CliRunner, *args: str, **kwargs: Any) -> Any:
    result = runner.invoke(app, list(args), catch_exceptions=False, **kwargs)
    # Nothing the CLI prints may carry a passphrase.
    assert PASSPHRASE not in result.stdout and PASSPHRASE not in result.stderr
    return result


def paid(url: str, policy: Path, *extra: str) -> list[str]:
    return ["get", url, "--policy", str(policy), "--insecure-localhost", *extra]


# -- get / post / request ------------------------------------------------------------------


def test_get_pays_under_the_policy_and_records_it(
    runner: CliRunner, live: Any, policy_file: Path, ledger_file: Path
) -> None:
    server = Recorder(PaidServer({"/paid": "0.25 USD"}))
    result = mpp(runner, *paid(live(server) + "/paid", policy_file))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == '{"ok":true}'
    assert "paid 0.25 USD to 'merchant-1' via dev" in result.stderr
    (record,) = SqliteLedger(ledger_file).records()
    assert record.status == "committed" and str(record.amount) == "0.25 USD"
    assert record.id in result.stderr
    # The credential went to the server and nowhere else.
    credential = server.seen[-1].headers["authorization"]
    assert credential.startswith("Payment ")
    assert credential[8:40] not in result.stdout + result.stderr


def test_a_refusal_exits_3_names_the_rule_and_pays_nothing(
    runner: CliRunner, live: Any, policy_file: Path, ledger_file: Path
) -> None:
    server = PaidServer({"/dear": "0.75 USD"})
    result = mpp(runner, *paid(live(server) + "/dear", policy_file))
    assert result.exit_code == ExitCode.REFUSED == 3
    assert "exceeds the per-call cap 0.50 USD" in result.stderr
    assert result.stdout == "" and server.payments == []


def test_max_narrows_the_policy(
    runner: CliRunner, live: Any, policy_file: Path, ledger_file: Path
) -> None:
    server = PaidServer({"/paid": "0.25 USD"})
    result = mpp(runner, *paid(live(server) + "/paid", policy_file, "--max", "0.10 USD"))
    assert result.exit_code == 3 and "max_amount 0.10 USD" in result.stderr
    bad = mpp(runner, *paid(live(server) + "/paid", policy_file, "--max", "ten dollars"))
    assert bad.exit_code == ExitCode.USAGE and "--max" in bad.stderr
    assert server.payments == []


def test_without_a_policy_it_is_curl_and_pays_nothing(
    runner: CliRunner, live: Any, ledger_file: Path
) -> None:
    url = live(PaidServer({"/paid": "0.25 USD"}))
    free = mpp(runner, "get", url + "/free")
    assert free.exit_code == 0 and free.stdout == '{"free":true}'
    refused = mpp(runner, "get", url + "/paid", "--insecure-localhost")
    assert refused.exit_code == 3 and "no spending policy is configured" in refused.stderr


def test_json_output_and_include_and_output_file(
    runner: CliRunner, live: Any, policy_file: Path, ledger_file: Path, tmp_path: Path
) -> None:
    url = live(PaidServer({"/paid": "0.25 USD"})) + "/paid"
    result = mpp(runner, *paid(url, policy_file, "--json"))
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["status"] == 200 and data["paid"] is True and data["body"] == '{"ok":true}'
    assert data["payment"]["amount"] == "0.25 USD" and data["payment"]["status"] == "committed"
    assert "payment-receipt" in data["headers"]
    target = tmp_path / "body.json"
    saved = mpp(runner, *paid(url, policy_file, "-o", str(target), "-i"))
    assert saved.exit_code == 0 and target.read_text() == '{"ok":true}'
    assert saved.stdout.startswith("HTTP/1.1 200 OK\n") and "payment-receipt:" in saved.stdout


def test_post_with_a_json_body_and_request_with_a_method(
    runner: CliRunner, live: Any, policy_file: Path, ledger_file: Path, tmp_path: Path
) -> None:
    server = Recorder(PaidServer({"/paid": "0.25 USD"}))
    url = live(server) + "/paid"
    # Each call with a ledger of its own: three payments would exceed the daily budget.
    base = ["--policy", str(policy_file), "--insecure-localhost", "--ledger", "memory:"]
    posted = mpp(runner, "post", url, "-J", '{"q": 1}', "-H", "X-Trace: abc", *base)
    assert posted.exit_code == 0, posted.stderr
    paid_request = server.seen[-1]
    assert paid_request.method == "POST" and paid_request.body == b'{"q": 1}'
    assert paid_request.headers["content-type"] == "application/json"
    assert paid_request.headers["x-trace"] == "abc"
    assert "idempotency-key" in paid_request.headers
    body = tmp_path / "body.txt"
    body.write_text("from a file")
    put = mpp(runner, "request", "-X", "PUT", url, "-d", f"@{body}", *base)
    assert put.exit_code == 0
    assert server.seen[-1].method == "PUT" and server.seen[-1].body == b"from a file"
    implied = mpp(runner, "request", url, "-d", "x", *base)
    assert implied.exit_code == 0 and server.seen[-1].method == "POST"
    bad = mpp(runner, "get", url, "-H", "no colon here")
    assert bad.exit_code == 2 and "Name: value" in bad.stderr


def test_fail_exits_22_on_an_http_error(runner: CliRunner, live: Any) -> None:
    url = live(Scripted(lambda seen, i: (404, [], b"gone")))
    assert mpp(runner, "get", url + "/x").exit_code == 0
    failed = mpp(runner, "get", url + "/x", "--fail")
    assert failed.exit_code == ExitCode.HTTP_ERROR == 22


def test_dry_run_and_quote_say_what_would_be_paid_and_pay_nothing(
    runner: CliRunner, live: Any, policy_file: Path, ledger_file: Path
) -> None:
    server = PaidServer({"/paid": "0.25 USD", "/dear": "0.75 USD"})
    url = live(server)
    dry = mpp(runner, *paid(url + "/paid", policy_file, "--dry-run"))
    assert dry.exit_code == 0, dry.stderr
    assert "would pay 0.25 USD to merchant-1 via dev" in dry.stdout
    assert "budget.daily" in dry.stdout and "per_call" in dry.stdout
    quoted = mpp(
        runner, "quote", url + "/dear", "--policy", str(policy_file), "--insecure-localhost"
    )
    assert quoted.exit_code == 3
    assert "would not pay" in quoted.stdout and "per-call cap" in quoted.stdout
    as_json = mpp(
        runner,
        "quote",
        url + "/paid",
        "--json",
        "--policy",
        str(policy_file),
        "--insecure-localhost",
    )
    data = json.loads(as_json.stdout)
    assert data["would_pay"] is True and data["offers"][0]["amount"] == "0.25 USD"
    assert server.payments == []
    assert not ledger_file.exists() or SqliteLedger(ledger_file).records() == []


def test_server_chosen_text_is_escaped(runner: CliRunner, live: Any, policy_file: Path) -> None:
    hostile = charge(recipient="merchant\x1b[31m-red\n[bold]forged[/bold]\u202e")
    app_ = Scripted(lambda seen, i: challenge_402(hostile))
    result = mpp(
        runner, "quote", live(app_) + "/x", "--policy", str(policy_file), "--insecure-localhost"
    )
    text = result.stdout + result.stderr
    assert "\x1b" not in text and "\u202e" not in text
    assert "\\x1b[31m" in text and "[bold]forged[/bold]" in text.replace("\n", "")


def test_exit_codes_for_what_can_go_wrong(
    runner: CliRunner, live: Any, policy_file: Path, ledger_file: Path, tmp_path: Path
) -> None:
    url = live(PaidServer({"/paid": "0.25 USD"})) + "/paid"
    plain = mpp(runner, "get", url, "--policy", str(policy_file))
    assert plain.exit_code == ExitCode.UNPAYABLE == 7 and "--insecure-localhost" in plain.stderr
    assert mpp(runner, "get", "http://127.0.0.1:1/").exit_code == ExitCode.UNREACHABLE == 8
    broken = tmp_path / "broken.toml"
    broken.write_text('currency = "USD"\nper_call = "lots"\n')
    invalid = mpp(runner, "get", url, "--policy", str(broken))
    assert invalid.exit_code == 2 and "per_call" in invalid.stderr
    missing = mpp(runner, "get", url, "--policy", str(tmp_path / "nope.toml"))
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    wallet = mpp(runner, "get", url, "--wallet", "bitcoin")
    assert wallet.exit_code == 2 and "unknown wallet" in wallet.stderr
    assert mpp(runner, "get").exit_code == 2  # typer's usage error


def test_a_rejected_credential_exits_4_and_a_lost_outcome_exits_5(
    runner: CliRunner, live: Any, policy_file: Path, ledger_file: Path
) -> None:
    def rejecting(seen: Any, index: int) -> tuple[int, list[tuple[str, str]], bytes]:
        return challenge_402(charge(), problem="verification-failed")

    rejected = mpp(runner, *paid(live(Scripted(rejecting)) + "/x", policy_file))
    assert rejected.exit_code == ExitCode.PAYMENT_FAILED == 4
    assert "refused the payment credential" in rejected.stderr

    def failing(seen: Any, index: int) -> tuple[int, list[tuple[str, str]], bytes]:
        if "authorization" in seen.headers:
            return (
                500,
                [("content-type", "application/problem+json")],
                Problem.build("internal", title="boom", detail="it broke").to_json(),
            )
        return challenge_402(charge())

    lost = mpp(runner, *paid(live(Scripted(failing)) + "/x", policy_file))
    assert lost.exit_code == ExitCode.OUTCOME_UNKNOWN == 5
    unknown = [r for r in SqliteLedger(ledger_file).records() if r.status == "unknown"]
    assert len(unknown) == 1 and unknown[0].id in lost.stderr

    report = mpp(runner, "ledger", "report")
    assert "Unknown outcomes to resolve" in report.stdout and unknown[0].id in report.stdout
    assert mpp(runner, "ledger", "resolve", unknown[0].id).exit_code == 2  # say what happened
    resolved = mpp(runner, "ledger", "resolve", unknown[0].id, "--not-paid", "--reason", "refund")
    assert resolved.exit_code == 0 and "resolved as released" in resolved.stderr
    (record,) = [r for r in SqliteLedger(ledger_file).records() if r.id == unknown[0].id]
    assert record.status == "released" and record.reason == "refund"
    again = mpp(runner, "ledger", "resolve", unknown[0].id, "--paid")
    assert again.exit_code == 1 and "already released" in again.stderr


# -- discover -------------------------------------------------------------------------------


def test_discover_lists_priced_operations(runner: CliRunner, live: Any) -> None:
    document = {
        "openapi": "3.1.0",
        "info": {"title": "Weather\x1b[2J", "version": "1"},
        "paths": {
            "/paid": {
                "get": {
                    "summary": "Today",
                    "x-payment-info": {"intent": "charge", "method": "dev", "amount": "25"},
                }
            }
        },
    }
    body = json.dumps(document).encode()
    url = live(Scripted(lambda seen, i: (200, [("content-type", "application/json")], body)))
    shown = mpp(runner, "discover", url)
    assert shown.exit_code == 0
    assert "GET /paid" in shown.stdout and "dev/charge" in shown.stdout
    assert "\x1b" not in shown.stdout and "Weather\\x1b[2J" in shown.stdout
    data = json.loads(mpp(runner, "discover", url, "--json").stdout)
    assert data["operations"][0]["offers"][0]["amount"] == "25"
    bad = live(Scripted(lambda seen, i: (200, [], b"[]")))
    failed = mpp(runner, "discover", bad)
    assert failed.exit_code == ExitCode.UNPAYABLE and "DiscoveryError" in failed.stderr


# -- ledger ---------------------------------------------------------------------------------


def _spend(runner: CliRunner, url: str, policy: Path, *, times: int) -> None:
    for _ in range(times):
        assert mpp(runner, *paid(url, policy, "--tag", "job=nightly")).exit_code == 0


def test_ledger_report_tables_json_and_csv(
    runner: CliRunner, live: Any, policy_file: Path, ledger_file: Path
) -> None:
    _spend(runner, live(PaidServer({"/paid": "0.25 USD"})) + "/paid", policy_file, times=2)
    tables = mpp(runner, "ledger", "report", "--policy", str(policy_file))
    assert tables.exit_code == 0
    for title in ("Spend by payee", "Spend by method", "Spend by day", "Budgets"):
        assert title in tables.stdout
    assert "merchant-1" in tables.stdout and "0.50 USD" in tables.stdout
    data = json.loads(
        mpp(runner, "ledger", "report", "--policy", str(policy_file), "--json").stdout
    )
    assert data["by_payee"] == [
        {
            "key": "merchant-1",
            "currency": "USD",
            "payments": 2,
            "committed": "0.50 USD",
            "held": "0.00 USD",
            "counted": "0.50 USD",
        }
    ]
    budgets = {b["name"]: b for b in data["budgets"]}
    assert budgets["total"]["remaining"] == "0.50 USD" and budgets["daily"]["used"] == "0.50 USD"
    assert budgets["daily"]["remaining"] == "0.10 USD" and budgets["daily"]["since"] is not None
    rows = mpp(runner, "ledger", "report", "--policy", str(policy_file), "--csv").stdout
    lines = rows.splitlines()
    assert lines[0].split(",")[:3] == ["group", "key", "currency"]
    assert "budget,daily,USD,,,,0.50,0.60,0.10" in lines
    assert "payee,merchant-1,USD,2,0.50,0.00,0.50,," in lines
    recent = json.loads(mpp(runner, "ledger", "report", "--since", "1h", "--json").stdout)
    assert recent["payments"] == 2
    future = json.loads(mpp(runner, "ledger", "report", "--since", "2999-01-01", "--json").stdout)
    assert future["payments"] == 0 and future["by_payee"] == []


def test_ledger_report_refuses_a_missing_ledger(runner: CliRunner, tmp_path: Path) -> None:
    result = mpp(runner, "ledger", "report", "--ledger", str(tmp_path / "typo.sqlite3"))
    assert result.exit_code == 2 and "no ledger at" in result.stderr
    assert not (tmp_path / "typo.sqlite3").exists()


def test_ledger_verify_export_and_path(
    runner: CliRunner, live: Any, policy_file: Path, ledger_file: Path, tmp_path: Path
) -> None:
    _spend(runner, live(PaidServer({"/paid": "0.25 USD"})) + "/paid", policy_file, times=2)
    ok = mpp(runner, "ledger", "verify")
    assert ok.exit_code == 0 and "ledger verified" in ok.stdout
    assert json.loads(mpp(runner, "ledger", "verify", "--json").stdout)["ok"] is True
    jsonl = mpp(runner, "ledger", "export").stdout.splitlines()
    assert len(jsonl) >= 4 and all("leaf" in json.loads(line) for line in jsonl)
    csv_out = tmp_path / "payments.csv"
    assert mpp(runner, "ledger", "export", "--format", "csv", "-o", str(csv_out)).exit_code == 0
    assert csv_out.read_text().splitlines()[0].startswith("id,created_at,status")
    assert mpp(runner, "ledger", "export", "--format", "xml").exit_code == 2
    assert mpp(runner, "ledger", "path").stdout.strip() == str(ledger_file)
    elsewhere = mpp(runner, "ledger", "path", "--ledger", "/srv/fleet.sqlite3")
    assert elsewhere.stdout.strip() == "/srv/fleet.sqlite3"

    # Edit the audit log behind the ledger's back: verify names it and exits 6.
    with sqlite3.connect(ledger_file) as db:
        (table,) = [
            name
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if name.endswith("_log")
        ]
        changed = db.execute(
            f"UPDATE {table} SET entry = "
            "CAST(replace(CAST(entry AS TEXT), '0.25 USD', '0.01 USD') AS BLOB)"
        ).rowcount
        assert changed > 0
    tampered = mpp(runner, "ledger", "verify")
    assert tampered.exit_code == ExitCode.VERIFICATION_FAILED == 6
    assert "FAILED" in tampered.stdout and "modified" in tampered.stdout


# -- keys -----------------------------------------------------------------------------------


def test_key_new_and_show_with_a_passphrase_from_the_environment(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "agent.key"
    env = {"MPP_PASSPHRASE": PASSPHRASE}
    made = mpp(runner, "key", "new", str(path), "--kdf", "min", env=env)
    assert made.exit_code == 0, made.stderr
    did = made.stdout.strip()
    assert did.startswith("did:key:z6Mk") and path.stat().st_mode & 0o777 == 0o600
    assert AgentKey.load(path, PASSPHRASE).did == did
    shown = mpp(runner, "key", "show", str(path), "--json", env=env)
    assert json.loads(shown.stdout) == {
        "kind": "agent",
        "did": did,
        "location": f"keystore {path}",
        "unlocked": True,
    }
    public = mpp(runner, "key", "show", str(path), "--public")
    assert did in public.stdout and "not checked" in public.stdout
    wrong = mpp(runner, "key", "show", str(path), env={"MPP_PASSPHRASE": "not it"})
    assert wrong.exit_code == 2 and "passphrase" in wrong.stderr
    again = mpp(runner, "key", "new", str(path), "--kdf", "min", env=env)
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    other = mpp(runner, "key", "show", str(path), "--kind", "owner", env=env)
    assert other.exit_code == 2  # an agent keystore is not an owner key
    # Nothing of the keystore's secret parts reached the terminal.
    sealed = json.loads(path.read_text())
    for output in (made, shown, public, wrong):
        assert sealed["ciphertext"][:16] not in output.stdout + output.stderr


def test_a_passphrase_from_the_prompt_is_never_echoed(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mpp_client.cli._common.interactive", lambda: True)
    path = tmp_path / "owner.key"
    result = runner.invoke(
        app,
        ["key", "new", str(path), "--kind", "owner", "--kdf", "min", "--passphrase-env", ""],
        input=f"{PASSPHRASE}\n{PASSPHRASE}\n",
    )
    assert result.exit_code == 0, result.output
    assert PASSPHRASE not in result.output
    assert OwnerKey.load(path, PASSPHRASE).did in result.stdout


def test_keys_and_passphrases_in_the_os_keyring(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """keyrings.alt's file backend stands in for the platform keyring (none runs here)."""
    import keyring
    from keyrings.alt.file import PlaintextKeyring

    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring.cfg")
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        made = mpp(runner, "key", "new", "keyring:mpp-test/agent")
        assert made.exit_code == 0, made.stderr
        did = made.stdout.strip()
        assert AgentKey.from_keyring("mpp-test", "agent").did == did
        shown = mpp(runner, "key", "show", "keyring:mpp-test/agent", "--json")
        assert json.loads(shown.stdout)["did"] == did
        # A keystore file whose passphrase lives in the keyring.
        backend.set_password("mpp-test", "passphrase", PASSPHRASE)
        path = tmp_path / "agent.key"
        file_key = mpp(
            runner,
            "key",
            "new",
            str(path),
            "--kdf",
            "min",
            "--passphrase-keyring",
            "mpp-test/passphrase",
            "--passphrase-env",
            "",
        )
        assert file_key.exit_code == 0, file_key.stderr
        assert AgentKey.load(path, PASSPHRASE).did == file_key.stdout.strip()
        missing = mpp(
            runner,
            "key",
            "show",
            str(path),
            "--passphrase-keyring",
            "mpp-test/none",
            "--passphrase-env",
            "",
        )
        assert missing.exit_code == 2 and "no passphrase" in missing.stderr
    finally:
        keyring.set_keyring(previous)


def test_no_terminal_and_no_passphrase_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    result = mpp(runner, "key", "new", str(tmp_path / "k"), "--passphrase-env", "NOT_SET_HERE")
    assert result.exit_code == 2 and "$NOT_SET_HERE" in result.stderr


# -- mandates -------------------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Any]:
    owner, agent = OwnerKey.generate(), AgentKey.generate()
    paths = {"owner": tmp_path / "owner.key", "agent": tmp_path / "agent.key"}
    for key, path in ((owner, paths["owner"]), (agent, paths["agent"])):
        key.save(path, PASSPHRASE, opslimit=KDF_OPSLIMIT_MIN, memlimit=KDF_MEMLIMIT_MIN)
    return {"owner": owner, "agent": agent, **{f"{k}_path": str(v) for k, v in paths.items()}}


ENV = {"MPP_PASSPHRASE": PASSPHRASE}


def test_mandate_issue_show_verify_and_pay_under_it(
    runner: CliRunner,
    live: Any,
    keys: dict[str, Any],
    policy_file: Path,
    ledger_file: Path,
    tmp_path: Path,
) -> None:
    mandate = tmp_path / "agent.mandate.json"
    issued = mpp(
        runner,
        "mandate",
        "issue",
        "--owner-key",
        keys["owner_path"],
        "--agent",
        keys["agent_path"],
        "--policy",
        str(policy_file),
        "--expires",
        "7d",
        "--id",
        "m-1",
        "-o",
        str(mandate),
        env=ENV,
    )
    assert issued.exit_code == 0, issued.stderr
    assert "mandate m-1 for" in issued.stderr
    shown = json.loads(mpp(runner, "mandate", "show", str(mandate), "--json").stdout)
    assert shown["id"] == "m-1" and shown["agent"] == keys["agent"].did
    assert shown["owner"] == keys["owner"].did and shown["policy"]["per_call"] == "0.50 USD"
    owner_did, agent_did = keys["owner"].did, keys["agent"].did
    good = mpp(
        runner, "mandate", "verify", str(mandate), "--owner", owner_did, "--agent", agent_did
    )
    assert good.exit_code == 0 and "mandate verifies" in good.stdout
    stranger = OwnerKey.generate().did
    bad = mpp(runner, "mandate", "verify", str(mandate), "--owner", stranger, "--agent", agent_did)
    assert bad.exit_code == ExitCode.VERIFICATION_FAILED and "not a trusted owner" in bad.stdout

    server = PaidServer({"/paid": "0.25 USD"})
    url = live(server) + "/paid"
    result = mpp(
        runner,
        "get",
        url,
        "--mandate",
        str(mandate),
        "--owner",
        owner_did,
        "--agent-key",
        keys["agent_path"],
        "--insecure-localhost",
        env=ENV,
    )
    assert result.exit_code == 0, result.stderr
    (record,) = SqliteLedger(ledger_file).records()
    assert record.agent == agent_did and record.signature is not None
    assert record.decision is not None and record.decision.rules[0].rule == "mandate"
    assert record.signature not in result.stdout + result.stderr

    revocations = tmp_path / "revoked.json"
    revoked = mpp(
        runner,
        "mandate",
        "revoke",
        "m-1",
        "--owner-key",
        keys["owner_path"],
        "-o",
        str(revocations),
        env=ENV,
    )
    assert revoked.exit_code == 0 and "1 mandate(s)" in revoked.stderr
    check = mpp(
        runner,
        "mandate",
        "verify",
        str(mandate),
        "--owner",
        owner_did,
        "--agent",
        agent_did,
        "--revocations",
        str(revocations),
    )
    assert check.exit_code == 6 and "revoked" in check.stdout
    refused = mpp(
        runner,
        "get",
        url,
        "--mandate",
        str(mandate),
        "--owner",
        owner_did,
        "--agent-key",
        keys["agent_path"],
        "--revocations",
        str(revocations),
        "--insecure-localhost",
        env=ENV,
    )
    assert refused.exit_code == 6 and "MandateRevoked" in refused.stderr
    assert len(server.payments) == 1
    more = mpp(
        runner,
        "mandate",
        "revoke",
        "m-2",
        "--owner-key",
        keys["owner_path"],
        "-o",
        str(revocations),
        env=ENV,
    )
    assert more.exit_code == 0 and "2 mandate(s)" in more.stderr  # cumulative


def test_a_mandate_needs_its_owner_and_agent(
    runner: CliRunner, live: Any, keys: dict[str, Any], policy_file: Path, tmp_path: Path
) -> None:
    url = live(PaidServer({"/paid": "0.25 USD"})) + "/paid"
    nothing = mpp(runner, "get", url, "--mandate", str(tmp_path / "m.json"))
    assert nothing.exit_code == 2 and "--owner" in nothing.stderr
    both = mpp(runner, "get", url, "--mandate", "m", "--policy", str(policy_file))
    assert both.exit_code == 2 and "not both" in both.stderr


# -- policy check ---------------------------------------------------------------------------


def test_policy_check_explains_the_rules_in_plain_words(
    runner: CliRunner, policy_file: Path, tmp_path: Path
) -> None:
    result = mpp(runner, "policy", "check", str(policy_file))
    assert result.exit_code == 0
    text = result.stdout
    assert "valid policy" in text
    assert "No single payment above 0.50 USD." in text
    assert "Budget 'daily': at most 0.60 USD per calendar day." in text
    assert "Budget 'total': at most 1.00 USD in total (lifetime)." in text
    assert "Only these hosts: 127.0.0.1." in text and "Any payee is allowed." in text
    example = Path(__file__).resolve().parents[1] / "examples" / "policy.toml"
    rich = json.loads(mpp(runner, "policy", "check", str(example), "--json").stdout)
    words = " ".join(line for section in rich["sections"] for line in section["rules"])
    assert "A person must approve any payment above 0.40 USD." in words
    assert "Calls tagged env=peak may pay up to 0.75 USD per payment." in words
    assert "Never these hosts, whatever else allows them: ads.example.com." in words
    assert "Rate 'burst': at most 20 payments per 1m." in words
    empty = tmp_path / "empty.toml"
    empty.write_text('currency = "USD"\nper_call = "1.00 USD"\n')
    warned = mpp(runner, "policy", "check", str(empty))
    assert warned.exit_code == 0 and "allow.hosts is empty" in warned.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('currency = "USD"\nper_call = "1.00 USD"\nbudgets = [{name = "x"}]\n')
    invalid = mpp(runner, "policy", "check", str(bad))
    assert invalid.exit_code == 2 and "budgets.0.limit" in invalid.stderr


# -- the documented exit codes --------------------------------------------------------------


def test_every_exit_code_is_documented_in_help_and_docs(runner: CliRunner) -> None:
    assert set(EXIT_CODES) == {int(code) for code in ExitCode}
    help_text = mpp(runner, "--help").stdout
    docs = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    for code in EXIT_CODES:
        assert f"{code} " in help_text.replace("\n", " ")
        assert f"| {code} |" in docs


def test_version(runner: CliRunner) -> None:
    from mpp_client import __version__

    assert mpp(runner, "--version").stdout.strip() == f"mpp (mpp-client) {__version__}"


# -- wallets and the verify progress bar ----------------------------------------------------


def test_evm_and_tempo_wallets_load_from_a_keystore(
    runner: CliRunner, live: Any, policy_file: Path, tmp_path: Path
) -> None:
    from mpp_client.methods import EvmWallet

    wallet = EvmWallet(b"\x11" * 32, chain_ids=[31337])
    keystore = tmp_path / "payer.json"
    wallet.save_keystore(keystore, PASSPHRASE, iterations=2)
    url = live(PaidServer({"/paid": "0.25 USD"})) + "/paid"
    env = {"MPP_WALLET_PASSPHRASE": PASSPHRASE}
    for kind in ("evm", "tempo"):
        result = mpp(
            runner,
            "quote",
            url,
            "--json",
            "--wallet",
            f"{kind}:{keystore}",
            "--chain-id",
            "31337",
            "--policy",
            str(policy_file),
            "--insecure-localhost",
            env=env,
        )
        data = json.loads(result.stdout)
        # The server sells for dev vouchers only: the wallet loaded, and says it cannot pay.
        assert (
            result.exit_code == 3 and "no configured payment method" in data["offers"][0]["error"]
        )
        assert f"configured: {kind}" in data["offers"][0]["error"]
    wrong = mpp(
        runner,
        "quote",
        url,
        "--wallet",
        f"evm:{keystore}",
        env={"MPP_WALLET_PASSPHRASE": "wrong"},
    )
    assert wrong.exit_code == 2 and "wrong passphrase" in wrong.stderr
    bad = mpp(
        runner, "quote", url, "--wallet", f"tempo:{keystore}", "--rpc-url", "http://x", env=env
    )
    assert bad.exit_code == 2 and "rpc_url needs chain_id" in bad.stderr


def test_verify_shows_a_progress_bar_on_a_terminal_for_long_logs(
    runner: CliRunner,
    live: Any,
    policy_file: Path,
    ledger_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from rich.console import Console

    from mpp_client.cli import _ledger

    _spend(runner, live(PaidServer({"/paid": "0.25 USD"})) + "/paid", policy_file, times=2)
    screen = io.StringIO()
    monkeypatch.setattr(_ledger, "PROGRESS_FROM", 2)
    monkeypatch.setattr(
        _ledger, "err", lambda: Console(file=screen, force_terminal=True, width=100)
    )
    result = mpp(runner, "ledger", "verify")
    assert result.exit_code == 0 and "ledger verified" in result.stdout
    assert "verifying the audit log of 2 payments" in screen.getvalue()
    screen.truncate(0)
    assert mpp(runner, "ledger", "verify", "--quiet").exit_code == 0
    assert screen.getvalue() == ""
