import { NydusError } from '@nydusjs/errors'
import { CHUNK_FLAG_COMPRESSED, compressChunk, decompressChunkInto, decompressChunk, type BlobInfo, type ChunkRef, type Digester } from '@nydusjs/rafs'
import type { ChainBackend, ChunkCache } from '@nydusjs/storage/local'
import type { Logger } from 'pino'
import { BufferLru } from './buffer-lru.js'
import { BufferPool } from './buffer-pool.js'
import { OFFLOAD_MIN_BYTES, VerifyWorker } from './verify-worker.js'
import { NydusdError } from './errors.js'
import type { DaemonMetrics } from './metrics.js'

export interface FetcherOptions {
  /** Every source, a chain (of one for a single backend): reads are verified the same way for all. */
  backend: ChainBackend
  cache?: ChunkCache
  blobs: readonly BlobInfo[]
  /** Every chunk of the image, for merging adjacent misses into one request. */
  chunks: readonly ChunkRef[]
  digester: Digester
  digestValidate: boolean
  mergingSize: number
  metrics: DaemonMetrics
  log: Logger
  /** Bytes of decoded chunks kept in memory: FUSE asks for 128 KiB at a time, so one chunk serves several reads. */
  memoryCacheSize?: number
  /** Decompress and hash large chunks on a worker thread (default true; only with digestValidate). */
  verifyThread?: boolean
}

/** A chunk being loaded, and who waits for its bytes. */
interface Inflight { waiters: Array<(data: Buffer) => void>, done: Promise<void> }

/**
 * The read path for one chunk: cache, else one (merged) range request to the
 * backend, then verify against the bootstrap's digest, decompress, cache.
 * Concurrent requests for the same chunk share one fetch.
 *
 * Decoded chunks live in pooled buffers that are reused once the memory LRU
 * drops them, so callers see a chunk's bytes only inside `withChunk`'s
 * callback, which runs synchronously while the bytes are held.
 */
export class ChunkFetcher {
  private readonly inflight = new Map<string, Inflight>()
  /** Per blob, chunks sorted by compressed offset. */
  private readonly byBlob = new Map<number, ChunkRef[]>()
  /** Chunks whose cached copy was hashed since start: a torn file from before a crash is caught once. */
  private readonly verified = new Set<string>()
  /** Decoded, verified chunks. */
  private readonly decoded: BufferLru
  /** Raw bytes of chunks that came along in a merged request; decoded only if asked for. */
  private readonly merged: BufferLru
  /** Per blob, where the last fetched run ended: the next run starting there is sequential. */
  private readonly lastEnd = new Map<number, number>()
  /** Blobs with a run-ahead fetch in flight. */
  private readonly aheadBusy = new Set<number>()
  private readonly writes = new Set<Promise<void>>()
  /** Buffers a cache write still reads from: never recycled. */
  private readonly writing = new Set<ArrayBufferLike>()
  private readonly pool: BufferPool
  private readonly verifier?: VerifyWorker
  foregroundInflight = 0

  constructor (private readonly o: FetcherOptions) {
    this.pool = new BufferPool(o.chunks.reduce((m, c) => Math.max(m, c.uncompressedSize), 0))
    this.decoded = new BufferLru(o.memoryCacheSize ?? 32 * 1024 * 1024, v => { if (!this.writing.has(v.buffer)) this.pool.give(v) })
    this.merged = new BufferLru(Math.max(o.mergingSize * 8, 8 * 1024 * 1024), v => this.pool.give(v))
    if (o.digestValidate && o.verifyThread !== false) this.verifier = new VerifyWorker(o.digester)
    const seen = new Set<string>()
    for (const c of o.chunks) {
      const k = key(o.blobs[c.blobIndex].id, c.compressedOffset)
      if (seen.has(k)) continue
      seen.add(k)
      const list = this.byBlob.get(c.blobIndex) ?? []
      list.push(c)
      this.byBlob.set(c.blobIndex, list)
    }
    for (const list of this.byBlob.values()) list.sort((a, b) => a.compressedOffset - b.compressedOffset)
  }

