"""What a receipt's logs say moved: one reading of ERC-20 and TIP-20 transfer events.

Both test verifiers (and the tests) read settlements from the logs of the
mined receipt, in the node's JSON form. A TIP-20 ``transferWithMemo`` emits
``Transfer`` and then ``TransferWithMemo`` for the same movement:
:func:`movements_in` counts the pair once, with its memo. An ERC-20 only
emits ``Transfer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from ..methods._chain._addresses import same_address
from ..methods._chain._evm_charge import TRANSFER_TOPIC

__all__ = [
    "TRANSFER_TOPIC",
    "TRANSFER_WITH_MEMO_TOPIC",
    "Movement",
    "movements_in",
    "transfers_in",
]

#: keccak256("TransferWithMemo(address,address,uint256,bytes32)"): TIP-20's memo event.
TRANSFER_WITH_MEMO_TOPIC = (
    "0x" + keccak(text="TransferWithMemo(address,address,uint256,bytes32)").hex()
)


@dataclass(frozen=True, slots=True)
class Movement:
    """One transfer of a token: from a transaction's call or from a receipt's logs."""

    sender: str
    recipient: str
    amount: int
    memo: bytes | None = None


def movements_in(receipt: Mapping[str, Any], token: str) -> list[Movement]:
    """Every transfer of ``token`` a receipt's logs record, once each.

    A TIP-20 ``transferWithMemo`` emits both ``Transfer`` and
    ``TransferWithMemo``: the pair counts as one movement, with its memo.
    Movements are in log order.
    """
    found: list[Movement | None] = []
    for log in receipt.get("logs") or ():
        topics = [str(topic).lower() for topic in log.get("topics") or ()]
        if not same_address(str(log.get("address", "")), token) or len(topics) < 3:
            continue
        sender = to_checksum_address("0x" + topics[1][-40:])
        recipient = to_checksum_address("0x" + topics[2][-40:])
        data = str(log.get("data", "0x"))
        amount = int(data[2:66] or "0", 16)
        if topics[0] == TRANSFER_TOPIC and len(topics) == 3:
            found.append(Movement(sender, recipient, amount))
        elif topics[0] == TRANSFER_WITH_MEMO_TOPIC and len(topics) == 4:
            twin = Movement(sender, recipient, amount)
            # The plain Transfer this event accompanies (emitted just before it) is the
            # same movement: the memo event replaces it.
            for index in range(len(found) - 1, -1, -1):
                if found[index] == twin:
                    found[index] = None
                    break
            found.append(Movement(sender, recipient, amount, bytes.fromhex(topics[3][2:])))
    return [movement for movement in found if movement is not None]


def transfers_in(receipt: Mapping[str, Any], token: str) -> list[tuple[str, str, int]]:
    """``(from, to, value)`` of every transfer of ``token`` a receipt's logs record, in order."""
    return [(m.sender, m.recipient, m.amount) for m in movements_in(receipt, token)]
