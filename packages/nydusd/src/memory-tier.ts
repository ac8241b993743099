import type { ChunkCache } from '@nydusjs/storage/local'
import type { Logger } from 'pino'
import { BufferLru, type LruView } from './buffer-lru.js'
import { BufferPool } from './buffer-pool.js'
import { noteChurn } from './memory-release.js'

/** A chunk's identity in every tier: its blob and its offset there. */
export const chunkKey = (blobId: string, offset: number): string => `${blobId}/${offset}`

/** What every mount of the process shares: one buffer pool, one bound on decoded and on merged chunks. */
class ProcessMemory {
  /**
   * Buffers a cache write still reads from, and whether they were evicted meanwhile: recycled
   * once the write lands (else each became garbage, some 100 MB of it after a burst of reads).
   * By view, not by ArrayBuffer: small chunks share a slab.
   */
  private readonly writing = new Map<Buffer, boolean>()
  readonly pool = new BufferPool(1024 * 1024, undefined, noteChurn)
  readonly decoded = new BufferLru(0, v => {
    if (this.writing.has(v)) this.writing.set(v, true)
    else this.pool.give(v)
  })

  readonly merged = new BufferLru(4 * 1024 * 1024, v => this.pool.give(v))
  private mounts = 0

  static readonly current = new ProcessMemory()

  /** A mount's share: the bounds grow to what its config asks for (the largest of the mounts' applies). */
  join(maxChunk: number, memoryCacheSize: number, mergingSize: number): string {
    this.pool.raiseTop(Math.max(maxChunk, mergingSize))
    this.decoded.raiseLimit(memoryCacheSize)
    this.merged.raiseLimit(mergingSize * 4)
    return `${this.mounts++}:`
  }

  writeStarts(data: Buffer): void {
    this.writing.set(data, false)
  }

  writeEnds(data: Buffer): void {
    const evicted = this.writing.get(data) === true
    this.writing.delete(data)
    if (evicted) this.pool.give(data)
  }
}

/**
 * One mount's side of the read path in memory: pooled chunk buffers, decoded
 * chunks (FUSE asks for 128 KiB at a time, so one chunk serves several
 * reads), raw neighbours that came along in a merged request, and the
 * write-back of verified chunks to the disk cache, off the read's critical
 * path. The buffers and their bounds are the process's: a daemon with many
 * mounts holds `memory.cache_size` of decoded chunks in all, not per mount.
 */
export class MemoryTier {
  private readonly shared = ProcessMemory.current
  readonly pool = this.shared.pool
  /** Decoded, verified chunks. */
  readonly decoded: LruView
  /** Raw bytes of chunks that came along in a merged request; decoded only if asked for. */
  readonly merged: LruView
  private readonly writes = new Set<Promise<void>>()

  constructor(
    maxChunk: number,
    memoryCacheSize: number,
    mergingSize: number,
    private readonly cache: ChunkCache | undefined,
    private readonly log: Logger
  ) {
    const prefix = this.shared.join(maxChunk, memoryCacheSize, mergingSize)
    this.decoded = this.shared.decoded.view(prefix)
    this.merged = this.shared.merged.view(prefix)
  }

  /** Keeps a verified chunk in memory and writes it to the disk cache in the background. */
  keep(blobId: string, offset: number, data: Buffer): void {
    const cache = this.cache
    if (cache !== undefined) {
      const shared = this.shared
      shared.writeStarts(data)
      const p: Promise<void> = cache
        .put(blobId, offset, data)
        .catch((err: Error) => this.log.warn({ err: err.message }, 'cache write failed'))
        .finally(() => {
          this.writes.delete(p)
          shared.writeEnds(data)
        })
      this.writes.add(p)
    }
    this.decoded.set(chunkKey(blobId, offset), data)
  }

  /** Drops this mount's decoded and merged chunks (nobody reads from it); the pool's idle buffers once no mount holds any. */
  release(): void {
    this.decoded.clear()
    this.merged.clear()
    if (this.shared.decoded.size === 0 && this.shared.merged.size === 0) this.pool.drain()
  }

  /** Waits for pending cache writes (at shutdown, so a restart finds them). */
  async flush(): Promise<void> {
    while (this.writes.size > 0) await Promise.all([...this.writes])
  }
}
