"""Tempo transactions signed through the seam: the sender's ``0x76``, the ``0x78`` hand-off
and the fee payer's co-signature.

pytempo builds the transactions and their signing payloads (``0x76`` for the
sender, with the fee-payer placeholder when a fee payer is expected; ``0x78``
for the fee payer); the digests are signed by a
:class:`~._signing.DigestSigner`, so the key never leaves it. Needs the
``tempo`` extra.
"""

from __future__ import annotations

from typing import Any

import attrs
import rlp  # type: ignore[import-untyped]
from pytempo import Signature as TempoSignature  # type: ignore[import-untyped]

from ._signing import DigestSigner, sign

__all__ = ["FEE_PAYER_ENVELOPE_TYPE", "cosign_as_fee_payer", "fee_payer_envelope", "sign_as_sender"]

#: Type byte of the fee-payer hand-off envelope (and of the fee payer's signing domain).
FEE_PAYER_ENVELOPE_TYPE = 0x78


def _tempo_signature(signer: DigestSigner, digest: bytes) -> Any:
    signature = sign(signer, bytes(digest))
    # v as 27/28, as eth-account and the reference SDKs write a sender signature.
    return TempoSignature(r=signature.r, s=signature.s, v=signature.v)


def sign_as_sender(signer: DigestSigner, tx: Any) -> Any:
    """``tx`` (a pytempo ``TempoTransaction``) with the sender's signature and address."""
    digest = tx.get_signing_hash(for_fee_payer=False)
    return attrs.evolve(
        tx, sender_signature=_tempo_signature(signer, digest), sender_address=signer.address
    )


def cosign_as_fee_payer(signer: DigestSigner, tx: Any) -> Any:
    """``tx``, already signed by its sender, with the fee payer's signature too."""
    digest = tx.get_signing_hash(for_fee_payer=True)
    return attrs.evolve(tx, fee_payer_signature=_tempo_signature(signer, digest))


def fee_payer_envelope(tx: Any) -> bytes:
    """``0x78 || rlp([...])``: the sender-signed fields, the sender in the fee-payer slot.

    The fields are those of the ``0x76`` transaction with ``feeToken`` empty
    (the fee payer picks it), the sender's 20-byte address where the fee
    payer's signature goes, and the sender's 65-byte signature last. The
    fee payer rebuilds the ``0x76`` signing payload (``feeToken`` empty,
    ``0x00`` placeholder) to recover the sender, then co-signs.
    """
    fields = [
        tx.chain_id,
        tx.max_priority_fee_per_gas,
        tx.max_fee_per_gas,
        tx.gas_limit,
        [call.as_rlp_list() for call in tx.calls],
        [],  # access list
        tx.nonce_key,
        tx.nonce,
        b"" if tx.valid_before is None else tx.valid_before,
        b"" if tx.valid_after is None else tx.valid_after,
        b"",  # fee token: chosen by the fee payer
        bytes(tx.sender_address),
        [],  # Tempo authorization list
        tx.sender_signature.to_bytes(),
    ]
    return bytes([FEE_PAYER_ENVELOPE_TYPE]) + bytes(rlp.encode(fields))
