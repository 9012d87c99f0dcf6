// mppx's own Tempo charge method (server and client) on a local Tempo chain
// (`anvil --network tempo`, chain id 31337 unless told otherwise).
//
// mppx resolves Tempo chains it knows (4217, 42431) to public RPC URLs; any
// other chain needs `getClient`. The client here is viem's Tempo chain
// definition (its 0x76 serializers and formatters) with the local id and URL.

import { tempo as tempoServerMethods } from 'mppx/server'
import { tempo as tempoClientMethods } from 'mppx/client'
import { createClient, defineChain, http } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { tempo as tempoChain } from 'viem/tempo/chains'

export function localTempoClient({ chainId, rpcUrl }) {
  const chain = defineChain({
    ...tempoChain,
    id: chainId,
    name: `local-tempo-${chainId}`,
    rpcUrls: { default: { http: [rpcUrl] } },
    blockExplorers: undefined,
  })
  return createClient({ chain, transport: http(rpcUrl), pollingInterval: 50 })
}

/**
 * mppx's Tempo charge server method: it broadcasts (pull) or reads (push) the
 * transfer. With MPPX_PEER_FEE_PAYER_KEY set it sponsors the fee: it offers
 * `feePayer: true`, co-signs the client's 0x78 envelope and pays the fee.
 */
export function tempoServer(options) {
  const client = localTempoClient(options)
  const sponsor = process.env.MPPX_PEER_FEE_PAYER_KEY
  return tempoServerMethods.charge({
    currency: options.currency,
    decimals: options.decimals ?? 6,
    getClient: () => client,
    recipient: options.recipient,
    ...(sponsor ? { feePayer: privateKeyToAccount(sponsor) } : {}),
    ...(options.supportedModes ? { supportedModes: options.supportedModes } : {}),
  })
}

/** mppx's Tempo charge client method for the payer key. */
export function tempoClient(options, key) {
  const client = localTempoClient(options)
  return [
    tempoClientMethods.charge({
      account: privateKeyToAccount(key),
      getClient: () => client,
      ...(options.mode ? { mode: options.mode } : {}),
      ...(options.clientId ? { clientId: options.clientId } : {}),
    }),
  ]
}
