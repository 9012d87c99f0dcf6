"""The first audit log format (v1), kept readable: ledgers written before chains per writer.

Ledgers written by earlier versions kept one hash chain for everyone, in the
``<prefix>audit`` and ``<prefix>checkpoints`` tables. They are left as they
are, as the *legacy chain*: :func:`verify_chain` checks it as before, and new
entries go to chains of the current format (:mod:`._chain`).

In that format every change of spend state and every refusal appended one
event. An event's body is canonical JSON (RFC 8785)
of ``{seq, at, kind, record, prev}``, where ``prev`` is the previous event's
hash; its hash is SHA-256 of that body; the writing agent signs the body. So
changing, deleting, inserting or reordering any event breaks the chain at a
place :func:`verify_chain` can name, and rewriting the whole chain needs the
agent's key. Periodic checkpoints sign the Merkle tree head (RFC 9162) over
all event bodies, so one payment's inclusion can be proven offline.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..protocol import b64url_decode, b64url_encode, canonical_json, format_rfc3339
from ._merkle import InclusionProof, inclusion_proof, leaf_hash, root

if TYPE_CHECKING:
    from ..identity import AgentKey

__all__ = [
    "GENESIS",
    "AuditEvent",
    "Checkpoint",
    "make_checkpoint",
    "make_event",
    "verify_chain",
    "verify_legacy_proof",
]

#: The ``prev`` of the first event.
GENESIS = "0" * 64
_CHECKPOINT_TYPE = "mpp-client/checkpoint/v1"


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One stored event: the canonical body and what was derived from it."""

    seq: int
    kind: str
    record_id: str | None
    body: bytes
    hash: str
    agent: str | None = None
    signature: str | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head over the first ``tree_size`` events."""

    tree_size: int
    root: str
    at: str
    agent: str | None = None
    signature: str | None = None

    def signed_body(self) -> bytes:
        return canonical_json(
            {
                "type": _CHECKPOINT_TYPE,
                "tree_size": self.tree_size,
                "root": self.root,
                "at": self.at,
            }
        )


def make_event(
    *,
    seq: int,
    at: datetime,
    kind: str,
    record: Mapping[str, Any] | None,
    prev: str,
    agent: AgentKey | None,
    record_id: str | None = None,
) -> AuditEvent:
    body = canonical_json(
        {
            "seq": seq,
            "at": format_rfc3339(at),
            "kind": kind,
            "record": dict(record) if record is not None else None,
            "prev": prev,
        }
    )
    signature = b64url_encode(agent.sign(body)) if agent is not None else None
    return AuditEvent(
        seq=seq,
        kind=kind,
        record_id=record_id,
        body=body,
        hash=hashlib.sha256(body).hexdigest(),
        agent=agent.did if agent is not None else None,
        signature=signature,
    )


def make_checkpoint(bodies: Sequence[bytes], at: datetime, agent: AgentKey | None) -> Checkpoint:
    head = root([leaf_hash(body) for body in bodies]).hex()
    checkpoint = Checkpoint(tree_size=len(bodies), root=head, at=format_rfc3339(at))
    if agent is None:
        return checkpoint
    signature = b64url_encode(agent.sign(checkpoint.signed_body()))
    return Checkpoint(checkpoint.tree_size, head, checkpoint.at, agent.did, signature)


def _signed_by(did: str | None, body: bytes, signature: str | None) -> bool:
    if did is None or signature is None:
        return False
    try:
        raw = b64url_decode(signature)
    except ValueError:
        return False
    from ..identity import verify_signature  # noqa: PLC0415 - pynacl only to verify

    return verify_signature(did, body, raw)


@dataclass(slots=True)
class LegacyReport:
    """What :func:`verify_chain` found in the legacy chain."""

    events: int = 0
    signed: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)
    #: The leaf hashes of the events, for the chain's head.
    leaves: list[bytes] = field(default_factory=list)


def verify_chain(
    events: Iterable[AuditEvent],
    checkpoints: Iterable[Checkpoint],
    *,
    trusted_agents: Iterable[str] | None = None,
    require_signatures: bool = False,
) -> tuple[LegacyReport, dict[str, tuple[int, Mapping[str, Any] | None]]]:
    """Check the legacy chain and its checkpoints.

    Returns the report and, per record id, the last event's seq and record
    (for the caller to compare with its spend-state table). ``problems`` name
    events as ``legacy event N``.
    """
    report = LegacyReport()
    trusted = set(trusted_agents) if trusted_agents is not None else None
    prev = GENESIS
    expected_seq = 1
    bodies: list[bytes] = []
    latest: dict[str, tuple[int, Mapping[str, Any] | None]] = {}
    for event in events:
        report.events += 1
        where = f"legacy event {event.seq}"
        if event.seq != expected_seq:
            kind = "missing (deleted?)" if event.seq > expected_seq else "out of order or inserted"
            report.problems.append(f"{where}: expected event {expected_seq}, {kind}")
            expected_seq = event.seq
        try:
            body = json.loads(event.body)
        except ValueError:
            report.problems.append(f"{where}: body is not JSON")
            body = {}
        if not isinstance(body, dict):
            report.problems.append(f"{where}: body is not a JSON object")
            body = {}
        if hashlib.sha256(event.body).hexdigest() != event.hash:
            report.problems.append(f"{where}: content does not match its hash (modified)")
        if body.get("seq") != event.seq:
            report.problems.append(f"{where}: body says seq {body.get('seq')} (moved)")
        if body.get("prev") != prev:
            report.problems.append(
                f"{where}: does not follow the previous event (inserted, deleted or reordered)"
            )
        if event.signature is not None or event.agent is not None:
            if _signed_by(event.agent, event.body, event.signature):
                report.signed += 1
                if trusted is not None and event.agent not in trusted:
                    report.problems.append(f"{where}: signed by untrusted agent {event.agent}")
            else:
                report.problems.append(f"{where}: bad signature")
        elif require_signatures:
            report.problems.append(f"{where}: unsigned")
        record = body.get("record")
        if event.record_id is not None:
            latest[event.record_id] = (event.seq, record)
        prev = event.hash
        expected_seq += 1
        bodies.append(event.body)
    leaves = [leaf_hash(body) for body in bodies]
    report.leaves = leaves
    for checkpoint in checkpoints:
        report.checkpoints += 1
        where = f"legacy checkpoint at {checkpoint.tree_size}"
        if checkpoint.tree_size > len(leaves):
            report.problems.append(f"{where}: the log is shorter than this checkpoint (truncated)")
            continue
        if root(leaves[: checkpoint.tree_size]).hex() != checkpoint.root:
            report.problems.append(
                f"{where}: tree head does not match the events (history rewritten)"
            )
        if checkpoint.signature is None:
            if require_signatures:
                report.problems.append(f"{where}: unsigned")
        elif not _signed_by(checkpoint.agent, checkpoint.signed_body(), checkpoint.signature):
            report.problems.append(f"{where}: bad signature")
        elif trusted is not None and checkpoint.agent not in trusted:
            report.problems.append(f"{where}: signed by untrusted agent {checkpoint.agent}")
    return report, latest


def export_proof(bodies: Sequence[bytes], index: int, checkpoint: Checkpoint) -> dict[str, Any]:
    """An inclusion proof of event ``index`` (0-based) in ``checkpoint``, as JSON data."""
    leaves = [leaf_hash(body) for body in bodies[: checkpoint.tree_size]]
    proof = InclusionProof(
        index=index,
        tree_size=checkpoint.tree_size,
        leaf_hash=leaves[index],
        path=tuple(inclusion_proof(leaves, index)),
        root=bytes.fromhex(checkpoint.root),
    )
    return {
        "event": bodies[index].decode("utf-8"),
        "proof": proof.to_dict(),
        "checkpoint": {
            "tree_size": checkpoint.tree_size,
            "root": checkpoint.root,
            "at": checkpoint.at,
            "agent": checkpoint.agent,
            "signature": checkpoint.signature,
        },
    }


def verify_legacy_proof(data: Mapping[str, Any], *, trusted_agents: Iterable[str]) -> bool:
    """Check an exported v1 proof offline: the event is in a tree head a trusted agent signed."""
    try:
        event = str(data["event"]).encode("utf-8")
        proof = InclusionProof.from_dict(data["proof"])
        cp = data["checkpoint"]
        checkpoint = Checkpoint(
            int(cp["tree_size"]),
            str(cp["root"]),
            str(cp["at"]),
            cp.get("agent"),
            cp.get("signature"),
        )
    except (KeyError, TypeError, ValueError):
        return False
    if checkpoint.agent not in set(trusted_agents):
        return False
    if not _signed_by(checkpoint.agent, checkpoint.signed_body(), checkpoint.signature):
        return False
    return (
        proof.leaf_hash == leaf_hash(event)
        and proof.tree_size == checkpoint.tree_size
        and proof.root.hex() == checkpoint.root
        and proof.verify()
    )
