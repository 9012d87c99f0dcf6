"""A local Tempo chain for the tests: one ``anvil --network tempo`` per session.

``tempo_chain`` starts it on first use (the anvil binary comes from
``scripts/chain-tools.sh``, as for the EVM tests) and stops it when the
session ends; ``tempo_policy`` is a spending policy that pays anyone in the
chain's genesis stablecoins. Test modules load this file with
``pytest_plugins`` so they share the one node. Every payer is a fresh key
funded from the faucet, so tests never contend for a nonce or a balance.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mpp_client.policy import Policy
from mpp_client.testing.tempo import TempoChain

from ..rails import rail_policy
from .tooling import anvil_binary

PATH_USD = "0x20c0000000000000000000000000000000000000"
ALPHA_USD = "0x20C0000000000000000000000000000000000001"


@pytest.fixture(scope="session")
def tempo_chain() -> Iterator[TempoChain]:
    """The session's local Tempo chain (chain id 31337, hardfork T4)."""
    with TempoChain(anvil_binary()) as chain:
        yield chain


@pytest.fixture(scope="session")
def tempo_policy(tempo_chain: TempoChain) -> Policy:
    """Pays anyone up to 1.00 USD a call in pathUSD or AlphaUSD on the local chain."""
    return rail_policy(
        [tempo_chain.asset(PATH_USD, "pathUSD"), tempo_chain.asset(ALPHA_USD, "AlphaUSD")]
    )