  /** Chunk buffers served from the pool rather than allocated. */
  get buffersReused (): number { return this.pool.reused }

  /** Chunks the verify thread decoded or hashed. */
  get verifiedOffThread (): number { return this.verifier?.offloaded ?? 0 }

  isCached (c: ChunkRef): boolean {
    return this.o.cache?.has(this.o.blobs[c.blobIndex].id, c.compressedOffset) ?? false
  }

  private hasLocally (blobId: string, c: ChunkRef): boolean {
    const k = key(blobId, c.compressedOffset)
    return this.inflight.has(k) || this.decoded.get(k) !== undefined || this.merged.get(k) !== undefined || this.isCached(c)
  }

  /** A copy of the chunk's verified, uncompressed bytes (for callers that keep them). */
  async get (c: ChunkRef, foreground = true): Promise<Buffer> {
    let out: Buffer | undefined
    await this.withChunk(c, data => { out = Buffer.from(data) }, foreground)
    return out!
  }

  /**
   * Calls `use` with the chunk's verified, uncompressed bytes, synchronously
   * while they are held: `use` copies what it needs and keeps no reference.
   */
  async withChunk (c: ChunkRef, use: (data: Buffer) => void, foreground = true): Promise<void> {
    // Counted before the first await, so prefetch sees a foreground read the moment it starts.
    if (foreground) this.foregroundInflight++
    try {
      const blob = this.o.blobs[c.blobIndex]
      const k = key(blob.id, c.compressedOffset)
      const hot = this.decoded.get(k)
      if (hot !== undefined) { this.o.metrics.cacheHits.inc(); use(hot); return }
      let f = this.inflight.get(k)
      if (f !== undefined) {
        f.waiters.push(use)
      } else {
        // The waiter is in place before loading starts: a load can deliver without awaiting.
        const entry: Inflight = { waiters: [use], done: Promise.resolve() }
        this.inflight.set(k, entry)
        entry.done = this.load(c, blob, k, foreground).finally(() => { if (this.inflight.get(k) === entry) this.inflight.delete(k) })
        f = entry
      }
      await f.done
    } finally {
      if (foreground) this.foregroundInflight--
    }
  }

  /**
   * Serves the chunk on the spot when its bytes are in memory: decoded, or
   * raw from a merged request and small enough to decode here. A FUSE read
   * made only of such chunks is answered with no promise in between. False:
   * nothing was called, use `withChunk`.
   */
  withChunkNow (c: ChunkRef, use: (data: Buffer) => void): boolean {
    const blob = this.o.blobs[c.blobIndex]
    const k = key(blob.id, c.compressedOffset)
    const hot = this.decoded.get(k)
    if (hot !== undefined) { this.o.metrics.cacheHits.inc(); use(hot); return true }
    if (c.uncompressedSize >= OFFLOAD_MIN_BYTES || this.inflight.has(k)) return false
    const raw = this.merged.take(k)
    if (raw === undefined) return false
    this.runAhead(c, blob)
    let data: Buffer
    try {
      data = this.decodeHere(c, raw)
    } catch (err) {
      this.pool.give(raw)
      this.refused(c, blob, this.o.backend.name, err as Error)
      return false
    }
    this.verified.add(k)
    if (data.buffer !== raw.buffer) this.pool.give(raw)
    this.keep(blob, c, data)
    use(data)
    return true
  }

  /** Hands a chunk's bytes to everyone waiting for it, in the same tick that produced them. */
  private deliver (k: string, data: Buffer): void {
    const f = this.inflight.get(k)
    if (f === undefined) return
    this.inflight.delete(k)
    let failure: unknown
    for (const use of f.waiters) {
      try { use(data) } catch (err) { failure ??= err }
    }
    if (failure !== undefined) throw failure
  }

