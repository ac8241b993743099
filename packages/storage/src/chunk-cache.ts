import { randomBytes } from 'node:crypto'
import { mkdir, open, readdir, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { checkBlobId } from './backend.js'
import { StorageError } from './errors.js'

export interface ChunkCacheOptions {
  /** Bytes of chunk data to keep; 0 means no limit. */
  sizeLimit?: number
}

/**
 * Uncompressed chunks on local disk, one file per chunk under
 * `work_dir/<blob id>/<compressed offset>.<size>`. A chunk is written to a
 * temporary name and renamed, so a crash never leaves a torn chunk under its
 * real name; what is present survives restarts (the directory is the index,
 * and the size in the name spares a stat per chunk when it is read back).
 * Least recently used chunks are evicted past the size limit.
 */
export class ChunkCache {
  /** Chunk key (see `key`) to size. Insertion order is recency order: a hit moves the key to the end. */
  private readonly lru = new Map<number, number>()
  /** Blob ids by number: a key is a number, not a string per chunk (a cache holds tens of thousands). */
  private readonly blobNos = new Map<string, number>()
  private readonly blobIds: string[] = []
  private bytes = 0
  hits = 0
  misses = 0
  evictions = 0

  private constructor(
    readonly dir: string,
    private readonly limit: number
  ) {}

  static async open(dir: string, opts: ChunkCacheOptions = {}): Promise<ChunkCache> {
    const cache = new ChunkCache(dir, opts.sizeLimit ?? 0)
    await mkdir(dir, { recursive: true }).catch((err: Error) => {
      throw new StorageError('ERR_CACHE_IO', `cache work_dir ${dir}: ${err.message}`, { cause: err })
    })
    for (const blob of await readdir(dir)) {
      if (!/^[0-9a-f]{64}$/.test(blob)) continue
      for (const name of await readdir(join(dir, blob))) {
        const m = CHUNK_FILE.exec(name)
        // Anything else is the leftover of an interrupted write (or of an older layout).
        if (m === null) {
          await rm(join(dir, blob, name), { force: true })
          continue
        }
        const size = Number(m[2])
        const key = cache.key(blob, Number(m[1]))
        if (key === undefined) continue
        cache.lru.set(key, size)
        cache.bytes += size
      }
    }
    await cache.evict()
    return cache
  }

  get size(): number {
    return this.bytes
  }
  get count(): number {
    return this.lru.size
  }

  has(blobId: string, offset: number): boolean {
    const key = this.key(blobId, offset, false)
    return key !== undefined && this.lru.has(key)
  }

  /** `blob number * 2^40 + offset`; undefined (never cached) past 2^40 bytes or 8,192 blobs, and for an unknown blob unless `add`. */
  private key(blobId: string, offset: number, add = true): number | undefined {
    let no = this.blobNos.get(blobId)
    if (no === undefined) {
      if (!add || this.blobIds.length >= MAX_BLOBS) return undefined
      no = this.blobIds.push(blobId) - 1
      this.blobNos.set(blobId, no)
    }
    return offset < OFFSET_SPAN ? no * OFFSET_SPAN + offset : undefined
  }

  /**
   * The cached bytes, or undefined. A file of the wrong size is dropped.
   * With `dst` (at least `size` bytes) the bytes are read into it and a view
   * of it is returned, so a reader can reuse its buffers. One positional read
   * of the size the index knows: no stat, no read to the end.
   */
  async get(blobId: string, offset: number, size: number, dst?: Buffer): Promise<Buffer | undefined> {
    const key = this.key(checkBlobId(blobId), offset, false)
    const known = key === undefined ? undefined : this.lru.get(key)
    if (key === undefined || known === undefined) {
      this.misses++
      return undefined
    }
    let data: Buffer | undefined
    try {
      data = known !== size ? undefined : await readExactly(this.path(key, known), (dst ?? Buffer.allocUnsafe(size)).subarray(0, size))
    } catch {
      this.forget(key)
      this.misses++
      return undefined
    }
    if (data?.length !== size) {
      await this.drop(key)
      this.misses++
      return undefined
    }
    this.lru.delete(key)
    this.lru.set(key, known)
    this.hits++
    return data
  }

  async put(blobId: string, offset: number, data: Buffer): Promise<void> {
    const key = this.key(checkBlobId(blobId), offset)
    if (key === undefined || this.lru.has(key)) return
    const dir = join(this.dir, blobId)
    const tmp = join(dir, `.${offset}.${randomBytes(4).toString('hex')}.tmp`)
    try {
      await mkdir(dir, { recursive: true })
      const fh = await open(tmp, 'wx')
      try {
        await fh.writeFile(data)
      } finally {
        await fh.close()
      }
      await rename(tmp, this.path(key, data.length))
    } catch (err) {
      await rm(tmp, { force: true })
      throw new StorageError('ERR_CACHE_IO', `cache ${this.dir}: writing ${blobId}/${offset}: ${(err as Error).message}`, { cause: err })
    }
    this.lru.set(key, data.length)
    this.bytes += data.length
    await this.evict()
  }

  /** Drops a chunk (it failed verification, say). */
  async remove(blobId: string, offset: number): Promise<void> {
    const key = this.key(checkBlobId(blobId), offset, false)
    if (key !== undefined) await this.drop(key)
  }

  private async drop(key: number): Promise<void> {
    const n = this.forget(key)
    if (n !== undefined) await rm(this.path(key, n), { force: true })
  }

  private path(key: number, size: number): string {
    return join(this.dir, this.blobIds[Math.floor(key / OFFSET_SPAN)], `${key % OFFSET_SPAN}.${size}`)
  }

  /** Drops the key from the index; its size, if it was there. */
  private forget(key: number): number | undefined {
    const n = this.lru.get(key)
    if (n === undefined) return undefined
    this.lru.delete(key)
    this.bytes -= n
    return n
  }

  private async evict(): Promise<void> {
    if (this.limit <= 0) return
    for (const key of this.lru.keys()) {
      if (this.bytes <= this.limit) break
      await this.drop(key)
      this.evictions++
    }
  }
}

/** Keys: the offset below 2^40, the blob number above (2^53 / 2^40 = 8,192 blobs). */
const OFFSET_SPAN = 2 ** 40
const MAX_BLOBS = 8192

/** `<offset>.<size>`, as `path` writes them: no leading zeros, so one chunk has one name. */
const CHUNK_FILE = /^(0|[1-9]\d{0,15})\.([1-9]\d{0,15})$/

/** `dst` filled from the start of the file, or undefined when the file is shorter. */
async function readExactly(path: string, dst: Buffer): Promise<Buffer | undefined> {
  const fh = await open(path, 'r')
  try {
    const { bytesRead } = await fh.read(dst, 0, dst.length, 0)
    return bytesRead === dst.length ? dst : undefined
  } finally {
    // The bytes are in; the reader need not wait for the close's trip through the thread pool.
    fh.close().catch(() => {})
  }
}
