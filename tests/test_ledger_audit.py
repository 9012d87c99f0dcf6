"""The audit log: verify, tamper evidence, published heads, strict signatures, proofs.

``logged`` runs on every store (the memory store keeps the same log); the
tamper cases edit a durable store's tables behind the ledger's back, with
plain SQL, as a forger would, and check that a bare ``verify()`` names the
place. Every store is opened with an agent key, so a bare ``verify()`` is
strict: each chain's head must be signed by that agent.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mpp_client import PaymentError
from mpp_client.identity import AgentKey
from mpp_client.ledger import (
    HeadFiles,
    LedgerIntegrityError,
    PaymentRecord,
    PostgresLedger,
    SignedHead,
    SqliteLedger,
    verify_exported_proof,
)
from mpp_client.ledger._chain import make_entry, parse_entry
from mpp_client.ledger._merkle import Frontier, leaf_hash
from mpp_client.ledger._record import record_json
from mpp_client.ledger._totals import to_nano
from mpp_client.money import Amount
from mpp_client.policy import Limit
from mpp_client.protocol import b64url_encode

from .ledger_fixtures import (
    PG_URL,
    Clock,
    Raw,
    Store,
    activity,
    make_record,
    postgres_unavailable,
    receipt,
)

_NO_PG = postgres_unavailable()
USD = Amount.parse
BUDGET = Limit("budget", cap=USD("1.00 USD"))


# -- an untouched log verifies ----------------------------------------------------------


def test_verify_accepts_an_untouched_log(logged: Store) -> None:
    activity(logged.sql, logged.clock)
    report = logged.sql.verify()
    assert report.ok, report
    assert (report.events, report.signed, report.checkpoints, report.chains) == (11, 11, 3, 1)
    assert report.payments == 5 and report.totals >= 9  # nine buckets for each second
    assert str(report).startswith(
        "ledger verified: 11 events (11 signed) in 1 chain, 3 checkpoints, 5 payments"
    )
    kinds = [json.loads(line)["event"]["kind"] for line in logged.sql.export_jsonl()]
    assert kinds == [
        "reserve",
        "commit",
        "reserve",
        "release",
        "reserve",
        "unknown",
        "reserve",
        "unknown",
        "resolve",
        "refusal",
        "reserve",
    ]
    assert logged.ledger.spent("USD") == USD("1.00 USD")
    assert logged.sql.usage(BUDGET).spent == USD("1.00 USD")


def test_verify_without_an_agent_key(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "unsigned.sqlite3")
    try:
        ledger.commit(ledger.reserve(make_record(Clock()), []).id, None)
        assert ledger.verify().ok  # nothing was ever signed: nothing to require
        report = ledger.verify(require_signatures=True)
        chain = _only_chain(ledger.export_jsonl())
        assert report.problems == [f"chain {chain[:8]}: unsigned"]
        proof = ledger.inclusion_proof(ledger.records()[0].id)
        assert proof["head"]["signature"] is None
        assert not verify_exported_proof(proof, trusted_agents=[AgentKey.generate().did])
    finally:
        ledger.close()


def _only_chain(lines: Iterator[str]) -> str:
    (chain,) = {json.loads(line)["chain"] for line in lines}
    return str(chain)


# -- a forger's tools ---------------------------------------------------------------------


def _chain_of(raw: Raw) -> str:
    (chain,) = {row[0] for row in raw.events()}
    return chain


def _entries(raw: Raw) -> list[bytes]:
    return [row[3] for row in raw.events()]


def _fields(entry: bytes) -> tuple[list[Any], bytes]:
    parsed = parse_entry(entry)
    assert parsed is not None
    return parsed


def _with(entry: bytes, *, body: bytes | None = None, **changes: Any) -> bytes:
    """``entry`` with header fields or its body replaced (links not fixed)."""
    fields, old_body = _fields(entry)
    names = ["format", "chain", "seq", "prev", "at_us", "kind", "record_id", "rev", "columns"]
    for name, value in changes.items():
        fields[names.index(name)] = value
    return make_entry(
        fields[1],
        fields[2],
        fields[3],
        at_us=fields[4],
        kind=fields[5],
        record_id=fields[6],
        rev=fields[7],
        columns=fields[8],
        body=old_body if body is None else body,
    )


def _set_entry(raw: Raw, seq: int, entry: bytes) -> None:
    raw.execute(f"UPDATE {raw.log} SET entry = ? WHERE seq = ?", (entry, seq))


Signer = AgentKey | str | None  # a key, "keep" (the old signatures), or None (stripped)


def _forge(raw: Raw, entries: list[bytes], signer: Signer) -> None:
    """Write ``entries`` as the whole chain, relinked, with its head and checkpoints
    recomputed and signed by ``signer``: what a careful forger does."""
    chain = _chain_of(raw)
    (head,) = raw.stored_heads()
    raw.execute(f"DELETE FROM {raw.log} WHERE chain = ?", (chain,))
    frontier, prev, roots = Frontier(), "0" * 64, {}
    for seq, entry in enumerate(entries):
        fields, _ = _fields(entry)
        linked = _with(entry, seq=seq, prev=prev, chain=chain)
        raw.execute(
            f"INSERT INTO {raw.log} (chain, seq, record_id, entry) VALUES (?, ?, ?, ?)",
            (chain, seq, fields[6], linked),
        )
        leaf = leaf_hash(linked)
        frontier.append(leaf)
        prev = leaf.hex()
        roots[frontier.size] = frontier.root().hex()

    def signed(size: int, at: str, old: tuple[Any, Any]) -> tuple[Any, Any]:
        if signer == "keep":
            return old
        if signer is None:
            return None, None
        assert isinstance(signer, AgentKey)
        body = SignedHead(head.ledger, chain, size, roots[size], at).signed_body()
        return signer.did, b64url_encode(signer.sign(body))

    agent, signature = signed(len(entries), head.at, (head.agent, head.signature))
    raw.execute(
        f"UPDATE {raw.heads} SET size = ?, root = ?, agent = ?, signature = ? WHERE chain = ?",
        (len(entries), roots[len(entries)], agent, signature, chain),
    )
    for size, at, old_agent, old_signature in raw.execute(
        f"SELECT size, at, agent, signature FROM {raw.checkpoints}"
    ):
        if size > len(entries):
            raw.execute(f"DELETE FROM {raw.checkpoints} WHERE size = ?", (size,))
            continue
        agent, signature = signed(size, at, (old_agent, old_signature))
        raw.execute(
            f"UPDATE {raw.checkpoints} SET root = ?, agent = ?, signature = ? WHERE size = ?",
            (roots[size], agent, signature, size),
        )


def _row(raw: Raw, record_id: str) -> dict[str, Any]:
    cols = "status, record, rev, log_chain, log_seq, scope, payee, currency, charge_nano"
    (row,) = raw.execute(f"SELECT {cols} FROM {raw.payments} WHERE id = ?", (record_id,))
    return dict(zip([c.strip() for c in cols.split(",")], row, strict=True))


def _totals_delta(raw: Raw, record_id: str, sign: int) -> None:
    """Add or take away one payment in every stored total of its scope (a careful forger)."""
    from mpp_client.ledger._totals import buckets

    (created, nano, currency) = raw.execute(
        f"SELECT created_us, charge_nano, currency FROM {raw.payments} WHERE id = ?",
        (record_id,),
    )[0]
    for (filter_id,) in raw.execute(f"SELECT id FROM {raw.filters}"):
        for level, bucket in buckets(int(created)):
            raw.execute(
                f"UPDATE {raw.totals} SET n = n + ?, nano = nano + ? WHERE filter_id = ? "
                "AND level = ? AND bucket = ? AND currency = ?",
                (sign, sign * int(nano), filter_id, level, bucket, currency),
            )


def _settle_forged(
    raw: Raw, record_id: str, status: str, signer: Signer, *, kind: str = "release"
) -> None:
    """Append a well-formed change of ``record_id`` to ``status``, and make its row,
    the totals and the head agree with it."""
    entries = _entries(raw)
    row = _row(raw, record_id)
    record = PaymentRecord.from_dict(json.loads(row["record"]))
    changed = record.with_status(status, now=record.created_at, reason="forged")  # type: ignore[arg-type]
    text = record_json(changed)
    last_fields, _ = _fields(entries[int(row["log_seq"])])
    columns = [status, *last_fields[8][1:]]
    forged = _with(
        entries[-1],
        kind=kind,
        record_id=record_id,
        rev=int(row["rev"]) + 1,
        columns=columns,
        body=text.encode(),
    )
    _forge(raw, [*entries, forged], signer)
    if status == "released":
        _totals_delta(raw, record_id, -1)
    raw.execute(
        f"UPDATE {raw.payments} SET status = ?, record = ?, rev = ?, log_seq = ? WHERE id = ?",
        (status, text, int(row["rev"]) + 1, len(entries), record_id),
    )


# -- tamper cases: each names what it expects a bare verify() to say -----------------------

Tamper = Callable[[Store, Raw, dict[str, str], str], list[str]]


def t_entry_modified(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    entry = _entries(raw)[0]
    changed = entry.replace(b'"amount":"0.25 USD"', b'"amount":"0.01 USD"', 1)
    assert changed != entry
    _set_entry(raw, 0, changed)
    return [
        f"event {c}/1: does not follow the previous event",
        f"checkpoint {c}/4: tree head does not match the events (history rewritten)",
        f"chain {c}: tree head does not match the events (history rewritten)",
    ]


def t_chain_rewritten_without_the_key(
    store: Store, raw: Raw, ids: dict[str, str], c: str
) -> list[str]:
    entries = _entries(raw)
    entries[0] = entries[0].replace(b'"amount":"0.25 USD"', b'"amount":"0.01 USD"', 1)
    _forge(raw, entries, "keep")
    return [f"chain {c}: bad signature", f"checkpoint {c}/4: bad signature"]


def t_chain_rewritten_and_signed_by_another_key(
    store: Store, raw: Raw, ids: dict[str, str], c: str
) -> list[str]:
    stranger = AgentKey.generate()
    entries = _entries(raw)
    entries[0] = entries[0].replace(b'"amount":"0.25 USD"', b'"amount":"0.01 USD"', 1)
    _forge(raw, entries, stranger)
    return [
        f"chain {c}: signed by untrusted agent {stranger.did}",
        f"checkpoint {c}/4: signed by untrusted agent {stranger.did}",
    ]


def t_signatures_stripped(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    raw.execute(f"UPDATE {raw.heads} SET agent = NULL, signature = NULL")
    raw.execute(f"UPDATE {raw.checkpoints} SET agent = NULL, signature = NULL")
    return [f"chain {c}: unsigned", f"checkpoint {c}/4: unsigned", f"checkpoint {c}/11: unsigned"]


def t_entry_deleted(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    raw.execute(f"DELETE FROM {raw.log} WHERE seq = 4")
    return [
        f"event {c}/5: expected event 4, missing (deleted?)",
        f"event {c}/5: does not follow",
        f"chain {c}: 10 events, fewer than its tree head covers (11): truncated",
    ]


def t_entries_swapped(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    raw.execute(f"UPDATE {raw.log} SET seq = -5 WHERE seq = 4")
    raw.execute(f"UPDATE {raw.log} SET seq = 4 WHERE seq = 5")
    raw.execute(f"UPDATE {raw.log} SET seq = 5 WHERE seq = -5")
    return [f"event {c}/4: its header says event {c}/5 (moved)", f"event {c}/4: does not follow"]


def t_entry_inserted(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    # Make room after event 5, then slip in an entry that says r3 was released.
    entries = _entries(raw)
    raw.execute(f"UPDATE {raw.log} SET seq = -seq - 1 WHERE seq >= 6")
    raw.execute(f"UPDATE {raw.log} SET seq = -seq WHERE seq < 0")
    forged = _with(entries[5], kind="release", seq=6, prev=leaf_hash(entries[5]).hex())
    raw.execute(
        f"INSERT INTO {raw.log} (chain, seq, record_id, entry) VALUES (?, ?, ?, ?)",
        (_chain_of(raw), 6, ids["r3"], forged),
    )
    return [
        f"event {c}/7: its header says event {c}/6 (moved)",
        f"event {c}/7: does not follow the previous event",
        f"chain {c}: 1 events after its tree head (appended)",
    ]


def t_release_signed_by_a_stranger(
    store: Store, raw: Raw, ids: dict[str, str], c: str
) -> list[str]:
    # A well-formed release of r5 appended, with its row, the totals and the head to
    # match: the budget is freed, and only the signer gives it away.
    stranger = AgentKey.generate()
    _settle_forged(raw, ids["r5"], "released", stranger)
    assert store.ledger.spent("USD") == USD("0.60 USD")
    assert store.sql.usage(BUDGET).spent == USD("0.60 USD")  # budget freed
    assert store.sql.verify(any_signer=True, against=[]).ok  # the weaker check, by name
    return [f"chain {c}: signed by untrusted agent {stranger.did}"]


def t_release_without_a_key(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    _settle_forged(raw, ids["r5"], "released", None)
    assert store.sql.verify(allow_unsigned=True, against=[]).ok  # the weaker check, by name
    return [f"chain {c}: unsigned"]


def t_bad_signature(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    (other,) = raw.execute(f"SELECT signature FROM {raw.checkpoints} WHERE size = 4")[0]
    raw.execute(f"UPDATE {raw.heads} SET signature = ?", (other,))
    return [f"chain {c}: bad signature"]


def t_head_signature_stripped(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    raw.execute(f"UPDATE {raw.heads} SET agent = NULL, signature = NULL")
    return [f"chain {c}: unsigned"]


def t_log_truncated(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    raw.execute(f"DELETE FROM {raw.log} WHERE seq >= 9")
    return [
        f"chain {c}: 9 events, fewer than its tree head covers (11): truncated",
        f"checkpoint {c}/11: the chain is shorter than this checkpoint (truncated)",
        f"payment {ids['r5']}: no audit event records it",
    ]


def t_checkpoint_root_changed(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    raw.execute(f"UPDATE {raw.checkpoints} SET root = ? WHERE size = 8", ("ab" * 32,))
    return [
        f"checkpoint {c}/8: tree head does not match the events",
        f"checkpoint {c}/8: bad signature",
    ]


def t_not_an_entry(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    _set_entry(raw, 3, b"[1, 2]")
    return [f"event {c}/3: not a log entry (modified)", f"event {c}/4: does not follow"]


def t_status_freed(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    raw.execute(f"UPDATE {raw.payments} SET status = 'released' WHERE id = ?", (ids["r1"],))
    return [f"payment {ids['r1']}: state differs from audit event {c}/1 (modified)", "totals of"]


def t_status_record_and_totals_freed(
    store: Store, raw: Raw, ids: dict[str, str], c: str
) -> list[str]:
    row = _row(raw, ids["r1"])
    record = PaymentRecord.from_dict(json.loads(row["record"]))
    released = record_json(dataclasses.replace(record, status="released"))
    raw.execute(
        f"UPDATE {raw.payments} SET status = 'released', record = ? WHERE id = ?",
        (released, ids["r1"]),
    )
    _totals_delta(raw, ids["r1"], -1)
    assert store.sql.usage(BUDGET).spent == USD("0.75 USD")  # the budget is freed...
    return [f"payment {ids['r1']}: state differs from audit event {c}/1 (modified)"]


def t_charge_lowered(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    raw.execute(f"UPDATE {raw.payments} SET charge_nano = 1 WHERE id = ?", (ids["r1"],))
    assert store.ledger.spent("USD") < USD("1.00 USD")
    return [f"payment {ids['r1']}: charge differs from the audit log"]


def _budget_column(column: str, value: Any) -> Tamper:
    def tamper(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
        raw.execute(f"UPDATE {raw.payments} SET {column} = ? WHERE id = ?", (value, ids["r1"]))
        return [f"payment {ids['r1']}: state differs from audit event {c}/1 (modified)"]

    return tamper


def t_record_garbled(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    raw.execute(f"UPDATE {raw.payments} SET record = 'not json' WHERE id = ?", (ids["r3"],))
    return [f"payment {ids['r3']}: state differs from audit event {c}/5 (modified)"]


def t_payment_deleted(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    raw.execute(f"DELETE FROM {raw.payments} WHERE id = ?", (ids["r1"],))
    return [f"payment {ids['r1']}: in audit event {c}/1 but deleted", "totals of"]


def t_payment_inserted(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    raw.execute(
        f"INSERT INTO {raw.payments} (id, created_us, updated_us, status, payee, method, "
        "currency, charge_nano, record, scope) SELECT ?, created_us, updated_us, status, payee, "
        f"method, currency, charge_nano, record, scope FROM {raw.payments} WHERE id = ?",
        ("ghost", ids["r5"]),
    )
    return ["payment ghost: no audit event records it"]


def t_record_id_repointed(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    # Point r2's release at r1, and make r1's row say what that entry says.
    raw.execute(f"UPDATE {raw.log} SET record_id = ? WHERE seq = 3", (ids["r1"],))
    row2 = _row(raw, ids["r2"])
    raw.execute(
        f"UPDATE {raw.payments} SET status = 'released', record = ?, log_seq = 3 WHERE id = ?",
        (row2["record"], ids["r1"]),
    )
    return [
        f"event {c}/3: stored for {ids['r1']}, written for {ids['r2']}",
        f"payment {ids['r1']}: state differs from audit event {c}/1 (modified)",
    ]


def t_malformed_record_rewritten(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    # A forger rewrites r1's commit and its row to a stub: verify reports it, not crash on it.
    entries = _entries(raw)
    stub = json.dumps({"id": ids["r1"], "status": "released"}).encode()
    entries[1] = _with(entries[1], body=stub, columns=None)
    _forge(raw, entries, "keep")
    raw.execute(
        f"UPDATE {raw.payments} SET status = 'released', record = ? WHERE id = ?",
        (stub.decode(), ids["r1"]),
    )
    return [f"chain {c}: bad signature", f"payment {ids['r1']}:"]


def t_totals_row_lowered(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    raw.execute(f"UPDATE {raw.totals} SET nano = nano - 400000000 WHERE level = 8")
    assert store.sql.usage(BUDGET).spent == USD("0.60 USD")  # the budget is freed...
    return ["totals of budget filter (scope ''), level 8 bucket 0 USD: stored 4 payments"]


def t_totals_rows_deleted(store: Store, raw: Raw, ids: dict[str, str], c: str) -> list[str]:
    raw.execute(f"DELETE FROM {raw.totals}")
    assert store.sql.usage(BUDGET).spent == USD("0 USD")
    return ["totals of budget filter (scope ''), level 0", "the payments say 1 /"]


TAMPERS: dict[str, Tamper] = {
    "entry-modified": t_entry_modified,
    "chain-rewritten-without-the-key": t_chain_rewritten_without_the_key,
    "chain-rewritten-and-signed-by-another-key": t_chain_rewritten_and_signed_by_another_key,
    "signatures-stripped": t_signatures_stripped,
    "entry-deleted": t_entry_deleted,
    "entries-swapped": t_entries_swapped,
    "entry-inserted": t_entry_inserted,
    "release-signed-by-a-stranger": t_release_signed_by_a_stranger,
    "release-without-a-key": t_release_without_a_key,
    "bad-signature": t_bad_signature,
    "head-signature-stripped": t_head_signature_stripped,
    "log-truncated": t_log_truncated,
    "checkpoint-root-changed": t_checkpoint_root_changed,
    "not-an-entry": t_not_an_entry,
    "payment-status-freed": t_status_freed,
    "payment-status-record-and-totals-freed": t_status_record_and_totals_freed,
    "payment-charge-lowered": t_charge_lowered,
    "payment-created-moved": _budget_column("created_us", 0),
    "payment-updated-moved": _budget_column("updated_us", 0),
    "payment-currency-changed": _budget_column("currency", "EUR"),
    "payment-payee-changed": _budget_column("payee", "elsewhere"),
    "payment-method-changed": _budget_column("method", "other"),
    "payment-scope-changed": _budget_column("scope", "another-program"),
    "payment-tagset-cleared": _budget_column("tagset", '["job", "x"]'),
    "payment-challenge-cleared": _budget_column("challenge", None),
    "payment-rev-changed": _budget_column("rev", 7),
    "payment-record-garbled": t_record_garbled,
    "payment-deleted": t_payment_deleted,
    "payment-inserted": t_payment_inserted,
    "record-id-repointed": t_record_id_repointed,
    "malformed-record-rewritten": t_malformed_record_rewritten,
    "totals-row-lowered": t_totals_row_lowered,
    "totals-rows-deleted": t_totals_rows_deleted,
}


@pytest.mark.parametrize("case", list(TAMPERS))
def test_tampering_is_named(durable: Store, case: str) -> None:
    ids = activity(durable.sql, durable.clock)
    assert durable.sql.verify().ok
    assert durable.raw is not None
    chain = _chain_of(durable.raw)
    expected = TAMPERS[case](durable, durable.raw, ids, chain[:8])
    problems = durable.sql.verify().problems  # bare: strict, against the published heads
    assert problems, f"{case} went unnoticed"
    for text in expected:
        assert any(text in p for p in problems), f"{text!r} not in {problems}"


@pytest.mark.parametrize("column", ["tagset", "challenge", "scope"])
def test_verify_covers_the_columns_budgets_and_replays_depend_on(
    durable: Store, column: str
) -> None:
    """Clearing ``tagset`` frees tag-scoped budgets, ``scope`` moves a payment out of its
    budget, clearing ``challenge`` allows a replay: each is covered by the log's hashes."""
    durable.ledger.reserve(
        make_record(
            durable.clock, "0.30 USD", tags={"job": "nightly"}, challenge_id="c-1", scope="s"
        ),
        [],
    )
    assert durable.sql.verify().ok
    raw = durable.raw
    assert raw is not None
    value = {"tagset": "", "challenge": None, "scope": ""}[column]
    raw.execute(f"UPDATE {raw.payments} SET {column} = ?", (value,))
    report = durable.sql.verify()
    assert not report.ok
    assert any("modified" in p for p in report.problems), report.problems


