// mppx's own client paying one URL, for the interop tests. Started by
// tests/peers/mppx_peer.py:run_client:
//
//   MPPX_PEER_CONFIG='{"url": ..., "evm": {...}}' MPPX_PEER_PAYER_KEY=0x... node client.mjs
//
// Prints one JSON line: the final status, headers and body, the challenge mppx
// chose as mppx parsed it, the receipt as mppx's Receipt.deserialize reads
// it, and (with "replay": true) the answer to sending the same credential a
// second time. The credential itself is never printed. A payment mppx refuses
// to make is reported as {"error": "..."} (exit status 0: the test judges it).

import { Receipt } from 'mppx'
import { evm, Mppx } from 'mppx/client'
import { privateKeyToAccount } from 'viem/accounts'

const config = JSON.parse(process.env.MPPX_PEER_CONFIG ?? '{}')
const key = process.env.MPPX_PEER_PAYER_KEY

// A watchdog: whatever happens to the test process, this one ends.
setTimeout(() => {
  console.error('mppx peer client: gave up (watchdog)')
  process.exit(4)
}, config.timeoutMs ?? 90_000).unref()

async function methodsFor() {
  const methods = []
  if (config.evm) {
    const o = config.evm
    methods.push(
      evm.charge({
        account: privateKeyToAccount(key),
        authorization: { name: o.tokenName, version: o.tokenVersion },
        currencies: [o.token],
        networks: [o.chainId],
        ...(o.maxAmount ? { maxAmount: o.maxAmount, decimals: o.decimals } : {}),
      }),
    )
  }
  if (config.tempo) methods.push(...(await (await import('./tempo.mjs')).tempoClient(config.tempo, key)))
  return methods
}

const HEADERS = ['content-type', 'payment-receipt', 'www-authenticate', 'cache-control']

async function summary(response) {
  const headers = Object.fromEntries(
    HEADERS.filter((h) => response.headers.has(h)).map((h) => [h, response.headers.get(h)]),
  )
  const body = await response.text()
  let receipt = null
  if (response.headers.has('payment-receipt')) {
    try {
      receipt = Receipt.deserialize(response.headers.get('payment-receipt'))
    } catch (error) {
      receipt = { unparsable: String(error.message ?? error) }
    }
  }
  return { status: response.status, headers, body, receipt }
}

async function main() {
  const mppx = Mppx.create({ methods: await methodsFor(), polyfill: false })
  let credential = null
  let chosen = null
  mppx.onChallengeReceived(({ challenge }) => {
    chosen = challenge
  })
  mppx.onCredentialCreated(({ credential: value }) => {
    credential = value
  })
  const init = { method: config.method ?? 'GET' }
  if (config.body !== undefined) {
    init.body = JSON.stringify(config.body)
    init.headers = { 'content-type': 'application/json' }
  }
  const out = {}
  try {
    out.response = await summary(await mppx.fetch(config.url, init))
  } catch (error) {
    out.error = String(error.message ?? error)
  }
  out.challenge = chosen
  out.paid = credential !== null
  if (config.replay && credential !== null) {
    const again = await mppx.rawFetch(config.url, {
      ...init,
      headers: { ...(init.headers ?? {}), authorization: credential },
    })
    out.replay = await summary(again)
  }
  process.stdout.write(`${JSON.stringify(out)}\n`)
}

await main()
