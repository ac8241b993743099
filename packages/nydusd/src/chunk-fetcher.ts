import { NydusError } from '@nydusjs/errors'
import type { BlobInfo, ChunkRef, Digester } from '@nydusjs/rafs/read'
import type { ChainBackend, ChunkCache } from '@nydusjs/storage/local'
import type { Logger } from 'pino'
import { startsAt, type BufferPool } from './buffer-pool.js'
import { ChunkDecoder } from './chunk-decoder.js'
import { NydusdError } from './errors.js'
import { chunkKey, MemoryTier } from './memory-tier.js'
import type { DaemonMetrics } from './metrics.js'
import { ReadPlanner, type ChunkTable } from './read-planner.js'
import { OFFLOAD_MIN_BYTES } from './verify-worker.js'

export interface FetcherOptions {
  /** Every source, a chain (of one for a single backend): reads are verified the same way for all. */
  backend: ChainBackend
  cache?: ChunkCache
  blobs: readonly BlobInfo[]
  /** Every chunk of the image, for merging adjacent misses into one request (an array, or the bootstrap's table read on demand). */
  chunks: ChunkTable
  digester: Digester
  digestValidate: boolean
  mergingSize: number
  /** Bytes of blob a waited-for miss fetches at least (the chunks after it come along): nydus's amplify_io. */
  amplifyIo?: number
  metrics: DaemonMetrics
  log: Logger
  /** Bytes of decoded chunks kept in memory: FUSE asks for 128 KiB at a time, so one chunk serves several reads. */
  memoryCacheSize?: number
  /** Decompress and hash large chunks on a worker thread (default true; only with digestValidate). */
  verifyThread?: boolean
}

/** A chunk being loaded, and who waits for its bytes. */
interface Inflight {
  waiters: Array<(data: Buffer) => void>
  done: Promise<void>
}

/**
 * The read path for one chunk, tying the parts together with a single
 * flight per chunk: memory (MemoryTier), else the disk cache, else one
 * (merged, planned by ReadPlanner) range request to the chain, then decode
 * and verify (ChunkDecoder), keep and deliver.
 *
 * Decoded chunks live in pooled buffers that are reused once the memory LRU
 * drops them, so callers see a chunk's bytes only inside `withChunk`'s
 * callback, which runs synchronously while the bytes are held.
 */
export class ChunkFetcher {
  private readonly inflight = new Map<string, Inflight>()
  /** Chunks whose cached copy was hashed since start: a torn file from before a crash is caught once. */
  /** Chunks hashed once this run (a disk-cache hit is not hashed again), one bit per `planner.slot`. */
  private readonly verified: Uint8Array
  /** The link that served each merged neighbour waiting in memory, to name it if the chunk is refused. */
  private readonly mergedFrom = new Map<string, string>()
  private readonly mem: MemoryTier
  private readonly decoder: ChunkDecoder
  private readonly planner: ReadPlanner
  foregroundInflight = 0
  /** Chunks asked for (the idle check compares counts: no clock read on the read path), and since when none were. */
  private uses = 0
  private seenUses = -1
  private quietSince = 0
  private released = false

  constructor(private readonly o: FetcherOptions) {
    this.planner = new ReadPlanner(
      o.chunks,
      o.mergingSize,
      {
        hasLocally: (id, c) => this.hasLocally(id, c),
        isCached: c => this.isCached(c),
        isDecoded: (id, c) => this.mem.decoded.get(chunkKey(id, c.compressedOffset)) !== undefined,
        isInflight: (id, c) => this.inflight.has(chunkKey(id, c.compressedOffset)),
        load: async c => {
          await this.withChunk(c, noop, false)
        }
      },
      o.amplifyIo ?? 0
    )
    this.verified = new Uint8Array(Math.ceil(this.planner.slots / 8))
    const merging = Math.max(o.mergingSize, o.amplifyIo ?? 0)
    this.mem = new MemoryTier(this.planner.maxChunk, o.memoryCacheSize ?? 16 * 1024 * 1024, merging, o.cache, o.log)
    this.decoder = new ChunkDecoder(this.mem.pool, o.digester, o.digestValidate, o.verifyThread !== false)
  }

  /** The process's buffer pool (FUSE read replies are cut from it too). */
  get pool(): BufferPool {
    return this.mem.pool
  }

  /** Chunk buffers served from the pool rather than allocated. */
  get buffersReused(): number {
    return this.mem.pool.reused
  }

  /** Bytes the (process's) buffer pool has allocated. */
  get bufferBytesAllocated(): number {
    return this.mem.pool.allocatedBytes
  }

  /** Chunks the verify thread decoded or hashed. */
  get verifiedOffThread(): number {
    return this.decoder.offloaded
  }

  isCached(c: ChunkRef): boolean {
    return this.o.cache?.has(this.o.blobs[c.blobIndex].id, c.compressedOffset) ?? false
  }

