import { constants } from 'node:os'
import { errnoOf, statusOf } from '@nydusjs/errors'
import { isDir, isLnk, isReg, type BootstrapReader, type InodeRecord } from '@nydusjs/rafs/read'
import type { Logger } from 'pino'
import type { DaemonMetrics } from '../metrics.js'
import { makedev, type RafsFs } from '../rafs-fs.js'
import type { BufferPool } from '../buffer-pool.js'
import type { PassthroughFiles } from './passthrough.js'
import { cstring, xattrReply } from './xattr.js'
import {
  attrOut,
  direntSize,
  direntType,
  ENTRY_OUT,
  Op,
  OP_NAMES,
  statfsOut,
  writeDirent,
  writeEntry,
  type Attr,
  type InHeader
} from './protocol.js'

const E = constants.errno
const W_OK = 2
/** The image never changes: the kernel may keep names and attributes for a day. */
const VALID_SEC = 86400

/** How a handler answers one request: data, an errno, or nothing (FORGET, INTERRUPT). */
export interface Reply {
  data: (h: InHeader, ...parts: Buffer[]) => void
  error: (h: InHeader, errno: number) => void
  /** The session agreed FUSE passthrough, on this /dev/fuse descriptor. */
  readonly passthrough?: boolean
  readonly descriptor?: number
}

/**
 * The read-only filesystem as the kernel's low-level protocol sees it: node
 * ids are inode record indexes + 1 (the root is 1), stable for the image's
 * life, so FORGET needs no bookkeeping. OPEN, OPENDIR and FLUSH are answered
 * ENOSYS: the kernel then stops sending them (zero-message opens). With
 * passthrough, OPEN is answered: with a backing file when the file has a copy
 * on disk, else with keep_cache.
 */
export class RafsLowLevel {
  private readonly readId: number
  private passthrough: PassthroughFiles | undefined
  /** Reads waiting for chunks, by request id: an INTERRUPT answers them EINTR. */
  private readonly waiting = new Map<bigint, { h: InHeader; cancel: () => void }>()
  private readonly interruptId: number

  constructor(
    private readonly fs: RafsFs,
    private readonly r: BootstrapReader,
    private readonly pool: BufferPool,
    private readonly metrics: DaemonMetrics,
    private readonly log: Logger,
    private readonly enableXattr = true
  ) {
    this.readId = metrics.fuse.id('read')
    this.interruptId = metrics.fuse.id('interrupt')
  }

  /** Answers OPEN from now on, with backing files where they exist. */
  usePassthrough(p: PassthroughFiles): void {
    this.passthrough = p
  }

  /** Answers one request; `body` is only valid during this call. */
  handle(h: InHeader, body: Buffer, reply: Reply): void {
    const t0 = process.hrtime.bigint()
    const op = OP_NAMES[h.opcode] ?? 'unknown'
    let errno = 0
    try {
      errno = this.dispatch(h, body, reply)
    } catch (err) {
      this.log.error({ op, err: (err as Error).message }, 'FUSE operation failed')
      errno = E.EIO
    }
    if (errno < 0) return // answered (or to be answered) by the op itself
    if (errno > 0) reply.error(h, errno)
    if (h.opcode !== Op.READ) this.metrics.fuse.record(this.metrics.fuse.id(op), errno === 0, t0)
  }

