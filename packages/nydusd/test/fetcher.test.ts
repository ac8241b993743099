import test from 'ava'
import { createHash, randomBytes } from 'node:crypto'
import { cp, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { BootstrapReader, loadDigester, type ChunkRef } from '@nydusjs/rafs'
import { ChainBackend, ChunkCache, LocalFsBackend, type BlobBackend } from '@nydusjs/storage'
import Fuse from 'fuse-native'
import { gnuExtract, layerFixture, tempDir } from '@nydusjs/testkit'
import { ChunkFetcher } from '../src/chunk-fetcher.js'
import { DaemonMetrics } from '../src/metrics.js'
import { Prefetcher } from '../src/prefetch.js'
import { RafsFs } from '../src/rafs-fs.js'
import { buildImage } from './helpers.js'

/** The real localfs backend, slowed down and counted; reads also wait for `gate` while one is set. */
class CountingBackend implements BlobBackend {
  readonly name = 'counting'
  reads = 0
  log: Array<{ offset: number; length: number }> = []
  gate: Promise<void> | undefined
  constructor(
    private readonly inner: BlobBackend,
    private readonly delayMs: number
  ) {}
  async read(id: string, offset: number, length: number): Promise<Buffer> {
    this.reads++
    this.log.push({ offset, length })
    await sleep(this.delayMs)
    await this.gate
    return await this.inner.read(id, offset, length)
  }

  async size(id: string): Promise<number> {
    return await this.inner.size(id)
  }
  async close(): Promise<void> {
    await this.inner.close()
  }
}

async function setup(
  t: Parameters<typeof buildImage>[0],
  delayMs: number,
  mergingSize = 0
): Promise<{
  fetcher: ChunkFetcher
  backend: CountingBackend
  r: BootstrapReader
  chunks: ChunkRef[]
  metrics: DaemonMetrics
  blobPath: string
}> {
  const img = await buildImage(t, layerFixture('gnu.tar'), ['--chunk-size', '0x1000', '--compressor', 'none'])
  const r = BootstrapReader.open(await readFile(img.boot))
  const backend = new CountingBackend(new LocalFsBackend(img.blobs), delayMs)
  const chunks = Array.from({ length: r.sb.chunkCount }, (_, i) => r.chunk(i))
  const metrics = new DaemonMetrics()
  const fetcher = new ChunkFetcher({
    backend: new ChainBackend([{ backend }]),
    blobs: r.blobs(),
    chunks,
    digester: await loadDigester('sha256'),
    digestValidate: true,
    mergingSize,
    metrics,
    log: pino({ level: 'silent' })
  })
  t.teardown(async () => {
    await fetcher.close()
    await backend.close()
  })
  return { fetcher, backend, r, chunks, metrics, blobPath: join(img.blobs, r.blobs()[0].id) }
}

test('concurrent reads of one missing chunk fetch it once', async t => {
  const { fetcher, backend, chunks } = await setup(t, 30)
  const c = chunks[5]
  const all = await Promise.all(Array.from({ length: 20 }, async () => await fetcher.get(c)))
  t.is(backend.reads, 1)
  t.true(all.every(b => b.equals(all[0])))
  t.is(all[0].length, c.uncompressedSize)
})

test('sequential misses are merged into one request up to merging_size, one run is fetched ahead; a scattered one fetches only its chunk', async t => {
  const { fetcher, backend, chunks } = await setup(t, 0, 16 * 1024)
  const sorted = [...chunks].sort((a, b) => a.compressedOffset - b.compressedOffset)
  await fetcher.get(sorted[0])
  t.is(backend.reads, 1)
  t.is(backend.log[0].length, sorted[0].compressedSize, 'a first, unrelated read is not merged, nor read ahead')
  await fetcher.get(sorted[1])
  const merged = backend.log[1]
  t.true(merged.length > sorted[1].compressedSize && merged.length <= 16 * 1024, 'a read that continues the previous one is merged')
  t.is(backend.reads, 3, 'and the run after it is asked for at once')
  const ahead = backend.log[2]
  t.is(ahead.offset, merged.offset + merged.length, 'the run ahead starts where the merged one ended')
  t.true(ahead.length > 0 && ahead.length <= 16 * 1024)
  const covered = sorted.filter(
    c => c.compressedOffset >= merged.offset && c.compressedOffset + c.compressedSize <= ahead.offset + ahead.length
  )
  t.true(covered.length > 2)
  for (const c of covered) await fetcher.get(c)
  const later = backend.log.slice(3)
  t.true(later.length <= 1, 'the neighbours are served without requests of their own; at most one more run ahead')
  for (const l of later) t.is(l.offset, ahead.offset + ahead.length, 'a later run continues the blob in order')
  // Only foreground loads ask for a run ahead, so nothing else is asked for from here on.
  const n = backend.reads
  const far = sorted[sorted.length - 1]
  await fetcher.get(far)
  t.is(backend.reads, n + 1)
  t.deepEqual(
    backend.log[n],
    { offset: far.compressedOffset, length: far.compressedSize },
    'a scattered read: its chunk alone, nothing ahead'
  )
})

test('chunks of a merged request are served on the spot, each checked: a corrupt one is refused, counted, and fails its read', async t => {
  const { fetcher, backend, chunks, metrics, blobPath } = await setup(t, 0, 16 * 1024)
  const sorted = [...chunks].sort((a, b) => a.compressedOffset - b.compressedOffset)
  const bad = sorted[3]
  const blob = await readFile(blobPath)
  blob[bad.compressedOffset + 7] ^= 0x01
  await writeFile(blobPath, blob)
  await fetcher.get(sorted[0])
  await fetcher.get(sorted[1])
  t.true(
    backend.log[1].offset + backend.log[1].length >= bad.compressedOffset + bad.compressedSize,
    'the corrupt chunk came in the merged request'
  )
  let got: Buffer | undefined
  t.true(
    fetcher.withChunkNow(sorted[2], d => {
      got = Buffer.from(d)
    }),
    'a merged neighbour is served synchronously'
  )
  t.true(createHash('sha256').update(got!).digest().equals(sorted[2].digest))
  t.false(fetcher.withChunkNow(bad, () => t.fail('corrupt bytes were handed out')))
  t.regex(await metrics.registry.metrics(), /nydusd_chunk_verify_failures_total\{backend="counting"\} 1/)
  await t.throwsAsync(fetcher.get(bad), { code: 'ERR_BACKEND_VERIFY' })
})

test('prefetch waits while a foreground read is in flight', async t => {
  const { fetcher, backend, r } = await setup(t, 0)
  const pre = new Prefetcher(r, fetcher, { all: true, threads: 1, bandwidthRate: 0 }, new DaemonMetrics(), pino({ level: 'silent' }))
  const chunks = Array.from({ length: r.sb.chunkCount }, (_, i) => r.chunk(i)).sort((a, b) => b.compressedOffset - a.compressedOffset)
  // The foreground read is held until released, so the check below does not race a timer on a loaded machine.
  let release = (): void => {}
  backend.gate = new Promise(resolve => {
    release = resolve
  })
  const fg = fetcher.get(chunks[0])
  const running = pre.run()
  await sleep(50)
  t.is(backend.reads, 1, 'no prefetch request starts while the foreground one is waiting')
  backend.gate = undefined
  release()
  await fg
  await running
  t.true(backend.reads > 1, 'prefetch went on once the foreground read was done')
  t.is(pre.status.state, 'done')
  t.is(pre.status.doneChunks, pre.status.totalChunks)
})

/** localfs with random delays on both read paths, so loads finish in a shuffled order. */
class JitterBackend implements BlobBackend {
  readonly name = 'jitter'
  longest = 0
  constructor(private readonly inner: LocalFsBackend) {}
  async read(id: string, offset: number, length: number): Promise<Buffer> {
    this.longest = Math.max(this.longest, length)
    await sleep(Math.random() * 3)
    return await this.inner.read(id, offset, length)
  }

  async readInto(id: string, offset: number, dst: Buffer): Promise<void> {
    this.longest = Math.max(this.longest, dst.length)
    await sleep(Math.random() * 3)
    await this.inner.readInto(id, offset, dst)
  }

  async size(id: string): Promise<number> {
    return await this.inner.size(id)
  }
  async close(): Promise<void> {
    await this.inner.close()
  }
}

for (const mergingSize of [0, 64 * 1024]) {
  test(`chunk buffers are reused under memory-cache churn, and 48 concurrent readers still get exactly their chunks (merging_size ${mergingSize})`, async t => {
    const src = await tempDir(t, 'pool-src-')
    for (let i = 0; i < 40; i++) {
      // Random files are stored raw (views of the read buffer); text files are compressed (decoded into pooled buffers).
      const body = i % 2 === 0 ? randomBytes(256 * 1024) : Buffer.from(`line ${i} `.repeat(32000).slice(0, 256 * 1024))
      await writeFile(join(src, `f${i}`), body)
    }
    // 16 KiB chunks: the smallest buffer class the pool keeps.
    const img = await buildImage(t, src, ['--chunk-size', '0x4000'])
    const r = BootstrapReader.open(await readFile(img.boot))
    const chunks = Array.from({ length: r.sb.chunkCount }, (_, i) => r.chunk(i)).sort((a, b) => a.compressedOffset - b.compressedOffset)
    t.true(chunks.some(c => c.flags !== 0) && chunks.some(c => c.flags === 0), 'both compressed and raw chunks')
    const backend = new JitterBackend(new LocalFsBackend(img.blobs))
    const fetcher = new ChunkFetcher({
      backend: new ChainBackend([{ backend }]),
      blobs: r.blobs(),
      chunks,
      digester: await loadDigester('sha256'),
      digestValidate: true,
      mergingSize,
      memoryCacheSize: 64 * 1024,
      metrics: new DaemonMetrics(),
      log: pino({ level: 'silent' })
    })
    let wrong = 0
    let served = 0
    let step = 0
    const allocatedBefore = fetcher.bufferBytesAllocated
    await Promise.all(
      Array.from({ length: 48 }, async () => {
        for (let n = 0; n < 20; n++) {
          // A window of 12 chunks sliding over the blob, read in runs of 3 neighbours (so merging has
          // something to merge): hits in the 4-chunk memory cache and evictions both happen all the time.
          const w = Math.floor(step++ / 6) % (chunks.length - 14)
          const at = w + Math.floor(Math.random() * 12)
          for (const c of chunks.slice(at, at + 3)) {
            await fetcher.withChunk(c, data => {
              served++
              if (!createHash('sha256').update(data).digest().equals(c.digest)) wrong++
            })
          }
        }
      })
    )
    t.is(served, 48 * 60)
    t.is(wrong, 0)
    // 45 MiB of chunks served from the memory LRU's worth of buffers (the pool is the process's: other tests count too).
    const allocated = fetcher.bufferBytesAllocated - allocatedBefore
    t.true(fetcher.buffersReused > 50, `buffers reused: ${fetcher.buffersReused}`)
    t.true(allocated < (served * 16 * 1024) / 2, `allocated ${allocated} bytes for ${served} chunks of 16 KiB`)
    if (mergingSize > 0) t.true(backend.longest > 16 * 1024, `longest request ${backend.longest}: some were merged`)
    await fetcher.close()
    await backend.close()
  })
}

test('1 MiB chunks are decoded and hashed on the verify thread: concurrent readers get exactly their chunks, flipped bytes are refused', async t => {
  const src = await tempDir(t, 'big-src-')
  for (let i = 0; i < 8; i++) {
    // Hex text compresses about 2:1, like real binaries: the compressed chunks are big enough for pooled buffers.
    const body = i % 2 === 0 ? randomBytes(1536 * 1024) : Buffer.from(randomBytes(768 * 1024).toString('hex'))
    await writeFile(join(src, `f${i}`), body)
  }
  const img = await buildImage(t, src)
  const r = BootstrapReader.open(await readFile(img.boot))
  const chunks = Array.from({ length: r.sb.chunkCount }, (_, i) => r.chunk(i))
  const victim = chunks.find(c => c.flags === 0 && c.uncompressedSize === 1024 * 1024)!
  const packed = chunks.find(c => c.flags !== 0 && c.uncompressedSize === 1024 * 1024)!
  const [blob] = r.blobs()
  const blobPath = join(img.blobs, blob.id)
  const bytes = await readFile(blobPath)
  bytes[victim.compressedOffset + 4321] ^= 1
  bytes[packed.compressedOffset + (packed.compressedSize >> 1)] ^= 1
  await writeFile(blobPath, bytes)
  const backend = new JitterBackend(new LocalFsBackend(img.blobs))
  t.teardown(async () => {
    await backend.close()
  })
  const fetcher = new ChunkFetcher({
    backend: new ChainBackend([{ backend }]),
    blobs: r.blobs(),
    chunks,
    digester: await loadDigester('sha256'),
    digestValidate: true,
    mergingSize: 0,
    memoryCacheSize: 2 * 1024 * 1024,
    metrics: new DaemonMetrics(),
    log: pino({ level: 'silent' })
  })
  t.teardown(async () => {
    await fetcher.close()
  })
  const good = chunks.filter(c => c.compressedOffset !== victim.compressedOffset && c.compressedOffset !== packed.compressedOffset)
  let wrong = 0
  let served = 0
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let n = 0; n < 12; n++) {
        const c = good[Math.floor(Math.random() * good.length)]
        await fetcher.withChunk(c, data => {
          served++
          if (!createHash('sha256').update(data).digest().equals(c.digest)) wrong++
        })
      }
    })
  )
  t.is(served, 16 * 12)
  t.is(wrong, 0)
  t.true(fetcher.verifiedOffThread > 0, `hashed off thread: ${fetcher.verifiedOffThread}`)
  // Run-ahead loads the readers started may still be on the thread: count from when it is quiet.
  let before = -1
  for (let quiet = 0; quiet < 3; ) {
    quiet = fetcher.verifiedOffThread === before ? quiet + 1 : 0
    before = fetcher.verifiedOffThread
    await sleep(50)
  }
  await t.throwsAsync(fetcher.get(victim), { code: 'ERR_BACKEND_VERIFY' })
  await t.throwsAsync(fetcher.get(packed), { code: 'ERR_BACKEND_VERIFY' })
  t.is(fetcher.verifiedOffThread, before + 2, 'the bad chunks were judged by the verify thread')
})

