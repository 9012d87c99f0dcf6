"""Selling for ``evm`` charges in tests: a verifier that settles on a real chain.

:class:`EvmVerifier` plugs into :class:`~mpp_client.testing.PaidServer`
(``PaidServer(routes, verifier=EvmVerifier(...), currency=token,
recipient=merchant, asset="USD", decimals=6)``) and settles every credential
type of ``draft-evm-charge-00`` on a node. :class:`Anvil` runs a local node
(Foundry's ``anvil`` binary) on a free loopback port; :class:`ChainClient`
sends transactions from a local key; :func:`transfers_in` reads what a
receipt's logs moved.

The parts live in modules named for them: the chain runner (``_anvil``),
the transaction sender (``_chain_client``), the verifier
(``_evm_verifier``) and the log reading both rails share (``_logs``); import
them from here. Needs the ``evm`` extra.
"""

from __future__ import annotations

from ..methods._chain._signing import recover_signer
from ._anvil import Anvil
from ._chain_client import ChainClient, authorization_calldata, selector
from ._evm_verifier import EvmVerifier
from ._logs import transfers_in

__all__ = [
    "Anvil",
    "ChainClient",
    "EvmVerifier",
    "authorization_calldata",
    "recover_signer",
    "selector",
    "transfers_in",
]