  /** 0 after a data reply, an errno to send, or -1 when the op answers (or needs no answer) itself. */
  private dispatch(h: InHeader, body: Buffer, reply: Reply): number {
    switch (h.opcode) {
      case Op.LOOKUP: {
        const parent = this.node(h.nodeid)
        if (parent === undefined || !isDir(parent.mode)) return E.ENOENT
        const child = this.r.child(parent, cstring(body, 0))
        if (child === undefined) return E.ENOENT
        const out = Buffer.alloc(ENTRY_OUT)
        writeEntry(out, 0, child.index + 1, this.attr(child), VALID_SEC)
        reply.data(h, out)
        return 0
      }
      case Op.GETATTR: {
        const rec = this.node(h.nodeid)
        if (rec === undefined) return E.ENOENT
        reply.data(h, attrOut(this.attr(rec), VALID_SEC))
        return 0
      }
      case Op.READLINK: {
        const rec = this.node(h.nodeid)
        if (rec === undefined) return E.ENOENT
        if (!isLnk(rec.mode)) return E.EINVAL
        reply.data(h, this.r.readlink(rec))
        return 0
      }
      case Op.READ:
        return this.read(h, body, reply)
      case Op.READDIR:
      case Op.READDIRPLUS:
        return this.readdir(h, body, reply, h.opcode === Op.READDIRPLUS)
      case Op.STATFS:
        reply.data(h, statfsOut(this.fs.blockCount, this.r.inodeCount))
        return 0
      case Op.ACCESS:
        if (this.node(h.nodeid) === undefined) return E.ENOENT
        if ((body.readUInt32LE(0) & W_OK) !== 0) return E.EROFS
        reply.data(h)
        return 0
      case Op.GETXATTR:
      case Op.LISTXATTR:
        return this.xattr(h, body, reply)
      case Op.INTERRUPT:
        this.interrupt(body.readBigUInt64LE(0), reply)
        return -1
      case Op.FORGET:
      case Op.BATCH_FORGET:
        return -1
      case Op.OPEN:
        return this.open(h, reply)
      case Op.RELEASE:
        this.release(h, body, reply)
        reply.data(h)
        return 0
      case Op.RELEASEDIR:
      case Op.DESTROY:
        reply.data(h)
        return 0
      case Op.SETATTR:
      case Op.SYMLINK:
      case Op.MKNOD:
      case Op.MKDIR:
      case Op.UNLINK:
      case Op.RMDIR:
      case Op.RENAME:
      case Op.RENAME2:
      case Op.LINK:
      case Op.WRITE:
      case Op.CREATE:
      case Op.SETXATTR:
      case Op.REMOVEXATTR:
      case Op.FSYNC:
      case Op.FSYNCDIR:
        return E.EROFS
      default:
        // OPEN, OPENDIR, FLUSH, LSEEK and the rest: ENOSYS, which the kernel remembers.
        return E.ENOSYS
    }
  }

  private open(h: InHeader, reply: Reply): number {
    const pt = this.passthrough
    if (pt === undefined || reply.passthrough !== true) return E.ENOSYS
    const rec = this.node(h.nodeid)
    if (rec === undefined) return E.ENOENT
    reply.data(h, pt.answerOpen(reply.descriptor!, rec, isReg(rec.mode) ? this.fs.chunksOf(rec) : undefined))
    return 0
  }

  private release(h: InHeader, body: Buffer, reply: Reply): void {
    const pt = this.passthrough
    const rec = this.node(h.nodeid)
    if (pt === undefined || reply.passthrough !== true || rec === undefined) return
    pt.answerRelease(reply.descriptor!, Number(body.readBigUInt64LE(0)), rec, isReg(rec.mode) ? this.fs.chunksOf(rec) : undefined)
  }

  /**
   * The reader of a waiting read got a signal: it is answered EINTR now and
   * the chunk, when it comes, goes only to the cache. A read already answered
   * needs nothing (the kernel drops the INTERRUPT with it).
   */
  private interrupt(unique: bigint, reply: Reply): void {
    const w = this.waiting.get(unique)
    if (w === undefined) return
    const t0 = process.hrtime.bigint()
    this.waiting.delete(unique)
    w.cancel()
    reply.error(w.h, E.EINTR)
    this.metrics.fuse.record(this.interruptId, true, t0)
  }

  private node(nodeid: bigint): InodeRecord | undefined {
    const i = Number(nodeid) - 1
    return i >= 0 && i < this.r.inodeCount ? this.r.inode(i) : undefined
  }

