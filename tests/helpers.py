"""Helpers shared by the test modules: one copy of each.

``pay_now``/``apay_now`` call a wallet the way the flow does: quote first,
then pay that quote.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mpp_client import Amount, PaymentMethod, Quote
from mpp_client.protocol import Challenge


def pay_now(wallet: PaymentMethod, challenge: Challenge) -> Mapping[str, Any]:
    """Quote ``challenge`` and pay that quote, as the flow would (no policy, no ledger)."""
    return wallet.pay(challenge, wallet.quote(challenge))


async def apay_now(wallet: PaymentMethod, challenge: Challenge) -> Mapping[str, Any]:
    """The async :func:`pay_now`."""
    return await wallet.apay(challenge, wallet.quote(challenge))


def pay_unquoted(wallet: PaymentMethod, challenge: Challenge) -> Mapping[str, Any]:
    """Pay with a quote the wallet did not prepare: it must read and check the terms itself.

    What a wallet's ``pay`` does when the terms it quoted no longer hold (or
    it is handed someone else's quote): refuse with ``TermsRefused``, which is
    also a ``PaymentFailed``, before signing anything.
    """
    stranger = Quote(Amount(0, "USD"), "", wallet.name, challenge.intent)
    return wallet.pay(challenge, stranger)
