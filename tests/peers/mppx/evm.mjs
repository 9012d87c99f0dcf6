// mppx's own EVM charge server method (EIP-3009 `authorization`), settled on
// a local chain.
//
// mppx verifies the credential itself (recipient, amount, nonce = challenge
// hash, validity window, typed-data signature, did:pkh source) but does not
// talk to a chain: the host supplies `settle`. This one submits
// `transferWithAuthorization` from the submitter key (MPPX_PEER_SUBMITTER_KEY),
// simulating first so a transfer that would revert (a used nonce: a replay)
// is refused as a VerificationFailedError before any gas is spent.

import { Errors } from 'mppx'
import { evm } from 'mppx/server'
import { createPublicClient, createWalletClient, defineChain, http, parseAbi, parseSignature } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'

const TOKEN_ABI = parseAbi([
  'function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s)',
])

export function localChain({ chainId, rpcUrl }) {
  return defineChain({
    id: chainId,
    name: `local-${chainId}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  })
}

export async function evmServer(options, { record }) {
  const key = process.env.MPPX_PEER_SUBMITTER_KEY
  if (!key) throw new Error('MPPX_PEER_SUBMITTER_KEY is not set')
  const chain = localChain(options)
  const account = privateKeyToAccount(key)
  const transport = http(options.rpcUrl)
  const reader = createPublicClient({ chain, transport, pollingInterval: 50 })
  const writer = createWalletClient({ account, chain, transport })

  async function settle({ credential, payload }) {
    const { r, s, v, yParity } = parseSignature(payload.signature)
    const call = {
      account,
      address: credential.challenge.request.currency,
      abi: TOKEN_ABI,
      functionName: 'transferWithAuthorization',
      args: [
        payload.from,
        payload.to,
        BigInt(payload.value),
        BigInt(payload.validAfter),
        BigInt(payload.validBefore),
        payload.nonce,
        Number(v ?? 27n + BigInt(yParity)),
        r,
        s,
      ],
    }
    const base = { kind: 'settle', challengeId: credential.challenge.id, payer: payload.from }
    try {
      await reader.simulateContract(call)
    } catch (error) {
      record({ ...base, outcome: 'would-revert', reason: error.shortMessage ?? String(error) })
      throw new Errors.VerificationFailedError({
        reason: `the authorization cannot be settled (${error.shortMessage ?? 'reverted'})`,
      })
    }
    const hash = await writer.writeContract(call)
    const receipt = await reader.waitForTransactionReceipt({ hash, timeout: 60_000 })
    if (receipt.status !== 'success') {
      record({ ...base, outcome: 'reverted', hash })
      throw new Errors.VerificationFailedError({ reason: 'the settlement reverted' })
    }
    record({ ...base, outcome: 'settled', hash, value: payload.value, to: payload.to })
    return { reference: hash }
  }

  return evm.charge({
    authorization: { name: options.tokenName, version: options.tokenVersion },
    chainId: options.chainId,
    currency: options.token,
    decimals: options.decimals,
    recipient: options.recipient,
    settle,
  })
}