# -- heads published outside the database ---------------------------------------------


def _drop_newest_payment(raw: Raw, record_id: str) -> None:
    """Delete the newest payment and its only entry, fix the totals and recompute the
    (unsigned) head: what a keyless ledger's database alone can no longer show."""
    _totals_delta(raw, record_id, -1)
    raw.execute(f"DELETE FROM {raw.payments} WHERE id = ?", (record_id,))
    entries = _entries(raw)
    assert _fields(entries[-1])[0][6] == record_id
    _forge(raw, entries[:-1], None)


def _keyless_activity(ledger: SqliteLedger | PostgresLedger, clock: Clock) -> dict[str, str]:
    ids: dict[str, str] = {}
    for name in ("r1", "r2"):
        ids[name] = ledger.reserve(make_record(clock, "0.40 USD"), [BUDGET]).id
        ledger.commit(ids[name], receipt(name))
    ids["r3"] = ledger.reserve(make_record(clock, "0.20 USD"), [BUDGET]).id
    return ids


def test_deleting_the_newest_payment_is_caught_by_the_head_files(tmp_path: Path) -> None:
    """Without a key the database can be made consistent again after a deletion;
    the head file beside it cannot."""
    path, clock = tmp_path / "k.sqlite3", Clock()
    ledger = SqliteLedger(path, clock=clock, checkpoint_every=2)
    ids = _keyless_activity(ledger, clock)
    raw = Raw("sqlite", str(path), "mpp_")
    try:
        chain = _chain_of(raw)[:8]
        _drop_newest_payment(raw, ids["r3"])
        # The budget is freed, and the database alone is consistent again.
        assert ledger.usage(BUDGET).spent == USD("0.80 USD")
        assert ledger.verify(against=[]).ok
        problems = ledger.verify().problems  # against the head files, by default
        assert problems == [
            f"published head {chain}/5: the chain has 4 events, fewer than published (deleted)"
        ]
        ledger.close()
        with pytest.raises(LedgerIntegrityError, match="entries were deleted") as info:
            SqliteLedger(path)
        assert info.value.problems and str(path) in info.value.message
    finally:
        raw.close()


