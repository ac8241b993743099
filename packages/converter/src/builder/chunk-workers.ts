import { Worker } from 'node:worker_threads'
import { availableParallelism } from 'node:os'
import type { CompressorName, DigesterName } from '@nydusjs/rafs'

export interface WorkerSpec {
  compressor: CompressorName
  digester: DigesterName
  level: number
}

/**
 * The threads that hash and compress chunks. Starting two costs about 50 ms
 * (module loading, zstd context), so an image's layers share one set: a
 * `ChunkPipeline` borrows it for one layer and hands it back idle.
 */
export class ChunkWorkers {
  readonly all: Worker[]
  readonly ready: Promise<unknown>
  private closing?: Promise<void>

  constructor(
    readonly spec: WorkerSpec,
    n = Math.max(1, Math.min(availableParallelism(), 8))
  ) {
    const url = new URL('./chunk-worker.js', import.meta.url)
    this.all = Array.from({ length: n }, () => new Worker(url, { workerData: spec }))
    this.ready = Promise.all(
      this.all.map(
        async w =>
          await new Promise((resolve, reject) => {
            w.once('message', resolve)
            w.once('error', reject)
          })
      )
    )
    // A worker that fails to start rejects `ready`; whoever awaits it sees the error.
    this.ready.catch(() => {})
  }

  get closed(): boolean {
    return this.closing !== undefined
  }

  matches(spec: WorkerSpec): boolean {
    return (
      !this.closed && spec.compressor === this.spec.compressor && spec.digester === this.spec.digester && spec.level === this.spec.level
    )
  }

  async close(): Promise<void> {
    this.closing ??= Promise.all(this.all.map(async w => await w.terminate())).then(() => {})
    await this.closing
  }
}
