"""Helpers shared by the test modules: one copy of each.

``pay_now``/``apay_now`` call a wallet the way the flow does: quote first,
then pay that quote. ``Clock`` is a clock a test moves by hand.
``run_without`` runs code in a fresh interpreter where some packages cannot
be imported (an extra that is not installed).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from mpp_client import (
    Amount,
    AsyncClient,
    Client,
    DevWallet,
    PaymentMethod,
    Quote,
    SimplePolicy,
)
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


class Clock:
    """A clock the test moves by hand: call it for the time, ``advance`` to move it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


_BLOCKER = """
import importlib.abc, sys

BLOCKED = set({blocked!r})

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Block())
"""


def run_without(blocked: Iterable[str], code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter where importing any of ``blocked`` fails.

    The code can widen the set at run time (``BLOCKED.add(...)``).
    """
    blocker = _BLOCKER.format(blocked=sorted(blocked))
    return subprocess.run(
        [sys.executable, "-c", blocker + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def tool_payer(kind: str) -> Client | AsyncClient:
    """A sync or async client for the framework-tool tests: 0.50 USD a call, 1.00 USD in all."""
    options: dict[str, Any] = {
        "methods": [DevWallet()],
        "policy": SimplePolicy(max_per_call="0.50 USD", budget="1.00 USD"),
        "ledger": "memory:",
        "allow_insecure_localhost": True,
    }
    return Client(**options) if kind == "sync" else AsyncClient(**options)