def test_deleting_the_newest_events_after_the_last_checkpoint_is_caught(tmp_path: Path) -> None:
    path, clock = tmp_path / "k.sqlite3", Clock()
    ledger = SqliteLedger(path, clock=clock, checkpoint_every=2)
    ids = _keyless_activity(ledger, clock)
    ledger.release(ids["r3"], "declined")  # event 5, after the checkpoint at 4
    ledger.log_refusal(make_record(clock), "too dear")  # event 6
    raw = Raw("sqlite", str(path), "mpp_")
    try:
        chain = _chain_of(raw)[:8]
        _forge(raw, _entries(raw)[:5], None)  # the release and the refusal are gone
        raw.execute(
            f"UPDATE {raw.payments} SET status = 'reserved', record = ?, rev = 0, log_seq = 4 "
            "WHERE id = ?",
            (
                record_json(PaymentRecord.from_dict(json.loads(_fields(_entries(raw)[4])[1]))),
                ids["r3"],
            ),
        )
        _totals_delta(raw, ids["r3"], 1)
        assert ledger.verify(against=[]).ok
        assert ledger.verify().problems == [
            f"published head {chain}/7: the chain has 5 events, fewer than published (deleted)"
        ]
    finally:
        raw.close()
        ledger.close()


@pytest.mark.skipif(_NO_PG is not None, reason=f"PostgreSQL store: {_NO_PG}")
def test_a_fleet_publishes_heads_with_a_callback(tmp_path: Path) -> None:
    import uuid

    published: dict[str, SignedHead] = {}
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    clock = Clock()
    ledger = PostgresLedger(
        PG_URL, prefix=prefix, clock=clock, heads=lambda h: published.__setitem__(h.chain, h)
    )
    raw = Raw("postgres", PG_URL, prefix)
    try:
        ids = _keyless_activity(ledger, clock)
        assert [h.size for h in published.values()] == [5]
        chain = _chain_of(raw)[:8]
        _drop_newest_payment(raw, ids["r3"])
        assert ledger.verify().ok  # the database alone: consistent again
        problems = ledger.verify(against=published.values()).problems
        assert problems == [
            f"published head {chain}/5: the chain has 4 events, fewer than published (deleted)"
        ]
        # Heads of another ledger are not this one's.
        other = dataclasses.replace(next(iter(published.values())), ledger="another")
        assert "of another ledger" in ledger.verify(against=[other]).problems[0]
    finally:
        raw.close()
        ledger.drop()
        ledger.close()


