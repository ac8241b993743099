import { spawn } from 'node:child_process'
import { closeSync, openSync, writevSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { NydusdError } from '../errors.js'
import {
  FUSE_KERNEL_MINOR,
  FUSE_KERNEL_VERSION,
  IN_HEADER,
  Init,
  Init2,
  initOut,
  Op,
  outHeader,
  readInHeader,
  readInitIn,
  type InHeader
} from './protocol.js'
import { PollReader, PoolReader, type RequestReader } from './request-reader.js'
import { UvPoll } from './uv-poll.js'

/** 1 MiB reads: the kernel sends READs of up to max_pages pages. */
const MAX_PAGES = 256
/** Nothing is ever written; the kernel still sizes its request buffer by max_write. */
const MAX_WRITE = 128 * 1024
const REQUEST_BUFFER = MAX_WRITE + 64 * 1024
/** Requests read on the main thread are handled before the next is read: every session of the process reads into this one. */
let pollBuffer: Buffer | undefined
const READAHEAD_KB = 1024
/** fuse_notify_code FUSE_NOTIFY_RESEND: sent as the error field of a reply with unique 0. */
const NOTIFY_RESEND = 7
/** mount(8) has mounted: the kernel's INIT follows at once, so waiting longer means the session is lost. */
const INIT_TIMEOUT_MS = 20_000

export type RequestHandler = (h: InHeader, body: Buffer, reply: DevFuseSession) => void

/**
 * A FUSE session on /dev/fuse without libfuse: the fd is opened here and
 * handed to mount(8) as its fd 3; requests are read with fs.read on the fd,
 * replies written with writev. INIT is answered here (max_pages for 1 MiB
 * reads); every other request goes to `handler`.
 */
export class DevFuseSession {
  private closed = false
  private reader?: RequestReader
  private endedResolve!: () => void
  /** Settles when the kernel ends the session (unmounted, from here or outside, or aborted). */
  readonly ended = new Promise<void>(resolve => {
    this.endedResolve = resolve
  })
  /** The minor version agreed at INIT. */
  minor = 0
  /** FUSE passthrough agreed at INIT (asked for with `passthrough`, kernel 6.9+). */
  passthrough = false
  private wantPassthrough = false
  private readonly initDone: Promise<void>
  private initResolve!: () => void

  private constructor(
    private readonly fd: number,
    readonly mountpoint: string,
    private readonly handler: RequestHandler,
    private readonly log: Logger
  ) {
    this.initDone = new Promise(resolve => {
      this.initResolve = resolve
    })
  }

  /** Opens /dev/fuse, mounts it at `mountpoint` read-only, and serves until unmounted. */
  static async mount(
    mountpoint: string,
    handler: RequestHandler,
    log: Logger,
    o: { fsname?: string; subtype?: string; passthrough?: boolean } = {}
  ): Promise<DevFuseSession> {
    let fd: number
    try {
      fd = openSync('/dev/fuse', 'r+')
    } catch (err) {
      throw new NydusdError('ERR_FUSE_MISSING', `/dev/fuse: ${(err as Error).message}`)
    }
    const s = new DevFuseSession(fd, mountpoint, handler, log)
    s.wantPassthrough = o.passthrough === true
    const opts = [
      'fd=3',
      'rootmode=40000',
      'user_id=0',
      'group_id=0',
      'allow_other',
      'default_permissions',
      'ro',
      `max_read=${MAX_PAGES * 4096}`
    ]
    // Asynchronously: mount(8) may touch the mount, which waits for our INIT answer.
    const m = spawn('mount', ['-i', '-t', `fuse.${o.subtype ?? 'rafs'}`, '-o', opts.join(','), o.fsname ?? 'nydusd', mountpoint], {
      stdio: ['ignore', 'ignore', 'pipe', fd]
    })
    let stderr = ''
    m.stderr!.on('data', (b: Buffer) => {
      stderr += b.toString()
    })
    const mounted = new Promise<void>((resolve, reject) => {
      m.once('error', err => reject(new NydusdError('ERR_MOUNT', `mount(8): ${err.message}`)))
      m.once('exit', code =>
        code === 0
          ? resolve()
          : reject(new NydusdError('ERR_MOUNT', `mounting ${mountpoint}: ${stderr.trim().split('\n')[0] || `mount exited ${code}`}`))
      )
    })
    s.startReading()
    try {
      await mounted
      await s.initWithin(INIT_TIMEOUT_MS)
    } catch (err) {
      s.close()
      throw err
    }
    await s.raiseReadahead().catch((err: Error) => log.debug({ err: err.message }, 'read_ahead_kb not raised'))
    return s
  }

  /** Waits for the kernel's INIT; without it the mount is detached and the mount fails, rather than waiting for ever. */
  private async initWithin(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<'late'>(resolve => {
      timer = setTimeout(() => resolve('late'), ms)
    })
    const r = await Promise.race([this.initDone, late])
    clearTimeout(timer)
    if (r !== 'late') return
    await run('umount', ['-l', this.mountpoint])
    throw new NydusdError('ERR_MOUNT', `mounting ${this.mountpoint}: the kernel's FUSE INIT did not arrive within ${ms / 1000} s`)
  }

  data(h: InHeader, ...parts: Buffer[]): void {
    let len = 16
    for (const p of parts) len += p.length
    this.write(h, [outHeader(len, 0, h.unique), ...parts])
  }

  error(h: InHeader, errno: number): void {
    this.write(h, [outHeader(16, -errno, h.unique)])
  }

  /**
   * Takes over a session a dead daemon left (its descriptor inherited from
   * the SessionKeeper): INIT was answered long ago and node ids are stable,
   * so only the requests it had read but not answered are missing; the
   * kernel is asked to send them again (FUSE_NOTIFY_RESEND, kernel 6.9+).
   */
  static adopt(fd: number, mountpoint: string, handler: RequestHandler, log: Logger, passthrough = false): DevFuseSession {
    const s = new DevFuseSession(fd, mountpoint, handler, log)
    // What INIT agreed is not known here: the first backing-file ioctl finds out.
    s.passthrough = passthrough
    s.initResolve()
    s.startReading(true)
    try {
      writevSync(fd, [outHeader(16, NOTIFY_RESEND, 0n)])
    } catch (err) {
      log.warn(
        { err: (err as Error).message },
        'FUSE_NOTIFY_RESEND not taken (kernel before 6.9?): requests the dead daemon held stay unanswered'
      )
    }
    log.info({ mountpoint, fd }, 'FUSE session taken over')
    return s
  }

  /** The /dev/fuse descriptor (a SessionKeeper holds a copy for failover). */
  get descriptor(): number {
    return this.fd
  }

  /** Unmounts (lazily if busy); the session ends when the kernel lets go. */
  async unmount(): Promise<void> {
    if (this.closed) return
    const um = await run('umount', [this.mountpoint])
    if (um !== 0) await run('umount', ['-l', this.mountpoint])
    await Promise.race([this.ended, sleep(5000)])
    this.close()
  }

  private write(h: InHeader, iov: Buffer[]): void {
    if (this.closed) return
    try {
      writevSync(this.fd, iov)
    } catch (err) {
      // ENOENT: the request was interrupted or aborted meanwhile; nothing waits for this answer.
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'ENOENT') this.log.warn({ unique: String(h.unique), opcode: h.opcode, code }, 'FUSE reply not taken')
    }
  }

  /** Takes no more requests (a hand-over: they wait in the kernel for the successor); settles once none is read. */
  async stopReading(): Promise<void> {
    await this.reader?.stop()
  }

  /** How requests are read: 'poll' (the main thread, woken by libuv) or 'pool' (blocked pool threads). */
  get readerKind(): 'poll' | 'pool' {
    return this.reader?.kind ?? 'pool'
  }

  /** `live`: the session is mounted already (a takeover). */
  private startReading(live = false): void {
    const hooks = {
      request: (req: Buffer) => {
        try {
          this.dispatch(req)
        } catch (e) {
          this.log.error({ err: (e as Error).message }, 'FUSE request could not be handled')
        }
      },
      end: (err?: NodeJS.ErrnoException) => {
        this.end(err)
      }
    }
    // NYDUSD_FUSE_READER=pool: the pool threads even where polling works (a diagnostic switch).
    const found = UvPoll.load()
    const uv = process.env.NYDUSD_FUSE_READER === 'pool' ? 'NYDUSD_FUSE_READER=pool' : found
    if (typeof uv === 'string') {
      this.log.debug({ reason: uv }, 'reading /dev/fuse on the thread pool')
      // A polling predecessor left the descriptor non-blocking: pool reads must block.
      if (typeof found !== 'string') found.nonblocking(this.fd, false)
      this.reader = new PoolReader(this.fd, this.mountpoint, REQUEST_BUFFER, hooks)
    } else this.reader = new PollReader(this.fd, (pollBuffer ??= Buffer.allocUnsafe(REQUEST_BUFFER)), hooks, uv, live)
    this.reader.start()
  }

  private dispatch(req: Buffer): void {
    const h = readInHeader(req)
    const body = req.subarray(IN_HEADER, h.len)
    if (h.opcode === Op.INIT) this.init(h, body)
    else if (h.opcode === Op.DESTROY) this.data(h)
    else this.handler(h, body, this)
  }

  private init(h: InHeader, body: Buffer): void {
    const k = readInitIn(body)
    if (k.major !== FUSE_KERNEL_VERSION) {
      this.error(h, 71) // EPROTO
      return
    }
    this.minor = Math.min(k.minor, FUSE_KERNEL_MINOR)
    const want =
      Init.ASYNC_READ |
      Init.BIG_WRITES |
      Init.DO_READDIRPLUS |
      Init.READDIRPLUS_AUTO |
      Init.PARALLEL_DIROPS |
      Init.MAX_PAGES |
      Init.CACHE_SYMLINKS
    let flags = (k.flags & want) >>> 0
    // Stack depth 1: backing files on a plain filesystem, and overlayfs can still stack on this mount.
    this.passthrough = this.wantPassthrough && (k.flags & Init.INIT_EXT) !== 0 && (k.flags2 & Init2.PASSTHROUGH) !== 0
    if (this.passthrough) flags = (flags | Init.INIT_EXT) >>> 0
    const flags2 = this.passthrough ? Init2.PASSTHROUGH : 0
    const maxStackDepth = this.passthrough ? 1 : 0
    this.data(
      h,
      initOut({ minor: this.minor, maxReadahead: k.maxReadahead, flags, flags2, maxWrite: MAX_WRITE, maxPages: MAX_PAGES, maxStackDepth })
    )
    this.log.debug(
      { kernel: `${k.major}.${k.minor}`, minor: this.minor, flags: flags.toString(16), passthrough: this.passthrough },
      'FUSE INIT'
    )
    if (this.wantPassthrough && !this.passthrough)
      this.log.warn({ kernel: `${k.major}.${k.minor}` }, 'FUSE passthrough not offered by the kernel; reads go through the daemon')
    this.initResolve()
  }

  /** INIT can only lower readahead; the mount's bdi takes a higher one (1 MiB requests need it). */
  private async raiseReadahead(): Promise<void> {
    const line = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find(l => l.split(' ')[4] === this.mountpoint)
    const dev = line?.split(' ')[2]
    if (dev !== undefined) await writeFile(`/sys/class/bdi/${dev}/read_ahead_kb`, String(READAHEAD_KB))
  }

  private end(err?: NodeJS.ErrnoException): void {
    if (this.closed) return
    if (err !== undefined) this.log.error({ err: err.message }, 'reading /dev/fuse failed: the session ends')
    this.close()
  }

  private close(): void {
    if (this.closed) return
    this.closed = true
    this.reader?.close() // before the descriptor goes: libuv must not poll a closed fd
    try {
      closeSync(this.fd)
    } catch {}
    this.endedResolve()
  }
}

async function run(cmd: string, args: string[]): Promise<number> {
  return await new Promise(resolve => {
    const p = spawn(cmd, args, { stdio: 'ignore' })
    p.once('error', () => resolve(-1))
    p.once('exit', code => resolve(code ?? -1))
  })
}
