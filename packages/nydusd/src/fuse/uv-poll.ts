import { ffi, type Koffi, libC, type NativeFunction as Fn } from '../ffi.js'

/** uv_handle_type UV_POLL, and the poll event bit for readable. */
const UV_POLL = 8
const UV_READABLE = 1
/** fcntl(2) commands and the O_NONBLOCK status flag (Linux). */
const F_GETFL = 3
const F_SETFL = 4
const O_NONBLOCK = 0o4000

/**
 * libuv's uv_poll on any descriptor, through the libuv that Node itself
 * exports (via koffi): the main thread's event loop wakes when /dev/fuse
 * has a request, instead of a pool thread blocked in read(2) handing each
 * request over. Undefined, with the reason, when koffi cannot reach it.
 */
export class UvPoll {
  private static cached?: UvPoll | string

  private constructor(
    private readonly k: Koffi,
    private readonly f: Record<'loop' | 'size' | 'init' | 'start' | 'stop' | 'close' | 'fcntl', Fn>,
    private readonly cbType: unknown,
    private readonly closeType: unknown
  ) {}

  static load(): UvPoll | string {
    UvPoll.cached ??= UvPoll.bind()
    return UvPoll.cached
  }

  private static bind(): UvPoll | string {
    try {
      const k = ffi()
      const self = k.load(null)
      const cbType = k.pointer(k.proto('void nydusd_uv_poll_cb(void *handle, int status, int events)'))
      const closeType = k.pointer(k.proto('void nydusd_uv_close_cb(void *handle)'))
      const f = {
        loop: self.func('void *uv_default_loop()'),
        size: self.func('size_t uv_handle_size(int type)'),
        init: self.func('int uv_poll_init(void *loop, void *handle, int fd)'),
        start: self.func('int uv_poll_start(void *handle, int events, nydusd_uv_poll_cb *cb)'),
        stop: self.func('int uv_poll_stop(void *handle)'),
        close: self.func('void uv_close(void *handle, nydusd_uv_close_cb *cb)'),
        fcntl: libC().func('int fcntl(int fd, int cmd, int arg)')
      }
      return new UvPoll(k, f, cbType, closeType)
    } catch (err) {
      return `koffi could not reach libuv: ${(err as Error).message}`
    }
  }

  /** Sets or clears O_NONBLOCK on `fd` (on the open file description: a predecessor's copy shares it). */
  nonblocking(fd: number, on = true): void {
    const flags = this.f.fcntl(fd, F_GETFL, 0) as number
    const want = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
    if (flags < 0 || (this.f.fcntl(fd, F_SETFL, want) as number) < 0) throw new Error(`fcntl(${fd}, O_NONBLOCK) failed`)
  }

  /** Watches `fd` for readability; `readable(status)` runs on the main thread (status < 0: the poll stopped on an error). */
  watch(fd: number, readable: (status: number) => void): PollWatch {
    const handle = this.k.alloc('uint8_t', this.f.size(UV_POLL) as number)
    const rc = this.f.init(this.f.loop(), handle, fd) as number
    if (rc !== 0) {
      this.k.free(handle)
      throw new Error(`uv_poll_init(${fd}) failed: ${rc}`)
    }
    const cb = this.k.register((_h: unknown, status: unknown) => {
      readable(status as number)
    }, this.cbType)
    return new PollWatch(this.k, this.f, handle, cb, this.closeType)
  }
}

/** One uv_poll handle: started, stopped and at last closed (its memory freed once libuv lets go). */
export class PollWatch {
  private closed = false

  constructor(
    private readonly k: Koffi,
    private readonly f: Record<string, Fn>,
    private readonly handle: unknown,
    private readonly cb: unknown,
    private readonly closeType: unknown
  ) {}

  start(): void {
    if (!this.closed) this.f.start(this.handle, UV_READABLE, this.cb)
  }

  stop(): void {
    if (!this.closed) this.f.stop(this.handle)
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.f.stop(this.handle)
    // Not from inside the close callback itself: koffi is still running it.
    const done = this.k.register(() => {
      setImmediate(() => {
        this.k.unregister(this.cb)
        this.k.unregister(done)
        this.k.free(this.handle)
      })
    }, this.closeType)
    this.f.close(this.handle, done)
  }
}
