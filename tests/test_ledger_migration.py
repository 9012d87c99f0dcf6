"""Ledgers written by earlier versions open and keep working.

``tests/data/ledger_v1.json`` holds the rows a ledger written by the v1 code
(one hash chain for everyone, per-event signatures, checkpoints every 4
events) kept in SQLite, with its schema; the tests load them into a SQLite
file or a PostgreSQL prefix as that code left them, then open them with this
one. Their payments keep counting (in the scope ``""``), their audit rows
verify as the legacy chain, and the challenge index keeps refusing replays.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mpp_client import BudgetExceeded, ChallengeReused
from mpp_client.identity import AgentKey
from mpp_client.ledger import (
    LedgerIntegrityError,
    PostgresLedger,
    SqliteLedger,
    StoreLedger,
    verify_exported_proof,
)
from mpp_client.money import Amount
from mpp_client.policy import Limit

from .ledger_fixtures import PG_URL, Clock, make_record, postgres_unavailable, receipt
from .ledger_fixtures import POSTGRES as _PG

FIXTURE = json.loads((Path(__file__).parent / "data" / "ledger_v1.json").read_text())
AGENT = AgentKey.from_seed(bytes.fromhex(FIXTURE["agent_seed"]))
USD = Amount.parse
#: What the v1 ledger counts: 0.25 + 0.30 (unknown) + 0.05 + 0.40 (held) + 0.15 + 0.20.
COUNTED = USD("1.35 USD")
_NO_PG = postgres_unavailable()


@dataclass
class Old:
    """A v1 ledger as its code left it, and how to open it now."""

    kind: str
    target: str
    prefix: str

    def open(self, **options: Any) -> StoreLedger:
        if self.kind == "sqlite":
            return SqliteLedger(self.target, **options)
        return PostgresLedger(self.target, prefix=self.prefix, **options)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        sql = sql.replace("mpp_", self.prefix)
        if self.kind == "sqlite":
            with sqlite3.connect(self.target) as conn:
                return conn.execute(sql, params).fetchall()
        import psycopg

        with psycopg.connect(self.target, autocommit=True) as conn:
            cur = conn.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []


def _load(kind: str, tmp_path: Path) -> Old:
    if kind == "sqlite":
        old = Old(kind, str(tmp_path / "v1.sqlite3"), "mpp_")
        statements = FIXTURE["ddl_sqlite"]
    else:
        old = Old(kind, PG_URL, f"v{uuid.uuid4().hex[:10]}_")
        statements = FIXTURE["ddl_postgres"]
    for statement in statements:
        old.execute(statement)
    for table in ("payments", "audit", "checkpoints"):
        data = FIXTURE[table]
        marks = ", ".join("?" * len(data["columns"]))
        for row in data["rows"]:
            old.execute(
                f"INSERT INTO mpp_{table} ({', '.join(data['columns'])}) VALUES ({marks})",
                tuple(row),
            )
    return old


@pytest.fixture(params=["sqlite", _PG])
def old(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Old]:
    loaded = _load(request.param, tmp_path)
    yield loaded
    if loaded.kind == "postgres":
        ledger = PostgresLedger(PG_URL, prefix=loaded.prefix)
        ledger.drop()
        ledger.close()


def test_a_v1_ledger_opens_verifies_and_keeps_counting(old: Old) -> None:
    ledger = old.open(agent_key=AGENT, clock=Clock())
    try:
        report = ledger.verify()  # strict: the v1 events were signed by this agent
        assert report.ok, report
        assert report.events == 15 and report.signed == 15 and report.checkpoints == 4
        records = ledger.records()
        # v1-05 was a refusal: logged, never a payment.
        assert [r.id for r in records] == [f"v1-{n:02d}" for n in range(1, 9) if n != 5]
        assert {r.scope for r in records} == {""}
        assert ledger.spent("USD") == COUNTED
        budget = Limit("budget", cap=USD("1.50 USD"))  # the scope "", as v1 limits were
        assert ledger.usage(budget).spent == COUNTED  # backfilled from the v1 rows
        tagged = Limit("nightly", cap=USD("9 USD"), tags={"job": "nightly"})
        assert ledger.usage(tagged).spent == USD("0.65 USD")
        with pytest.raises(BudgetExceeded, match=r"1\.35 USD already spent or held"):
            ledger.reserve(make_record(Clock(), "0.20 USD"), [budget])
        ledger.reserve(make_record(Clock(), "0.15 USD"), [budget])
        # A challenge the v1 ledger answered stays answered.
        with pytest.raises(ChallengeReused, match="v1-01"):
            ledger.reserve(make_record(Clock(), challenge_id="v1-challenge-01"), [])
        # Its history still answers the policy's questions.
        assert ledger.has_paid("merchant-b", scope="")
        assert ledger.recent_charges("merchant-b", 5, scope="") == [USD("0.15 USD")]
        assert ledger.failure_streak("merchant-b", scope="")[0] == 0
        assert ledger.verify().ok
    finally:
        ledger.close()


def test_a_v1_payment_settled_now_is_logged_in_a_new_chain(old: Old) -> None:
    ledger = old.open(agent_key=AGENT, clock=Clock())
    try:
        proof = ledger.inclusion_proof("v1-06")  # v1 format: against a v1 checkpoint
        assert "checkpoint" in proof and verify_exported_proof(proof, trusted_agents=[AGENT.did])
        resolved = ledger.resolve("v1-06", "committed", "confirmed", receipt=receipt("late"))
        assert resolved.status == "committed" and resolved.scope == ""
        proof = ledger.inclusion_proof("v1-06")  # now the current format
        assert "head" in proof and verify_exported_proof(proof, trusted_agents=[AGENT.did])
        assert ledger.spent("USD") == COUNTED  # committed still counts
        report = ledger.verify()
        assert report.ok, report
        assert report.chains == 2  # the legacy chain and this writer's
        kinds = [json.loads(line)["event"]["kind"] for line in ledger.export_jsonl()]
        assert kinds[-1] == "resolve" and len(kinds) == 16
    finally:
        ledger.close()
    again = old.open(agent_key=AGENT, clock=Clock())
    try:
        assert again.get("v1-06") == resolved
        assert again.verify().ok
    finally:
        again.close()


def test_the_legacy_chain_is_still_checked(old: Old) -> None:
    old.open(agent_key=AGENT).close()  # migrated once
    (body,) = old.execute("SELECT body FROM mpp_audit WHERE seq = 2")[0]
    old.execute(
        "UPDATE mpp_audit SET body = ? WHERE seq = 2",
        (body.replace('"0.25 USD"', '"0.01 USD"', 1),),
    )
    ledger = old.open(agent_key=AGENT)
    try:
        problems = ledger.verify().problems
        assert any("legacy event 2: content does not match its hash" in p for p in problems)
        assert any("chain legacy: tree head does not match the events" in p for p in problems)
    finally:
        ledger.close()


def test_deleting_the_newest_v1_events_is_caught_once_migrated(old: Old) -> None:
    """The v1 format could not see it; the head stored and published at migration can."""
    old.open(agent_key=AGENT).close()
    old.execute("DELETE FROM mpp_payments WHERE id = 'v1-08'")
    old.execute("DELETE FROM mpp_audit WHERE seq >= 14")  # v1-08's reserve and commit
    if old.kind == "sqlite":
        with pytest.raises(LedgerIntegrityError, match="legacy"):
            old.open(agent_key=AGENT)
    ledger = old.open(agent_key=AGENT, heads=False)
    try:
        problems = ledger.verify().problems
        assert any(
            "chain legacy: 13 events, fewer than its tree head covers" in p for p in problems
        )
    finally:
        ledger.close()


def test_a_v1_ledger_opened_without_its_key_asks_whom_to_trust(old: Old) -> None:
    ledger = old.open()
    try:
        problems = ledger.verify().problems  # the meta table says it was written signed
        assert problems and all(f"untrusted agent {AGENT.did}" in p for p in problems)
        assert ledger.verify(trusted_agents=[AGENT.did]).ok
    finally:
        ledger.close()


def test_sqlite_file_without_the_tagset_column_is_migrated(tmp_path: Path) -> None:
    """Files made before tag-scoped budgets lack the ``tagset`` column: it is added and filled."""
    path = tmp_path / "old.sqlite3"
    clock = Clock()
    first = SqliteLedger(path, clock=clock)
    first.reserve(make_record(clock, "0.30 USD", tags={"env": "peak"}), [])
    first.close()
    with sqlite3.connect(path) as conn:  # back to that shape
        conn.execute("ALTER TABLE mpp_payments DROP COLUMN tagset")
    reopened = SqliteLedger(path, clock=clock)
    try:
        assert reopened.spent("USD", tags={"env": "peak"}) == USD("0.30 USD")
        reopened.reserve(make_record(clock, "0.10 USD", tags={"env": "peak"}), [])
        assert reopened.spent("USD", tags={"env": "peak"}) == USD("0.40 USD")
        assert reopened.verify().ok
    finally:
        reopened.close()


def test_old_file_gets_the_challenge_index_and_keeps_refusing_replays(tmp_path: Path) -> None:
    """Files made before challenges were indexed: the column is added and filled on open.

    A file written by the old client may already hold a replayed challenge twice
    (the fault the index closes): the first record keeps the id.
    """
    path = tmp_path / "old.sqlite3"
    clock = Clock()
    first = SqliteLedger(path, clock=clock)
    paid = first.reserve(make_record(clock, "0.30 USD", challenge_id="seen-once"), [])
    first.close()
    with sqlite3.connect(path) as conn:  # back to that shape, with the old fault's trace
        conn.execute("DROP INDEX mpp_payments_challenge")
        conn.execute("ALTER TABLE mpp_payments DROP COLUMN challenge")
    with sqlite3.connect(path) as conn:
        (stored,) = conn.execute("SELECT record FROM mpp_payments").fetchone()
        twin = json.loads(stored)
        twin["id"] = "replayed-twin"
        conn.execute(
            "INSERT INTO mpp_payments (id, created_us, updated_us, status, payee, method, "
            "currency, charge_nano, tagset, record) SELECT ?, created_us + 1, updated_us, status, "
            "payee, method, currency, charge_nano, tagset, ? FROM mpp_payments WHERE id = ?",
            ("replayed-twin", json.dumps(twin), paid.id),
        )
    reopened = SqliteLedger(path, clock=clock)
    try:
        with sqlite3.connect(path) as conn:
            keys = dict(conn.execute("SELECT id, challenge FROM mpp_payments").fetchall())
        assert keys[paid.id] is not None and keys["replayed-twin"] is None
        with pytest.raises(ChallengeReused, match=f"ledger record {paid.id}"):
            reopened.reserve(make_record(clock, "0.10 USD", challenge_id="seen-once"), [])
        reopened.reserve(make_record(clock, "0.10 USD", challenge_id="new-one"), [])
        report = reopened.verify()
        # The hand-inserted twin has no audit event: that is the only problem reported.
        assert [p for p in report.problems if "replayed-twin" not in p] == []
    finally:
        reopened.close()
