"""The ``tempo`` charge request, as the wallet and the test verifier both read it.

The terms (:func:`tempo_terms`: the shared charge fields of :mod:`._terms`
plus the fee payer, the request memo and the modes) and the MPP attribution
memo that binds a transfer to one challenge (:func:`attribution_memo`; see
:mod:`mpp_client.methods.tempo` for why). Public through
:mod:`mpp_client.methods.tempo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from eth_utils.crypto import keccak

from ..._exceptions import ChallengeError
from ...protocol import Challenge
from ._terms import ChainCharge, Split, chain_charge, memo32, primary_amount

__all__ = [
    "ATTRIBUTION_TAG",
    "ATTRIBUTION_VERSION",
    "MODES",
    "PATH_USD",
    "AttributionMemo",
    "TempoTerms",
    "Transfer",
    "attribution_memo",
    "memo_binds",
    "parse_attribution_memo",
    "tempo_terms",
]

#: pathUSD, the TIP-20 USD stablecoin at the same address on every Tempo chain.
PATH_USD = "0x20c0000000000000000000000000000000000000"
#: The non-zero modes of a tempo charge: the server broadcasts, or the wallet does.
MODES: tuple[str, ...] = ("pull", "push")
#: The first 4 bytes of keccak256("mpp"): the tag that opens an MPP attribution memo.
ATTRIBUTION_TAG = keccak(b"mpp")[:4]
#: The attribution memo layout this module writes and reads.
ATTRIBUTION_VERSION = 1

# -- the attribution memo --------------------------------------------------------


def _fingerprint(text: str, size: int) -> bytes:
    return bytes(keccak(text.encode("utf-8"))[:size])


@dataclass(frozen=True, slots=True)
class AttributionMemo:
    """The fields of an MPP attribution memo (see :func:`attribution_memo`)."""

    version: int
    #: keccak256(server id)[:10]; the server id is the challenge's realm.
    server: bytes
    #: keccak256(client id)[:10], or None for an anonymous client (ten zero bytes).
    client: bytes | None
    #: keccak256(challenge id)[:7].
    nonce: bytes

    def binds(self, challenge_id: str, realm: str) -> bool:
        """True when the memo names this realm and this challenge."""
        return self.server == _fingerprint(realm, 10) and self.nonce == _fingerprint(
            challenge_id, 7
        )


def attribution_memo(challenge_id: str, realm: str, client_id: str | None = None) -> bytes:
    """The 32-byte MPP attribution memo that binds a transfer to one challenge.

    Not in the drafts: both reference SDKs (pympp 0.16, mppx 0.11) write it on
    the primary ``transferWithMemo`` when the request names no memo, and their
    servers refuse a transfer without it ("memo is not bound to this
    challenge"). It is what stops one on-chain transfer from paying two
    challenges (a pushed hash replayed under another challenge). Layout:
    ``ATTRIBUTION_TAG`` (4 bytes), the version (1 byte, 1),
    keccak256(realm)[:10], keccak256(client_id)[:10] or ten zero bytes when
    ``client_id`` is empty or None, keccak256(challenge_id)[:7]. Strings are
    hashed as UTF-8.
    """
    client = _fingerprint(client_id, 10) if client_id else bytes(10)
    return (
        ATTRIBUTION_TAG
        + bytes([ATTRIBUTION_VERSION])
        + _fingerprint(realm, 10)
        + client
        + _fingerprint(challenge_id, 7)
    )


def parse_attribution_memo(memo: bytes) -> AttributionMemo | None:
    """The fields of ``memo`` when it is an MPP attribution memo, else None.

    A memo is one when it is 32 bytes, opens with ``ATTRIBUTION_TAG`` and
    carries version 1; any other ``bytes32`` is an ordinary memo.
    """
    if len(memo) != 32 or memo[:4] != ATTRIBUTION_TAG or memo[4] != ATTRIBUTION_VERSION:
        return None
    client = bytes(memo[15:25])
    return AttributionMemo(
        version=memo[4],
        server=bytes(memo[5:15]),
        client=None if client == bytes(10) else client,
        nonce=bytes(memo[25:32]),
    )


def memo_binds(memo: bytes, challenge_id: str, realm: str) -> bool:
    """True when ``memo`` is an attribution memo bound to this challenge and realm."""
    parsed = parse_attribution_memo(memo)
    return parsed is not None and parsed.binds(challenge_id, realm)


# -- terms -----------------------------------------------------------------------


#: One TIP-20 transfer of a charge: ``amount`` base units to ``recipient``, with a
#: ``bytes32`` memo or none (the shared :class:`~mpp_client.methods._chain._terms.Split`).
Transfer = Split


@dataclass(frozen=True, slots=True)
class TempoTerms:
    """A ``tempo`` charge request, validated (see :func:`tempo_terms`)."""

    amount: int
    currency: str
    recipient: str
    chain_id: int | None
    fee_payer: bool
    memo: bytes | None
    splits: tuple[Split[bytes], ...]
    #: The non-zero modes the server accepts (both when it does not say).
    modes: tuple[str, ...]
    expires: datetime | None
    external_id: str | None

    @property
    def primary_amount(self) -> int:
        """What the recipient receives: ``amount`` minus the splits."""
        return primary_amount(self.amount, self.splits)

    @property
    def transfers(self) -> tuple[Split[bytes], ...]:
        """Every transfer, in the order the wallet emits them: primary, then the splits."""
        return (Split(self.recipient, self.primary_amount, self.memo), *self.splits)


def tempo_terms(challenge: Challenge) -> TempoTerms:
    """Read and check a ``tempo`` charge request. Raises :class:`ChallengeError`.

    Checks the shapes of every field the draft defines, and that the splits
    are positive and add up to strictly less than ``amount``. The chain id is
    returned as the challenge gives it (None when absent): whether it is one
    to pay on is the wallet's decision.
    """
    if challenge.intent != "charge":
        raise ChallengeError(f"tempo intent {challenge.intent!r} is not supported (only charge)")
    charge: ChainCharge[bytes] = chain_charge(
        challenge, "tempo", positive_amount=False, chain_required=False, split_memo=memo32
    )
    details = charge.details
    fee_payer = details.get("feePayer", False)
    if not isinstance(fee_payer, bool):
        raise ChallengeError("tempo charge methodDetails.feePayer must be a boolean")
    memo = memo32(details.get("memo"), "tempo charge methodDetails.memo")
    modes = details.get("supportedModes")
    if modes is None:
        accepted: tuple[str, ...] = MODES
    else:
        if not isinstance(modes, list) or not all(isinstance(m, str) for m in modes):
            raise ChallengeError(
                "tempo charge methodDetails.supportedModes must be a list of strings"
            )
        accepted = tuple(mode for mode in MODES if mode in modes)
        if not accepted:
            raise ChallengeError(
                "tempo charge methodDetails.supportedModes names neither 'pull' nor 'push'"
            )
    return TempoTerms(
        amount=charge.amount,
        currency=charge.currency,
        recipient=charge.recipient,
        chain_id=charge.chain_id,
        fee_payer=fee_payer,
        memo=memo,
        splits=charge.splits,
        modes=accepted,
        expires=charge.expires,
        external_id=charge.external_id,
    )