  /** Called by `withChunk` right after it missed the memory LRU, with no await between. */
  private async load (c: ChunkRef, blob: BlobInfo, k: string, foreground: boolean): Promise<void> {
    const raw = this.merged.take(k)
    if (raw !== undefined) {
      if (foreground) this.runAhead(c, blob)
      const data = await this.decode(c, blob, raw)
      if (data !== undefined) {
        if (data.buffer !== raw.buffer) this.pool.give(raw)
        this.keep(blob, c, data)
        return
      }
    }
    const cache = this.o.cache
    const dst = cache?.has(blob.id, c.compressedOffset) === true ? this.pool.take(c.uncompressedSize) : undefined
    const cached = dst === undefined ? undefined : await cache!.get(blob.id, c.compressedOffset, c.uncompressedSize, dst)
    if (cached !== undefined) {
      if (foreground) this.cacheReadAhead(c, blob)
      if (this.verified.has(k) || !this.o.digestValidate || (await this.digestOf(cached)).equals(c.digest)) {
        this.verified.add(k)
        this.o.metrics.cacheHits.inc()
        this.decoded.set(k, cached)
        this.deliver(k, cached)
        return
      }
      this.o.log.warn({ blob: blob.id, offset: c.compressedOffset }, 'cached chunk does not match its digest; fetching it again')
      await cache!.remove(k)
    }
    if (dst !== undefined) this.pool.give(dst)
    this.o.metrics.cacheMisses.inc()
    await this.fetch(c, blob, foreground)
  }

  /** Fetches `c` plus the missing chunks right after it in the blob, up to merging_size, in one request. */
  private async fetch (c: ChunkRef, blob: BlobInfo, foreground = false): Promise<void> {
    const sequential = this.lastEnd.get(c.blobIndex) === c.compressedOffset
    const run = this.mergeRun(c, blob)
    const start = run[0].compressedOffset
    const last = run[run.length - 1]
    const length = last.compressedOffset + last.compressedSize - start
    let backend = this.o.backend.name
    const t0 = process.hrtime.bigint()
    let raw: Buffer
    let checked: Buffer | undefined
    try {
      // The chain moves to its next source when the wanted chunk does not verify.
      const served = await this.o.backend.readVerified(blob.id, start, length, async b => {
        checked = await this.decodeQuiet(c, b.subarray(0, c.compressedSize))
        return checked !== undefined
      }, undefined, this.pool.take(length))
      // An abandoned pool buffer is never handed back: a timed-out source may still write into it.
      raw = served.data
      backend = served.source
      this.o.metrics.backendRequests.inc({ backend, result: 'ok' })
      this.o.metrics.backendBytes.inc({ backend }, length)
    } catch (err) {
      this.o.metrics.backendRequests.inc({ backend, result: 'error' })
      const msg = err instanceof Error ? err.message : String(err)
      this.o.log.error({ blob: blob.id, offset: start, length, backend, err: msg }, 'backend read failed')
      throw err instanceof NydusError ? err : new NydusdError('ERR_CHUNK_FETCH', msg, { cause: err })
    } finally {
      this.o.metrics.backendLatency.observe({ backend }, Number(process.hrtime.bigint() - t0) / 1e9)
    }
    // After this run's own request, not before: the reader waits for this one.
    if (foreground && sequential) this.runAhead(c, blob)
    for (const r of run.slice(1)) {
      const piece = this.pool.take(r.compressedSize)
      raw.copy(piece, 0, r.compressedOffset - start, r.compressedOffset - start + r.compressedSize)
      this.merged.set(key(blob.id, r.compressedOffset), piece)
    }
    if (checked !== undefined) this.verified.add(key(blob.id, c.compressedOffset))
    const wanted = checked ?? await this.decode(c, blob, raw.subarray(0, c.compressedSize), backend)
    if (wanted === undefined) throw new NydusdError('ERR_CHUNK_VERIFY', `blob ${blob.id} chunk at ${c.compressedOffset} failed verification (backend ${backend})`)
    // The compressed bytes are spent (merged neighbours were copied out above); raw-stored, they are the chunk.
    if (wanted.buffer !== raw.buffer) this.pool.give(raw)
    this.keep(blob, c, wanted)
  }

