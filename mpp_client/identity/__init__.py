"""Ed25519 identities for agents and owners, and where their keys live.

An *owner* (a person or the service that runs agents) signs mandates that
delegate a spending policy to an *agent*; the agent signs the records of what
it decided, so the owner can later prove which agent authorized which payment.
Both are Ed25519 keys named by their ``did:key``::

    owner = OwnerKey.generate()
    agent = AgentKey.generate()
    agent.save("agent.key", passphrase)          # encrypted, mode 0600
    agent = AgentKey.load("agent.key", passphrase)

Every signature goes through the signer seam (:class:`Ed25519Signer`,
:class:`Secp256k1Signer`), so a key can also live outside the process; see
docs/keys.md.

The modules, one concern each: ``_signer`` (the seam and
:func:`verify_signature`), ``_local`` (the in-process signer), ``_keys``
(:class:`AgentKey`, :class:`OwnerKey`), ``_keystore`` (the encrypted file
format), ``_keyring`` (keys in the OS keyring), ``_pkcs11`` (keys in a
PKCS#11 token), ``_ethereum`` (secp256k1 signers and the encodings EVM and
Tempo wallets sign), ``_records`` (record signatures), ``_files`` (atomic
writes and bounded reads, shared with mandates and the EVM wallet).
"""

from __future__ import annotations

from ._ethereum import (
    LocalSecp256k1Signer,
    recover_address,
    recoverable_signature,
    sign_transaction,
    sign_typed_data,
    typed_data_digest,
)
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
from ._local import LocalEd25519Signer
from ._pkcs11 import Pkcs11Ed25519Signer, Pkcs11Secp256k1Signer, Pkcs11Token
from ._records import sign_record, verify_record
from ._signer import (
    LOCATIONS,
    Ed25519Signer,
    Location,
    RecoverableSignature,
    Secp256k1Signer,
    Signer,
    SignerError,
    verify_signature,
)

__all__ = [
    "KDF_MEMLIMIT_INTERACTIVE",
    "KDF_MEMLIMIT_MIN",
    "KDF_MEMLIMIT_MODERATE",
    "KDF_OPSLIMIT_INTERACTIVE",
    "KDF_OPSLIMIT_MIN",
    "KDF_OPSLIMIT_MODERATE",
    "LOCATIONS",
    "AgentKey",
    "Ed25519Signer",
    "LocalEd25519Signer",
    "LocalSecp256k1Signer",
    "Location",
    "OwnerKey",
    "Pkcs11Ed25519Signer",
    "Pkcs11Secp256k1Signer",
    "Pkcs11Token",
    "RecoverableSignature",
    "Secp256k1Signer",
    "Signer",
    "SignerError",
    "read_keystore",
    "recover_address",
    "recoverable_signature",
    "sign_record",
    "sign_transaction",
    "sign_typed_data",
    "typed_data_digest",
    "verify_record",
    "verify_signature",
    "write_keystore",
]