test('a chain link answer is judged on the verify thread: a corrupt chunk from the first link fails over to the second, which serves it right', async t => {
  const src = await tempDir(t, 'chain-src-')
  for (let i = 0; i < 3; i++) await writeFile(join(src, `f${i}`), Buffer.from(randomBytes(768 * 1024).toString('hex')))
  const img = await buildImage(t, src)
  const r = BootstrapReader.open(await readFile(img.boot))
  const chunks = Array.from({ length: r.sb.chunkCount }, (_, i) => r.chunk(i))
  const packed = chunks.filter(c => c.flags !== 0 && c.uncompressedSize === 1024 * 1024)
  t.true(packed.length >= 2)
  const [blob] = r.blobs()
  const bad = join(await tempDir(t, 'chain-bad-'), 'blobs')
  await cp(img.blobs, bad, { recursive: true })
  const bytes = await readFile(join(bad, blob.id))
  bytes[packed[0].compressedOffset + (packed[0].compressedSize >> 1)] ^= 1
  await writeFile(join(bad, blob.id), bytes)
  const failovers: string[] = []
  const chain = new ChainBackend(
    [{ backend: new LocalFsBackend(bad), options: { retries: 0 } }, { backend: new LocalFsBackend(img.blobs) }],
    { onFailover: (_l, err) => failovers.push((err as Error & { code: string }).code) }
  )
  const fetcher = new ChunkFetcher({
    backend: chain,
    blobs: r.blobs(),
    chunks,
    digester: await loadDigester('sha256'),
    digestValidate: true,
    mergingSize: 0,
    metrics: new DaemonMetrics(),
    log: pino({ level: 'silent' })
  })
  t.teardown(async () => {
    await fetcher.close()
    await chain.close()
  })
  for (const c of packed)
    t.true(
      createHash('sha256')
        .update(await fetcher.get(c))
        .digest()
        .equals(c.digest)
    )
  t.deepEqual(failovers, ['ERR_BACKEND_VERIFY'])
  t.is(fetcher.verifiedOffThread, packed.length + 1, 'every answer, the refused one too, was decoded and hashed off the JS thread')
})

