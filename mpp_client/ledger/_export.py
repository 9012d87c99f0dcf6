"""What a ledger gives out: the log as JSON Lines, payments as CSV, totals, and proofs.

An inclusion proof shows, offline, that one entry is in a chain whose tree
head a trusted agent signed: the entry's exact bytes, its RFC 9162 audit
path, and the signed head (:func:`verify_exported_proof`). Proofs of payments
last changed in a legacy (v1) chain keep that format and still check.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .._exceptions import PaymentError
from ..money import Amount
from ._chain import SignedHead, parse_entry
from ._legacy import export_proof, make_checkpoint, verify_legacy_proof
from ._merkle import InclusionProof, leaf_hash
from ._record import COUNTED, PaymentRecord
from ._store import Tx

if TYPE_CHECKING:
    from ..identity import AgentKey

__all__ = ["csv_text", "inclusion_proof", "jsonl", "totals_by", "verify_exported_proof"]


def jsonl(tx: Tx) -> Iterator[str]:
    """One line per entry: where it is, what it says, and its exact bytes.

    ``{"chain", "seq", "event": {"kind", "at_us", "record_id", "rev", "prev",
    "record"}, "entry", "leaf"}``; legacy events keep their v1 form
    (``{"chain": "legacy", "seq", "event", "hash", "agent", "signature"}``).
    """
    for old in tx.legacy_events():
        yield _line(
            {
                "chain": "legacy",
                "seq": old.seq,
                "event": json.loads(old.body),
                "hash": old.hash,
                "agent": old.agent,
                "signature": old.signature,
            }
        )
    for stored in tx.all_entries():
        parsed = parse_entry(stored.entry)
        event: dict[str, Any] | None = None
        if parsed is not None:
            fields, body = parsed
            try:
                record = json.loads(body)
            except ValueError:
                record = None
            event = {
                "kind": fields[5],
                "at_us": fields[4],
                "record_id": fields[6],
                "rev": fields[7],
                "prev": fields[3],
                "record": record,
            }
        yield _line(
            {
                "chain": stored.chain,
                "seq": stored.seq,
                "event": event,
                "entry": stored.entry.decode("utf-8", "replace"),
                "leaf": leaf_hash(stored.entry).hex(),
            }
        )


def _line(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


CSV_FIELDS = (
    "id",
    "created_at",
    "status",
    "http_method",
    "url",
    "realm",
    "method",
    "intent",
    "amount",
    "charge",
    "payee",
    "challenge_id",
    "purpose",
    "tags",
    "receipt_reference",
    "reason",
    "scope",
)


def csv_text(records: Iterable[PaymentRecord]) -> str:
    """Payments as CSV, one row each (public terms only)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for r in records:
        writer.writerow(
            [
                r.id,
                r.created_at.isoformat(),
                r.status,
                r.http_method,
                r.url,
                r.realm,
                r.method,
                r.intent,
                str(r.amount),
                str(r.charge),
                r.payee,
                r.challenge_id,
                r.purpose or "",
                json.dumps(dict(r.tags), sort_keys=True) if r.tags else "",
                r.receipt.reference if r.receipt else "",
                r.reason or "",
                r.scope or "",
            ]
        )
    return out.getvalue()


def totals_by(
    records: Iterable[PaymentRecord], currency: str, *, by: str, since: datetime | None = None
) -> dict[str, Amount]:
    """Counted spend per ``payee``, ``method``, ``status``, ``scope`` or ``tag:<name>``."""
    if by not in ("payee", "method", "status", "scope") and not by.startswith("tag:"):
        raise ValueError("group by 'payee', 'method', 'status', 'scope' or 'tag:<name>'")
    sums: dict[str, Amount] = {}
    for r in records:
        if r.status not in COUNTED or r.charge.currency != currency:
            continue
        if since is not None and r.created_at < since:
            continue
        key = r.tags.get(by[4:], "") if by.startswith("tag:") else str(getattr(r, by) or "")
        sums[key] = sums[key] + r.charge if key in sums else r.charge
    return sums


def inclusion_proof(
    tx: Tx, record_id: str, agent: AgentKey | None, now: datetime
) -> dict[str, Any]:
    """The proof for ``record_id``'s latest entry, against its chain's stored head."""
    row = tx.payment(record_id)
    if row is None or row.log_chain is None or row.log_seq is None:
        return _legacy_proof(tx, record_id, agent, now)
    heads = {h.chain: h for h in tx.heads()}
    head = heads.get(row.log_chain)
    if head is None or head.size <= row.log_seq:
        raise PaymentError(f"no tree head covers the latest event of payment {record_id!r}")
    entries = tx.chain_entries(row.log_chain, head.size)
    leaves = [leaf_hash(e.entry) for e in entries]
    proof = InclusionProof.build(leaves, row.log_seq)
    if proof.root.hex() != head.root:
        raise PaymentError(f"the chain of payment {record_id!r} does not match its head")
    return {
        "format": "mpp-log/2",
        "entry": entries[row.log_seq].entry.decode("utf-8"),
        "proof": proof.to_dict(),
        "head": head.to_dict(),
    }


def _legacy_proof(tx: Tx, record_id: str, agent: AgentKey | None, now: datetime) -> dict[str, Any]:
    events = tx.legacy_events()
    index = max((i for i, e in enumerate(events) if e.record_id == record_id), default=None)
    if index is None:
        raise PaymentError(f"no audit event for payment {record_id!r}")
    covering = [c for c in tx.legacy_checkpoints() if c.tree_size > index]
    if covering:
        checkpoint = covering[-1]
    else:
        checkpoint = make_checkpoint([e.body for e in events], now, agent)
        tx.put_legacy_checkpoint(checkpoint)
    return export_proof([e.body for e in events], index, checkpoint)


def verify_exported_proof(data: Mapping[str, Any], *, trusted_agents: Iterable[str]) -> bool:
    """Check an exported proof offline: the entry is in a tree head a trusted agent signed.

    Never raises; False for anything malformed, unsigned or signed by another.
    """
    trusted = set(trusted_agents)
    given: object = data
    if not isinstance(given, Mapping):
        return False
    if "head" not in data:
        return verify_legacy_proof(data, trusted_agents=trusted)
    try:
        entry = str(data["entry"]).encode("utf-8")
        proof = InclusionProof.from_dict(data["proof"])
        head = SignedHead.from_dict(data["head"])
    except (KeyError, TypeError, ValueError):
        return False
    if head.agent not in trusted or not head.signature_ok():
        return False
    parsed = parse_entry(entry)
    if parsed is None:
        return False
    fields, _ = parsed
    return (
        fields[1] == head.chain
        and fields[2] == proof.index
        and proof.leaf_hash == leaf_hash(entry)
        and proof.tree_size == head.size
        and proof.root.hex() == head.root
        and proof.verify()
    )
