"""The ``evm`` charge request, as the wallet and the test verifier both read it.

The terms (:func:`evm_terms`: the shared charge fields of :mod:`._terms`
plus Permit2, decimals, credential types and the spender), the hash that
binds a signature to one challenge (:func:`challenge_hash`, under the rule
:func:`challenge_binding` reads off the challenge; see
:mod:`mpp_client.methods.evm` for the peers' disagreement) and ERC-20
``transfer`` call data. Public through :mod:`mpp_client.methods.evm`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from ..._exceptions import ChallengeError
from ...protocol import Challenge
from ._addresses import checked_address
from ._terms import Split, chain_charge, primary_amount, text_memo

__all__ = [
    "CHALLENGE_BINDINGS",
    "CREDENTIAL_TYPES",
    "PERMIT2_ADDRESS",
    "TRANSFER_SELECTOR",
    "TRANSFER_TOPIC",
    "ChallengeBinding",
    "EvmTerms",
    "binding_name",
    "challenge_binding",
    "challenge_hash",
    "decode_transfer_calldata",
    "evm_terms",
    "selector",
    "transfer_calldata",
]

#: Uniswap's Permit2, at the same address on every chain it is deployed on.
PERMIT2_ADDRESS = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
#: The credential types of draft-evm-charge-00.
CREDENTIAL_TYPES: tuple[str, ...] = ("permit2", "authorization", "transaction", "hash")
TRANSFER_SELECTOR = bytes.fromhex("a9059cbb")
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()


# -- the challenge hash -----------------------------------------------------------


#: How a challenge is hashed into the 32 bytes a signature commits to.
ChallengeBinding = Literal["concat", "json-array"]
#: The rules, the draft's first.
CHALLENGE_BINDINGS: tuple[ChallengeBinding, ...] = ("concat", "json-array")
#: Names of earlier releases. "mppx" named the JSON-array rule, which mppx does
#: not use (pympp does); "draft" named the concatenation.
_OLD_BINDING_NAMES: Mapping[str, ChallengeBinding] = {"draft": "concat", "mppx": "json-array"}
#: pympp's marks on the challenges it issues (see :func:`challenge_binding`).
_PYMPP_REQUEST_MARK = "_mppx_scope"
_PYMPP_OPAQUE_MARK = "_mpp_nonce"


def binding_name(name: object, *, extra: tuple[str, ...] = ()) -> str:
    """``name`` as a current rule name (or one of ``extra``); old names warn."""
    if isinstance(name, str):
        if name in CHALLENGE_BINDINGS or name in extra:
            return name
        if name in _OLD_BINDING_NAMES:
            new = _OLD_BINDING_NAMES[name]
            warnings.warn(
                f"challenge hash scheme {name!r} is deprecated: it is the {new!r} rule; "
                f"pass {new!r}",
                DeprecationWarning,
                stacklevel=3,
            )
            return new
    known = ", ".join(repr(n) for n in (*extra, *CHALLENGE_BINDINGS))
    raise ValueError(f"unknown challenge hash scheme {name!r:.40} (known: {known})")


def challenge_hash(
    challenge_id: str,
    realm: str,
    scheme: ChallengeBinding | Literal["draft", "mppx"] = "concat",
) -> bytes:
    """The 32-byte hash that binds a signature to one challenge.

    ``"concat"``: ``keccak256`` of the id's UTF-8 bytes followed by the realm's,
    the draft's ``abi.encodePacked(id, realm)`` and mppx's rule.
    ``"json-array"``: ``keccak256`` of the compact JSON array ``[id, realm]``
    (``json.dumps(..., separators=(",", ":"), ensure_ascii=False)``, which is
    also what ``JSON.stringify`` writes), pympp's rule. The old names
    ``"draft"`` and ``"mppx"`` still work, with a ``DeprecationWarning``.
    ``ValueError`` for an unknown scheme or a string that is not valid Unicode.
    """
    rule = binding_name(scheme)
    try:
        if rule == "concat":
            return keccak(challenge_id.encode("utf-8") + realm.encode("utf-8"))
        text = json.dumps([challenge_id, realm], separators=(",", ":"), ensure_ascii=False)
        return keccak(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("the challenge id or realm is not valid Unicode") from None


def challenge_binding(challenge: Challenge) -> ChallengeBinding:
    """The rule the server that issued ``challenge`` hashes it with, as far as it shows.

    pympp 0.16 writes its route scope into every challenge's ``request`` as
    ``_mppx_scope`` (an object), and by default an issuance nonce into
    ``opaque`` as ``_mpp_nonce``; its servers hash with ``"json-array"``.
    mppx 0.11 keeps ``request`` to the method's schema (its own scope, when
    set, travels in ``opaque`` as a string) and hashes with ``"concat"``, as
    the draft does. A challenge with neither pympp mark gets the draft's rule.
    Both marks sit under the challenge's HMAC-bound id, so they are what the
    server issued.
    """
    if isinstance(challenge.request.get(_PYMPP_REQUEST_MARK), Mapping):
        return "json-array"
    if challenge.opaque is not None and _PYMPP_OPAQUE_MARK in challenge.opaque:
        return "json-array"
    return "concat"


# -- the request -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvmTerms:
    """An ``evm`` charge request, validated (addresses EIP-55, amounts as ints)."""

    amount: int
    currency: str
    recipient: str
    chain_id: int
    #: ``methodDetails.credentialTypes`` as listed (known types only); None if absent.
    credential_types: tuple[str, ...] | None
    permit2_address: str
    decimals: int | None
    splits: tuple[Split[str], ...]
    external_id: str | None
    #: The Permit2 spender the server named (``methodDetails.spender``), if any.
    spender: str | None
    expires: datetime | None

    @property
    def primary_amount(self) -> int:
        """What the primary recipient receives: the amount less every split."""
        return primary_amount(self.amount, self.splits)

    @property
    def offered_types(self) -> tuple[str, ...]:
        """The types the server accepts; the draft's default when it lists none."""
        if self.credential_types is None:
            return ("transaction", "hash")
        return self.credential_types


