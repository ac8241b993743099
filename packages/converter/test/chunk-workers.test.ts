import test from 'ava'
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { tempDir } from '@nydusjs/testkit'
import { TarSource, buildLayer, encodeHeader, END_OF_ARCHIVE, layerWorkers, padding, type ChunkWorkers } from '../src/index.js'

const MiB = 1024 * 1024

/** A tar of `n` files of random bytes, `size` each. */
function tarOf(n: number, size: number): Buffer {
  const parts: Buffer[] = []
  for (let i = 0; i < n; i++) {
    parts.push(
      encodeHeader({
        path: Buffer.from(`f${i}.bin`),
        type: 'file',
        mode: 0o644,
        uid: 0,
        gid: 0,
        size,
        mtimeSec: 1_700_000_000,
        mtimeNsec: 0
      })
    )
    parts.push(randomBytes(size), padding(size))
  }
  parts.push(END_OF_ARCHIVE)
  return Buffer.concat(parts)
}

async function* once(b: Buffer): AsyncGenerator<Buffer> {
  yield b
}

/** Counts the batches each of the pool's threads is sent. */
function countBatches(pool: ChunkWorkers): () => number {
  let n = 0
  for (const w of pool.all) {
    const post = w.postMessage.bind(w)
    w.postMessage = (...args: Parameters<typeof post>) => {
      n++
      post(...args)
    }
  }
  return () => n
}

async function blobOf(tar: Buffer, dir: string, pool?: ChunkWorkers): Promise<Buffer> {
  const build = await buildLayer(new TarSource(once(tar), 'layer.tar'), { blobDir: dir, chunkSize: 0x10000, pool })
  return await readFile(build.blob!.tmpPath)
}

test('the layers of an image share one set of chunk threads, and their blobs are the ones built without it', async t => {
  const dir = await tempDir(t)
  const pool = layerWorkers({})
  t.teardown(async () => {
    await pool.close()
  })
  const batches = countBatches(pool)
  const layers = [tarOf(3, 3 * MiB), tarOf(5, 700 * 1024)]
  for (const [i, tar] of layers.entries()) {
    const before = batches()
    const shared = await blobOf(tar, join(dir, `shared-${i}`), pool)
    t.true(batches() > before, `layer ${i} went through the shared threads`)
    t.false(pool.closed, 'handed back open after a layer that succeeded')
    t.true(shared.equals(await blobOf(tar, join(dir, `own-${i}`))), `layer ${i}: byte-identical blob`)
  }
})

test('a layer that fails with batches in flight closes the shared threads; a later layer starts its own', async t => {
  const dir = await tempDir(t)
  const pool = layerWorkers({})
  t.teardown(async () => {
    await pool.close()
  })
  const whole = tarOf(4, 3 * MiB)
  const cut = whole.subarray(0, 10 * MiB)
  const err = await t.throwsAsync(blobOf(cut, join(dir, 'cut'), pool))
  t.regex(err!.message, /truncated|ends/i)
  t.true(pool.closed, 'answers still running for the failed layer cannot reach the next one')
  const good = tarOf(2, MiB)
  t.true((await blobOf(good, join(dir, 'after'), pool)).equals(await blobOf(good, join(dir, 'ref'))))
})