  private attr(rec: InodeRecord): Attr {
    return {
      ino: rec.ino,
      size: rec.size,
      blocks: Math.ceil(rec.size / 512),
      sec: rec.mtimeSec,
      nsec: rec.mtimeNsec,
      // Linux shows every symlink as 0777, whatever the tar header said.
      mode: isLnk(rec.mode) ? rec.mode | 0o777 : rec.mode,
      nlink: rec.nlink,
      uid: rec.uid,
      gid: rec.gid,
      rdev: makedev(rec.rdevMajor, rec.rdevMinor),
      blksize: 4096
    }
  }

  private readdir(h: InHeader, body: Buffer, reply: Reply, plus: boolean): number {
    const dir = this.node(h.nodeid)
    if (dir === undefined) return E.ENOENT
    if (!isDir(dir.mode)) return E.ENOTDIR
    const offset = Number(body.readBigUInt64LE(8))
    const size = body.readUInt32LE(16)
    const [start, end] = this.r.childRange(dir)
    // From the pool, like read replies: a directory walk otherwise leaves a fresh 32 KiB of garbage per call.
    const out = this.pool.take(size).fill(0)
    let used = 0
    // Entry i is ".", "..", then the children; an entry's `off` is where the next one starts.
    for (let i = offset; i < end - start + 2; i++) {
      const rec = i === 0 ? dir : i === 1 ? this.r.inode(Math.max(0, dir.parent)) : this.r.inode(start + i - 2)
      const name = i === 0 ? DOT : i === 1 ? DOTDOT : rec.name
      const need = (plus ? ENTRY_OUT : 0) + direntSize(name.length)
      if (used + need > size) break
      if (plus) {
        // The kernel takes no entry for "." and "..": a zero node id.
        if (i < 2) out.fill(0, used, used + ENTRY_OUT)
        else writeEntry(out, used, rec.index + 1, this.attr(rec), VALID_SEC)
        used += ENTRY_OUT
      }
      used += writeDirent(out, used, rec.ino, i + 1, direntType(rec.mode), name)
    }
    reply.data(h, out.subarray(0, used))
    this.pool.give(out)
    return 0
  }

  private xattr(h: InHeader, body: Buffer, reply: Reply): number {
    const rec = this.node(h.nodeid)
    if (rec === undefined) return E.ENOENT
    const out = xattrReply(this.enableXattr ? this.r.xattrs(rec) : [], h.opcode === Op.GETXATTR, body)
    if (typeof out === 'number') return out
    reply.data(h, out)
    return 0
  }

  private read(h: InHeader, body: Buffer, reply: Reply): number {
    const t0 = process.hrtime.bigint()
    const rec = this.node(h.nodeid)
    if (rec === undefined || !isReg(rec.mode)) {
      this.metrics.fuse.record(this.readId, false, t0)
      return E.EIO
    }
    const pos = Number(body.readBigUInt64LE(8))
    const len = body.readUInt32LE(16)
    this.fs.recordAccess(rec)
    const buf = this.pool.take(len)
    const done = (n: number): void => {
      this.waiting.delete(h.unique)
      this.metrics.fuse.record(this.readId, true, t0, n)
      reply.data(h, buf.subarray(0, n))
      this.pool.give(buf)
    }
    const failed = (err: Error): void => {
      this.waiting.delete(h.unique)
      this.metrics.fuse.record(this.readId, false, t0)
      const { errno, code } = statusOf(err)
      this.log.error({ ino: rec.ino, offset: pos, length: len, err: err.message, code }, `read failed: ${errno}`)
      reply.error(h, errnoOf(err))
      this.pool.give(buf)
    }
    // A timed-out read's buffer is not given back: a late chunk may still be on its way (it is not copied in).
    const timedOut = (): void => {
      this.waiting.delete(h.unique)
      this.metrics.fuse.record(this.readId, false, t0)
      this.log.error({ ino: rec.ino, offset: pos, length: len }, 'read timed out: ETIMEDOUT')
      reply.error(h, E.ETIMEDOUT)
    }
    const cancel = this.fs.readAnswered(rec, buf, len, pos, { done, failed, timedOut })
    if (cancel !== undefined) this.waiting.set(h.unique, { h, cancel })
    return -1
  }
}

const DOT = Buffer.from('.')
const DOTDOT = Buffer.from('..')
