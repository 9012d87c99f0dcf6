"""Every EIP-712 message the wallets sign, and the digests a server checks.

``evm``: EIP-3009 ``TransferWithAuthorization`` (:func:`authorization_digest`)
and Permit2's ``PermitWitnessTransferFrom`` / ``PermitBatchWitnessTransferFrom``
with the draft's ``PaymentWitness`` (:func:`permit2_digest`). ``tempo``: the
zero-amount ``Proof`` (:func:`proof_typed_data`, hashed by
:func:`~._signing.typed_data_digest`).

The Permit2 digest is built here field by field rather than by a generic
EIP-712 encoder: the draft's witness type string has a space after the comma
(``bytes32 challengeHash, string externalId``), which is hashed, and which a
generic encoder, writing type strings from field lists, cannot produce.
The EIP-3009 digest is built the same way so both read alike; a test checks
it against eth-account's encoder, and the test verifier recomputes it with
that encoder, independently of this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from ._signing import typed_data_digest

__all__ = [
    "EIP712_DOMAIN_FIELDS",
    "PAYMENT_WITNESS_TYPE",
    "PERMIT2_WITNESS_TYPE_STRING",
    "PROOF_VERSIONS",
    "authorization_digest",
    "eip3009_domain_separator",
    "payment_witness_hash",
    "permit2_digest",
    "proof_digest",
    "proof_typed_data",
]

#: The draft's witness type string, exactly (it is hashed, so every byte counts).
PERMIT2_WITNESS_TYPE_STRING = (
    "PaymentWitness witness)PaymentWitness(bytes32 challengeHash, string externalId)"
    "TokenPermissions(address token,uint256 amount)"
)
PAYMENT_WITNESS_TYPE = "PaymentWitness(bytes32 challengeHash, string externalId)"

_SINGLE_STUB = (
    "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,"
    "uint256 nonce,uint256 deadline,"
)
_BATCH_STUB = (
    "PermitBatchWitnessTransferFrom(TokenPermissions[] permitted,address spender,"
    "uint256 nonce,uint256 deadline,"
)
_TOKEN_PERMISSIONS_TYPEHASH = keccak(text="TokenPermissions(address token,uint256 amount)")
_PERMIT2_DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,uint256 chainId,address verifyingContract)"
)
_EIP3009_DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak(
    text="TransferWithAuthorization(address from,address to,uint256 value,"
    "uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)


def eip3009_domain_separator(name: str, version: str, chain_id: int, token: str) -> bytes:
    """The EIP-712 domain separator of a token's EIP-3009 authorizations."""
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                _EIP3009_DOMAIN_TYPEHASH,
                keccak(text=name),
                keccak(text=version),
                chain_id,
                to_checksum_address(token),
            ],
        )
    )


def authorization_digest(
    domain_separator: bytes,
    *,
    sender: str,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
) -> bytes:
    """The EIP-712 digest a ``transferWithAuthorization`` signature signs."""
    struct = keccak(
        abi_encode(
            ["bytes32", "address", "address", "uint256", "uint256", "uint256", "bytes32"],
            [
                _TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
                to_checksum_address(sender),
                to_checksum_address(to),
                value,
                valid_after,
                valid_before,
                nonce,
            ],
        )
    )
    return keccak(b"\x19\x01" + domain_separator + struct)


def payment_witness_hash(chash: bytes, external_id: str) -> bytes:
    """The struct hash of the draft's ``PaymentWitness`` (Permit2's ``witness``)."""
    return keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32"],
            [keccak(text=PAYMENT_WITNESS_TYPE), chash, keccak(text=external_id)],
        )
    )


def permit2_digest(
    *,
    chain_id: int,
    permit2: str,
    permitted: Sequence[tuple[str, int]],
    spender: str,
    nonce: int,
    deadline: int,
    witness: bytes,
) -> bytes:
    """The EIP-712 digest of a Permit2 witness transfer (batch form for >1 permission)."""
    domain = keccak(
        abi_encode(
            ["bytes32", "bytes32", "uint256", "address"],
            [_PERMIT2_DOMAIN_TYPEHASH, keccak(text="Permit2"), chain_id, permit2],
        )
    )
    hashes = [
        keccak(
            abi_encode(
                ["bytes32", "address", "uint256"],
                [_TOKEN_PERMISSIONS_TYPEHASH, to_checksum_address(token), amount],
            )
        )
        for token, amount in permitted
    ]
    if len(hashes) == 1:
        typehash = keccak(text=_SINGLE_STUB + PERMIT2_WITNESS_TYPE_STRING)
        permissions = hashes[0]
    else:
        typehash = keccak(text=_BATCH_STUB + PERMIT2_WITNESS_TYPE_STRING)
        permissions = keccak(b"".join(hashes))
    struct = keccak(
        abi_encode(
            ["bytes32", "bytes32", "address", "uint256", "uint256", "bytes32"],
            [typehash, permissions, to_checksum_address(spender), nonce, deadline, witness],
        )
    )
    return keccak(b"\x19\x01" + domain + struct)


# -- the Tempo proof ---------------------------------------------------------------

#: The ``EIP712Domain`` fields of the proof (no ``verifyingContract``).
EIP712_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
]
_PROOF_FIELDS: Mapping[int, list[dict[str, str]]] = {
    1: [{"name": "challengeId", "type": "string"}],
    2: [{"name": "challengeId", "type": "string"}, {"name": "realm", "type": "string"}],
    3: [
        {"name": "account", "type": "address"},
        {"name": "challengeId", "type": "string"},
        {"name": "realm", "type": "string"},
    ],
}
#: The proof versions :func:`proof_typed_data` builds.
PROOF_VERSIONS = tuple(_PROOF_FIELDS)


def proof_typed_data(
    *,
    chain_id: int,
    challenge_id: str,
    realm: str,
    account: str | None = None,
    version: int = 2,
) -> dict[str, Any]:
    """The EIP-712 typed data a zero-amount Tempo ``proof`` signs.

    ``version`` 1 is draft-tempo-charge-00 (``challengeId``), 2 the conformance
    vector (``challengeId``, ``realm``), 3 mppx 0.11 (``account``,
    ``challengeId``, ``realm``; ``account`` is then required). Returns the
    ``domain``/``types``/``primaryType``/``message`` object without the
    implicit ``EIP712Domain`` type.
    """
    if version not in _PROOF_FIELDS:
        raise ValueError(f"proof version must be 1, 2 or 3, not {version!r}")
    message: dict[str, Any] = {"challengeId": challenge_id}
    if version >= 2:
        message["realm"] = realm
    if version == 3:
        if account is None:
            raise ValueError("a version 3 proof names the payer's account")
        message = {"account": to_checksum_address(account), **message}
    return {
        "domain": {"name": "MPP", "version": str(version), "chainId": chain_id},
        "types": {"Proof": [dict(field) for field in _PROOF_FIELDS[version]]},
        "primaryType": "Proof",
        "message": message,
    }


def proof_digest(typed: Mapping[str, Any]) -> bytes:
    """The digest a signer signs for ``typed`` (a :func:`proof_typed_data` object)."""
    types = {"EIP712Domain": EIP712_DOMAIN_FIELDS, **typed["types"]}
    return typed_data_digest({**typed, "types": types})
