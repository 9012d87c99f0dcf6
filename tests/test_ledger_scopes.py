"""Budgets have a scope: unrelated programs on one ledger never spend each other's budgets.

The first test is the story of the issue, with real processes: two scripts
sharing the default ledger file, each with its own 0.50 USD budget.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mpp_client import BudgetExceeded, PaymentError
from mpp_client.identity import AgentKey, OwnerKey
from mpp_client.ledger import MemoryLedger, PaymentRecord, PostgresLedger, SqliteLedger
from mpp_client.mandate import Mandate
from mpp_client.methods import Quote
from mpp_client.money import Amount
from mpp_client.policy import Limit, PaymentContext, Policy, SimplePolicy, program_scope
from mpp_client.protocol import Challenge
from mpp_client.testing import LocalServer, PaidServer

from .ledger_fixtures import PG_URL, Clock, Store, make_record, open_store, postgres_unavailable
from .ledger_fixtures import POSTGRES as _PG

REPO = Path(__file__).resolve().parent.parent
USD = Amount.parse
_NO_PG = postgres_unavailable()


@pytest.fixture(params=["memory", "sqlite", _PG])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(request.param, tmp_path)
    yield opened
    opened.close()


SCRIPT = textwrap.dedent(
    """
    import json, sys
    from mpp_client import BudgetExceeded, Client, DevWallet, SimplePolicy

    outcomes = []
    policy = SimplePolicy(max_per_call="0.50 USD", budget="0.50 USD")
    with Client(methods=[DevWallet()], policy=policy, allow_insecure_localhost=True) as client:
        for _ in range(2):
            try:
                client.get(sys.argv[1] + "/paid")
                outcomes.append("paid")
            except BudgetExceeded as exc:
                outcomes.append("refused: " + exc.message)
    print(json.dumps({"outcomes": outcomes, "scope": policy.scope}))
    """
)


def _run(script: Path, url: str, ledger: Path) -> dict[str, object]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["MPP_CLIENT_LEDGER"] = str(ledger)
    done = subprocess.run(
        [sys.executable, str(script), url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_unrelated_scripts_on_the_default_ledger_have_budgets_of_their_own(
    tmp_path: Path,
) -> None:
    """Each script's budget holds across its runs; another script's spend never counts."""
    ledger = tmp_path / "shared" / "ledger.sqlite3"
    first, second = tmp_path / "nightly.py", tmp_path / "report.py"
    first.write_text(SCRIPT)
    second.write_text(SCRIPT)
    server = PaidServer({"/paid": "0.25 USD"})
    with LocalServer(server) as live:
        one = _run(first, live.url, ledger)
        two = _run(second, live.url, ledger)  # not refused by the first script's spend
        again = _run(first, live.url, ledger)  # the first script's budget holds across runs
    assert one["outcomes"] == ["paid", "paid"]
    assert two["outcomes"] == ["paid", "paid"]
    assert one["scope"] == f"program:{first.resolve()}" != two["scope"]
    outcomes = again["outcomes"]
    assert isinstance(outcomes, list) and len(outcomes) == 2
    for refusal in outcomes:
        assert refusal.startswith("refused: paying 0.25 USD would exceed budget 'budget'")
        assert "0.50 USD already spent or held" in refusal
        # It says whose budget it is and where the ledger is.
        assert f"budget scope 'program:{first.resolve()}'" in refusal
        assert f"ledger {ledger}" in refusal
    assert len(server.payments) == 4
    reader = SqliteLedger(ledger)
    try:
        assert {r.scope for r in reader.records()} == {one["scope"], two["scope"]}
        assert reader.verify().ok
    finally:
        reader.close()


def test_a_fleet_shares_a_scope_on_purpose(store: Store) -> None:
    ledger = store.ledger
    a = SimplePolicy(max_per_call="1 USD", budget="1.00 USD", scope="fleet")
    b = SimplePolicy(max_per_call="1 USD", budget="1.00 USD", scope="fleet")
    alone = SimplePolicy(max_per_call="1 USD", budget="1.00 USD", scope="solo")
    for policy, charge in ((a, "0.60 USD"), (alone, "0.90 USD")):
        decision = policy.decide(_context(charge, ledger))
        ledger.reserve(_record(store, charge, decision.scope), decision.limits)
    decision = b.decide(_context("0.50 USD", ledger))
    with pytest.raises(BudgetExceeded, match=r"0\.60 USD already spent or held") as info:
        ledger.reserve(_record(store, "0.50 USD", decision.scope), decision.limits)
    assert "budget scope 'fleet'" in info.value.message
    # The unrelated scope's budget is its own.
    decision = alone.decide(_context("0.10 USD", ledger))
    ledger.reserve(_record(store, "0.10 USD", decision.scope), decision.limits)
    assert ledger.spent("USD", scope="fleet") == USD("0.60 USD")
    assert ledger.spent("USD", scope="solo") == USD("1.00 USD")
    assert ledger.spent("USD") == USD("1.60 USD")  # reports may read every scope


def _record(store: Store, charge: str, scope: str | None) -> PaymentRecord:
    return make_record(store.clock, charge, scope=scope)


def _context(charge: str, history: object, payee: str = "merchant-a") -> PaymentContext:
    amount = USD(charge)
    challenge = Challenge.create(
        id=uuid.uuid4().hex, realm="api.test", method="dev", intent="charge", request={}
    )
    return PaymentContext(
        url="https://api.test/paid",
        http_method="GET",
        host="api.test",
        challenge=challenge,
        quote=Quote(amount=amount, payee=payee, method="dev", intent="charge", currency="usd"),
        now=datetime(2026, 11, 21, 12, tzinfo=UTC),
        history=history,  # type: ignore[arg-type]
    )


def test_a_record_counts_only_against_limits_of_its_own_scope(store: Store) -> None:
    ledger, clock = store.ledger, store.clock
    mine = Limit("budget", cap=USD("1.00 USD"), scope="mine")
    ledger.reserve(make_record(clock, "0.90 USD", scope="theirs"), [])
    ledger.reserve(make_record(clock, "0.90 USD", scope="mine"), [mine])
    assert ledger.usage(mine).spent == USD("0.90 USD")
    # A limit of another scope does not apply to this payment at all.
    ledger.reserve(make_record(clock, "5.00 USD", scope="theirs"), [mine])
    with pytest.raises(BudgetExceeded, match="budget scope 'mine'"):
        ledger.reserve(make_record(clock, "0.20 USD", scope="mine"), [mine])


def test_a_record_without_a_scope_takes_its_limits_scope(store: Store) -> None:
    ledger, clock = store.ledger, store.clock
    limits = [Limit("a", cap=USD("5 USD"), scope="job"), Limit("r", max_count=9, scope="job")]
    held = ledger.reserve(make_record(clock, scope=None), limits)
    assert held.scope == "job" and ledger.records()[0].scope == "job"
    assert ledger.reserve(make_record(clock, scope=None), []).scope == ""
    mixed = [Limit("a", cap=USD("5 USD"), scope="one"), Limit("b", cap=USD("5 USD"), scope="two")]
    with pytest.raises(PaymentError, match="several scopes"):
        ledger.reserve(make_record(clock, scope=None), mixed)


def test_history_reads_are_within_the_scope(store: Store) -> None:
    ledger, clock = store.ledger, store.clock
    paid = ledger.reserve(make_record(clock, "0.30 USD", payee="shop", scope="a"), [])
    ledger.commit(paid.id, None)
    unsure = ledger.reserve(make_record(clock, "0.10 USD", payee="flaky", scope="a"), [])
    ledger.mark_unknown(unsure.id, "timeout")
    assert ledger.has_paid("shop", scope="a") and not ledger.has_paid("shop", scope="b")
    assert ledger.has_paid("shop")  # every scope, for reports
    assert ledger.recent_charges("shop", 5, scope="a") == [USD("0.30 USD")]
    assert ledger.recent_charges("shop", 5, scope="b") == []
    assert ledger.failure_streak("flaky", scope="a")[0] == 1
    assert ledger.failure_streak("flaky", scope="b") == (0, None)
    assert ledger.count(scope="a") == 2 and ledger.count(scope="b") == 0
    rate = Limit("rate", max_count=5, scope="b")
    assert ledger.usage(rate).count == 0
    assert ledger.usage(Limit("rate", max_count=5, scope="a")).count == 2


def test_a_policy_sees_only_its_own_scope() -> None:
    """A payee paid by another program is new to this one; its velocity is its own."""
    ledger = MemoryLedger(clock=lambda: datetime(2026, 11, 21, 12, tzinfo=UTC))
    data = {
        "currency": "USD",
        "per_call": "1.00 USD",
        "allow": {k: ["*"] for k in ("hosts", "realms", "payees", "methods", "intents", "assets")},
        "approval": {"new_payee": True},
        "velocity": [{"name": "rate", "max": 1, "window": "1h"}],
        "budgets": [{"name": "daily", "limit": "1.00 USD", "window": "24h"}],
    }
    other = Policy.from_mapping({**data, "scope": "other"})
    mine = Policy.from_mapping({**data, "scope": "mine"})
    decision = other.decide(_context("0.80 USD", ledger))
    assert decision.scope == "other" and {lim.scope for lim in decision.limits} == {"other"}
    record = make_record(Clock(datetime(2026, 11, 21, 11, 30, tzinfo=UTC)), "0.80 USD")
    ledger.commit(ledger.reserve(_scoped(record, "other"), decision.limits).id, None)
    decision = mine.decide(_context("0.80 USD", ledger))
    rules = {r.rule: r for r in decision.rules}
    assert rules["approval.new_payee"].approval  # never paid in this scope
    assert rules["velocity.rate"].passed  # the other scope's payment is not counted
    assert rules["budget.daily"].passed and "0 USD of 1.00 USD used" in rules["budget.daily"].reason
    seen = other.decide(_context("0.80 USD", ledger))
    rules = {r.rule: r for r in seen.rules}
    assert not rules["velocity.rate"].passed
    assert "budget scope 'other', ledger memory" in rules["budget.daily"].reason


def _scoped(record: PaymentRecord, scope: str) -> PaymentRecord:
    return dataclasses.replace(record, scope=scope)


def test_policy_scopes_by_name_by_mandate_and_by_default() -> None:
    base = {"currency": "USD", "per_call": "1 USD"}
    assert Policy.from_mapping(base).budget_scope == program_scope()
    assert Policy.from_toml('currency = "USD"\nper_call = "1 USD"\nscope = "nightly"\n').scope == (
        "nightly"
    )
    named = Policy.from_mapping({**base, "scope": "nightly"})
    assert named.budget_scope == "nightly" and named.to_dict()["scope"] == "nightly"
    assert "scope" not in Policy.from_mapping(base).to_dict()
    owner, agent = OwnerKey.generate(), AgentKey.generate()
    expires = datetime.now(UTC) + timedelta(hours=1)
    mandate = Mandate.issue(owner, agent.did, base, expires_at=expires)
    from_mandate = Policy.from_mandate(mandate, owner_keys=[owner.did], agent=agent)
    assert from_mandate.budget_scope == f"mandate:{mandate.id}"
    assert from_mandate.decide(_context("0.10 USD", None)).scope == f"mandate:{mandate.id}"
    mandate = Mandate.issue(owner, agent.did, {**base, "scope": "team"}, expires_at=expires)
    assert Policy.from_mandate(mandate, owner_keys=[owner.did], agent=agent).budget_scope == "team"
    assert SimplePolicy(max_per_call="1 USD").scope == program_scope()


def test_budget_exceeded_names_where_the_ledger_is_without_credentials(tmp_path: Path) -> None:
    limit = Limit("b", cap=USD("0.10 USD"), scope="s")
    sqlite = SqliteLedger(tmp_path / "x.sqlite3")
    try:
        with pytest.raises(BudgetExceeded) as info:
            sqlite.reserve(make_record(Clock(), "0.20 USD", scope="s"), [limit])
        assert f"(budget scope 's', ledger {tmp_path / 'x.sqlite3'})" in info.value.message
    finally:
        sqlite.close()
    if _NO_PG is not None:
        pytest.skip(f"PostgreSQL store: {_NO_PG}")
    url = PG_URL.replace("postgres@", "postgres:hunter2@", 1)  # trust: any password passes
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    pg = PostgresLedger(url, prefix=prefix)
    try:
        with pytest.raises(BudgetExceeded) as info:
            pg.reserve(make_record(Clock(), "0.20 USD", scope="s"), [limit])
        message = info.value.message
        assert "hunter2" not in message and "postgres@" not in message
        assert f"ledger postgresql://127.0.0.1:5432/test (tables {prefix}*)" in message
    finally:
        pg.drop()
        pg.close()


PLUGIN_TEST = textwrap.dedent(
    """
    from mpp_client import Client, SimplePolicy
    from mpp_client.ledger import default_ledger_path

    def test_pays(mpp_server, mpp_server_url, mpp_wallet, tmp_path):
        policy = SimplePolicy(max_per_call="1 USD", budget="1 USD")
        with Client(methods=[mpp_wallet], policy=policy, allow_insecure_localhost=True) as c:
            assert c.get(mpp_server_url + "/paid").status_code == 200
        assert default_ledger_path().is_relative_to(tmp_path)

    def test_own_ledger(mpp_ledger, tmp_path):
        assert mpp_ledger.path.is_relative_to(tmp_path)
    """
)


def test_the_pytest_fixtures_use_a_temporary_ledger(tmp_path: Path) -> None:
    """A project's tests using the fixtures never write the real default ledger."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_agent.py").write_text(PLUGIN_TEST)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "MPP_CLIENT_LEDGER"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["HOME"] = str(home)
    env["XDG_DATA_HOME"] = str(home / ".local" / "share")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    assert not (home / ".local" / "share" / "mpp-client").exists()
