"""The agent's signatures over decision and ledger records.

Verifying needs only the ``did`` (the public key is inside it), so an auditor
checks a record without any key store, whichever signer made it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..protocol._b64 import b64url_decode, b64url_encode
from ..protocol._jcs import canonical_json
from ._keys import AgentKey
from ._signer import verify_signature

__all__ = ["sign_record", "verify_record", "verify_signature"]

_RECORD_TYPE = "mpp-client/record/v1"


def _record_message(record: Mapping[str, Any]) -> bytes:
    # The type tag keeps a record signature from ever passing as a signature
    # over something else the same key signs (a voucher, another version).
    return canonical_json({"type": _RECORD_TYPE, "record": record})


def sign_record(agent: AgentKey, record: Mapping[str, Any]) -> str:
    """The agent's signature over a decision or ledger record, as unpadded base64url.

    What is signed is the RFC 8785 canonical JSON of
    ``{"type": "mpp-client/record/v1", "record": record}``, so any party can
    re-serialize the record and check it. ``record`` must be JSON-representable
    (``TypeError``/``ValueError`` otherwise); keep amounts as strings.
    """
    if not isinstance(agent, AgentKey):
        raise TypeError("records are signed with an AgentKey")
    if not isinstance(record, Mapping):
        raise TypeError("a record is a JSON object (a Mapping)")
    return b64url_encode(agent.sign(_record_message(record)))


def verify_record(did: str, record: Mapping[str, Any], signature: str) -> bool:
    """True when ``signature`` is ``did``'s :func:`sign_record` signature over ``record``.

    False (never an exception) for a tampered record, another signer, a
    malformed signature string or a record that is not JSON-representable.
    """
    try:
        if not isinstance(record, Mapping):
            raise TypeError("not a Mapping")
        message = _record_message(record)
        raw = b64url_decode(signature)
    except (TypeError, ValueError):
        return False
    return verify_signature(did, message, raw)
