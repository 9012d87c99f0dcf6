"""A payment record: one payment attempt and what became of it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .._decision import Decision, Limit
from .._exceptions import ChallengeReused
from ..money import Amount
from ..protocol import Receipt, b64url_encode, canonical_json, format_rfc3339, parse_rfc3339

__all__ = ["COUNTED", "PaymentRecord", "Status", "challenge_key", "record_json", "reused_challenge"]

Status = Literal["reserved", "committed", "released", "unknown"]
#: Statuses that count against budgets: money held, spent, or possibly spent.
COUNTED: frozenset[str] = frozenset({"reserved", "committed", "unknown"})


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """One payment attempt and what became of it.

    Returned in ``response.extensions["mpp"]`` after a paid request. It holds
    public terms only: never the credential, a key or a payment signature
    (``signature`` is the agent's signature over its own decision).
    """

    id: str
    created_at: datetime
    status: Status
    http_method: str
    url: str
    realm: str
    method: str
    intent: str
    #: What was paid, in the method's asset.
    amount: Amount
    #: What it counts for against budgets, in the policy currency.
    charge: Amount
    payee: str
    challenge_id: str
    decision: Decision | None = None
    purpose: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    receipt: Receipt | None = None
    #: Why it was released or left unknown, or what was odd about a commit.
    reason: str | None = None
    updated_at: datetime | None = None
    #: The agent (did:key) that decided, and its signature over :meth:`decision_record`.
    agent: str | None = None
    signature: str | None = None
    #: The budget scope it counts in (see :class:`~mpp_client.policy.Limit`). ``None``
    #: until reserved: the ledger then gives it the scope of its limits (``""``
    #: without limits). Records written before scopes existed are in ``""``.
    scope: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The whole record as JSON-ready data (stored by durable ledgers)."""
        return {
            **self.decision_record(),
            "status": self.status,
            "amount_units": str(self.amount.units),
            "amount_currency": self.amount.currency,
            "amount_decimals": self.amount.decimals,
            "charge_units": str(self.charge.units),
            "charge_currency": self.charge.currency,
            "charge_decimals": self.charge.decimals,
            "receipt": _receipt_dict(self.receipt) if self.receipt is not None else None,
            "reason": self.reason,
            "updated_at": format_rfc3339(self.updated_at) if self.updated_at else None,
            "signature": self.signature,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PaymentRecord:
        """Inverse of :meth:`to_dict`."""
        receipt = data.get("receipt")
        decision = data.get("decision")
        return cls(
            id=data["id"],
            created_at=parse_rfc3339(data["created_at"]),
            status=data["status"],
            http_method=data["http_method"],
            url=data["url"],
            realm=data["realm"],
            method=data["method"],
            intent=data["intent"],
            amount=Amount(
                int(data["amount_units"]), data["amount_currency"], data["amount_decimals"]
            ),
            charge=Amount(
                int(data["charge_units"]), data["charge_currency"], data["charge_decimals"]
            ),
            payee=data["payee"],
            challenge_id=data["challenge_id"],
            decision=Decision.from_dict(decision) if decision is not None else None,
            purpose=data.get("purpose"),
            tags=dict(data.get("tags") or {}),
            receipt=_receipt(receipt) if receipt is not None else None,
            reason=data.get("reason"),
            updated_at=parse_rfc3339(data["updated_at"]) if data.get("updated_at") else None,
            agent=data.get("agent"),
            signature=data.get("signature"),
            scope=data.get("scope", ""),
        )

    def decision_record(self) -> dict[str, Any]:
        """What the agent signs when it decides to pay: who, what, where, why.

        Fixed at reservation; later status changes are not part of it, so the
        signature proves the agent's authorization, not the outcome.
        """
        signed: dict[str, Any] = {
            "id": self.id,
            "created_at": format_rfc3339(self.created_at),
            "agent": self.agent,
            "http_method": self.http_method,
            "url": self.url,
            "realm": self.realm,
            "method": self.method,
            "intent": self.intent,
            "amount": str(self.amount),
            "charge": str(self.charge),
            "payee": self.payee,
            "challenge_id": self.challenge_id,
            "purpose": self.purpose,
            "tags": dict(self.tags),
            "decision": self.decision.to_dict() if self.decision is not None else None,
        }
        if self.scope:
            # Only when set, so records from before scopes keep their signed bytes.
            signed["scope"] = self.scope
        return signed

    @property
    def challenge_key(self) -> str:
        """What makes a challenge single use: its realm and id (see :func:`challenge_key`)."""
        return challenge_key(self.realm, self.challenge_id)

    @property
    def asset(self) -> str:
        return self.amount.currency

    def with_status(
        self,
        status: Status,
        *,
        now: datetime,
        receipt: Receipt | None = None,
        reason: str | None = None,
    ) -> PaymentRecord:
        return dataclasses.replace(
            self,
            status=status,
            receipt=receipt if receipt is not None else self.receipt,
            reason=reason,
            updated_at=now,
        )

    def in_scope(self, limit: Limit) -> bool:
        """True when ``limit`` covers this payment: its scope, payee, method and tags."""
        return (
            (self.scope or "") == limit.scope
            and (limit.payee is None or self.payee == limit.payee)
            and (limit.method is None or self.method == limit.method)
            and all(self.tags.get(key) == value for key, value in limit.tags.items())
        )

    def counts_for(self, limit: Limit) -> bool:
        """True when this record counts against ``limit`` now."""
        if self.status not in COUNTED or not self.in_scope(limit):
            return False
        return limit.since is None or self.created_at >= limit.since


def challenge_key(realm: str, challenge_id: str) -> str:
    """One string per (realm, challenge id), unambiguous whatever the two contain."""
    return json.dumps([realm, challenge_id], ensure_ascii=False, separators=(",", ":"))


def reused_challenge(record: PaymentRecord, earlier: str) -> ChallengeReused:
    """The refusal for a challenge that ledger record ``earlier`` already answered."""
    return ChallengeReused(
        f"challenge {record.challenge_id!r} from {record.realm!r} was already answered "
        f"(ledger record {earlier}): challenges are single use, refusing to pay it again"
    )


def record_json(record: PaymentRecord) -> str:
    """The stored text of a record: compact JSON with sorted keys.

    It is stored as written and hashed as written (never re-serialized to be
    checked), so it only has to be deterministic for one writer, not canonical.
    """
    return json.dumps(record.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _receipt(data: Mapping[str, Any]) -> Receipt:
    """A stored receipt, re-read through the same strict parser as on the wire."""
    return Receipt.parse(b64url_encode(canonical_json(data)))


def _receipt_dict(receipt: Receipt) -> dict[str, Any]:
    data = dict(receipt.data)
    data.update(status=receipt.status, method=receipt.method, reference=receipt.reference)
    if receipt.timestamp is not None:
        # Keep the timestamp as received when it says the same moment, so a
        # stored receipt reads back equal to the one the server sent.
        raw = data.get("timestamp")
        try:
            same = isinstance(raw, str) and parse_rfc3339(raw) == receipt.timestamp
        except ValueError:
            same = False
        if not same:
            data["timestamp"] = format_rfc3339(receipt.timestamp)
    return data
