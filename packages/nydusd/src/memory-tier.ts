import type { ChunkCache } from '@nydusjs/storage/local'
import type { Logger } from 'pino'
import { BufferLru } from './buffer-lru.js'
import { BufferPool } from './buffer-pool.js'

/** A chunk's identity in every tier: its blob and its offset there. */
export const chunkKey = (blobId: string, offset: number): string => `${blobId}/${offset}`

/**
 * The memory side of the read path: pooled chunk buffers, decoded chunks
 * (FUSE asks for 128 KiB at a time, so one chunk serves several reads), raw
 * neighbours that came along in a merged request, and the write-back of
 * verified chunks to the disk cache, off the read's critical path.
 */
export class MemoryTier {
  readonly pool: BufferPool
  /** Decoded, verified chunks. */
  readonly decoded: BufferLru
  /** Raw bytes of chunks that came along in a merged request; decoded only if asked for. */
  readonly merged: BufferLru
  private readonly writes = new Set<Promise<void>>()
  /** Buffers a cache write still reads from: never recycled. */
  private readonly writing = new Set<ArrayBufferLike>()

  constructor(
    maxChunk: number,
    memoryCacheSize: number,
    mergingSize: number,
    private readonly cache: ChunkCache | undefined,
    private readonly log: Logger
  ) {
    // Merged requests (up to mergingSize) come from the pool too.
    this.pool = new BufferPool(Math.max(maxChunk, mergingSize))
    this.decoded = new BufferLru(memoryCacheSize, v => {
      if (!this.writing.has(v.buffer)) this.pool.give(v)
    })
    this.merged = new BufferLru(Math.max(mergingSize * 8, 8 * 1024 * 1024), v => this.pool.give(v))
  }

  /** Keeps a verified chunk in memory and writes it to the disk cache in the background. */
  keep(blobId: string, offset: number, data: Buffer): void {
    const cache = this.cache
    if (cache !== undefined) {
      this.writing.add(data.buffer)
      const p: Promise<void> = cache
        .put(blobId, offset, data)
        .catch((err: Error) => this.log.warn({ err: err.message }, 'cache write failed'))
        .finally(() => {
          this.writes.delete(p)
          this.writing.delete(data.buffer)
        })
      this.writes.add(p)
    }
    this.decoded.set(chunkKey(blobId, offset), data)
  }

  /** Drops the decoded and merged chunks and the pool's idle buffers (a mount nobody reads from). */
  release(): void {
    this.decoded.clear()
    this.merged.clear()
    this.pool.drain()
  }

  /** Waits for pending cache writes (at shutdown, so a restart finds them). */
  async flush(): Promise<void> {
    while (this.writes.size > 0) await Promise.all([...this.writes])
  }
}