def test_a_replaced_database_is_caught_on_open(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    first = SqliteLedger(path)
    first.reserve(make_record(Clock()), [])
    first.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(LedgerIntegrityError, match="the database was replaced"):
        SqliteLedger(path)
    SqliteLedger(path, heads=False).close()  # a ledger that publishes nowhere opens


def test_a_head_file_behind_the_database_is_harmless(tmp_path: Path) -> None:
    """Heads are written without fsync: a crash may leave one behind, never ahead."""
    path, clock = tmp_path / "b.sqlite3", Clock()
    ledger = SqliteLedger(path, clock=clock)
    ledger.reserve(make_record(clock), [])
    (head_file,) = (tmp_path / "b.sqlite3.heads").glob("*.json")
    behind = head_file.read_text()
    ledger.reserve(make_record(clock), [])
    ledger.close()
    head_file.write_text(behind)
    again = SqliteLedger(path, clock=clock)
    try:
        report = again.verify()
        assert report.ok and report.published == 1
    finally:
        again.close()


# -- strict by default ------------------------------------------------------------------


def test_a_keyed_ledger_opened_without_its_key_is_still_checked_strictly(tmp_path: Path) -> None:
    agent = AgentKey.generate()
    path, clock = tmp_path / "s.sqlite3", Clock()
    SqliteLedger(path, agent_key=agent, clock=clock).reserve(make_record(clock), [])
    reader = SqliteLedger(path, clock=clock)  # no key: the meta table says it had one
    try:
        problems = reader.verify().problems
        assert problems and all(f"untrusted agent {agent.did}" in p for p in problems)
        assert reader.verify(trusted_agents=[agent.did]).ok
        assert reader.verify(any_signer=True).ok
        # Trusted when given to the ledger, too.
        trusting = SqliteLedger(path, clock=clock, trusted_agents=[agent.did])
        assert trusting.verify().ok
        trusting.close()
    finally:
        reader.close()


def test_a_keyless_writer_in_a_keyed_ledger_is_flagged(tmp_path: Path) -> None:
    agent = AgentKey.generate()
    path, clock = tmp_path / "m.sqlite3", Clock()
    keyed = SqliteLedger(path, agent_key=agent, clock=clock)
    keyed.reserve(make_record(clock), [])
    keyless = SqliteLedger(path, clock=clock)
    keyless.reserve(make_record(clock), [])
    try:
        assert keyless.ledger_id == keyed.ledger_id
        chains = {json.loads(line)["chain"] for line in keyless.export_jsonl()}
        assert len(chains) == 2  # one per writer
        problems = keyed.verify().problems
        assert len(problems) == 1 and problems[0].endswith(": unsigned"), problems
        assert keyed.verify(allow_unsigned=True).ok
    finally:
        keyed.close()
        keyless.close()


# -- inclusion proofs -------------------------------------------------------------------


def test_inclusion_proof_verifies_offline(logged: Store) -> None:
    ids = activity(logged.sql, logged.clock)
    ledger, agent = logged.sql, logged.agent
    proof = ledger.inclusion_proof(ids["r1"])
    assert verify_exported_proof(proof, trusted_agents=[agent.did])
    assert verify_exported_proof(json.loads(json.dumps(proof)), trusted_agents=[agent.did])
    fields, body = _fields(proof["entry"].encode())
    assert (fields[2], fields[5], fields[6]) == (1, "commit", ids["r1"])
    assert json.loads(body)["status"] == "committed"
    assert proof["head"]["size"] == 11  # the chain's current head
    assert proof["proof"]["index"] == 1
    # Each record's latest event.
    for name, seq in (("r2", 3), ("r3", 5), ("r4", 8), ("r5", 10)):
        other = ledger.inclusion_proof(ids[name])
        assert _fields(other["entry"].encode())[0][2] == seq
        assert verify_exported_proof(other, trusted_agents=[agent.did])
    with pytest.raises(PaymentError, match="no audit event for payment 'nope'"):
        ledger.inclusion_proof("nope")


def test_a_proof_needs_no_new_checkpoint(logged: Store) -> None:
    """Every transaction stores a signed head: a proof is available at once."""
    record = logged.sql.reserve(make_record(logged.clock), [])
    proof = logged.sql.inclusion_proof(record.id)
    assert proof["head"]["size"] == 1 and proof["proof"]["path"] == []
    assert verify_exported_proof(proof, trusted_agents=[logged.agent.did])
    assert logged.sql.verify().checkpoints == 0


def _flip(hex_text: str) -> str:
    return ("1" if hex_text[0] == "0" else "0") + hex_text[1:]


def _altered(proof: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    copy = json.loads(json.dumps(proof))
    change(copy)
    return copy


PROOF_CHANGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "entry-text": lambda p: p.update(entry=p["entry"].replace("committed", "released")),
    "entry-whitespace": lambda p: p.update(entry=p["entry"] + " "),
    "path-hash": lambda p: p["proof"]["path"].__setitem__(0, _flip(p["proof"]["path"][0])),
    "path-shortened": lambda p: p["proof"]["path"].pop(),
    "path-lengthened": lambda p: p["proof"]["path"].append("00" * 32),
    "proof-root": lambda p: p["proof"].update(root=_flip(p["proof"]["root"])),
    "both-roots": lambda p: (
        p["proof"].update(root=_flip(p["proof"]["root"])),
        p["head"].update(root=p["proof"]["root"]),
    ),
    "proof-tree-size": lambda p: p["proof"].update(tree_size=p["proof"]["tree_size"] + 1),
    "both-tree-sizes": lambda p: (
        p["proof"].update(tree_size=12),
        p["head"].update(size=12),
    ),
    "index": lambda p: p["proof"].update(index=p["proof"]["index"] + 1),
    "leaf-hash": lambda p: p["proof"].update(leaf_hash=_flip(p["proof"]["leaf_hash"])),
    "head-signature": lambda p: p["head"].update(signature=b64url_encode(bytes(64))),
    "head-time": lambda p: p["head"].update(at="2030-01-01T00:00:00Z"),
    "head-unsigned": lambda p: p["head"].update(signature=None),
    "head-agent": lambda p: p["head"].update(agent=AgentKey.generate().did),
    "head-chain": lambda p: p["head"].update(chain="0" * 32),
    "head-ledger": lambda p: p["head"].update(ledger="another"),
    "no-proof": lambda p: p.pop("proof"),
    "path-not-a-list": lambda p: p["proof"].update(path="00" * 32),
    "tree-size-not-int": lambda p: p["proof"].update(tree_size="11"),
    "size-not-int": lambda p: p["head"].update(size="11"),
}


@pytest.mark.parametrize("change", list(PROOF_CHANGES))
def test_altered_proofs_fail(logged: Store, change: str) -> None:
    ids = activity(logged.sql, logged.clock)
    proof = logged.sql.inclusion_proof(ids["r1"])
    assert verify_exported_proof(proof, trusted_agents=[logged.agent.did])
    bad = _altered(proof, PROOF_CHANGES[change])
    assert not verify_exported_proof(bad, trusted_agents=[logged.agent.did])


def test_proofs_from_untrusted_agents_fail(logged: Store) -> None:
    ids = activity(logged.sql, logged.clock)
    proof = logged.sql.inclusion_proof(ids["r3"])
    assert not verify_exported_proof(proof, trusted_agents=[AgentKey.generate().did])
    assert not verify_exported_proof(proof, trusted_agents=[])
    # A stranger re-signing the head does not help either.
    stranger = AgentKey.generate()
    head = SignedHead.from_dict(proof["head"])
    forged = _altered(
        proof,
        lambda p: p["head"].update(
            agent=stranger.did, signature=b64url_encode(stranger.sign(head.signed_body()))
        ),
    )
    assert verify_exported_proof(forged, trusted_agents=[stranger.did])  # well-formed...
    assert not verify_exported_proof(forged, trusted_agents=[logged.agent.did])  # ...untrusted
    assert not verify_exported_proof("not a proof", trusted_agents=[stranger.did])  # type: ignore[arg-type]


def test_charges_in_the_log_are_the_rows(durable: Store) -> None:
    """The column budgets are summed over says what the log says (nano, rounded up)."""
    ids = activity(durable.sql, durable.clock)
    raw = durable.raw
    assert raw is not None
    row = _row(raw, ids["r1"])
    assert int(row["charge_nano"]) == to_nano(USD("0.25 USD"))
    fields, _ = _fields(_entries(raw)[1])
    assert fields[8][5] == int(row["charge_nano"])


def test_a_torn_head_write_leaves_the_head_before_it(tmp_path: Path) -> None:
    """Head files are rewritten in place, two slots in turn: a slot torn by a crash fails
    its digest, and the other (one head behind, harmless) is read."""
    path, clock = tmp_path / "t.sqlite3", Clock()
    ledger = SqliteLedger(path, clock=clock)
    try:
        ledger.reserve(make_record(clock), [])
        ledger.reserve(make_record(clock), [])  # the second head, in the second slot
        (head_file,) = (tmp_path / "t.sqlite3.heads").glob("*.json")
        sizes = [h.size for h in HeadFiles(head_file.parent).load()]
        data = bytearray(head_file.read_bytes())
        data[1100:1110] = b"##########"  # the newest slot, half rewritten
        head_file.write_bytes(bytes(data))
        assert [h.size for h in HeadFiles(head_file.parent).load()] == [sizes[0] - 1]
        data[100:110] = b"##########"  # both torn: nothing readable, and it says so
        head_file.write_bytes(bytes(data))
        assert HeadFiles(head_file.parent).load() == []
    finally:
        ledger.close()


def test_head_files_of_earlier_versions_are_read(tmp_path: Path) -> None:
    head = SignedHead("ledger", "abc", 3, "00" * 32, "2026-01-01T00:00:00Z")
    directory = tmp_path / "heads"
    directory.mkdir()
    (directory / "abc.json").write_text(json.dumps(head.to_dict()))
    assert HeadFiles(directory).load() == [head]
