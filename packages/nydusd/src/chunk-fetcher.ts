import { decompressChunk, type BlobInfo, type ChunkRef, type Digester } from '@nydusjs/rafs'
import { StorageError, type BlobBackend, type ChunkCache } from '@nydusjs/storage'
import type { Logger } from 'pino'
import { NydusdError } from './errors.js'
import type { DaemonMetrics } from './metrics.js'

export interface FetcherOptions {
  backend: BlobBackend
  cache?: ChunkCache
  blobs: readonly BlobInfo[]
  /** Every chunk of the image, for merging adjacent misses into one request. */
  chunks: readonly ChunkRef[]
  digester: Digester
  digestValidate: boolean
  mergingSize: number
  metrics: DaemonMetrics
  log: Logger
}

/**
 * The read path for one chunk: cache, else one (merged) range request to the
 * backend, then verify against the bootstrap's digest, decompress, cache.
 * Concurrent requests for the same chunk share one fetch.
 */
export class ChunkFetcher {
  private readonly inflight = new Map<string, Promise<Buffer>>()
  /** Per blob, chunks sorted by compressed offset. */
  private readonly byBlob = new Map<number, ChunkRef[]>()
  /** Chunks whose cached copy was hashed since start: a torn file from before a crash is caught once. */
  private readonly verified = new Set<string>()
  foregroundInflight = 0

  constructor (private readonly o: FetcherOptions) {
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

  isCached (c: ChunkRef): boolean {
    return this.o.cache?.has(this.o.blobs[c.blobIndex].id, c.compressedOffset) ?? false
  }

  /** The chunk's verified, uncompressed bytes. */
  async get (c: ChunkRef, foreground = true): Promise<Buffer> {
    const blob = this.o.blobs[c.blobIndex]
    const k = key(blob.id, c.compressedOffset)
    const pending = this.inflight.get(k)
    if (pending !== undefined) return await pending
    const p = this.load(c, blob, k, foreground)
    this.inflight.set(k, p)
    try {
      return await p
    } finally {
      this.inflight.delete(k)
    }
  }

  private async load (c: ChunkRef, blob: BlobInfo, k: string, foreground: boolean): Promise<Buffer> {
    const cached = await this.o.cache?.get(blob.id, c.compressedOffset, c.uncompressedSize)
    if (cached !== undefined) {
      if (this.verified.has(k) || !this.o.digestValidate || this.o.digester.digest(cached).equals(c.digest)) {
        this.verified.add(k)
        this.o.metrics.cacheHits.inc()
        return cached
      }
      this.o.log.warn({ blob: blob.id, offset: c.compressedOffset }, 'cached chunk does not match its digest; fetching it again')
      await this.o.cache!.remove(k)
    }
    this.o.metrics.cacheMisses.inc()
    if (foreground) this.foregroundInflight++
    try {
      return await this.fetch(c, blob)
    } finally {
      if (foreground) this.foregroundInflight--
    }
  }

  /** Fetches `c` plus the missing chunks right after it in the blob, up to merging_size, in one request. */
  private async fetch (c: ChunkRef, blob: BlobInfo): Promise<Buffer> {
    const run = this.mergeRun(c, blob)
    const start = run[0].compressedOffset
    const last = run[run.length - 1]
    const length = last.compressedOffset + last.compressedSize - start
    const backend = this.o.backend.name
    const t0 = process.hrtime.bigint()
    let raw: Buffer
    try {
      raw = await this.o.backend.read(blob.id, start, length)
      this.o.metrics.backendRequests.inc({ backend, result: 'ok' })
      this.o.metrics.backendBytes.inc({ backend }, length)
    } catch (err) {
      this.o.metrics.backendRequests.inc({ backend, result: 'error' })
      const msg = err instanceof StorageError ? err.message : String(err)
      this.o.log.error({ blob: blob.id, offset: start, length, backend, err: msg }, 'backend read failed')
      throw new NydusdError('ERR_CHUNK_FETCH', msg, { cause: err })
    } finally {
      this.o.metrics.backendLatency.observe({ backend }, Number(process.hrtime.bigint() - t0) / 1e9)
    }
    let wanted: Buffer | undefined
    for (const r of run) {
      const piece = raw.subarray(r.compressedOffset - start, r.compressedOffset - start + r.compressedSize)
      const data = this.decode(r, blob, piece)
      if (r === c) wanted = data
      if (data !== undefined) await this.o.cache?.put(blob.id, r.compressedOffset, data).catch((err: Error) => this.o.log.warn({ err: err.message }, 'cache write failed'))
    }
    if (wanted === undefined) throw new NydusdError('ERR_CHUNK_VERIFY', `blob ${blob.id} chunk at ${c.compressedOffset} failed verification (backend ${backend})`)
    return wanted
  }

  /** Decompressed and verified bytes, or undefined (logged and counted) when they do not match. */
  private decode (c: ChunkRef, blob: BlobInfo, piece: Buffer): Buffer | undefined {
    const backend = this.o.backend.name
    try {
      const data = decompressChunk(piece, c.flags, c.uncompressedSize)
      if (this.o.digestValidate && !this.o.digester.digest(data).equals(c.digest)) throw new Error(`digest mismatch, expected ${c.digest.toString('hex')}`)
      this.verified.add(key(blob.id, c.compressedOffset))
      return c.flags === 0 ? Buffer.from(data) : data
    } catch (err) {
      this.o.metrics.verifyFailures.inc({ backend })
      this.o.log.error({ blob: blob.id, chunk: c.digest.toString('hex'), offset: c.compressedOffset, backend, err: (err as Error).message }, 'chunk failed verification')
      return undefined
    }
  }

  private mergeRun (c: ChunkRef, blob: BlobInfo): ChunkRef[] {
    const run = [c]
    const list = this.byBlob.get(c.blobIndex)
    if (list === undefined || this.o.mergingSize <= c.compressedSize) return run
    let i = lowerBound(list, c.compressedOffset)
    let end = c.compressedOffset + c.compressedSize
    let total = c.compressedSize
    for (i++; i < list.length; i++) {
      const n = list[i]
      if (n.compressedOffset !== end || total + n.compressedSize > this.o.mergingSize) break
      if (this.inflight.has(key(blob.id, n.compressedOffset)) || this.isCached(n)) break
      run.push(n)
      end += n.compressedSize
      total += n.compressedSize
    }
    return run
  }
}

const key = (blobId: string, offset: number): string => `${blobId}/${offset}`

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
