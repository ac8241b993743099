import { errnoOf, statusOf } from '@nydusjs/errors'
import { constants } from 'node:os'
import { isDir, isLnk, isReg, type BootstrapReader, type ChunkRef, type InodeRecord } from '@nydusjs/rafs/read'
import type { Logger } from 'pino'
import type { ChunkFetcher } from './chunk-fetcher.js'
import type { DaemonMetrics } from './metrics.js'

const W_OK = 2
const { errno } = constants
/** fuse-native's answers are negative errnos (its module is loaded only by a mount that uses it). */
const Errno = {
  EINVAL: -errno.EINVAL,
  EIO: -errno.EIO,
  ENODATA: -errno.ENODATA,
  ENOENT: -errno.ENOENT,
  ENOTDIR: -errno.ENOTDIR,
  EROFS: -errno.EROFS,
  ETIMEDOUT: -errno.ETIMEDOUT
}
const LOOKUP_CACHE = 65536
/** Files whose chunk lists are kept decoded. */
const CHUNK_LISTS = 1024
const READAHEAD_CHUNKS = 2
/** What fuse-native's own per-request timer gave reads (ETIMEDOUT after it). */
export const READ_TIMEOUT_MS = 15_000
const noop = (): void => {}

/** First-access order of files, the input of `nydus-image create --prefetch-files`: inode indexes, paths made when listed. */
export class AccessLog {
  /** One bit per inode record, and the records in the order first read (a Set of them cost 150 KB per Debian image). */
  private readonly seen: Uint8Array
  private order = new Uint32Array(64)
  private count = 0
  constructor(private readonly r: BootstrapReader) {
    this.seen = new Uint8Array(Math.ceil(r.inodeCount / 8))
  }

  record(rec: InodeRecord): void {
    const i = rec.index
    if ((this.seen[i >>> 3] & (1 << (i & 7))) !== 0) return
    this.seen[i >>> 3] |= 1 << (i & 7)
    if (this.count === this.order.length) {
      const grown = new Uint32Array(this.count * 2)
      grown.set(this.order)
      this.order = grown
    }
    this.order[this.count++] = i
  }

