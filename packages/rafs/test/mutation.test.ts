import test from 'ava'
import fc from 'fast-check'
import { BootstrapReader, RafsError, encodeBootstrap, loadDigester, readTree, validateBootstrap } from '../src/index.js'
import { sampleTree } from './helpers.js'

const sha256 = await loadDigester('sha256')
const good = encodeBootstrap(sampleTree(), sha256).bootstrap

/** Everything a consumer might do with an untrusted bootstrap. */
function exercise(buf: Buffer, skipChecksum: boolean): void {
  const r = BootstrapReader.open(buf, { skipChecksum })
  validateBootstrap(r, sha256)
  readTree(r)
  r.lookup('etc/passwd')
}

function onlyTypedErrors(buf: Buffer, skipChecksum: boolean): boolean {
  try {
    exercise(buf, skipChecksum)
    return true
  } catch (err) {
    if (err instanceof RafsError) return true
    throw err
  }
}

test('thousands of random byte flips give only typed errors (checksum skipped, so the parser sees them)', t => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), flips => {
      const b = Buffer.from(good)
      for (const [at, x] of flips) b[at] ^= x
      return onlyTypedErrors(b, true)
    }),
    { numRuns: 4000, seed: 42 }
  )
  t.pass()
})

test('flips anywhere are caught by the checksum', t => {
  let caught = 0
  for (let i = 0; i < good.length; i += 7) {
    const b = Buffer.from(good)
    b[i] ^= 0x10
    try {
      exercise(b, false)
    } catch (err) {
      if (!(err instanceof RafsError)) throw err
      caught++
    }
  }
  t.is(caught, Math.ceil(good.length / 7))
})

test('every truncation gives a typed error', t => {
  for (let len = 0; len < good.length; len += 3) {
    const err = t.throws(() => exercise(good.subarray(0, len), true))
    t.true(err instanceof RafsError, `length ${len}: ${String(err)}`)
  }
})

test('random u32 writes into table fields give only typed errors', t => {
  fc.assert(
    fc.property(
      fc.nat(Math.floor((good.length - 4) / 4)),
      fc.oneof(fc.constant(0), fc.constant(0xffffffff), fc.nat(), fc.integer({ min: 0, max: 64 })),
      (slot, v) => {
        const b = Buffer.from(good)
        b.writeUInt32LE(v >>> 0, slot * 4)
        return onlyTypedErrors(b, true)
      }
    ),
    { numRuns: 3000, seed: 7 }
  )
  t.pass()
})
