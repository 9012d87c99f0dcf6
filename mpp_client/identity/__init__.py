"""Ed25519 identities for agents and owners, and where their keys live.

An *owner* (a person or the service that runs agents) signs mandates that
delegate a spending policy to an *agent*; the agent signs the records of what
it decided, so the owner can later prove which agent authorized which payment.
Both are Ed25519 keys named by their ``did:key``::

    owner = OwnerKey.generate()
    agent = AgentKey.generate()
    agent.save("agent.key", passphrase)          # encrypted, mode 0600
    agent = AgentKey.load("agent.key", passphrase)

The modules, one concern each: ``_keys`` (:class:`AgentKey`,
:class:`OwnerKey`), ``_keystore`` (the encrypted file format), ``_files``
(atomic writes and bounded reads, shared with mandates and the EVM wallet),
``_records`` (record signatures and :func:`verify_signature`).
"""

from __future__ import annotations

from ._files import read_keystore, write_keystore
from ._keys import AgentKey, OwnerKey
from ._keystore import (
    KDF_MEMLIMIT_INTERACTIVE,
    KDF_MEMLIMIT_MIN,
    KDF_MEMLIMIT_MODERATE,
    KDF_OPSLIMIT_INTERACTIVE,
    KDF_OPSLIMIT_MIN,
    KDF_OPSLIMIT_MODERATE,
)
from ._records import sign_record, verify_record, verify_signature

__all__ = [
    "KDF_MEMLIMIT_INTERACTIVE",
    "KDF_MEMLIMIT_MIN",
    "KDF_MEMLIMIT_MODERATE",
    "KDF_OPSLIMIT_INTERACTIVE",
    "KDF_OPSLIMIT_MIN",
    "KDF_OPSLIMIT_MODERATE",
    "AgentKey",
    "OwnerKey",
    "read_keystore",
    "sign_record",
    "verify_record",
    "verify_signature",
    "write_keystore",
]