  list(): string[] {
    return Array.from(this.order.subarray(0, this.count), i => `/${this.r.pathOf(this.r.inode(i)).toString('utf8')}`.replace(/^\/\//, '/'))
  }
}

/**
 * The read-only filesystem over a bootstrap, as fuse-native's path-based ops.
 * Metadata comes straight from the bootstrap; file data from the ChunkFetcher.
 */
export class RafsFs {
  private readonly lookups = new Map<string, InodeRecord | null>()
  private readonly chunkLists = new Map<number, ChunkRef[]>()
  readonly access: AccessLog
  /** statfs's size: the image is immutable, so it is counted once. */
  readonly blockCount: number

  constructor(
    private readonly r: BootstrapReader,
    private readonly fetcher: ChunkFetcher,
    private readonly metrics: DaemonMetrics,
    private readonly log: Logger,
    private readonly enableXattr = true,
    private readonly readTimeoutMs = READ_TIMEOUT_MS
  ) {
    this.access = new AccessLog(r)
    this.blockCount = Math.ceil(r.blobs().reduce((s, b) => s + b.uncompressedSize, 0) / 4096)
  }

  resolve(path: string): InodeRecord | undefined {
    let hit = this.lookups.get(path)
    if (hit === undefined) {
      hit = this.lookupFresh(path) ?? this.lossyLookup(path) ?? null
      if (this.lookups.size >= LOOKUP_CACHE) this.lookups.clear()
      this.lookups.set(path, hit)
    }
    return hit ?? undefined
  }

  /** The kernel looks a path up after its parent, so the parent is usually cached: one name search. */
  private lookupFresh(path: string): InodeRecord | undefined {
    const slash = path.lastIndexOf('/')
    if (slash <= 0 || path.endsWith('/')) return this.r.lookup(Buffer.from(path, 'utf8'))
    const parent = this.lookups.get(path.slice(0, slash))
    if (parent === undefined) return this.r.lookup(Buffer.from(path, 'utf8'))
    return parent === null ? undefined : this.r.child(parent, Buffer.from(path.slice(slash + 1), 'utf8'))
  }

  /**
   * fuse-native hands paths over as UTF-8 strings, so a name that is not valid
   * UTF-8 arrives with U+FFFD in it; match it against the names as readdir showed them.
   */
  private lossyLookup(path: string): InodeRecord | undefined {
    if (!path.includes('\ufffd')) return undefined
    let cur = this.r.root()
    for (const part of path.split('/')) {
      if (part === '') continue
      if (!isDir(cur.mode)) return undefined
      const next = [...this.r.children(cur)].find(c => c.name.toString('utf8') === part)
      if (next === undefined) return undefined
      cur = next
    }
    return cur
  }

  /** The access list by inode (the direct transport has no paths). */
  recordAccess(rec: InodeRecord): void {
    this.access.record(rec)
  }

  stat(rec: InodeRecord): Record<string, unknown> {
    const mtime = rec.mtimeSec * 1000 + Math.floor(rec.mtimeNsec / 1e6)
    return {
      // Linux shows every symlink as 0777, whatever the tar header said.
      mode: isLnk(rec.mode) ? rec.mode | 0o777 : rec.mode,
      uid: rec.uid,
      gid: rec.gid,
      size: rec.size,
      nlink: rec.nlink,
      ino: rec.ino,
      rdev: makedev(rec.rdevMajor, rec.rdevMinor),
      blksize: 4096,
      blocks: Math.ceil(rec.size / 512),
      atime: mtime,
      mtime,
      ctime: mtime
    }
  }

  chunksOf(rec: InodeRecord): ChunkRef[] {
    let list = this.chunkLists.get(rec.ino)
    if (list === undefined) {
      list = this.r.fileChunks(rec)
      // Files being read keep theirs; the bootstrap has every list again when a file comes back.
      if (this.chunkLists.size >= CHUNK_LISTS) this.chunkLists.clear()
      this.chunkLists.set(rec.ino, list)
    }
    return list
  }

  /**
   * Copies file bytes [pos, pos+len) into buf. Chunks in memory are copied on
   * the spot (then the count comes back as a number, not a promise); the rest
   * are fetched in parallel. Once `req.answered` is set, nothing more is
   * copied: `buf` is libfuse's again.
   */
  read(rec: InodeRecord, buf: Buffer, len: number, pos: number, req?: { answered: boolean }): number | Promise<number> {
    const end = Math.min(rec.size, pos + len)
    if (pos >= end) return 0
    const cs = this.r.sb.chunkSize
    const chunks = this.chunksOf(rec)
    const first = Math.floor(pos / cs)
    const last = Math.floor((end - 1) / cs)
    let out = 0
    let pending: Array<Promise<void>> | undefined
    for (let i = first; i <= last; i++) {
      const base = i * cs
      // Called while the fetcher holds the bytes: it reuses its buffers.
      const use = (data: Buffer): void => {
        if (req?.answered === true) return
        const from = Math.max(pos, base) - base
        const to = Math.min(end, base + data.length) - base
        out += data.copy(buf, base + from - pos, from, to)
      }
      if (!this.fetcher.withChunkNow(chunks[i], use)) (pending ??= []).push(this.fetcher.withChunk(chunks[i], use))
    }
    // Sequential readers get the next chunks fetched while they consume this one (asked once, when a chunk is entered).
    if (pos % cs === 0)
      for (const c of chunks.slice(last + 1, last + 1 + READAHEAD_CHUNKS)) this.fetcher.withChunk(c, noop, false).catch(() => {})
    if (pending === undefined) return out
    return Promise.all(pending).then(() => out)
  }

  /**
   * Reads into `buf` and calls exactly one of `done`, `failed` or `timedOut`:
   * on the spot when the bytes are in memory, else when they arrive, or after
   * the read timeout (only reads that wait get a timer). Once answered, `buf`
   * is the transport's again: a late chunk is not copied into it. A read that
   * waits returns a cancel, after which no callback is called.
   */
  readAnswered(
    rec: InodeRecord,
    buf: Buffer,
    len: number,
    pos: number,
    cb: { done: (n: number) => void; failed: (err: Error) => void; timedOut: () => void }
  ): (() => void) | undefined {
    const req = { answered: false }
    let r: number | Promise<number>
    try {
      r = this.read(rec, buf, len, pos, req)
    } catch (err) {
      cb.failed(err as Error)
      return undefined
    }
    if (typeof r === 'number') {
      cb.done(r)
      return undefined
    }
    const timer = setTimeout(() => {
      req.answered = true
      cb.timedOut()
    }, this.readTimeoutMs)
    const settle =
      <T>(fn: (v: T) => void) =>
      (v: T): void => {
        if (req.answered) return
        req.answered = true
        clearTimeout(timer)
        fn(v)
      }
    r.then(settle(cb.done), settle(cb.failed))
    // Interrupted (the reader got a signal): none of the callbacks will be called.
    return () => {
      req.answered = true
      clearTimeout(timer)
    }
  }

  /** fuse-native operations; every write-side op answers EROFS (the mount is `ro` too). */
  ops(): Record<string, (...args: any[]) => void> {
    // Metadata comes from the in-memory bootstrap, so these answer synchronously: no promise per op.
    const stats = this.metrics.fuse
    const timed = <A extends unknown[]>(op: string, fn: (...args: A) => number | [number, unknown?, unknown?]) => {
      const id = stats.id(op)
      return (...args: unknown[]) => {
        const cb = args.pop() as (...r: unknown[]) => void
        const t0 = process.hrtime.bigint()
        let r: unknown[]
        try {
          const res = fn(...(args as A))
          r = Array.isArray(res) ? res : [res]
        } catch (err) {
          this.log.error({ op, err: (err as Error).message }, 'FUSE operation failed')
          r = [Errno.EIO]
        }
        stats.record(id, (r[0] as number) >= 0, t0)
        cb(...r)
      }
    }
    const readId = stats.id('read')
    const rofs =
      (): ((...args: unknown[]) => void) =>
      (...args: unknown[]) => {
        ;(args.pop() as (e: number) => void)(Errno.EROFS)
      }
    const ops: Record<string, (...args: any[]) => void> = {
      init: (cb: (e: number) => void) => cb(0),
      getattr: timed('getattr', (path: string) => {
        const rec = this.resolve(path)
        return rec === undefined ? Errno.ENOENT : [0, this.stat(rec)]
      }),
      readdir: timed('readdir', (path: string) => {
        const rec = this.resolve(path)
        if (rec === undefined) return Errno.ENOENT
        if (!isDir(rec.mode)) return Errno.ENOTDIR
        const names = ['.', '..']
        for (const c of this.r.children(rec)) names.push(c.name.toString('utf8'))
        return [0, names]
      }),
      readlink: timed('readlink', (path: string) => {
        const rec = this.resolve(path)
        if (rec === undefined) return Errno.ENOENT
        return isLnk(rec.mode) ? [0, this.r.readlink(rec).toString('utf8')] : Errno.EINVAL
      }),
      read: (path: string, _fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) => {
        const t0 = process.hrtime.bigint()
        const rec = this.resolve(path)
        if (rec === undefined || !isReg(rec.mode)) {
          cb(Errno.EIO)
          return
        }
        this.access.record(rec)
        const done = (n: number): void => {
          stats.record(readId, true, t0, n)
          cb(n)
        }
        const failed = (err: Error): void => {
          stats.record(readId, false, t0)
          const { errno, code } = statusOf(err)
          this.log.error({ path, offset: pos, length: len, err: err.message, code }, `read failed: ${errno}`)
          cb(-errnoOf(err))
        }
        this.readAnswered(rec, buf, len, pos, {
          done,
          failed,
          timedOut: () => {
            stats.record(readId, false, t0)
            this.log.error({ path, offset: pos, length: len, timeoutMs: this.readTimeoutMs }, 'read timed out: ETIMEDOUT')
            cb(Errno.ETIMEDOUT)
          }
        })
      },
      statfs: (_path: string, cb: (e: number, s?: unknown) => void) => {
        cb(0, {
          bsize: 4096,
          frsize: 4096,
          blocks: this.blockCount,
          bfree: 0,
          bavail: 0,
          files: this.r.inodeCount,
          ffree: 0,
          favail: 0,
          fsid: 0,
          flag: 1,
          namemax: 255
        })
      },
      access: timed('access', (path: string, mode: number) => {
        const rec = this.resolve(path)
        if (rec === undefined) return Errno.ENOENT
        return (mode & W_OK) !== 0 ? Errno.EROFS : 0
      }),
      getxattr: timed('getxattr', (path: string, name: string) => {
        const rec = this.resolve(path)
        if (rec === undefined) return Errno.ENOENT
        const hit = this.enableXattr ? this.r.xattrs(rec).find(([k]) => k.toString('utf8') === name) : undefined
        return hit === undefined ? Errno.ENODATA : [0, Buffer.from(hit[1])]
      }),
      listxattr: timed('listxattr', (path: string) => {
        const rec = this.resolve(path)
        if (rec === undefined) return Errno.ENOENT
        return [0, this.enableXattr ? this.r.xattrs(rec).map(([k]) => k.toString('utf8')) : []]
      })
    }
    // open, release, releasedir and flush are left out on purpose. Each FUSE request is two thread
    // hand-offs into JS, and these carry nothing here: no per-handle state, reads find the inode by
    // path, the `ro` mount makes the kernel refuse write opens with EROFS, libfuse answers open (with
    // keep_cache, from kernel_cache) itself, and an unimplemented flush makes the kernel stop sending it.
    for (const op of [
      'write',
      'create',
      'truncate',
      'ftruncate',
      'chown',
      'chmod',
      'mknod',
      'setxattr',
      'removexattr',
      'utimens',
      'unlink',
      'rename',
      'link',
      'symlink',
      'mkdir',
      'rmdir',
      'fsync'
    ])
      ops[op] = rofs()
    return ops
  }
}

/** glibc's makedev. */
export function makedev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0
}
