import { read, readSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { PollWatch, UvPoll } from './uv-poll.js'

/** What a reader does with what it reads: each request buffer is valid only during `request`. */
export interface ReaderHooks {
  request: (req: Buffer) => void
  /** The session ended (unmounted: no error) or reading failed. */
  end: (err?: NodeJS.ErrnoException) => void
}

/** Reads requests off /dev/fuse until stopped or the session ends. */
export interface RequestReader {
  readonly kind: 'poll' | 'pool'
  start: () => void
  /** Takes no more requests (they wait in the kernel for a successor); settles once none is being read. */
  stop: () => Promise<void>
  close: () => void
}

/** Requests per wake-up before other work (timers, fetched chunks) gets a turn. */
const BATCH = 64

/**
 * The main thread reads /dev/fuse itself when libuv's poll says a request is
 * there (the descriptor is non-blocking): no pool thread and no two thread
 * hand-offs per request, which cost as much as the request on this VM.
 */
export class PollReader implements RequestReader {
  readonly kind = 'poll'
  private readonly watch: PollWatch
  private stopped = false

  /** `live`: the session is mounted already (a takeover); else `start` waits for mount(8) before polling. */
  constructor(
    private readonly fd: number,
    private readonly buf: Buffer,
    private readonly hooks: ReaderHooks,
    uv: UvPoll,
    private live = false
  ) {
    uv.nonblocking(fd)
    this.watch = uv.watch(fd, status => {
      this.drain(status < 0)
    })
  }

  /**
   * Polls once the session exists. Before mount(8) has mounted, the kernel
   * answers a poll of /dev/fuse with EPOLLERR without hooking the epoll entry
   * to the session's wait queue, so an entry added then would never wake
   * again (a mount that hangs for ever, now and then, under load): until then
   * the descriptor is read on a timer.
   */
  start(): void {
    if (this.live) {
      this.watch.start()
      return
    }
    const probe = (): void => {
      if (this.stopped) return
      let n: number
      try {
        n = readSync(this.fd, this.buf, 0, this.buf.length, null)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'EPERM') setTimeout(probe, 1)
        else if (code === 'EAGAIN' || code === 'ENOENT' || code === 'EINTR') this.goLive()
        else this.fail(err as NodeJS.ErrnoException)
        return
      }
      this.hooks.request(this.buf.subarray(0, n))
      this.goLive()
    }
    probe()
  }

  private goLive(): void {
    this.live = true
    if (!this.stopped) this.watch.start()
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.watch.stop()
  }

  close(): void {
    this.stopped = true
    this.watch.close()
  }

  private fail(err: NodeJS.ErrnoException): void {
    this.close()
    this.hooks.end(err.code === 'ENODEV' ? undefined : err)
  }

  /** `errored`: libuv stopped the poll on an error status (the session is still there unless a read says otherwise). */
  private drain(errored: boolean): void {
    for (let i = 0; i < BATCH && !this.stopped; i++) {
      let n: number
      try {
        n = readSync(this.fd, this.buf, 0, this.buf.length, null)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'EAGAIN') break
        if (code === 'ENOENT' || code === 'EINTR') continue
        this.fail(err as NodeJS.ErrnoException)
        return
      }
      this.hooks.request(this.buf.subarray(0, n))
    }
    if (errored && !this.stopped) this.watch.start()
  }
}

/**
 * Where koffi cannot reach libuv: reads on libuv's pool, `readers` kept
 * waiting, each holding a pool thread until a request comes.
 */
export class PoolReader implements RequestReader {
  readonly kind = 'pool'
  private stopping = false
  private closed = false
  private reading = 0
  private readersDone?: () => void

  constructor(
    private readonly fd: number,
    private readonly mountpoint: string,
    private readonly bufSize: number,
    private readonly hooks: ReaderHooks,
    private readonly readers = 2
  ) {}

  start(): void {
    for (let i = 0; i < this.readers; i++) this.loop()
  }

  /**
   * A read blocked on /dev/fuse holds a libuv thread, and an exit waits for
   * those threads, so each is woken by a lookup of a name that does not
   * exist, which it answers before it stops.
   */
  async stop(): Promise<void> {
    this.stopping = true
    const done = new Promise<void>(resolve => {
      this.readersDone = resolve
    })
    if (this.reading === 0) return
    for (let i = 0; i < 100 && this.reading > 0; i++) {
      await stat(join(this.mountpoint, `.nydusd-wake-${process.pid}-${i}`)).catch(() => {})
      await Promise.race([done, sleep(20)])
    }
  }

  close(): void {
    this.closed = true
  }

  private loop(): void {
    this.reading++
    const buf = Buffer.allocUnsafe(this.bufSize)
    const next = (): void => {
      if (this.closed) return
      if (this.stopping) {
        if (--this.reading === 0) this.readersDone?.()
        return
      }
      read(this.fd, buf, 0, buf.length, null, (err, n) => {
        if (err !== null) {
          const code = err.code
          // Before mount(8) has mounted, reads fail with EPERM; an interrupted request leaves ENOENT.
          if (code === 'EPERM') setTimeout(next, 2)
          else if (code === 'ENOENT' || code === 'EINTR' || code === 'EAGAIN') next()
          else {
            this.reading--
            this.hooks.end(code === 'ENODEV' ? undefined : err)
          }
          return
        }
        this.hooks.request(buf.subarray(0, n))
        next()
      })
    }
    next()
  }
}