  private hasLocally(blobId: string, c: ChunkRef): boolean {
    const k = chunkKey(blobId, c.compressedOffset)
    return this.inflight.has(k) || this.mem.decoded.get(k) !== undefined || this.mem.merged.get(k) !== undefined || this.isCached(c)
  }

  /** A copy of the chunk's verified, uncompressed bytes (for callers that keep them). */
  async get(c: ChunkRef, foreground = true): Promise<Buffer> {
    let out: Buffer | undefined
    await this.withChunk(
      c,
      data => {
        out = Buffer.from(data)
      },
      foreground
    )
    return out!
  }

  /**
   * Calls `use` with the chunk's verified, uncompressed bytes, synchronously
   * while they are held: `use` copies what it needs and keeps no reference.
   */
  async withChunk(c: ChunkRef, use: (data: Buffer) => void, foreground = true): Promise<void> {
    // Counted before the first await, so prefetch sees a foreground read the moment it starts.
    this.uses++
    if (foreground) this.foregroundInflight++
    try {
      const blob = this.o.blobs[c.blobIndex]
      const k = chunkKey(blob.id, c.compressedOffset)
      const hot = this.mem.decoded.get(k)
      if (hot !== undefined) {
        this.o.metrics.cacheHits.inc()
        use(hot)
        return
      }
      let f = this.inflight.get(k)
      if (f !== undefined) {
        f.waiters.push(use)
      } else {
        // The waiter is in place before loading starts: a load can deliver without awaiting.
        const entry: Inflight = { waiters: [use], done: Promise.resolve() }
        this.inflight.set(k, entry)
        entry.done = this.load(c, blob, k, foreground).finally(() => {
          if (this.inflight.get(k) === entry) this.inflight.delete(k)
        })
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
  withChunkNow(c: ChunkRef, use: (data: Buffer) => void): boolean {
    const blob = this.o.blobs[c.blobIndex]
    const k = chunkKey(blob.id, c.compressedOffset)
    const hot = this.mem.decoded.get(k)
    if (hot !== undefined) {
      this.o.metrics.cacheHits.inc()
      use(hot)
      return true
    }
    if (c.uncompressedSize >= OFFLOAD_MIN_BYTES || this.inflight.has(k)) return false
    const raw = this.mem.merged.take(k)
    if (raw === undefined) return false
    const source = this.takeSource(k)
    this.planner.runAhead(c, blob)
    let data: Buffer
    try {
      data = this.decoder.decodeHere(c, raw)
    } catch (err) {
      this.mem.pool.give(raw)
      this.refused(c, blob, source, err as Error)
      return false
    }
    this.markVerified(c)
    if (!startsAt(data, raw)) this.mem.pool.give(raw)
    this.keep(blob, c, data)
    use(data)
    return true
  }

  /** Hands a chunk's bytes to everyone waiting for it, in the same tick that produced them. */
  private deliver(k: string, data: Buffer): void {
    const f = this.inflight.get(k)
    if (f === undefined) return
    this.inflight.delete(k)
    let failure: unknown
    for (const use of f.waiters) {
      try {
        use(data)
      } catch (err) {
        failure ??= err
      }
    }
    if (failure !== undefined) throw failure
  }

  /** Called by `withChunk` right after it missed the memory LRU, with no await between. */
  private async load(c: ChunkRef, blob: BlobInfo, k: string, foreground: boolean): Promise<void> {
    const raw = this.mem.merged.take(k)
    if (raw !== undefined) {
      if (foreground) this.planner.runAhead(c, blob)
      const data = await this.decode(c, blob, raw, this.takeSource(k))
      if (data !== undefined) {
        if (!startsAt(data, raw)) this.mem.pool.give(raw)
        this.keep(blob, c, data)
        return
      }
    }
    if (await this.fromCache(c, blob, k, foreground)) return
    this.o.metrics.cacheMisses.inc()
    await this.fetch(c, blob, foreground)
  }

  /** The chunk from the disk cache, hashed once per run of the daemon; a bad copy is dropped. */
  private async fromCache(c: ChunkRef, blob: BlobInfo, k: string, foreground: boolean): Promise<boolean> {
    const cache = this.o.cache
    if (cache?.has(blob.id, c.compressedOffset) !== true) return false
    const dst = this.mem.pool.take(c.uncompressedSize)
    const cached = await cache.get(blob.id, c.compressedOffset, c.uncompressedSize, dst)
    if (cached !== undefined) {
      if (foreground) this.planner.cacheReadAhead(c, blob)
      if (this.isVerified(c) || !this.o.digestValidate || (await this.decoder.digest(cached)).equals(c.digest)) {
        this.markVerified(c)
        this.o.metrics.cacheHits.inc()
        this.mem.decoded.set(k, cached)
        this.deliver(k, cached)
        return true
      }
      this.o.log.warn({ blob: blob.id, offset: c.compressedOffset }, 'cached chunk does not match its digest; fetching it again')
      await cache.remove(blob.id, c.compressedOffset)
    }
    this.mem.pool.give(dst)
    return false
  }

  /** Fetches `c` plus the missing chunks right after it in the blob, up to merging_size, in one request. */
  private async fetch(c: ChunkRef, blob: BlobInfo, foreground = false): Promise<void> {
    const sequential = this.planner.isSequential(c)
    const run = this.planner.mergeRun(c, blob, foreground)
    const start = run[0].compressedOffset
    const last = run[run.length - 1]
    const length = last.compressedOffset + last.compressedSize - start
    let backend = this.o.backend.name
    const t0 = process.hrtime.bigint()
    let raw: Buffer
    let checked: Buffer | undefined
    try {
      // The chain moves to its next source when the wanted chunk does not verify.
      const served = await this.o.backend.readVerified(
        blob.id,
        start,
        length,
        async (b, source) => {
          checked = await this.decoder.decode(c, b.subarray(0, c.compressedSize)).catch((err: Error) => {
            this.refused(c, blob, source, err)
            return undefined
          })
          return checked !== undefined
        },
        undefined,
        this.mem.pool.take(length)
      )
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
    if (foreground && (sequential || this.planner.amplifies(c))) this.planner.runAhead(c, blob)
    for (const r of run.slice(1)) {
      const piece = this.mem.pool.take(r.compressedSize)
      raw.copy(piece, 0, r.compressedOffset - start, r.compressedOffset - start + r.compressedSize)
      const k = chunkKey(blob.id, r.compressedOffset)
      this.mem.merged.set(k, piece)
      if (backend === this.o.backend.links[0].name) continue
      // Evicted neighbours are never taken: bounded, at worst a refusal is put down to the first link.
      if (this.mergedFrom.size >= 4096) this.mergedFrom.clear()
      this.mergedFrom.set(k, backend)
    }
    if (checked !== undefined) this.markVerified(c)
    const wanted = checked ?? (await this.decode(c, blob, raw.subarray(0, c.compressedSize), backend))
    if (wanted === undefined)
      throw new NydusdError('ERR_CHUNK_VERIFY', `blob ${blob.id} chunk at ${c.compressedOffset} failed verification (backend ${backend})`)
    // The compressed bytes are spent (merged neighbours were copied out above); raw-stored, they are the chunk.
    if (!startsAt(wanted, raw)) this.mem.pool.give(raw)
    this.keep(blob, c, wanted)
  }

  /** Keeps a verified chunk and hands it to its waiters. */
  private keep(blob: BlobInfo, c: ChunkRef, data: Buffer): void {
    this.mem.keep(blob.id, c.compressedOffset, data)
    this.deliver(chunkKey(blob.id, c.compressedOffset), data)
  }

  /** Waits for pending cache writes (at shutdown, so a restart finds them). */
  async flush(): Promise<void> {
    await this.mem.flush()
  }

  private isVerified(c: ChunkRef): boolean {
    const s = this.planner.slot(c)
    return (this.verified[s >>> 3] & (1 << (s & 7))) !== 0
  }

  private markVerified(c: ChunkRef): void {
    const s = this.planner.slot(c)
    this.verified[s >>> 3] |= 1 << (s & 7)
  }

  /** Chunks asked for so far (the daemon notices a burst of reads has ended when this stops moving). */
  get requests(): number {
    return this.uses
  }

  /** No chunk asked for in `idleMs`: the memory tier lets its buffers go; true if it did now. */
  releaseIdle(idleMs: number): boolean {
    if (this.uses !== this.seenUses) {
      this.seenUses = this.uses
      this.quietSince = Date.now()
      this.released = false
      return false
    }
    if (this.released || this.inflight.size > 0 || Date.now() - this.quietSince < idleMs) return false
    this.released = true
    this.mem.release()
    return true
  }

  warmUp(): void {
    this.decoder.warmUp()
  }

  /** Flushes and stops the verify thread. */
  async close(): Promise<void> {
    await this.flush()
    this.mem.release()
    await this.decoder.close()
  }

  /** Decompressed and verified bytes, or undefined (logged and counted) when they do not match. */
  private async decode(c: ChunkRef, blob: BlobInfo, piece: Buffer, backend = this.o.backend.name): Promise<Buffer | undefined> {
    try {
      const data = await this.decoder.decode(c, piece)
      this.markVerified(c)
      return data
    } catch (err) {
      this.refused(c, blob, backend, err as Error)
      return undefined
    }
  }

  /** Where a merged neighbour came from: recorded only when not the first link, so the common case costs nothing. */
  private takeSource(k: string): string {
    const s = this.mergedFrom.get(k)
    if (s === undefined) return this.o.backend.links[0].name
    this.mergedFrom.delete(k)
    return s
  }

  private refused(c: ChunkRef, blob: BlobInfo, backend: string, err: Error): void {
    this.o.metrics.verifyFailures.inc({ backend })
    this.o.log.error(
      { blob: blob.id, chunk: c.digest.toString('hex'), offset: c.compressedOffset, backend, err: err.message },
      'chunk failed verification'
    )
  }
}

const noop = (): void => {}
