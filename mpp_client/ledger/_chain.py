"""The audit log: one hash chain per writer, each an RFC 9162 Merkle tree.

Every change of spend state (reserve, commit, release, unknown, resolve) and
every refusal is one *entry*: a header line, then the record as stored. The
header is compact JSON of ``[format, chain, seq, prev, at_us, kind,
record_id, rev, columns]``: which chain and where in it, the previous entry's
leaf hash (the chain link), when, what happened, to which record and which
revision of it, and the payment's columns that budgets are counted over
(status, scope, payee, method, currency, charge in billionths, created and
updated time, tagset, challenge key). An entry's leaf hash is
``SHA-256(0x00 || entry)``: the RFC 9162 leaf, and the next entry's ``prev``.

A chain belongs to one ledger object (a *writer*): a random id when it first
writes, a new chain when a process opens the ledger again. So writers in
different processes never wait on each other for the log. The writer keeps
its tree's frontier (O(log n) hashes, :class:`~._merkle.Frontier`) in memory,
and with every transaction stores a *signed tree head* for its chain (size
and root, signed with the agent key when there is one); every
``checkpoint_every`` entries it also keeps that head as a checkpoint. Entries
are not signed one by one: the signed head authenticates every entry under
it, and checking it costs one signature per chain, not one per entry.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..protocol import b64url_decode, b64url_encode, canonical_json, format_rfc3339
from ._merkle import Frontier, leaf_hash

if TYPE_CHECKING:
    from ..identity import AgentKey

__all__ = ["FORMAT", "GENESIS", "ChainWriter", "Draft", "Entry", "SignedHead", "parse_entry"]

FORMAT = "mpp-log/2"
#: The ``prev`` of a chain's first entry.
GENESIS = "0" * 64
_HEAD_TYPE = "mpp-client/tree-head/v2"


@dataclass(frozen=True, slots=True)
class SignedHead:
    """The tree head of one chain: its first ``size`` entries have Merkle root ``root``.

    ``ledger`` binds it to one ledger (a random id kept in the ledger), so a
    head from another ledger never passes for this one's.
    """

    ledger: str
    chain: str
    size: int
    root: str
    at: str
    agent: str | None = None
    signature: str | None = None

    def signed_body(self) -> bytes:
        return canonical_json(
            {
                "type": _HEAD_TYPE,
                "ledger": self.ledger,
                "chain": self.chain,
                "size": self.size,
                "root": self.root,
                "at": self.at,
            }
        )

    def signature_ok(self) -> bool:
        """The signature is the named agent's over this head (False when unsigned)."""
        if self.agent is None or self.signature is None:
            return False
        try:
            raw = b64url_decode(self.signature)
        except ValueError:
            return False
        from ..identity import verify_signature  # noqa: PLC0415 - pynacl only to verify

        return verify_signature(self.agent, self.signed_body(), raw)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": _HEAD_TYPE,
            "ledger": self.ledger,
            "chain": self.chain,
            "size": self.size,
            "root": self.root,
            "at": self.at,
            "agent": self.agent,
            "signature": self.signature,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignedHead:
        """Parse :meth:`to_dict` output; ValueError when it is not one."""
        try:
            if data.get("type", _HEAD_TYPE) != _HEAD_TYPE:
                raise ValueError("not a tree head")
            size = data["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ValueError("bad size")
            fields = [data[k] for k in ("ledger", "chain", "root", "at")]
            if not all(isinstance(v, str) for v in fields):
                raise ValueError("bad field")
            agent, signature = data.get("agent"), data.get("signature")
            if not all(v is None or isinstance(v, str) for v in (agent, signature)):
                raise ValueError("bad signature")
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a tree head: {exc}") from None
        ledger, chain, root, at = fields
        return cls(ledger, chain, size, root, at, agent, signature)


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored entry of a chain."""

    chain: str
    seq: int
    record_id: str | None
    entry: bytes


def make_entry(
    chain: str,
    seq: int,
    prev: str,
    *,
    at_us: int,
    kind: str,
    record_id: str | None,
    rev: int | None,
    columns: Sequence[Any] | None,
    body: bytes,
) -> bytes:
    header = json.dumps(
        [FORMAT, chain, seq, prev, at_us, kind, record_id, rev, columns],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return header.encode("utf-8") + b"\n" + body


def parse_entry(entry: bytes) -> tuple[list[Any], bytes] | None:
    """The header fields and the body of an entry; None when it is not one."""
    head, newline, body = entry.partition(b"\n")
    if not newline:
        return None
    try:
        fields = json.loads(head)
    except ValueError:
        return None
    if not isinstance(fields, list) or len(fields) != 9 or fields[0] != FORMAT:
        return None
    return fields, body


@dataclass(slots=True)
class Draft:
    """The entries one transaction adds to the writer's chain (adopted once it commits)."""

    ledger: str
    chain: str
    seq: int
    prev: str
    frontier: Frontier
    checkpoint_every: int
    entries: list[Entry] = field(default_factory=list)
    #: Heads to keep as checkpoints (every ``checkpoint_every`` entries).
    marks: list[tuple[int, str]] = field(default_factory=list)
    #: The signed head stored with the transaction (published once it commits).
    head: SignedHead | None = None

    def append(
        self,
        kind: str,
        *,
        at_us: int,
        record_id: str | None,
        rev: int | None,
        columns: Sequence[Any] | None,
        body: bytes,
    ) -> Entry:
        entry = make_entry(
            self.chain,
            self.seq,
            self.prev,
            at_us=at_us,
            kind=kind,
            record_id=record_id,
            rev=rev,
            columns=columns,
            body=body,
        )
        leaf = leaf_hash(entry)
        stored = Entry(self.chain, self.seq, record_id, entry)
        self.entries.append(stored)
        self.frontier.append(leaf)
        self.seq += 1
        self.prev = leaf.hex()
        if self.checkpoint_every and self.seq % self.checkpoint_every == 0:
            self.marks.append((self.seq, self.frontier.root().hex()))
        return stored


class ChainWriter:
    """This ledger object's own chain, kept in memory: next seq, last leaf, frontier.

    Not thread-safe: the ledger calls it under its own lock.
    """

    def __init__(
        self,
        ledger: Callable[[], str],
        agent: AgentKey | None,
        clock: Callable[[], datetime],
        checkpoint_every: int,
    ) -> None:
        self._ledger = ledger
        self._agent = agent
        self._clock = clock
        self._checkpoint_every = checkpoint_every
        self.chain: str | None = None
        self._pid = 0
        self._seq = 0
        self._prev = GENESIS
        self._frontier = Frontier()

    def begin(self) -> Draft:
        if self.chain is None or self._pid != os.getpid():
            # A new chain for a new writer, and for a forked child (it must not
            # extend its parent's chain from a copy of its state).
            self.restart()
        assert self.chain is not None
        return Draft(
            self._ledger(),
            self.chain,
            self._seq,
            self._prev,
            self._frontier.copy(),
            self._checkpoint_every,
        )

    def restart(self) -> None:
        """Write a fresh chain from now on (after a write whose outcome is unknown)."""
        self.chain = secrets.token_hex(16)
        self._pid = os.getpid()
        self._seq = 0
        self._prev = GENESIS
        self._frontier = Frontier()

    def sign(self, chain: str, size: int, root: str) -> SignedHead:
        head = SignedHead(self._ledger(), chain, size, root, format_rfc3339(self._clock()))
        if self._agent is None:
            return head
        signature = b64url_encode(self._agent.sign(head.signed_body()))
        return SignedHead(head.ledger, chain, size, root, head.at, self._agent.did, signature)

    def head_of(self, draft: Draft) -> SignedHead:
        return self.sign(draft.chain, draft.seq, draft.frontier.root().hex())

    def adopt(self, draft: Draft) -> None:
        """The draft's transaction committed: it is the chain now."""
        if draft.chain != self.chain:
            return
        self._seq = draft.seq
        self._prev = draft.prev
        self._frontier = draft.frontier

    @property
    def size(self) -> int:
        return self._seq

    def current_head(self) -> SignedHead | None:
        if self.chain is None or self._seq == 0:
            return None
        return self.sign(self.chain, self._seq, self._frontier.root().hex())
