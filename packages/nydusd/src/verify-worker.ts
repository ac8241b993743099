import { Worker } from 'node:worker_threads'
import { decompressChunkInto, type Digester } from '@nydusjs/rafs/read'
import type { VerifyReply, VerifyRequest } from './verify-thread.js'

/** Below this, a hand-off to another thread costs more than the work. */
export const OFFLOAD_MIN_BYTES = 256 * 1024

/** A decoded chunk (a view of the caller's `dst`) and its digest. */
export interface Decoded {
  data: Buffer
  digest: Buffer
}

/** Counts the work a caller's requests got done on the thread (each mount its own; the worker is shared). */
export interface OffloadCount {
  n: number
}

interface Waiter {
  count?: OffloadCount
  req: VerifyRequest
  local: () => Decoded
  resolve: (d: Decoded) => void
  reject: (e: Error) => void
}

const shared = (b: Uint8Array): b is Uint8Array & { buffer: SharedArrayBuffer } => b.buffer instanceof SharedArrayBuffer

/** A thread left without work this long exits (an idle daemon keeps no isolate for it); the next chunk starts one. */
const IDLE_EXIT_MS = 30_000

/**
 * Decompresses and hashes large chunks on a worker thread, so the JS thread
 * serves FUSE while read-ahead chunks are checked. Chunk buffers are
 * SharedArrayBuffers (see BufferPool): the thread works on them in place,
 * with no copy; the caller owns them until the promise settles. Anything else
 * (small chunks, buffers that are not shared) is done here. The thread starts
 * with the first chunk and exits when idle; one serves every mount of the
 * process (`shared`). If it dies, pending and later work is done here too: a
 * broken helper must not fail reads.
 */
export class VerifyWorker {
  private worker?: Worker
  private broken = false
  private idle?: NodeJS.Timeout
  private readonly waiting = new Map<number, Waiter>()
  private next = 0
  /** Chunks the thread handled. */
  offloaded = 0

  private static readonly byDigester = new Map<string, { worker: VerifyWorker; users: number }>()

  /** The process's one worker for this digester; `release` when done with it. */
  static shared(digester: Digester): VerifyWorker {
    let e = VerifyWorker.byDigester.get(digester.name)
    if (e === undefined) VerifyWorker.byDigester.set(digester.name, (e = { worker: new VerifyWorker(digester), users: 0 }))
    e.users++
    return e.worker
  }

  /** One user of `shared` is done; the last one stops the thread. */
  async release(): Promise<void> {
    const e = VerifyWorker.byDigester.get(this.digester.name)
    if (e?.worker !== this || --e.users > 0) return
    VerifyWorker.byDigester.delete(this.digester.name)
    await this.close()
  }

  constructor(private readonly digester: Digester) {}

  /** Threads this process has started for verification (they exit when idle). */
  static started = 0

  private thread(): Worker | undefined {
    if (this.broken) return undefined
    if (this.worker !== undefined) return this.worker
    const w = new Worker(new URL('./verify-thread.js', import.meta.url), { workerData: { digester: this.digester.name } })
    VerifyWorker.started++
    w.on('message', (m: VerifyReply) => this.answer(m))
    // An idle thread we ended is no longer `this.worker`: its exit is not a failure.
    const failed = (): void => {
      if (this.worker === w) this.fallBack(true)
    }
    w.on('error', failed)
    w.on('exit', failed)
    // Referenced only while work is pending (after the listeners: adding one re-refs the port).
    w.unref()
    this.worker = w
    return w
  }

  private answer(m: VerifyReply): void {
    const waiter = this.waiting.get(m.id)
    if (waiter === undefined) return
    this.waiting.delete(m.id)
    if (this.waiting.size === 0) this.rest()
    this.offloaded++
    if (waiter.count !== undefined) waiter.count.n++
    if ('error' in m) {
      waiter.reject(new Error(m.error))
      return
    }
    const data =
      waiter.req.op === 'digest'
        ? Buffer.from(waiter.req.buf, waiter.req.off, waiter.req.len)
        : Buffer.from(waiter.req.dst, waiter.req.dstOff, m.len)
    waiter.resolve({ data, digest: Buffer.from(m.digest) })
  }

  /** No work pending: the thread no longer keeps the process alive, and exits if none comes. */
  private rest(): void {
    const w = this.worker
    w?.unref()
    clearTimeout(this.idle)
    this.idle = setTimeout(() => {
      if (this.worker === w) this.stopIfIdle()
    }, IDLE_EXIT_MS)
    this.idle.unref()
  }

  /**
   * Ends every thread with no work pending (the idle release): an idle
   * isolate never collects, so the chunk buffers it was handed would stay
   * alive with it. The next large chunk starts a thread again.
   */
  static stopIdle(): void {
    for (const { worker } of VerifyWorker.byDigester.values()) worker.stopIfIdle()
  }

  private stopIfIdle(): void {
    const w = this.worker
    if (w === undefined || this.waiting.size > 0) return
    clearTimeout(this.idle)
    this.worker = undefined
    void w.terminate()
  }

  async digest(data: Uint8Array, count?: OffloadCount): Promise<Buffer> {
    if (this.broken || data.length < OFFLOAD_MIN_BYTES || !shared(data)) return await this.digester.digestAsync(data)
    const d = await this.send(
      { id: this.next++, op: 'digest', buf: data.buffer, off: data.byteOffset, len: data.length },
      () => ({
        data: Buffer.from(data.buffer, data.byteOffset, data.length),
        digest: this.digester.digest(data)
      }),
      count
    )
    return d.digest
  }

  /** A compressed chunk decoded into `dst` (rafs's decompressChunkInto rules), and the digest of the result. */
  async decode(piece: Uint8Array, flags: number, size: number, dst: Buffer, count?: OffloadCount): Promise<Decoded> {
    const unpack = (): Buffer => decompressChunkInto(piece, flags, size, dst)
    if (!this.broken && size >= OFFLOAD_MIN_BYTES && dst.length >= size && shared(piece) && shared(dst)) {
      const req: VerifyRequest = {
        id: this.next++,
        op: 'decode',
        src: piece.buffer,
        srcOff: piece.byteOffset,
        srcLen: piece.length,
        dst: dst.buffer,
        dstOff: dst.byteOffset,
        flags,
        size
      }
      return await this.send(
        req,
        () => {
          const data = unpack()
          return { data, digest: this.digester.digest(data) }
        },
        count
      )
    }
    const data = unpack()
    return { data, digest: await this.digest(data, count) }
  }

  private async send(req: VerifyRequest, local: () => Decoded, count?: OffloadCount): Promise<Decoded> {
    const w = this.thread()
    if (w === undefined) return local()
    clearTimeout(this.idle)
    return await new Promise((resolve, reject) => {
      if (this.waiting.size === 0) w.ref()
      this.waiting.set(req.id, { count, req, local, resolve, reject })
      w.postMessage(req)
    })
  }

  /** The thread is gone: pending work is done here; `broken` (it failed), and later work too. */
  private fallBack(broken: boolean): void {
    if (broken) this.broken = true
    this.worker = undefined
    for (const { local, resolve, reject } of this.waiting.values()) {
      try {
        resolve(local())
      } catch (err) {
        reject(err as Error)
      }
    }
    this.waiting.clear()
  }

  async close(): Promise<void> {
    const w = this.worker
    clearTimeout(this.idle)
    this.fallBack(true)
    await w?.terminate()
  }
}
