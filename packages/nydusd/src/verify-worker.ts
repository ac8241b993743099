import { Worker } from 'node:worker_threads'
import { decompressChunkInto, type Digester } from '@nydusjs/rafs'
import type { VerifyReply, VerifyRequest } from './verify-thread.js'

/** Below this, a hand-off to another thread costs more than the work. */
export const OFFLOAD_MIN_BYTES = 256 * 1024

/** A decoded chunk (a view of the caller's `dst`) and its digest. */
export interface Decoded {
  data: Buffer
  digest: Buffer
}

interface Waiter {
  req: VerifyRequest
  local: () => Decoded
  resolve: (d: Decoded) => void
  reject: (e: Error) => void
}

const shared = (b: Uint8Array): b is Uint8Array & { buffer: SharedArrayBuffer } => b.buffer instanceof SharedArrayBuffer

/**
 * Decompresses and hashes large chunks on a worker thread, so the JS thread
 * serves FUSE while read-ahead chunks are checked. Chunk buffers are
 * SharedArrayBuffers (see BufferPool): the thread works on them in place,
 * with no copy; the caller owns them until the promise settles. Anything else
 * (small chunks, buffers that are not shared) is done here. If the thread
 * dies, pending and later work is done here too: a broken helper must not
 * fail reads.
 */
export class VerifyWorker {
  private worker?: Worker
  private readonly waiting = new Map<number, Waiter>()
  private next = 0
  /** Chunks the thread handled. */
  offloaded = 0

  constructor(private readonly digester: Digester) {
    const w = new Worker(new URL('./verify-thread.js', import.meta.url), { workerData: { digester: digester.name } })
    w.on('message', (m: VerifyReply) => {
      const waiter = this.waiting.get(m.id)
      if (waiter === undefined) return
      this.waiting.delete(m.id)
      if (this.waiting.size === 0) w.unref()
      this.offloaded++
      if ('error' in m) {
        waiter.reject(new Error(m.error))
        return
      }
      const data =
        waiter.req.op === 'digest'
          ? Buffer.from(waiter.req.buf, waiter.req.off, waiter.req.len)
          : Buffer.from(waiter.req.dst, waiter.req.dstOff, m.len)
      waiter.resolve({ data, digest: Buffer.from(m.digest) })
    })
    w.on('error', () => this.fallBack())
    w.on('exit', () => this.fallBack())
    // Referenced only while work is pending (after the listeners: adding one re-refs the port).
    w.unref()
    this.worker = w
  }

  async digest(data: Uint8Array): Promise<Buffer> {
    if (this.worker === undefined || data.length < OFFLOAD_MIN_BYTES || !shared(data)) return await this.digester.digestAsync(data)
    const d = await this.send({ id: this.next++, op: 'digest', buf: data.buffer, off: data.byteOffset, len: data.length }, () => ({
      data: Buffer.from(data.buffer, data.byteOffset, data.length),
      digest: this.digester.digest(data)
    }))
    return d.digest
  }

  /** A compressed chunk decoded into `dst` (rafs's decompressChunkInto rules), and the digest of the result. */
  async decode(piece: Uint8Array, flags: number, size: number, dst: Buffer): Promise<Decoded> {
    const unpack = (): Buffer => decompressChunkInto(piece, flags, size, dst)
    if (this.worker !== undefined && size >= OFFLOAD_MIN_BYTES && dst.length >= size && shared(piece) && shared(dst)) {
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
      return await this.send(req, () => {
        const data = unpack()
        return { data, digest: this.digester.digest(data) }
      })
    }
    const data = unpack()
    return { data, digest: await this.digest(data) }
  }

  private async send(req: VerifyRequest, local: () => Decoded): Promise<Decoded> {
    const w = this.worker!
    return await new Promise((resolve, reject) => {
      if (this.waiting.size === 0) w.ref()
      this.waiting.set(req.id, { req, local, resolve, reject })
      w.postMessage(req)
    })
  }

  private fallBack(): void {
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
    this.fallBack()
    await w?.terminate()
  }
}
