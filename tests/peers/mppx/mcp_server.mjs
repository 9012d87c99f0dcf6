// An MCP server built with mppx's MCP support (the TypeScript reference SDK)
// on @modelcontextprotocol/sdk, for the MCP interop tests. Run over stdio:
//
//   MPPX_PEER_CONFIG='{"realm": ..., "secretKey": ..., "recipient": ...}' node mcp_server.mjs
//
// Payment is mppx's `Transport.mcpSdk()`: the credential is read from the
// tool call's `_meta["org.paymentauth/credential"]`, an unpaid call throws the
// McpError mppx builds (-32042, `data.challenges`), and a paid result gets
// `_meta["org.paymentauth/receipt"]` from `result.withReceipt(...)`. The `dev`
// method is tests/peers/mppx/dev.mjs (our Ed25519 voucher, checked by node).
//
// Tools: forecast (25 base units), tagged (10, with route `meta`: mppx sends it
// as `opaque`, the base64url string it binds), broken (its verify throws, as a
// buggy method would), events (free: what the server saw, as JSON).
//
// Nothing but MCP goes to stdout; the process ends when stdin closes.

import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js'
import { Mppx, Transport } from 'mppx/server'
import { BROKEN_RECIPIENT, devServer } from './dev.mjs'

const config = JSON.parse(process.env.MPPX_PEER_CONFIG ?? '{}')
const events = []
const record = (event) => events.push(event)

const payment = Mppx.create({
  methods: [devServer({ record })],
  realm: config.realm,
  secretKey: config.secretKey,
  transport: Transport.mcpSdk(),
})
const charge = payment['dev/charge']
const terms = (amount, extra = {}) => ({
  amount,
  currency: 'usd',
  recipient: config.recipient,
  ...extra,
})

const server = new McpServer({ name: 'mppx-paid-tools', version: '1.0.0' })

function paidTool(name, options) {
  const handler = charge(options)
  server.registerTool(name, { description: `${name} (paid)` }, async (extra) => {
    const result = await handler(extra)
    if (result.status === 402) throw result.challenge
    const payer = extra._meta?.['org.paymentauth/credential']?.source ?? null
    return result.withReceipt({ content: [{ type: 'text', text: `${name} for ${payer}` }] })
  })
}

paidTool('forecast', terms('25', { description: 'Forecast' }))
paidTool('tagged', terms('10', { meta: { order: 'A-1', channel: 'caf\u00e9 \u2615' } }))
paidTool('broken', terms('5', { recipient: BROKEN_RECIPIENT }))

server.registerTool('events', { description: 'what the server saw' }, async () => ({
  content: [{ type: 'text', text: JSON.stringify(events) }],
}))

await server.connect(new StdioServerTransport())
process.stdin.on('end', () => process.exit(0))
