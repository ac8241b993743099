import test from 'ava'
import { createHash, randomBytes } from 'node:crypto'
import { compressChunk, loadDigester } from '@nydusjs/rafs'
import { readFileSync } from 'node:fs'
import { returnMemory, tuneMalloc } from '../src/memory-release.js'
import { VerifyWorker } from '../src/verify-worker.js'

const shared = (data: Buffer): Buffer => {
  const b = Buffer.from(new SharedArrayBuffer(data.length + 100), 37, data.length)
  data.copy(b)
  return b
}
const sha = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest()
const MiB = 1024 * 1024
const anonymous = (): number => Number(/^Anonymous:\s+(\d+) kB/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))![1]) * 1024

test('buffers handed to the thread are freed once dropped here, while the thread lives on', async t => {
  tuneMalloc() // as nydusd: each 1 MiB buffer a mapping of its own, unmapped when freed
  const h = new VerifyWorker(await loadDigester('sha256'))
  t.teardown(async () => {
    await h.close()
  })
  await h.digest(shared(randomBytes(MiB)))
  returnMemory()
  const before = anonymous()
  for (let i = 0; i < 160; i++) {
    const b = Buffer.from(new SharedArrayBuffer(MiB))
    b.fill(i)
    t.true((await h.digest(b)).equals(sha(b)))
  }
  returnMemory()
  const held = anonymous() - before
  // The thread's handles to the 160 MiB dropped here are gone with its own collections.
  t.true(held < 48 * MiB, `${(held / MiB).toFixed(0)} MiB still held`)
  t.is(h.offloaded, 161)
})

test('shared chunk buffers are hashed on the thread, in place; others here; all match', async t => {
  const h = new VerifyWorker(await loadDigester('sha256'))
  t.teardown(async () => {
    await h.close()
  })
  const bodies = Array.from({ length: 24 }, (_, i) => randomBytes(256 * 1024 + i * 4099))
  const onThread = await Promise.all(bodies.map(async b => await h.digest(shared(b))))
  t.deepEqual(
    onThread.map(d => d.toString('hex')),
    bodies.map(b => sha(b).toString('hex'))
  )
  t.is(h.offloaded, bodies.length)
  // Not shared, or too small to be worth a hand-off: hashed on this thread, same answer.
  t.true((await h.digest(bodies[0])).equals(sha(bodies[0])))
  t.true((await h.digest(shared(bodies[1].subarray(0, 1000)))).equals(sha(bodies[1].subarray(0, 1000))))
  t.is(h.offloaded, bodies.length)
})

test('blake3 images are hashed with blake3 on the thread', async t => {
  const blake3 = await loadDigester('blake3')
  const h = new VerifyWorker(blake3)
  t.teardown(async () => {
    await h.close()
  })
  const b = randomBytes(300 * 1024)
  t.true((await h.digest(shared(b))).equals(blake3.digest(b)))
  t.is(h.offloaded, 1)
})

test('digests pending when the thread stops are still answered, correctly', async t => {
  const h = new VerifyWorker(await loadDigester('sha256'))
  const bodies = Array.from({ length: 32 }, () => randomBytes(512 * 1024))
  const pending = bodies.map(async b => await h.digest(shared(b)))
  await h.close()
  const got = await Promise.all(pending)
  t.deepEqual(
    got.map(d => d.toString('hex')),
    bodies.map(b => sha(b).toString('hex'))
  )
  t.true((await h.digest(shared(bodies[0]))).equals(sha(bodies[0])), 'and later ones, here')
})

test('compressed chunks in shared buffers are decoded and hashed on the thread, into the caller buffer; bad frames are refused', async t => {
  const v = new VerifyWorker(await loadDigester('sha256'))
  t.teardown(async () => {
    await v.close()
  })
  const body = Buffer.from('a compressible line of text\n'.repeat(40_000))
  const { data: frame, flags } = compressChunk(body, 'zstd')
  t.true(frame.length < body.length)
  const dst = Buffer.from(new SharedArrayBuffer(2 * 1024 * 1024), 4096, body.length)
  const got = await v.decode(shared(frame), flags, body.length, dst)
  t.true(got.data.equals(body))
  t.is(got.data.buffer, dst.buffer, 'decoded where the caller asked')
  t.true(got.digest.equals(sha(body)))
  t.is(v.offloaded, 1)
  const bad = shared(frame)
  bad[bad.length >> 1] ^= 0xff
  await t.throwsAsync(v.decode(bad, flags, body.length, dst))
  await t.throwsAsync(v.decode(shared(frame), flags, body.length + 1, Buffer.from(new SharedArrayBuffer(body.length + 1))))
  // Not shared: decoded here, same answer.
  const here = await v.decode(frame, flags, body.length, Buffer.alloc(body.length))
  t.true(here.digest.equals(sha(body)))
  t.is(v.offloaded, 3)
})

test('decodes pending when the thread stops are finished here, correctly', async t => {
  const v = new VerifyWorker(await loadDigester('sha256'))
  const bodies = Array.from({ length: 16 }, (_, i) => Buffer.from(`line ${i} `.repeat(60_000)))
  const pending = bodies.map(async b => {
    const { data: frame, flags } = compressChunk(b, 'zstd')
    return await v.decode(shared(frame), flags, b.length, Buffer.from(new SharedArrayBuffer(b.length)))
  })
  await v.close()
  const got = await Promise.all(pending)
  t.deepEqual(
    got.map(d => d.digest.toString('hex')),
    bodies.map(b => sha(b).toString('hex'))
  )
  t.true(got.every((d, i) => d.data.equals(bodies[i])))
})
