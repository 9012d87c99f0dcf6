"""The charge fields the ``evm`` and ``tempo`` rails share, read once.

Both drafts describe the same charge: ``amount`` base units of the token at
``currency`` for ``recipient`` on ``methodDetails.chainId``, optionally split
(``methodDetails.splits``: some of the amount to other recipients, the rest to
``recipient``). :func:`chain_charge` reads those fields with one set of rules
and one wording for every refusal, and each rail reads its own fields on top.

Where the rails really differ, the difference is a parameter:

``positive_amount``
    An ``evm`` charge pays something; a zero ``tempo`` charge asks for a
    proof instead (nothing moves).
``chain_required``
    An ``evm`` request must name its chain; a ``tempo`` request may leave it
    to the wallet's configuration (the drafts disagree on a default).
``split_memo``
    How a split's ``memo`` is read: free text of at most 256 characters for
    ``evm`` (:func:`text_memo`; the draft carries it, nothing pays it), a
    ``bytes32`` for ``tempo`` (:func:`memo32`; it goes on chain with a
    ``transferWithMemo``).

Every address comes back in its EIP-55 form; the zero address is never a
recipient (paying it burns the money); splits are at most
:data:`MAX_SPLITS`, each positive, adding up to strictly less than the amount
(so the recipient always receives something).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from ..._exceptions import ChallengeError
from ...protocol import BASE_UNITS, Challenge, charge_terms
from ._addresses import ZERO_ADDRESS, checked_address, same_address

__all__ = [
    "MAX_CHAIN_ID",
    "MAX_SPLITS",
    "MAX_TEXT_MEMO",
    "POSITIVE_UNITS",
    "UINT256_MAX",
    "ChainCharge",
    "Split",
    "chain_charge",
    "chain_id",
    "memo32",
    "primary_amount",
    "read_splits",
    "text_memo",
    "uint256",
    "units",
]

#: :data:`~mpp_client.protocol.BASE_UNITS` without zero: a positive amount.
POSITIVE_UNITS = re.compile(r"[1-9][0-9]{0,77}")
UINT256_MAX = 2**256 - 1
#: Chain ids are below 2^64 (EIP-2294); anything larger is not a chain.
MAX_CHAIN_ID = 2**64 - 1
#: The most splits a wallet signs for: each is a transfer the payer pays for.
MAX_SPLITS = 10
#: The longest free-text split memo an ``evm`` request may carry.
MAX_TEXT_MEMO = 256
_BYTES32 = re.compile(r"0x[0-9a-fA-F]{64}")

M = TypeVar("M")


def uint256(value: object, *, positive: bool = False) -> int | None:
    """``value`` as an int when it is a base-unit digit string that fits a uint256, else None.

    The wire form of every amount both rails carry (``"250000"``): no sign, no
    leading zeros, no JSON number (a float cannot be trusted to carry money).
    """
    pattern = POSITIVE_UNITS if positive else BASE_UNITS
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        return None
    number = int(value)
    return number if number <= UINT256_MAX else None


def units(value: object, what: str, *, positive: bool = False) -> int:
    """:func:`uint256`, or :class:`~mpp_client.ChallengeError` naming ``what``."""
    pattern = POSITIVE_UNITS if positive else BASE_UNITS
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        kind = "positive base-unit digits" if positive else "base-unit digits"
        raise ChallengeError(f"{what} must be a string of {kind}, got {value!r:.40}")
    number = int(value)
    if number > UINT256_MAX:
        raise ChallengeError(f"{what} does not fit in a uint256")
    return number


def chain_id(value: object, rail: str) -> int:
    """``methodDetails.chainId``: a JSON integer (not a string, not a boolean) from 1 to 2^64-1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_CHAIN_ID:
        raise ChallengeError(
            f"{rail} charge request needs a positive integer methodDetails.chainId, "
            f"got {value!r:.40}"
        )
    return value


def memo32(value: object, what: str) -> bytes | None:
    """A ``bytes32`` memo (``0x`` and 64 hex digits) as bytes; None when absent."""
    if value is None:
        return None
    if not isinstance(value, str) or _BYTES32.fullmatch(value) is None:
        raise ChallengeError(f"{what} must be a 0x-prefixed bytes32 hex string")
    return bytes.fromhex(value[2:])


