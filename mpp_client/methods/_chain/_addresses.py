"""Addresses and payer ids on eip155 chains: one reading of each, for every rail.

An address is 20 bytes written as ``0x`` and 40 hex digits. Mixed case is an
EIP-55 checksum and must be right (a mixed-case address that fails it is a
typo, and money sent to a typo is gone); all-lower and all-upper case carry
no checksum and are accepted as written. Whatever the input case, the layer
hands addresses on in their EIP-55 form, so the payee in a quote, a record
and a ledger is the same string however a server spelled it.
"""

from __future__ import annotations

import re

from eth_utils.address import to_checksum_address

from ..._exceptions import ChallengeError

__all__ = [
    "HEX_ADDRESS",
    "ZERO_ADDRESS",
    "checked_address",
    "did_pkh",
    "is_address",
    "parse_did_pkh",
    "same_address",
    "to_hex",
]

#: A 0x-prefixed 20-byte hex string, any case (checksum not checked).
HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
ZERO_ADDRESS = "0x" + "00" * 20
_DID_PKH = re.compile(r"did:pkh:eip155:([1-9][0-9]{0,19}):(0x[0-9a-fA-F]{40})")


def to_hex(data: bytes) -> str:
    """``0x``-prefixed lowercase hex."""
    return "0x" + data.hex()


def is_address(value: object) -> bool:
    """True for a 0x-prefixed 20-byte hex string whose mixed case, if any, is EIP-55."""
    if not isinstance(value, str) or HEX_ADDRESS.fullmatch(value) is None:
        return False
    body = value[2:]
    if body.lower() == body or body.upper() == body:
        return True
    return bool(to_checksum_address(value) == value)


def checked_address(value: object, what: str) -> str:
    """``value`` as an EIP-55 address, or :class:`~mpp_client.ChallengeError` naming ``what``.

    ``what`` is how the error names the field (``"evm charge recipient"``).
    """
    if not isinstance(value, str) or HEX_ADDRESS.fullmatch(value) is None:
        raise ChallengeError(f"{what} must be a 0x-prefixed 20-byte address, got {value!r:.50}")
    if not is_address(value):
        raise ChallengeError(f"{what} {value} fails its EIP-55 checksum (a mistyped address?)")
    return str(to_checksum_address(value))


def same_address(left: str, right: str) -> bool:
    """Compare two addresses by their 20-byte value, as the drafts require."""
    return left.lower() == right.lower()


def did_pkh(chain_id: int, address: str) -> str:
    """The payer's ``did:pkh:eip155:<chain>:<address>`` (EIP-55 address)."""
    return f"did:pkh:eip155:{chain_id}:{to_checksum_address(address)}"


def parse_did_pkh(source: str) -> tuple[int, str] | None:
    """``(chain_id, address)`` of a ``did:pkh:eip155`` DID, or None if it is not one."""
    match = _DID_PKH.fullmatch(source)
    if match is None or not is_address(match.group(2)):
        return None
    return int(match.group(1)), str(to_checksum_address(match.group(2)))