  /** Keeps a verified chunk and hands it to its waiters; the disk write happens off the read's critical path (see `flush`). */
  private keep (blob: BlobInfo, c: ChunkRef, data: Buffer): void {
    const k = key(blob.id, c.compressedOffset)
    const cache = this.o.cache
    if (cache !== undefined) {
      this.writing.add(data.buffer)
      const p: Promise<void> = cache.put(blob.id, c.compressedOffset, data)
        .catch((err: Error) => this.o.log.warn({ err: err.message }, 'cache write failed'))
        .finally(() => { this.writes.delete(p); this.writing.delete(data.buffer) })
      this.writes.add(p)
    }
    this.decoded.set(k, data)
    this.deliver(k, data)
  }

  /** Waits for pending cache writes (at shutdown, so a restart finds them). */
  async flush (): Promise<void> {
    while (this.writes.size > 0) await Promise.all([...this.writes])
  }

  /** Decodes and hashes a small made-up chunk once, so the first real read does not pay for these paths' first call. */
  warmUp (): void {
    const sample = compressChunk(Buffer.alloc(16 * 1024, 1), 'zstd')
    const dst = this.pool.take(16 * 1024)
    this.o.digester.digest(decompressChunkInto(sample.data, sample.flags, 16 * 1024, dst))
    this.pool.give(dst)
  }

  /** Flushes and stops the verify thread. */
  async close (): Promise<void> {
    await this.flush()
    await this.verifier?.close()
  }

  private async digestOf (data: Buffer): Promise<Buffer> {
    return await (this.verifier?.digest(data) ?? this.o.digester.digestAsync(data))
  }

  /** A chain link's answer decompressed and verified, or undefined: the chain moves on (it logs and counts the failure). */
  private async decodeQuiet (c: ChunkRef, piece: Buffer): Promise<Buffer | undefined> {
    return await this.decodeChecked(c, piece).catch(() => undefined)
  }

  /** Decompressed and verified on this thread; throws on a mismatch, its buffer back in the pool. */
  private decodeHere (c: ChunkRef, piece: Buffer): Buffer {
    const data = this.unpack(c, piece)
    if (!this.o.digestValidate || this.o.digester.digest(data).equals(c.digest)) return data
    if (data.buffer !== piece.buffer) this.pool.give(data)
    throw new Error(`digest mismatch, expected ${c.digest.toString('hex')}`)
  }

  /** Decompressed (into a pooled buffer) and, stored raw, copied out of a larger request buffer. */
  private unpack (c: ChunkRef, piece: Buffer): Buffer {
    if ((c.flags & CHUNK_FLAG_COMPRESSED) === 0) {
      const data = decompressChunk(piece, c.flags, c.uncompressedSize)
      return data.buffer.byteLength > data.length * 2 ? Buffer.from(data) : data
    }
    const dst = this.pool.take(c.uncompressedSize)
    try {
      return decompressChunkInto(piece, c.flags, c.uncompressedSize, dst)
    } catch (err) {
      this.pool.give(dst)
      throw err
    }
  }

  /** Decompressed and verified bytes, or undefined (logged and counted) when they do not match. */
  private async decode (c: ChunkRef, blob: BlobInfo, piece: Buffer, backend = this.o.backend.name): Promise<Buffer | undefined> {
    try {
      const data = await this.decodeChecked(c, piece)
      this.verified.add(key(blob.id, c.compressedOffset))
      return data
    } catch (err) {
      this.refused(c, blob, backend, err as Error)
      return undefined
    }
  }

  /**
   * Decompressed and verified; throws on a mismatch with the buffers it took
   * back in the pool (never `piece`'s: a chain may still be filling it). Large
   * chunks are decompressed and hashed on the verify thread, so the JS thread
   * serves FUSE while read-ahead chunks are checked.
   */
  private async decodeChecked (c: ChunkRef, piece: Buffer): Promise<Buffer> {
    let data: Buffer | undefined
    let dst: Buffer | undefined
    try {
      let digest: Buffer | undefined
      if (this.verifier !== undefined && (c.flags & CHUNK_FLAG_COMPRESSED) !== 0) {
        dst = this.pool.take(c.uncompressedSize)
        ;({ data, digest } = await this.verifier.decode(piece, c.flags, c.uncompressedSize, dst))
      } else {
        data = this.unpack(c, piece)
        if (this.o.digestValidate) digest = await this.digestOf(data)
      }
      if (digest !== undefined && !digest.equals(c.digest)) throw new Error(`digest mismatch, expected ${c.digest.toString('hex')}`)
      return data
    } catch (err) {
      const spent = data ?? dst
      if (spent !== undefined && spent.buffer !== piece.buffer) this.pool.give(spent)
      throw err
    }
  }

