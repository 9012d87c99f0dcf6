"""The EVM charge layer: what the ``evm`` and ``tempo`` rails share, written once.

Both rails pay ERC-20-style tokens on eip155 chains with one secp256k1 key,
and both test verifiers check such payments. This private package is the one
place each shared concept lives, with one behaviour; where the rails really
differ, the difference is a parameter or a rail module, named as such.

Shared by both rails:

``_addresses``
    Addresses (EIP-55 when mixed-case, handed on in EIP-55 form) and the
    payer's ``did:pkh``.
``_terms``
    The charge fields both drafts define: amount, token, recipient, chain id,
    splits (adding up to strictly less than the amount) and memos.
``_signing``
    The signer seam (:class:`~._signing.DigestSigner`: ``address`` and
    ``sign_digest``), the default in-process signer, signature
    normalization and recovery, EIP-712 digests and EIP-1559 transactions.
``_eip712``
    Every EIP-712 message the wallets sign (EIP-3009, Permit2 with the
    draft's witness, the Tempo proof).
``_rpc``, ``_nodes``
    The one chain client, on web3.py (retry rules per kind of request), and
    the steps of a wallet's conversation with a node (the node's chain, an
    EIP-1559 call's nonce and fees, a broadcast sent once).
``_wallet``
    :class:`~._wallet.EthWallet`, the base of both wallets: the key (and its
    keystore), the chains, the payee and split allowlists, the asset lookup,
    key hygiene.

One rail each, shared by its wallet and its test verifier:

``_evm_charge``
    The ``evm`` terms, the challenge hash, ERC-20 call data.
``_tempo_charge``, ``_tempo_tx``
    The ``tempo`` terms and attribution memo; Tempo ``0x76``/``0x78``
    transactions signed through the seam.

Nothing here is imported by ``import mpp_client``: the wallets load it on
first use, with their extras (web3 and eth-account; pytempo for Tempo).
"""