test('a sequential reader served from the disk cache gets the following cached chunks loaded ahead, up to merging_size', async t => {
  const img = await buildImage(t, layerFixture('gnu.tar'), ['--chunk-size', '0x1000', '--compressor', 'none'])
  const r = BootstrapReader.open(await readFile(img.boot))
  const chunks = Array.from({ length: r.sb.chunkCount }, (_, i) => r.chunk(i))
  const sorted = [...new Map(chunks.map(c => [c.compressedOffset, c])).values()].sort((a, b) => a.compressedOffset - b.compressedOffset)
  const backend = new CountingBackend(new LocalFsBackend(img.blobs), 0)
  t.teardown(async () => {
    await backend.close()
  })
  const opts = {
    backend: new ChainBackend([{ backend }]),
    blobs: r.blobs(),
    chunks,
    digester: await loadDigester('sha256'),
    digestValidate: true,
    mergingSize: 16 * 1024,
    metrics: new DaemonMetrics(),
    log: pino({ level: 'silent' })
  }
  const filler = new ChunkFetcher({ ...opts, cache: await ChunkCache.open(img.cache) })
  for (const c of sorted) await filler.get(c)
  await filler.close()
  const cache = await ChunkCache.open(img.cache)
  const asked: number[] = []
  const get = cache.get.bind(cache)
  cache.get = async (id, offset, size, dst) => {
    asked.push(offset)
    return await get(id, offset, size, dst)
  }
  const fetcher = new ChunkFetcher({ ...opts, cache })
  t.teardown(async () => {
    await fetcher.close()
  })
  const before = backend.reads
  await fetcher.get(sorted[0])
  await fetcher.get(sorted[1])
  const loadedAhead = (): ChunkRef[] => sorted.slice(2).filter(c => asked.includes(c.compressedOffset))
  // Read-ahead runs in the background: wait for it, bounded, rather than for a fixed time.
  for (let i = 0; i < 100 && loadedAhead().length < 2; i++) await sleep(20)
  await sleep(20)
  const ahead = loadedAhead()
  t.true(ahead.length >= 2, `loaded ahead: ${ahead.length}`)
  t.true(ahead.reduce((n, c) => n + c.compressedSize, 0) <= 16 * 1024, 'no more than merging_size of blob')
  const calls = asked.length
  // Stored uncompressed: a chunk's bytes are its range of the blob.
  for (const c of ahead) t.true((await fetcher.get(c)).equals(await readFromBlob(img.blobs, r, c)))
  t.is(asked.length, calls, 'the chunks loaded ahead are served from memory')
  t.is(backend.reads, before, 'and nothing came from the backend')
})