  private refused (c: ChunkRef, blob: BlobInfo, backend: string, err: Error): void {
    this.o.metrics.verifyFailures.inc({ backend })
    this.o.log.error({ blob: blob.id, chunk: c.digest.toString('hex'), offset: c.compressedOffset, backend, err: err.message }, 'chunk failed verification')
  }

  /**
   * Each chunk read from the disk cache costs trips through the thread pool
   * (open, read). When the chunk before this one in the blob is in memory, the
   * reader is going through the blob in order: the cached chunks that follow,
   * up to merging_size of blob, are loaded in parallel, so their trips overlap
   * as one merged request does for misses.
   */
  private cacheReadAhead (c: ChunkRef, blob: BlobInfo): void {
    const list = this.byBlob.get(c.blobIndex)
    const i = list === undefined ? -1 : lowerBound(list, c.compressedOffset)
    if (list === undefined || i < 1 || this.decoded.get(key(blob.id, list[i - 1].compressedOffset)) === undefined) return
    let total = 0
    for (let j = i + 1; j < list.length && total < this.o.mergingSize; j++) {
      const n = list[j]
      total += n.compressedSize
      if (!this.isCached(n)) break
      const k = key(blob.id, n.compressedOffset)
      if (!this.inflight.has(k) && this.decoded.get(k) === undefined) this.withChunk(n, noop, false).catch(() => {})
    }
  }

  /**
   * A reader going through a blob in order would wait for each merged
   * request in turn. While it consumes one run, the next run is fetched (and
   * its first chunk decoded) in the background: at most one run ahead per blob.
   */
  private runAhead (c: ChunkRef, blob: BlobInfo): void {
    const end = this.lastEnd.get(c.blobIndex)
    const list = this.byBlob.get(c.blobIndex)
    if (end === undefined || list === undefined || this.aheadBusy.has(c.blobIndex)) return
    if (end - (c.compressedOffset + c.compressedSize) > this.o.mergingSize) return
    const next = list[lowerBound(list, end)]
    if (next === undefined || next.compressedOffset !== end || this.hasLocally(blob.id, next)) return
    this.aheadBusy.add(c.blobIndex)
    this.withChunk(next, noop, false).catch(() => {}).finally(() => this.aheadBusy.delete(c.blobIndex))
  }

  /**
   * Merging pays off only for sequential access: a request that starts where
   * the previous one of this blob ended is extended up to merging_size; a
   * scattered one fetches just its chunk, so reading 5% of an image costs
   * about 5% of its bytes.
   */
  private mergeRun (c: ChunkRef, blob: BlobInfo): ChunkRef[] {
    const run = [c]
    const list = this.byBlob.get(c.blobIndex)
    const sequential = this.lastEnd.get(c.blobIndex) === c.compressedOffset
    this.lastEnd.set(c.blobIndex, c.compressedOffset + c.compressedSize)
    if (list === undefined || !sequential || this.o.mergingSize <= c.compressedSize) return run
    let i = lowerBound(list, c.compressedOffset)
    let end = c.compressedOffset + c.compressedSize
    let total = c.compressedSize
    for (i++; i < list.length; i++) {
      const n = list[i]
      if (n.compressedOffset !== end || total + n.compressedSize > this.o.mergingSize) break
      if (this.hasLocally(blob.id, n)) break
      run.push(n)
      end += n.compressedSize
      total += n.compressedSize
    }
    this.lastEnd.set(c.blobIndex, end)
    return run
  }
}

const key = (blobId: string, offset: number): string => `${blobId}/${offset}`
const noop = (): void => {}

function lowerBound (list: ChunkRef[], offset: number): number {
  let lo = 0
  let hi = list.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (list[mid].compressedOffset < offset) lo = mid + 1
    else hi = mid
  }
  return lo
}
