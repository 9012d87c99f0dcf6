"""verify()'s fast check: it accepts an intact ledger alone, and nothing the full check refuses.

An intact ledger is checked by :func:`~mpp_client.ledger._verify._fast` only;
anything it cannot accept goes to the full check, which names the problem.
So every tamper case of the audit tests must make the fast check step aside,
including forgeries signed with the agent's own key, where no hash or
signature gives them away and only the byte comparisons do.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mpp_client.ledger import _verify

from .ledger_fixtures import Store, activity

# The audit suite's tampers: the fast check must refuse the same.
from .test_ledger_audit import TAMPERS, _chain_of, _entries, _forge, _set_entry, _with


class Spy:
    """Records what the fast check answered on each verify()."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: list[Any] = []
        fast = _verify._fast

        def spy(*args: Any) -> Any:
            answer = fast(*args)
            self.answers.append(answer)
            return answer

        monkeypatch.setattr(_verify, "_fast", spy)


def test_an_intact_ledger_is_checked_by_the_fast_check_alone(
    logged: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    activity(logged.sql, logged.clock)
    spy = Spy(monkeypatch)
    fast = logged.sql.verify()
    assert fast.ok, fast
    assert spy.answers == [fast]  # the full check never ran
    monkeypatch.setattr(_verify, "_fast", lambda *args: None)
    full = logged.sql.verify()
    assert full.ok and dataclasses.asdict(full) == dataclasses.asdict(fast)


@pytest.mark.parametrize("case", list(TAMPERS))
def test_the_fast_check_accepts_no_tampering(
    durable: Store, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = activity(durable.sql, durable.clock)
    assert durable.raw is not None
    TAMPERS[case](durable, durable.raw, ids, _chain_of(durable.raw)[:8])
    spy = Spy(monkeypatch)
    report = durable.sql.verify()
    assert not report.ok
    assert spy.answers == [None], f"the fast check accepted {case}"


# Entries a forger holding the agent's key rewrites: the hashes and signatures all
# check, so only the comparison of bytes with the rows, and of revisions, is left.
_SIGNED_FORGERIES = {
    # r1's commit: its charge in the header differs from the row's.
    "charge-in-header": (1, lambda e: e.replace(b",250000000,", b",1,", 1), "charge differs"),
    # r1's commit: one byte of the record body differs from the row's.
    "body-byte": (
        1,
        lambda e: e.replace(b'"status":"committed"', b'"status":"commitxed"', 1),
        "state differs",
    ),
    # r1's reserve (no row names it): a revision after the one its row says is newest.
    "revision-ahead": (0, lambda e: _with(e, rev=5), "state differs"),
    # r2's reserve: the same revision as its release.
    "revision-repeated": (2, lambda e: _with(e, rev=1), "a second revision 1"),
}


@pytest.mark.parametrize("case", list(_SIGNED_FORGERIES))
def test_forgeries_signed_with_the_agents_key_are_named(
    durable: Store, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    activity(durable.sql, durable.clock)
    assert durable.raw is not None
    seq, change, named = _SIGNED_FORGERIES[case]
    entries = _entries(durable.raw)
    changed = change(entries[seq])
    assert changed != entries[seq]
    entries[seq] = changed
    _forge(durable.raw, entries, durable.agent)
    spy = Spy(monkeypatch)
    report = durable.sql.verify(against=[])  # the database alone, as if no head was published
    assert spy.answers == [None], f"the fast check accepted {case}"
    assert any(named in p for p in report.problems), report.problems
    assert not any("signature" in p or "tree head" in p for p in report.problems)


@pytest.mark.parametrize("offset", [0, 20, 50, 120, 200, -300, -1])
def test_a_corrupted_byte_anywhere_in_an_entry_is_caught(
    durable: Store, offset: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    activity(durable.sql, durable.clock)
    assert durable.raw is not None
    for seq in (1, 9):  # an entry a payment row names, and a refusal no row names
        entry = bytearray(_entries(durable.raw)[seq])
        entry[offset] ^= 0x01
        _set_entry(durable.raw, seq, bytes(entry))
    spy = Spy(monkeypatch)
    report = durable.sql.verify()
    assert spy.answers == [None] and not report.ok


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 4095, 4096, 4097, 9000])
def test_frontier_extend_builds_the_same_tree_as_append(n: int) -> None:
    from mpp_client.ledger._merkle import Frontier, leaf_hash, root

    leaves = [leaf_hash(str(i).encode()) for i in range(n)]
    wanted = sorted({1, n // 3 or 1, n // 2 or 1, n - 1 or 1, n})
    tree, got, start = Frontier(), {}, 0
    for step in (1, 7, 4096, 5000, n):  # uneven batches, unaligned starts
        got.update(tree.extend(leaves[start : start + step], wanted))
        start += step
    assert tree.size == n and tree.root() == root(leaves)
    assert got == {size: root(leaves[:size]) for size in wanted}
    with pytest.raises(ValueError):
        Frontier().extend([b"not a leaf hash"])