def evm_terms(challenge: Challenge) -> EvmTerms:
    """Read and check an ``evm`` charge request. Raises :class:`ChallengeError`.

    The shared fields (amount, token, recipient, chain id, splits with text
    memos) are read by :func:`~mpp_client.methods._chain._terms.chain_charge`;
    the ``evm`` ones (Permit2, decimals, credential types, spender) here.
    """
    charge = chain_charge(
        challenge, "evm", positive_amount=True, chain_required=True, split_memo=text_memo
    )
    assert charge.chain_id is not None  # chain_required
    details = charge.details
    permit2_raw = details.get("permit2Address", PERMIT2_ADDRESS)
    permit2 = checked_address(permit2_raw, "methodDetails.permit2Address")
    decimals = details.get("decimals")
    if decimals is not None and (
        isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 36
    ):
        raise ChallengeError("methodDetails.decimals must be an integer from 0 to 36")
    types = details.get("credentialTypes")
    credential_types: tuple[str, ...] | None = None
    if types is not None:
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types) or not types:
            raise ChallengeError(
                "methodDetails.credentialTypes must be a non-empty list of strings"
            )
        known = tuple(dict.fromkeys(t for t in types if t in CREDENTIAL_TYPES))
        if not known:
            raise ChallengeError(
                f"methodDetails.credentialTypes lists no supported type "
                f"(offered {', '.join(str(t)[:20] for t in types[:5])}; "
                f"known: {', '.join(CREDENTIAL_TYPES)})"
            )
        credential_types = known
    spender_raw = details.get("spender")
    spender = None if spender_raw is None else checked_address(spender_raw, "methodDetails.spender")
    return EvmTerms(
        amount=charge.amount,
        currency=charge.currency,
        recipient=charge.recipient,
        chain_id=charge.chain_id,
        credential_types=credential_types,
        permit2_address=permit2,
        decimals=decimals,
        splits=charge.splits,
        external_id=charge.external_id,
        spender=spender,
        expires=charge.expires,
    )


# -- call data ---------------------------------------------------------------------


def transfer_calldata(to: str, amount: int) -> bytes:
    """ERC-20 ``transfer(to, amount)`` call data."""
    return TRANSFER_SELECTOR + abi_encode(["address", "uint256"], [to_checksum_address(to), amount])


def decode_transfer_calldata(data: bytes) -> tuple[str, int]:
    """``(to, amount)`` of ERC-20 ``transfer`` call data; ValueError otherwise."""
    if len(data) != 68 or data[:4] != TRANSFER_SELECTOR:
        raise ValueError("call data is not transfer(address,uint256)")
    to, amount = abi_decode(["address", "uint256"], data[4:])
    return to_checksum_address(to), int(amount)


def selector(signature: str) -> bytes:
    """The 4-byte function selector of ``signature`` (``"transfer(address,uint256)"``)."""
    return keccak(text=signature)[:4]
