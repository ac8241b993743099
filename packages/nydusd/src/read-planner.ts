import type { BlobInfo, ChunkRef } from '@nydusjs/rafs'
import { chunkKey } from './memory-tier.js'

export interface PlannerHooks {
  /** The chunk is in memory, in flight or in the disk cache. */
  hasLocally: (blobId: string, c: ChunkRef) => boolean
  isCached: (c: ChunkRef) => boolean
  isDecoded: (blobId: string, c: ChunkRef) => boolean
  isInflight: (blobId: string, c: ChunkRef) => boolean
  /** Loads a chunk in the background. */
  load: (c: ChunkRef) => Promise<void>
}

/**
 * What to fetch besides the chunk asked for: merged runs for sequential
 * misses, one run fetched ahead per blob, and cached neighbours loaded in
 * parallel. Scattered reads fetch only their chunk, so reading 5% of an
 * image costs about 5% of its bytes.
 */
export class ReadPlanner {
  /** Per blob, chunks sorted by compressed offset. */
  private readonly byBlob = new Map<number, ChunkRef[]>()
  /** Per blob, where the last fetched run ended: the next run starting there is sequential. */
  private readonly lastEnd = new Map<number, number>()
  /** Blobs with a run-ahead fetch in flight. */
  private readonly aheadBusy = new Set<number>()

  constructor(
    blobs: readonly BlobInfo[],
    chunks: readonly ChunkRef[],
    private readonly mergingSize: number,
    private readonly hooks: PlannerHooks,
    private readonly amplifyIo = 0
  ) {
    const seen = new Set<string>()
    for (const c of chunks) {
      const k = chunkKey(blobs[c.blobIndex].id, c.compressedOffset)
      if (seen.has(k)) continue
      seen.add(k)
      const list = this.byBlob.get(c.blobIndex) ?? []
      list.push(c)
      this.byBlob.set(c.blobIndex, list)
    }
    for (const list of this.byBlob.values()) list.sort((a, b) => a.compressedOffset - b.compressedOffset)
  }

  /** Whether a fetch of `c` continues the last run of its blob. */
  isSequential(c: ChunkRef): boolean {
    return this.lastEnd.get(c.blobIndex) === c.compressedOffset
  }

  /**
   * `c` plus the missing chunks right after it: up to merging_size when the
   * request starts where the previous one of this blob ended, and up to
   * amplify_io for any read a reader waits on (files read in another order
   * than the blob's still come in few requests).
   */
  mergeRun(c: ChunkRef, blob: BlobInfo, foreground = false): ChunkRef[] {
    const run = [c]
    const list = this.byBlob.get(c.blobIndex)
    const sequential = this.isSequential(c)
    const limit = Math.max(sequential ? this.mergingSize : 0, foreground ? this.amplifyIo : 0)
    this.lastEnd.set(c.blobIndex, c.compressedOffset + c.compressedSize)
    if (list === undefined || limit <= c.compressedSize) return run
    let end = c.compressedOffset + c.compressedSize
    let total = c.compressedSize
    for (let i = lowerBound(list, c.compressedOffset) + 1; i < list.length; i++) {
      const n = list[i]
      if (n.compressedOffset !== end || total + n.compressedSize > limit) break
      if (this.hooks.hasLocally(blob.id, n)) break
      run.push(n)
      end += n.compressedSize
      total += n.compressedSize
    }
    this.lastEnd.set(c.blobIndex, end)
    return run
  }

  /**
   * While a reader going through a blob in order consumes one run, the next
   * run is fetched (and its first chunk decoded): at most one run ahead per blob.
   */
  runAhead(c: ChunkRef, blob: BlobInfo): void {
    const end = this.lastEnd.get(c.blobIndex)
    const list = this.byBlob.get(c.blobIndex)
    if (end === undefined || list === undefined || this.aheadBusy.has(c.blobIndex)) return
    if (end - (c.compressedOffset + c.compressedSize) > Math.max(this.mergingSize, this.amplifyIo)) return
    const next = list[lowerBound(list, end)]
    if (next === undefined || next.compressedOffset !== end || this.hooks.hasLocally(blob.id, next)) return
    this.aheadBusy.add(c.blobIndex)
    this.hooks
      .load(next)
      .catch(() => {})
      .finally(() => this.aheadBusy.delete(c.blobIndex))
  }

  /**
   * Each chunk read from the disk cache costs trips through the thread pool.
   * When the chunk before this one is in memory, the reader is going through
   * the blob in order: the cached chunks that follow, up to merging_size, are
   * loaded in parallel, so their trips overlap as one merged request does.
   */
  cacheReadAhead(c: ChunkRef, blob: BlobInfo): void {
    const list = this.byBlob.get(c.blobIndex)
    const i = list === undefined ? -1 : lowerBound(list, c.compressedOffset)
    if (list === undefined || i < 1 || !this.hooks.isDecoded(blob.id, list[i - 1])) return
    let total = 0
    for (let j = i + 1; j < list.length && total < this.mergingSize; j++) {
      const n = list[j]
      total += n.compressedSize
      if (!this.hooks.isCached(n)) break
      if (!this.hooks.isInflight(blob.id, n) && !this.hooks.isDecoded(blob.id, n)) this.hooks.load(n).catch(() => {})
    }
  }
}

function lowerBound(list: ChunkRef[], offset: number): number {
  let lo = 0
  let hi = list.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (list[mid].compressedOffset < offset) lo = mid + 1
    else hi = mid
  }
  return lo
}
