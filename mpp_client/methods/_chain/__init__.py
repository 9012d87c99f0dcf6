"""The EVM charge layer: what the ``evm`` and ``tempo`` rails share, written once.

Both rails pay ERC-20-style tokens on eip155 chains with one secp256k1 key,
and both test verifiers check such payments. This private package is the one
place each shared concept lives, with one behaviour:

``_addresses``
    Addresses (EIP-55 when mixed-case, handed on in EIP-55 form) and the
    payer's ``did:pkh``.
``_terms``
    The charge fields both drafts define: amount, token, recipient, chain id,
    splits (adding up to strictly less than the amount) and memos; the rails'
    differences are parameters.
``_wallet``
    :class:`~._wallet.EthWallet`, the base of both wallets: the key, the
    chains, the payee and split allowlists, the asset lookup, key hygiene.

Nothing here is imported by ``import mpp_client``: the wallets load it on
first use, with their extras.
"""
