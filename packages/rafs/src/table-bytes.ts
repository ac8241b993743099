import { createHash } from 'node:crypto'
import { fail } from './errors.js'

/** Reads `length` bytes of the bootstrap file at `position` (short only at its end). */
export type ReadAt = (position: number, length: number) => Buffer

/** The bytes of one bootstrap table: held in memory, or read back a page at a time. */
export interface TableBytes {
  readonly length: number
  /** A buffer and an offset in it where [off, off + len) of the table lie (the caller has checked the range). */
  at: (off: number, len: number) => [Buffer, number]
}

export class MemoryTable implements TableBytes {
  constructor(private readonly b: Buffer) {}

  get length(): number {
    return this.b.length
  }

  at(off: number): [Buffer, number] {
    return [this.b, off]
  }
}

const EMPTY = Buffer.alloc(0)

/** Page size of a paged table: a whole number of inode (128), chunk (64) and index (4) records, so a record never straddles two. */
export const TABLE_PAGE = 4096

/** What a reader's paged tables share: the file, and a bound on the pages kept. */
export class PageCache {
  private readonly pages = new Map<number, Buffer>()
  private tables = 0

  constructor(
    readonly read: ReadAt,
    private readonly maxPages: number
  ) {}

  /** A number for a table's pages in this cache (keys are numbers: a string per lookup would be built on every inode read). */
  table(): number {
    return this.tables++
  }

  get(key: number, load: () => Buffer): Buffer {
    const hit = this.pages.get(key)
    if (hit !== undefined) return hit
    const page = load()
    if (this.pages.size >= this.maxPages) this.pages.delete(this.pages.keys().next().value!)
    this.pages.set(key, page)
    return page
  }

  clear(): void {
    this.pages.clear()
  }
}

/**
 * A table read back from the file on demand, each page checked against the
 * sha256 taken when the table was in memory (after the whole bootstrap was
 * verified): a file changed under a mount gives an error, never other bytes.
 * Pages are never reused, so views of them stay valid.
 */
export class PagedTable implements TableBytes {
  private readonly digests: Buffer
  /** Pages of this table are keyed `base + page` (a table has fewer than 2^20 pages: offsets are u32). */
  private readonly base: number

  constructor(
    private readonly name: string,
    private readonly fileOffset: number,
    table: Buffer,
    private readonly cache: PageCache
  ) {
    this.length = table.length
    this.base = cache.table() * 2 ** 20
    const n = Math.ceil(table.length / TABLE_PAGE)
    this.digests = Buffer.allocUnsafe(n * 32)
    for (let p = 0; p < n; p++)
      createHash('sha256')
        .update(table.subarray(p * TABLE_PAGE, (p + 1) * TABLE_PAGE))
        .digest()
        .copy(this.digests, p * 32)
  }

  readonly length: number

  at(off: number, len: number): [Buffer, number] {
    if (len === 0) return [EMPTY, 0]
    const p = Math.floor(off / TABLE_PAGE)
    const inPage = off - p * TABLE_PAGE
    if (inPage + len <= TABLE_PAGE) return [this.page(p), inPage]
    // A name or xattr across a page boundary: copied together.
    const out = Buffer.allocUnsafe(len)
    for (let done = 0; done < len; ) {
      const n = Math.min(len - done, TABLE_PAGE - ((off + done) % TABLE_PAGE))
      const [b, o] = this.at(off + done, n)
      b.copy(out, done, o, o + n)
      done += n
    }
    return [out, 0]
  }

  private page(p: number): Buffer {
    return this.cache.get(this.base + p, () => {
      const want = Math.min(TABLE_PAGE, this.length - p * TABLE_PAGE)
      const b = this.cache.read(this.fileOffset + p * TABLE_PAGE, want)
      const digest = createHash('sha256').update(b).digest()
      if (b.length !== want || !digest.equals(this.digests.subarray(p * 32, p * 32 + 32)))
        fail('ERR_RAFS_CHECKSUM', `page ${p} of the ${this.name} table changed since the bootstrap was opened`)
      return b
    })
  }
}
