import { Worker } from 'node:worker_threads'
import type { Digester } from '@nydusjs/rafs'

/** Below this, a hand-off to another thread costs more than hashing here. */
const MIN_BYTES = 256 * 1024

interface Waiter { data: Uint8Array, resolve: (d: Buffer) => void }

/**
 * Chunk digests on a worker thread, so the JS thread serves FUSE while
 * read-ahead chunks are checked. Chunk buffers are SharedArrayBuffers (see
 * BufferPool): the worker reads them in place, with no copy. The caller owns
 * the buffer until the promise settles. If the thread dies, pending and later
 * digests are computed here instead: a broken helper must not fail reads.
 */
export class HashWorker {
  private worker?: Worker
  private readonly waiting = new Map<number, Waiter>()
  private next = 0
  /** Digests the thread computed. */
  offloaded = 0

  constructor (private readonly digester: Digester) {
    const w = new Worker(new URL('./hash-thread.js', import.meta.url), { workerData: { digester: digester.name } })
    w.on('message', (m: { id: number, digest: ArrayBuffer }) => {
      const waiter = this.waiting.get(m.id)
      if (waiter === undefined) return
      this.waiting.delete(m.id)
      if (this.waiting.size === 0) w.unref()
      this.offloaded++
      waiter.resolve(Buffer.from(m.digest))
    })
    w.on('error', () => this.fallBack())
    w.on('exit', () => this.fallBack())
    // Referenced only while digests are pending (after the listeners: adding one re-refs the port).
    w.unref()
    this.worker = w
  }

  async digest (data: Uint8Array): Promise<Buffer> {
    const w = this.worker
    if (w === undefined || data.length < MIN_BYTES || !(data.buffer instanceof SharedArrayBuffer)) return await this.digester.digestAsync(data)
    const id = this.next++
    return await new Promise(resolve => {
      if (this.waiting.size === 0) w.ref()
      this.waiting.set(id, { data, resolve })
      w.postMessage({ id, buf: data.buffer, off: data.byteOffset, len: data.length })
    })
  }

  private fallBack (): void {
    this.worker = undefined
    for (const { data, resolve } of this.waiting.values()) resolve(this.digester.digest(data))
    this.waiting.clear()
  }

  async close (): Promise<void> {
    const w = this.worker
    this.fallBack()
    await w?.terminate()
  }
}
