// The `dev` payment method, defined with mppx's public method contract.
//
// It is the mppx-side twin of mpp_client/methods/dev.py: the payer signs, with
// Ed25519, the canonical JSON (RFC 8785) of
//   {domain, id, realm, method, intent, request, payer}
// where `request` is the challenge's base64url wire string, and sends
//   {type: "voucher", payer: "did:key:z6Mk...", signature: "<base64url>"}.
// The server checks the signature with node's crypto against the payer's
// did:key and accepts each challenge once (mppx's Store.tryClaim).
//
// mppx hands `verify` the echoed challenge with `request` already decoded to
// an object; the wire string is re-created with PaymentRequest.serialize
// (JCS, base64url). That is exactly what mppx's HMAC check just bound the
// challenge id to, and what mppx emitted in the first place, so the voucher is
// checked against the bytes the server issued.

import { createPublicKey, verify as verifySignature } from 'node:crypto'
import { Errors, Method, PaymentRequest, Receipt, Store, z } from 'mppx'

export const VOUCHER_DOMAIN = 'mpp-client/dev-voucher/v1'
/** Charges to this recipient make verify throw, as a buggy method would. */
export const BROKEN_RECIPIENT = 'did:web:broken.mppx-interop.test'

export const devCharge = Method.from({
  name: 'dev',
  intent: 'charge',
  schema: {
    credential: {
      payload: z.object({
        type: z.literal('voucher'),
        payer: z.string(),
        signature: z.string(),
      }),
    },
    request: z.object({
      amount: z.string().check(z.regex(/^\d+$/, 'amount must be base units')),
      currency: z.string(),
      recipient: z.string(),
      description: z.optional(z.string()),
    }),
  },
})

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
// DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32 key bytes follow.
const ED25519_SPKI = Buffer.from('302a300506032b6570032100', 'hex')

function base58Decode(text) {
  let value = 0n
  for (const char of text) {
    const digit = BASE58.indexOf(char)
    if (digit < 0) throw new Error('not base58')
    value = value * 58n + BigInt(digit)
  }
  const bytes = []
  while (value > 0n) {
    bytes.unshift(Number(value & 0xffn))
    value >>= 8n
  }
  for (const char of text) {
    if (char !== '1') break
    bytes.unshift(0)
  }
  return Buffer.from(bytes)
}

/** The raw Ed25519 public key of a `did:key:z6Mk...`, or null. */
export function publicKeyOfDidKey(did) {
  if (typeof did !== 'string' || !did.startsWith('did:key:z')) return null
  let bytes
  try {
    bytes = base58Decode(did.slice('did:key:z'.length))
  } catch {
    return null
  }
  // multicodec ed25519-pub (0xed 0x01) + 32 bytes
  if (bytes.length !== 34 || bytes[0] !== 0xed || bytes[1] !== 0x01) return null
  return bytes.subarray(2)
}

/** Canonical JSON of a flat map of strings: keys sorted, JSON.stringify strings (RFC 8785). */
function canonicalStrings(map) {
  const keys = Object.keys(map).sort()
  return `{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(map[k])}`).join(',')}}`
}

export function voucherMessage(challenge, payer) {
  return Buffer.from(
    canonicalStrings({
      domain: VOUCHER_DOMAIN,
      id: challenge.id,
      realm: challenge.realm,
      method: challenge.method,
      intent: challenge.intent,
      request: PaymentRequest.serialize(challenge.request),
      payer,
    }),
    'utf8',
  )
}

export function voucherVerifies(challenge, payload) {
  const raw = publicKeyOfDidKey(payload.payer)
  if (!raw) return false
  const key = createPublicKey({
    key: Buffer.concat([ED25519_SPKI, raw]),
    format: 'der',
    type: 'spki',
  })
  const signature = Buffer.from(payload.signature, 'base64url')
  if (signature.length !== 64) return false
  return verifySignature(null, voucherMessage(challenge, payload.payer), key, signature)
}

/**
 * The server side of `dev`/`charge`. `record(event)` sees every outcome
 * ("accepted", "bad-voucher", "replayed") for the tests' assertions.
 */
export function devServer({ record }) {
  const store = Store.memory()
  return Method.toServer(devCharge, {
    async verify({ credential }) {
      const { challenge, payload } = credential
      const base = { kind: 'verify', challengeId: challenge.id, payer: payload.payer }
      if (challenge.request.recipient === BROKEN_RECIPIENT) {
        // A bug in a method (not a PaymentError): mppx answers 500.
        record({ ...base, outcome: 'crashed' })
        throw new Error('the dev method failed')
      }
      if (!voucherVerifies(challenge, payload)) {
        record({ ...base, outcome: 'bad-voucher' })
        throw new Errors.VerificationFailedError({ reason: 'dev voucher signature does not verify' })
      }
      const until = Date.parse(challenge.expires)
      if (!(await Store.tryClaim(store, `dev-voucher:${challenge.id}`, until))) {
        record({ ...base, outcome: 'replayed' })
        throw new Errors.VerificationFailedError({ reason: 'dev voucher already redeemed' })
      }
      const reference = `voucher:${challenge.id}`
      record({ ...base, outcome: 'accepted', reference, amount: challenge.request.amount })
      return Receipt.from({
        method: 'dev',
        reference,
        status: 'success',
        timestamp: new Date().toISOString(),
        payer: payload.payer,
      })
    },
  })
}
