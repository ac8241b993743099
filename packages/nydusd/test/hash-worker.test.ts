import test from 'ava'
import { createHash, randomBytes } from 'node:crypto'
import { loadDigester } from '@nydusjs/rafs'
import { HashWorker } from '../src/hash-worker.js'

const shared = (data: Buffer): Buffer => {
  const b = Buffer.from(new SharedArrayBuffer(data.length + 100), 37, data.length)
  data.copy(b)
  return b
}
const sha = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest()

test('shared chunk buffers are hashed on the thread, in place; others here; all match', async t => {
  const h = new HashWorker(await loadDigester('sha256'))
  t.teardown(async () => { await h.close() })
  const bodies = Array.from({ length: 24 }, (_, i) => randomBytes(256 * 1024 + i * 4099))
  const onThread = await Promise.all(bodies.map(async b => await h.digest(shared(b))))
  t.deepEqual(onThread.map(d => d.toString('hex')), bodies.map(b => sha(b).toString('hex')))
  t.is(h.offloaded, bodies.length)
  // Not shared, or too small to be worth a hand-off: hashed on this thread, same answer.
  t.true((await h.digest(bodies[0])).equals(sha(bodies[0])))
  t.true((await h.digest(shared(bodies[1].subarray(0, 1000)))).equals(sha(bodies[1].subarray(0, 1000))))
  t.is(h.offloaded, bodies.length)
})

test('blake3 images are hashed with blake3 on the thread', async t => {
  const blake3 = await loadDigester('blake3')
  const h = new HashWorker(blake3)
  t.teardown(async () => { await h.close() })
  const b = randomBytes(300 * 1024)
  t.true((await h.digest(shared(b))).equals(blake3.digest(b)))
  t.is(h.offloaded, 1)
})

test('digests pending when the thread stops are still answered, correctly', async t => {
  const h = new HashWorker(await loadDigester('sha256'))
  const bodies = Array.from({ length: 32 }, () => randomBytes(512 * 1024))
  const pending = bodies.map(async b => await h.digest(shared(b)))
  await h.close()
  const got = await Promise.all(pending)
  t.deepEqual(got.map(d => d.toString('hex')), bodies.map(b => sha(b).toString('hex')))
  t.true((await h.digest(shared(bodies[0]))).equals(sha(bodies[0])), 'and later ones, here')
})
