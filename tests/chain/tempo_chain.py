"""A local Tempo chain for the tests: one ``anvil --network tempo`` per session.

``tempo_chain`` starts it on first use (the anvil binary comes from
``scripts/chain-tools.sh``, as for the EVM tests) and stops it when the
session ends. Test modules load this file with ``pytest_plugins`` so they
share the one node. Every payer is a fresh key funded from the faucet, so
tests never contend for a nonce or a balance.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mpp_client.policy import AssetEntry, Policy
from mpp_client.testing.tempo import TempoChain

from .tooling import anvil_binary

PATH_USD = "0x20c0000000000000000000000000000000000000"
OPEN = {
    key: ["*"] for key in ("hosts", "realms", "payees", "methods", "intents", "assets", "chain_ids")
}


@pytest.fixture(scope="session")
def tempo_chain() -> Iterator[TempoChain]:
    """The session's local Tempo chain (chain id 31337, hardfork T4)."""
    with TempoChain(anvil_binary()) as chain:
        yield chain


def path_usd(chain: TempoChain) -> AssetEntry:
    """pathUSD on the local chain, for wallets' and policies' asset registries."""
    return AssetEntry("tempo", PATH_USD, "USD", 6, chain.chain_id, "pathUSD")


def policy_for(chain: TempoChain, per_call: str = "1.00 USD") -> Policy:
    """A policy that pays anyone up to ``per_call`` in pathUSD on the local chain."""
    return Policy.from_mapping(
        {
            "currency": "USD",
            "per_call": per_call,
            "allow": OPEN,
            "assets": [
                {
                    "method": "tempo",
                    "currency": PATH_USD,
                    "asset": "USD",
                    "decimals": 6,
                    "chain_id": chain.chain_id,
                    "name": "pathUSD",
                }
            ],
        }
    )
