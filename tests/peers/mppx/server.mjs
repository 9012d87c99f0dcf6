// A paid HTTP server built with mppx (the TypeScript reference SDK), for the
// interop tests. Started by tests/peers/mppx_peer.py:
//
//   MPPX_PEER_CONFIG='{"realm": ..., "secretKey": ..., "dev": {...}}' node server.mjs
//
// Keys that sign or pay (the settlement submitter's) come in their own
// environment variables, never in argv or the config, and are never printed.
// Listens on 127.0.0.1 at a free port and prints one JSON line when ready:
//   {"ready": true, "port": 12345}
// It exits when its stdin closes, so it cannot outlive the test process.
//
// Routes (each section of the config turns its routes on):
//   dev:   GET /report   mppx.charge(), 25 base units
//          GET /opaque   the same with route `meta`, which mppx sends as `opaque`
//          GET /broken   its verify throws (not a PaymentError): mppx's 500
//          GET /account  behind requiresAuth: the credential in Payment-Authorization
//          POST /orders  a body-digest-bound challenge (see ordersRoute)
//   evm:   GET /evm      mppx's own EVM charge method (EIP-3009 authorization)
//   both:  GET /either   mppx.compose() of a dev and an evm offer, one 402
//   tempo: GET /tempo    mppx's own Tempo charge method
//   always: GET /free (no payment), GET /__peer/events (what the server saw)

import * as http from 'node:http'
import { BodyDigest, Challenge, Credential, Errors, Expires } from 'mppx'
import { Mppx, NodeListener, Transport } from 'mppx/server'
import { BROKEN_RECIPIENT, devCharge, devServer } from './dev.mjs'

const config = JSON.parse(process.env.MPPX_PEER_CONFIG ?? '{}')
const events = []
const record = (event) => events.push(event)

const methods = []
if (config.dev) methods.push(devServer({ record }))
if (config.evm) methods.push(await (await import('./evm.mjs')).evmServer(config.evm, { record }))
if (config.tempo)
  methods.push(await (await import('./tempo.mjs')).tempoServer(config.tempo, { record }))

const mppx = Mppx.create({ methods, realm: config.realm, secretKey: config.secretKey })
// The same methods behind `requiresAuth`: mppx then asks for the credential in
// Payment-Authorization (a `header` auth-param, bound into the HMAC id), and
// leaves Authorization to the application.
const guarded = Mppx.create({
  methods,
  realm: config.realm,
  requiresAuth: true,
  secretKey: config.secretKey,
})
const transport = Transport.http()

function handlerFor(name, instance = mppx) {
  const method = methods.find((m) => m.name === name)
  return (options) => instance[`${method.name}/${method.intent}`](options)
}

const DEV = config.dev ?? {}
const devRoute = (amount, extra = {}) => ({
  amount,
  currency: 'usd',
  recipient: DEV.recipient,
  ...extra,
})

const routes = {}
if (config.dev) {
  const dev = handlerFor('dev')
  routes['GET /report'] = dev({ ...devRoute('25'), description: 'Quarterly report' })
  routes['GET /opaque'] = dev({
    ...devRoute('10'),
    description: 'Opaque echo',
    meta: DEV.meta ?? { route: 'GET /opaque' },
  })
  routes['GET /broken'] = dev({ ...devRoute('5'), recipient: BROKEN_RECIPIENT })
  routes['GET /account'] = handlerFor('dev', guarded)({
    ...devRoute('15'),
    description: DEV.accountDescription ?? 'Account',
  })
}
if (config.evm) routes['GET /evm'] = handlerFor('evm')({ amount: config.evm.amount })
if (config.tempo) routes['GET /tempo'] = handlerFor('tempo')({ amount: config.tempo.amount })
if (config.dev && config.evm)
  routes['GET /either'] = mppx.compose(
    ['dev/charge', devRoute('30')],
    ['evm/charge', { amount: config.evm.eitherAmount ?? '0.30' }],
  )

const ORDER_TERMS = devRoute('40')