def text_memo(value: object, what: str) -> str | None:
    """A free-text memo of at most :data:`MAX_TEXT_MEMO` characters; None when absent."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT_MEMO:
        raise ChallengeError(f"{what} must be a string of at most {MAX_TEXT_MEMO} characters")
    return value


@dataclass(frozen=True, slots=True)
class Split(Generic[M]):
    """One transfer of a charge: ``amount`` base units to ``recipient`` (EIP-55).

    ``memo`` is what the rail reads a memo as (``str`` for ``evm``, ``bytes``
    for ``tempo``). The primary transfer of a Tempo charge is one too.
    """

    recipient: str
    amount: int
    memo: M | None = None


def primary_amount(amount: int, splits: tuple[Split[Any], ...]) -> int:
    """What the primary recipient receives: the amount less every split."""
    return amount - sum(split.amount for split in splits)


def read_splits(
    raw: object,
    amount: int,
    *,
    rail: str,
    memo: Callable[[object, str], M | None],
) -> tuple[Split[M], ...]:
    """``methodDetails.splits``, checked (see the module notes); ``()`` when absent."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise ChallengeError(
            f"{rail} charge methodDetails.splits must be a non-empty list when present"
        )
    if len(raw) > MAX_SPLITS:
        raise ChallengeError(
            f"{rail} charge methodDetails.splits has {len(raw)} entries, over {MAX_SPLITS}"
        )
    splits: list[Split[M]] = []
    for index, entry in enumerate(raw):
        what = f"{rail} charge split {index}"
        if not isinstance(entry, dict):
            raise ChallengeError(f"{what} must be an object")
        recipient = checked_address(entry.get("recipient"), f"{what} recipient")
        if same_address(recipient, ZERO_ADDRESS):
            raise ChallengeError(f"{what} recipient is the zero address")
        value = units(entry.get("amount"), f"{what} amount", positive=True)
        splits.append(Split(recipient, value, memo(entry.get("memo"), f"{what} memo")))
    total = sum(split.amount for split in splits)
    if total >= amount:
        raise ChallengeError(
            f"{rail} charge splits add up to {total} base units, not less than the amount "
            f"{amount}: the recipient would receive nothing"
        )
    return tuple(splits)


@dataclass(frozen=True, slots=True)
class ChainCharge(Generic[M]):
    """A charge on an eip155 chain, as both rails read it (see :func:`chain_charge`)."""

    amount: int
    #: The token, EIP-55.
    currency: str
    #: Who receives the amount less the splits, EIP-55 (never the zero address).
    recipient: str
    #: ``methodDetails.chainId``; None when the request names none (``tempo`` only).
    chain_id: int | None
    splits: tuple[Split[M], ...]
    expires: datetime | None
    external_id: str | None
    #: ``methodDetails`` as sent, for the rail's own fields.
    details: Mapping[str, Any]

    @property
    def primary_amount(self) -> int:
        """What ``recipient`` receives: the amount less every split."""
        return primary_amount(self.amount, self.splits)


def chain_charge(
    challenge: Challenge,
    rail: str,
    *,
    positive_amount: bool,
    chain_required: bool,
    split_memo: Callable[[object, str], M | None],
) -> ChainCharge[M]:
    """Read and check the shared charge fields. Raises :class:`~mpp_client.ChallengeError`."""
    terms = charge_terms(challenge)
    amount = terms.amount
    if amount > UINT256_MAX:
        raise ChallengeError(f"{rail} charge amount does not fit in a uint256")
    if positive_amount and amount <= 0:
        raise ChallengeError(f"{rail} charge amount must be positive")
    currency = checked_address(terms.currency, f"{rail} charge currency")
    if terms.recipient is None:
        raise ChallengeError(f"{rail} charge request has no 'recipient'")
    recipient = checked_address(terms.recipient, f"{rail} charge recipient")
    if same_address(recipient, ZERO_ADDRESS):
        raise ChallengeError(f"{rail} charge recipient is the zero address")
    details = terms.method_details
    raw_chain = details.get("chainId")
    chain = None if raw_chain is None and not chain_required else chain_id(raw_chain, rail)
    splits = read_splits(details.get("splits"), amount, rail=rail, memo=split_memo)
    return ChainCharge(
        amount=amount,
        currency=currency,
        recipient=recipient,
        chain_id=chain,
        splits=splits,
        expires=terms.expires,
        external_id=terms.external_id,
        details=details,
    )
