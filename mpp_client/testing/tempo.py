"""Selling for ``tempo`` charges in tests, on a local Tempo chain.

:class:`TempoVerifier` plugs into :class:`~mpp_client.testing.PaidServer`
(``PaidServer(routes, verifier=TempoVerifier(rpc_url), currency=PATH_USD,
recipient=merchant, asset="USD", decimals=6)``) and settles pull and push
credentials on a Tempo node, as the reference servers do (see its notes).

:class:`TempoChain` runs ``anvil --network tempo`` (Foundry's anvil 1.7.1) on
a free loopback port, with the facts a test needs about that node:

* The chain has TIP-20 precompiles at ``0x20c0...0000`` (pathUSD, 6
  decimals) and ``0x20c0...0001``-``0003``; anvil's dev accounts (its default
  mnemonic) hold 2^64-1 base units of each. Nothing else does:
  ``anvil_setBalance`` and ``anvil_dealERC20`` cannot credit a TIP-20
  balance, so :meth:`TempoChain.fund` transfers from dev account 0 (the
  faucet).
* Fees are paid in a TIP-20 token (pathUSD here: the faucet's and the fee
  payer's fee token), priced in attodollars per gas: ``eth_gasPrice`` starts
  at 11 gwei and follows the EIP-1559 base fee, and a TIP-20 transfer costs
  about 300,000 gas, so a payment's fee is a few thousandths of a pathUSD.
* The node runs hardfork ``T4`` here. anvil's default for ``--network
  tempo`` is ``T0``, which predates expiring nonces (``nonceKey`` 2^256-1):
  there that lane is an ordinary sequential nonce, so a key's second
  expiring-nonce transaction is dropped unmined. From ``T1`` on, each one is
  unique by hash and dies at ``validBefore``, which on ``T4`` must be at most
  30 seconds ahead, as on Tempo before T11 (a transaction valid for longer is
  accepted into the pool, then silently dropped: ``eth_sendRawTransactionSync``
  answers "Transaction confirmation timeout" 30 seconds later).
* ``eth_sendRawTransactionSync`` takes only the raw transaction (no timeout
  parameter), and the node serves no ``tempo_simulateV1``; its
  ``eth_simulateV1`` panics on a ``0x76`` call, which stops the node.
* ``eth_sendRawTransactionSync`` answers with the mined receipt; sending a
  transaction that was already mined answers with its receipt again (it does
  not move money twice, and it is no error).

The parts live in modules named for them: the chain runner
(``_tempo_chain``), the verifier (``_tempo_verifier``) and the reading of
transfer logs both rails share (``_logs``); import them from here. Needs the
``tempo`` extra (which brings everything :mod:`mpp_client.testing.evm`
imports).
"""

from __future__ import annotations

from ._logs import TRANSFER_WITH_MEMO_TOPIC, Movement, movements_in
from ._tempo_chain import ANVIL_DEV_KEY, TEMPO_HARDFORK, TempoChain
from ._tempo_verifier import TempoVerifier

__all__ = [
    "ANVIL_DEV_KEY",
    "TEMPO_HARDFORK",
    "TRANSFER_WITH_MEMO_TOPIC",
    "Movement",
    "TempoChain",
    "TempoVerifier",
    "movements_in",
]
