import type { BlobInfo, ChunkRef } from '@nydusjs/rafs/read'
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
  /** Per blob, its chunks in blob order. */
  private readonly byBlob = new Map<number, BlobChunks>()
  /** Per blob, where the last fetched run ended: the next run starting there is sequential. */
  private readonly lastEnd = new Map<number, number>()
  /** Blobs with a run-ahead fetch in flight. */
  private readonly aheadBusy = new Set<number>()
  /** Blobs whose last foreground miss was near the one before: the next run ahead is amplified. */
  private readonly amplifyAfter = new Set<number>()
  /** Chunks whose (run-ahead) fetch spans amplify_io. */
  private readonly amplifyRuns = new Set<string>()
  /** Per blob, how many foreground misses in a row fell near the one before. */
  private readonly nearStreak = new Map<number, number>()

  /** The largest chunk of the image, uncompressed. */
  readonly maxChunk: number = 0

  constructor(
    chunks: ChunkTable,
    private readonly mergingSize: number,
    private readonly hooks: PlannerHooks,
    private readonly amplifyIo = 0
  ) {
    // One pass over the table: each ChunkRef read from a bootstrap is decoded and checked.
    const perBlob = new Map<number, Array<readonly [number, number]>>()
    for (let i = 0; i < chunks.length; i++) {
      const c = chunks.at(i)!
      this.maxChunk = Math.max(this.maxChunk, c.uncompressedSize)
      let list = perBlob.get(c.blobIndex)
      if (list === undefined) perBlob.set(c.blobIndex, (list = []))
      list.push([c.compressedOffset, i])
    }
    let base = 0
    for (const [b, list] of perBlob) {
      const bc = BlobChunks.of(chunks, list)
      this.byBlob.set(b, bc)
      this.slotBase.set(b, base)
      base += bc.length
    }
    this.slots = base
  }

  /** How many distinct chunks (blob and offset) the image has: `slot` numbers them. */
  readonly slots: number
  private readonly slotBase = new Map<number, number>()

  /** `c`'s number among the image's distinct chunks, 0 to `slots - 1` (a bit in a per-mount bitmap beats a set entry per chunk). */
  slot(c: ChunkRef): number {
    const bc = this.byBlob.get(c.blobIndex)
    const i = bc?.lowerBound(c.compressedOffset) ?? -1
    if (bc === undefined || i >= bc.length || bc.offset(i) !== c.compressedOffset)
      throw new Error(`chunk at ${c.compressedOffset} of blob ${c.blobIndex} is not in the chunk table`)
    return this.slotBase.get(c.blobIndex)! + i
  }

  /** Whether a fetch of `c` continues the last run of its blob. */
  isSequential(c: ChunkRef): boolean {
    return this.lastEnd.get(c.blobIndex) === c.compressedOffset
  }

  /**
   * Whether `c` lies within amplify_io of where the last request of its blob
   * ended: misses that cluster (a directory's files read in another order than
   * the blob's) are amplified; a lone miss far from the last one (a program's
   * start touching a module here and there) fetches only what it needs.
   */
  private isNear(c: ChunkRef): boolean {
    const end = this.lastEnd.get(c.blobIndex)
    return end !== undefined && Math.abs(c.compressedOffset - end) <= this.amplifyIo
  }

  /**
   * `c` plus the missing chunks right after it, up to merging_size, when the
   * request starts where the previous one of this blob ended. A miss a reader
   * waits on near the last request is marked for amplification: the run
   * fetched ahead after it (`runAhead`) spans amplify_io, so the reader waits
   * only for its own chunk while the neighbours follow.
   */
  mergeRun(c: ChunkRef, blob: BlobInfo, foreground = false): ChunkRef[] {
    const run = [c]
    const list = this.byBlob.get(c.blobIndex)
    const sequential = this.isSequential(c)
    const key = chunkKey(blob.id, c.compressedOffset)
    const limit = Math.max(sequential ? this.mergingSize : 0, this.amplifyRuns.delete(key) ? this.amplifyIo : 0)
    if (foreground && this.amplifyIo > 0) this.countNear(c)
    this.lastEnd.set(c.blobIndex, c.compressedOffset + c.compressedSize)
    if (list === undefined || limit <= c.compressedSize) return run
    let end = c.compressedOffset + c.compressedSize
    let total = c.compressedSize
    for (let i = list.lowerBound(c.compressedOffset) + 1; i < list.length; i++) {
      const n = list.at(i)
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
   * A run of misses each near the one before (NEAR_STREAK in a row) is a
   * reader going through a region of the blob in its own order: the next run
   * ahead is amplified. Two or three modules of one package, read at a
   * program's start, are not amplified.
   */
  private countNear(c: ChunkRef): void {
    const n = this.isNear(c) ? (this.nearStreak.get(c.blobIndex) ?? 0) + 1 : 0
    this.nearStreak.set(c.blobIndex, n)
    if (n >= NEAR_STREAK) this.amplifyAfter.add(c.blobIndex)
  }

  /** The last foreground miss of this blob asked for amplification (then a run is fetched ahead at once). */
  amplifies(c: ChunkRef): boolean {
    return this.amplifyAfter.has(c.blobIndex)
  }

  /**
   * While a reader going through a blob in order consumes one run, the next
   * run is fetched (and its first chunk decoded): at most one run ahead per
   * blob; amplify_io long after an amplified miss, else merging_size.
   */
  runAhead(c: ChunkRef, blob: BlobInfo): void {
    const end = this.lastEnd.get(c.blobIndex)
    const list = this.byBlob.get(c.blobIndex)
    if (end === undefined || list === undefined || this.aheadBusy.has(c.blobIndex)) return
    const amplified = this.amplifyAfter.delete(c.blobIndex)
    if (end - (c.compressedOffset + c.compressedSize) > Math.max(this.mergingSize, this.amplifyIo)) return
    const at = list.lowerBound(end)
    const next = at < list.length ? list.at(at) : undefined
    if (next === undefined || next.compressedOffset !== end || this.hooks.hasLocally(blob.id, next)) return
    if (amplified) {
      this.amplifyRuns.add(chunkKey(blob.id, next.compressedOffset))
      this.fetchBehind(c, blob, list)
    }
    this.aheadBusy.add(c.blobIndex)
    this.hooks
      .load(next)
      .catch(() => {})
      .finally(() => this.aheadBusy.delete(c.blobIndex))
  }

  /**
   * An amplified miss also fetches the missing chunks before it, back to the
   * start of its amplify_io-aligned window, in one request: a reader going
   * through a directory in name order lands anywhere in the directory's
   * stretch of the blob, and fetching only forward leaves every earlier file
   * a miss of its own.
   */
  private fetchBehind(c: ChunkRef, blob: BlobInfo, list: BlobChunks): void {
    const windowStart = Math.floor(c.compressedOffset / this.amplifyIo) * this.amplifyIo
    let i = list.lowerBound(c.compressedOffset)
    let end = c.compressedOffset
    while (i > 0) {
      const p = list.at(i - 1)
      if (p.compressedOffset < windowStart || p.compressedOffset + p.compressedSize !== end || this.hooks.hasLocally(blob.id, p)) break
      end = p.compressedOffset
      i--
    }
    if (i === list.length || list.offset(i) === c.compressedOffset) return
    const first = list.at(i)
    this.amplifyRuns.add(chunkKey(blob.id, first.compressedOffset))
    this.hooks.load(first).catch(() => {})
  }

  /**
   * Each chunk read from the disk cache costs trips through the thread pool.
   * When the chunk before this one is in memory, the reader is going through
   * the blob in order: the cached chunks that follow, up to merging_size, are
   * loaded in parallel, so their trips overlap as one merged request does.
   */
  cacheReadAhead(c: ChunkRef, blob: BlobInfo): void {
    const list = this.byBlob.get(c.blobIndex)
    const i = list === undefined ? -1 : list.lowerBound(c.compressedOffset)
    if (list === undefined || i < 1 || !this.hooks.isDecoded(blob.id, list.at(i - 1))) return
    let total = 0
    for (let j = i + 1; j < list.length && total < this.mergingSize; j++) {
      const n = list.at(j)
      total += n.compressedSize
      if (!this.hooks.isCached(n)) break
      if (!this.hooks.isInflight(blob.id, n) && !this.hooks.isDecoded(blob.id, n)) this.hooks.load(n).catch(() => {})
    }
  }
}

/** Misses near each other, in a row, before amplify_io applies. */
const NEAR_STREAK = 3

/** An image's chunk table: an array of refs, or the bootstrap's, each made when asked for. */
export interface ChunkTable {
  readonly length: number
  at: (i: number) => ChunkRef | undefined
}

/** One blob's chunks in blob order, once per offset: table indexes and offsets, the refs made when asked for. */
class BlobChunks {
  private constructor(
    private readonly chunks: ChunkTable,
    private readonly index: Uint32Array,
    private readonly offsets: Float64Array
  ) {}

  /** `keyed`: each chunk's compressed offset and table index. */
  static of(chunks: ChunkTable, keyed: Array<readonly [number, number]>): BlobChunks {
    keyed.sort((a, b) => a[0] - b[0])
    const unique = keyed.filter(([o], k) => k === 0 || keyed[k - 1][0] !== o)
    return new BlobChunks(
      chunks,
      Uint32Array.from(unique, ([, i]) => i),
      Float64Array.from(unique, ([o]) => o)
    )
  }

  get length(): number {
    return this.index.length
  }

  at(i: number): ChunkRef {
    return this.chunks.at(this.index[i])!
  }

  offset(i: number): number {
    return this.offsets[i]
  }

  /** The first position whose offset is at least `offset`. */
  lowerBound(offset: number): number {
    let lo = 0
    let hi = this.offsets.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.offsets[mid] < offset) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}
