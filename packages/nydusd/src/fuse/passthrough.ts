import { createHash } from 'node:crypto'
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs'
import { open, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { ChunkRef, InodeRecord } from '@nydusjs/rafs/read'
import type { Logger } from 'pino'
import type { ChunkFetcher } from '../chunk-fetcher.js'
import type { NydusdConfig } from '../config.js'
import { BackingIoctl } from './backing-ioctl.js'
import { FOPEN_KEEP_CACHE, FOPEN_PASSTHROUGH, openOut } from './protocol.js'

/** A registered backing file and the open handles that use it. */
interface Backing {
  key: string
  id: number
  fd: number
  refs: number
}

/** Files waiting to be written out at most; more are dropped (the next release asks again). */
const QUEUE_LIMIT = 256

/**
 * FUSE passthrough for files whose chunks are all in the disk cache: a
 * decompressed copy of the file, written only from verified chunks, is
 * registered with the kernel at OPEN, which then reads it itself; warm reads
 * never enter this process. Copies are named by the file's chunk digests, so
 * images that share a file share its copy.
 */
export class PassthroughFiles {
  private readonly backings = new Map<number, Backing>()
  private readonly byKey = new Map<string, number>()
  private readonly ready = new Set<string>()
  private readonly queued = new Map<string, ChunkRef[]>()
  /** Read-through handles open per inode: the kernel refuses a passthrough open beside them. */
  private readonly readThrough = new Map<number, number>()
  private nextFh = 1
  private writing = false
  /** Files served by passthrough since start, and copies written. */
  opened = 0
  written = 0

  constructor(
    private readonly dir: string,
    private readonly ioctl: BackingIoctl,
    private readonly fetcher: ChunkFetcher,
    private readonly log: Logger
  ) {
    mkdirSync(dir, { recursive: true })
  }

  /** OPEN's answer: passthrough on the file's copy when it has one and no read-through handle is open, else keep_cache. */
  answerOpen(devFd: number, rec: InodeRecord, chunks: ChunkRef[] | undefined): Buffer {
    const open = this.readThrough.get(rec.index) ?? 0
    const backed = open === 0 && chunks !== undefined ? this.open(devFd, rec, chunks) : undefined
    if (backed !== undefined) return openOut(backed.fh, FOPEN_PASSTHROUGH, backed.backingId)
    this.readThrough.set(rec.index, open + 1)
    return openOut(0, FOPEN_KEEP_CACHE)
  }

  /** RELEASE: a passthrough handle (`fh` > 0), or a read-through one, after which the file may get a copy. */
  answerRelease(devFd: number, fh: number, rec: InodeRecord, chunks: ChunkRef[] | undefined): void {
    if (fh !== 0) {
      this.release(devFd, fh)
      return
    }
    const n = (this.readThrough.get(rec.index) ?? 1) - 1
    if (n > 0) this.readThrough.set(rec.index, n)
    else this.readThrough.delete(rec.index)
    if (chunks !== undefined) this.consider(rec, chunks)
  }

  /** The backing id and handle for a file with a copy on disk, or undefined (read through the daemon). */
  private open(devFd: number, rec: InodeRecord, chunks: ChunkRef[]): { fh: number; backingId: number } | undefined {
    if (rec.size === 0) return undefined
    const key = keyOf(rec, chunks)
    const fh = this.byKey.get(key)
    if (fh !== undefined) {
      this.backings.get(fh)!.refs++
      return { fh, backingId: this.backings.get(fh)!.id }
    }
    const path = join(this.dir, key)
    if (!this.ready.has(key) && !existsSync(path)) return undefined
    this.ready.add(key)
    let fd: number
    try {
      fd = openSync(path, 'r')
    } catch {
      this.ready.delete(key)
      return undefined
    }
    const id = this.ioctl.open(devFd, fd)
    if (id < 0) {
      closeSync(fd)
      this.log.warn({ errno: -id }, 'FUSE passthrough refused by the kernel; reading through the daemon')
      return undefined
    }
    const b: Backing = { key, id, fd, refs: 1 }
    const handle = this.nextFh++
    this.backings.set(handle, b)
    this.byKey.set(key, handle)
    this.opened++
    return { fh: handle, backingId: id }
  }

  /** A handle closed: the backing id goes when its last handle does. */
  private release(devFd: number, fh: number): void {
    const b = this.backings.get(fh)
    if (b === undefined || --b.refs > 0) return
    this.backings.delete(fh)
    this.byKey.delete(b.key)
    this.ioctl.close(devFd, b.id)
    closeSync(b.fd)
  }

  /** After a read-through handle closed: once all of the file's chunks are cached, a copy is written in the background. */
  private consider(rec: InodeRecord, chunks: ChunkRef[]): void {
    if (rec.size === 0 || this.queued.size >= QUEUE_LIMIT) return
    const key = keyOf(rec, chunks)
    if (this.ready.has(key) || this.queued.has(key)) return
    this.queued.set(key, chunks)
    this.drain()
  }

  private drain(): void {
    if (this.writing) return
    const next = this.queued.entries().next()
    if (next.done === true) return
    const [key, chunks] = next.value
    this.writing = true
    this.write(key, chunks)
      .then(
        written => {
          if (!written) return
          this.ready.add(key)
          this.written++
        },
        (err: Error) => this.log.warn({ key, err: err.message }, 'passthrough copy not written')
      )
      .finally(() => {
        this.queued.delete(key)
        this.writing = false
        this.drain()
      })
  }

  /** Writes the verified chunks to a temporary file and renames it in place: a copy is whole or absent. */
  private async write(key: string, chunks: ChunkRef[]): Promise<boolean> {
    // The read that just ended may still be writing its chunks to the cache.
    await this.fetcher.flush()
    if (!chunks.every(c => this.fetcher.isCached(c))) return false
    const final = join(this.dir, key)
    const tmp = `${final}.${process.pid}.tmp`
    const f = await open(tmp, 'w', 0o444)
    try {
      let pos = 0
      for (const c of chunks) {
        const data = await this.fetcher.get(c, false)
        await f.write(data, 0, data.length, pos)
        pos += data.length
      }
      await f.close()
      await rename(tmp, final)
      return true
    } catch (err) {
      await f.close().catch(() => {})
      await rm(tmp, { force: true })
      throw err
    }
  }
}

/** The file's content name: its size and its chunks' digests. */
function keyOf(rec: InodeRecord, chunks: ChunkRef[]): string {
  const h = createHash('sha256').update(String(rec.size))
  for (const c of chunks) h.update(c.digest)
  return h.digest('hex')
}

/** Passthrough as the config asks, or undefined (with the reason logged) where it cannot be. */
export function passthroughFiles(config: NydusdConfig, fetcher: ChunkFetcher, log: Logger): PassthroughFiles | undefined {
  if (!config.fuse_passthrough) return undefined
  const cache = config.device.cache
  if (cache === undefined) {
    log.warn('fuse_passthrough needs a blobcache (device.cache): reads go through the daemon')
    return undefined
  }
  const ioctl = BackingIoctl.load()
  if (typeof ioctl === 'string') {
    log.warn({ reason: ioctl }, 'FUSE passthrough unavailable: reads go through the daemon')
    return undefined
  }
  return new PassthroughFiles(join(cache.config.work_dir, 'passthrough'), ioctl, fetcher, log)
}
