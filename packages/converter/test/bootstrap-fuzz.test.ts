import test from 'ava'
import fc from 'fast-check'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { BootstrapReader, RafsError, loadDigester, readTree, validateBootstrap } from '@nydusjs/rafs'
import { busyboxFixture, nydusImage, tempDir } from '@nydusjs/testkit'

test('random flips and truncations of a real image bootstrap (busybox) give only typed errors', async t => {
  const { tar } = await busyboxFixture()
  const dir = await tempDir(t)
  const boot = join(dir, 'bb.boot')
  t.is((await nydusImage(['create', tar, '--bootstrap', boot, '--blob-dir', join(dir, 'blobs'), '--prefetch-files', '/dev/null'])).code, 0)
  const good = await readFile(boot)
  const sha256 = await loadDigester('sha256')
  const exercise = (b: Buffer): boolean => {
    try {
      const r = BootstrapReader.open(b, { skipChecksum: true })
      validateBootstrap(r, sha256)
      readTree(r)
      return true
    } catch (err) {
      if (err instanceof RafsError) return true
      throw err
    }
  }
  fc.assert(
    fc.property(fc.nat(good.length - 1), fc.integer({ min: 1, max: 255 }), (at, x) => {
      const b = Buffer.from(good)
      b[at] ^= x
      return exercise(b)
    }),
    { numRuns: 2000, seed: 99 }
  )
  fc.assert(
    fc.property(fc.nat(good.length - 1), len => exercise(good.subarray(0, len))),
    { numRuns: 500, seed: 5 }
  )
  t.true(exercise(good))
})
