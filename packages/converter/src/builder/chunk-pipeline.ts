import type { Worker } from 'node:worker_threads'
import type { ChunkRef, CompressorName, DigesterName } from '@nydusjs/rafs'
import type { BatchRequest, BatchResult } from './chunk-worker.js'
import type { BlobWriter } from './blob-writer.js'
import type { DictView } from './chunk-dict.js'
import { ChunkWorkers } from './chunk-workers.js'

const BATCH_BYTES = 2 * 1024 * 1024
const BATCH_CHUNKS = 512

export interface PipelineOptions {
  compressor: CompressorName
  digester: DigesterName
  chunkSize: number
  blob: BlobWriter
  dict: DictView
  workers?: number
  level: number
  /** Threads shared with the image's other layers; used when their spec matches, else the pipeline starts its own. */
  pool?: ChunkWorkers
}

interface Batch {
  seq: number
  buf: Buffer
  lens: number[]
  done: Array<(ref: ChunkRef) => void>
  used: number
}

/**
 * Reading stays on the main thread; hashing and compression run on worker
 * threads in batches; results are applied in submission order, so the blob
 * is byte-identical whatever the timing.
 */
export class ChunkPipeline {
  private readonly threads: ChunkWorkers
  private readonly ownsThreads: boolean
  private readonly workers: Worker[]
  private readonly onError = (err: Error): void => this.fail(err)
  private closed = false
  private readonly idle: Worker[] = []
  private readonly queue: Batch[] = []
  private readonly inflight = new Map<number, Batch>()
  private readonly results = new Map<number, BatchResult>()
  /** Batch buffers come back from the workers and are reused: fewer allocations, less GC. */
  private readonly pool: ArrayBuffer[] = []
  private current: Batch
  private seq = 0
  private nextApply = 0
  private failure?: Error
  private wake?: () => void
  private applying: Promise<void> = Promise.resolve()
  /** Chunks of this build that went into the blob, by digest. */
  readonly own = new Map<string, ChunkRef>()
  readonly refs = new Set<ChunkRef>()
  dedupHits = 0
  dictHits = 0
  /** Compressed bytes the dictionary saved from being stored again. */
  dictBytes = 0
  bytesIn = 0

  constructor(private readonly opts: PipelineOptions) {
    const spec = { compressor: opts.compressor, digester: opts.digester, level: opts.level }
    this.ownsThreads = opts.pool?.matches(spec) !== true
    this.threads = this.ownsThreads ? new ChunkWorkers(spec, opts.workers) : opts.pool!
    this.workers = this.threads.all
    for (const w of this.workers) {
      w.on('error', this.onError)
      this.idle.push(w)
    }
    this.current = this.newBatch()
  }

  /** Reserves room for one chunk, lets `fill` read it in place, and calls `done` with its location later. */
  async add(len: number, fill: (dst: Buffer, off: number) => Promise<void>, done: (ref: ChunkRef) => void): Promise<void> {
    this.check()
    if (this.current.used + len > this.current.buf.length || this.current.lens.length >= BATCH_CHUNKS) await this.flushBatch()
    const b = this.current
    await fill(b.buf, b.used)
    b.used += len
    b.lens.push(len)
    b.done.push(done)
    this.bytesIn += len
  }

  async finish(): Promise<void> {
    try {
      await this.flushBatch()
      while (this.nextApply < this.seq) {
        this.check()
        await new Promise<void>(resolve => {
          this.wake = resolve
        })
      }
      await this.applying
      this.check()
    } finally {
      await this.close()
    }
  }

  /** Stops the threads, unless they are borrowed and idle: then they go back to their pool for the next layer. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (const w of this.workers) w.off('error', this.onError)
    // A failed layer may leave batches running; their answers must not reach the next layer's pipeline.
    if (this.ownsThreads || this.failure !== undefined || this.inflight.size > 0 || this.queue.length > 0) await this.threads.close()
  }

  private newBatch(): Batch {
    const size = Math.max(BATCH_BYTES, this.opts.chunkSize)
    return { seq: -1, buf: Buffer.from(this.pool.pop() ?? new ArrayBuffer(size)), lens: [], done: [], used: 0 }
  }

  private async flushBatch(): Promise<void> {
    const b = this.current
    if (b.lens.length === 0) return
    await this.threads.ready
    b.seq = this.seq++
    this.current = this.newBatch()
    this.queue.push(b)
    this.dispatch()
    // Bound memory: at most two batches waiting per worker.
    while (this.inflight.size + this.queue.length > this.workers.length * 2 || this.results.size > this.workers.length * 2) {
      this.check()
      await new Promise<void>(resolve => {
        this.wake = resolve
      })
    }
  }

  private dispatch(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()!
      const b = this.queue.shift()!
      this.inflight.set(b.seq, b)
      w.once('message', (res: BatchResult) => {
        this.idle.push(w)
        this.pool.push(res.data)
        this.results.set(res.seq, res)
        this.dispatch()
        this.applying = this.applying.then(async () => await this.applyReady()).catch(err => this.fail(err as Error))
      })
      const req: BatchRequest = { seq: b.seq, data: b.buf.buffer as ArrayBuffer, lens: Uint32Array.from(b.lens) }
      w.postMessage(req, [req.data])
    }
  }

  private async applyReady(): Promise<void> {
    for (let res = this.results.get(this.nextApply); res !== undefined; res = this.results.get(this.nextApply)) {
      const b = this.inflight.get(this.nextApply)!
      this.results.delete(this.nextApply)
      this.inflight.delete(this.nextApply)
      await this.apply(b, res)
      this.nextApply++
      this.signal()
    }
  }

  private async apply(b: Batch, res: BatchResult): Promise<void> {
    const digests = Buffer.from(res.digests)
    const out = Buffer.from(res.out)
    let off = 0
    for (let i = 0; i < b.lens.length; i++) {
      const digest = Buffer.from(digests.subarray(i * 32, i * 32 + 32))
      const data = out.subarray(off, off + res.outLens[i])
      off += res.outLens[i]
      b.done[i](await this.place(digest, data, res.flags[i], b.lens[i]))
    }
  }

  /** Dedup: this blob first, then the chunk dictionary, else append to the blob. */
  private async place(digest: Buffer, data: Buffer, flags: number, size: number): Promise<ChunkRef> {
    const key = digest.toString('latin1')
    const own = this.own.get(key)
    if (own !== undefined) {
      this.dedupHits++
      return own
    }
    const dict = this.opts.dict.lookup(key)
    if (dict !== undefined) {
      this.dictHits++
      this.dictBytes += dict.compressedSize
      this.refs.add(dict)
      return dict
    }
    const e = await this.opts.blob.append(digest, data, flags, size)
    const ref: ChunkRef = { ...e, blobIndex: 0 }
    this.own.set(key, ref)
    this.refs.add(ref)
    return ref
  }

  private signal(): void {
    const w = this.wake
    this.wake = undefined
    w?.()
  }

  private fail(err: Error): void {
    this.failure ??= err
    this.signal()
  }

  private check(): void {
    if (this.failure !== undefined) throw this.failure
  }
}