async function readFromBlob(dir: string, r: BootstrapReader, c: ChunkRef): Promise<Buffer> {
  const blob = await readFile(join(dir, r.blobs()[c.blobIndex].id))
  return blob.subarray(c.compressedOffset, c.compressedOffset + c.compressedSize)
}

test('a FUSE read still waiting at its timeout gets ETIMEDOUT, and the chunk that comes later never touches its buffer (back with libfuse by then)', async t => {
  const { fetcher, backend, r, chunks } = await setup(t, 0)
  const fs = new RafsFs(r, fetcher, new DaemonMetrics(), pino({ level: 'silent' }), true, 100)
  const read = fs.ops().read
  const ref = await tempDir(t)
  await gnuExtract(layerFixture('gnu.tar'), ref)
  const want = await readFile(join(ref, 'big-copy.bin'))
  const first = chunks[r.chunkIndexes(r.lookup(Buffer.from('/big-copy.bin'))!)[0]]
  let release!: () => void
  backend.gate = new Promise(resolve => {
    release = resolve
  })
  const late = Buffer.alloc(8192, 0xaa)
  t.is(await new Promise<number>(resolve => read('/big-copy.bin', 0, late, late.length, 0, resolve)), Fuse.ETIMEDOUT)
  backend.gate = undefined
  release()
  // Joins the timed-out read's fetch: when it settles, that read's copy step has run.
  await fetcher.get(first)
  t.true(
    late.every(b => b === 0xaa),
    'nothing was written after the answer'
  )
  const buf = Buffer.alloc(8192)
  const n = await new Promise<number>(resolve => read('/big-copy.bin', 0, buf, buf.length, 0, resolve))
  t.is(n, buf.length)
  t.true(buf.equals(want.subarray(0, n)), 'the next read gets the bytes')
})