// mppx's route handlers (mppx.charge(...)) never put a `digest` in their
// challenges, and never look at the body. Its lower-level API can: the
// challenge is made with Challenge.fromMethod({digest}), whose HMAC id binds the
// digest, and the credential is checked with mppx.verifyCredential (HMAC,
// expiry, payload schema, the route's amount/currency/recipient, then the
// method's verify). The body check itself is BodyDigest.verify.
async function ordersRoute(request, bodyText) {
  const challengeFor = () =>
    Challenge.fromMethod(devCharge, {
      realm: config.realm,
      request: ORDER_TERMS,
      description: 'Place an order',
      digest: BodyDigest.compute(bodyText),
      expires: Expires.minutes(5),
      secretKey: config.secretKey,
    })
  const refuse = (error) =>
    transport.respondChallenge({ challenge: challengeFor(), error, input: request })

  const header = request.headers.get('authorization')
  const payment = header ? Credential.extractPaymentScheme(header) : null
  if (!payment) return refuse(new Errors.PaymentRequiredError({ description: 'Place an order' }))
  let credential
  try {
    credential = Credential.deserialize(payment)
  } catch (error) {
    return refuse(new Errors.MalformedCredentialError({ reason: error.message }))
  }
  const digest = credential.challenge.digest
  if (!digest || !BodyDigest.verify(digest, bodyText)) {
    record({ kind: 'verify', challengeId: credential.challenge.id, outcome: 'digest-mismatch' })
    return refuse(
      new Errors.VerificationFailedError({ reason: 'request body does not match the digest' }),
    )
  }
  let receipt
  try {
    receipt = await mppx.verifyCredential(credential, { request: ORDER_TERMS })
  } catch (error) {
    return refuse(error instanceof Errors.PaymentError ? error : new Errors.InternalPaymentError())
  }
  return transport.respondReceipt({
    challengeId: credential.challenge.id,
    credential,
    input: request,
    receipt,
    response: Response.json({ ordered: JSON.parse(bodyText), payer: credential.source ?? null }),
  })
}

/** The raw echoed fields of a Payment credential, as the client sent them. */
function echoOf(request) {
  const payment = ['payment-authorization', 'authorization']
    .map((name) => request.headers.get(name))
    .map((value) => (value ? Credential.extractPaymentScheme(value) : null))
    .find((value) => value)
  if (!payment) return null
  try {
    const wire = JSON.parse(Buffer.from(payment.slice('Payment '.length).trim(), 'base64url'))
    const { id, opaque, request: raw, digest, expires, header, description } = wire.challenge
    return {
      id,
      opaque: opaque ?? null,
      request: raw,
      digest: digest ?? null,
      expires,
      header: header ?? null,
      description: description ?? null,
    }
  } catch {
    return { malformed: true }
  }
}

async function answer(request, bodyText) {
  const url = new URL(request.url)
  const key = `${request.method} ${url.pathname}`
  if (key === 'GET /__peer/events') return Response.json({ events })
  if (key === 'GET /free') return Response.json({ free: true })
  if (key === 'POST /orders' && config.dev) return ordersRoute(request, bodyText)
  const route = routes[key]
  if (!route) return new Response('not found', { status: 404 })
  const result = await route(request)
  if (result.status === 402) return result.challenge
  const body = { paid: key, realm: config.realm }
  if (key === 'GET /account') body.applicationAuthorization = request.headers.get('authorization')
  return result.withReceipt(Response.json(body))
}

function toFetchRequest(req, body, port) {
  const headers = new Headers()
  for (const [name, value] of Object.entries(req.headers)) {
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v)
  }
  const hasBody = !['GET', 'HEAD'].includes(req.method)
  return new Request(`http://127.0.0.1:${port}${req.url}`, {
    method: req.method,
    headers,
    ...(hasBody ? { body } : {}),
  })
}

const server = http.createServer(async (req, res) => {
  try {
    const chunks = []
    for await (const chunk of req) chunks.push(chunk)
    const body = Buffer.concat(chunks)
    const request = toFetchRequest(req, body, server.address().port)
    const echo = echoOf(request)
    const path = new URL(request.url).pathname
    const response = await answer(request, body.toString('utf8'))
    if (!path.startsWith('/__peer/'))
      record({ kind: 'request', method: req.method, path, status: response.status, echo })
    await NodeListener.sendResponse(res, response)
  } catch (error) {
    console.error('mppx peer: unhandled error', error)
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' })
    res.end('peer error')
  }
})

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ ready: true, port: server.address().port })}\n`)
})

process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0))
