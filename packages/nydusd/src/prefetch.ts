import { setTimeout as sleep } from 'node:timers/promises'
import { isDir, isReg, type BootstrapReader, type ChunkRef, type InodeRecord } from '@nydusjs/rafs/read'
import type { Logger } from 'pino'
import type { ChunkFetcher } from './chunk-fetcher.js'
import type { DaemonMetrics } from './metrics.js'

export interface PrefetchOptions {
  /** Also fetch the whole image after the prefetch table. */
  all: boolean
  threads: number
  /** Bytes per second of backend traffic; 0 = unlimited. */
  bandwidthRate: number
}

export interface PrefetchStatus {
  state: 'idle' | 'running' | 'done' | 'stopped'
  totalChunks: number
  doneChunks: number
  failedChunks: number
  bytes: number
}

/**
 * Background fetching: the bootstrap's prefetch table first, then (with
 * `all`) every chunk of the image. Foreground reads always go first: workers
 * pause while any foreground fetch is in flight.
 */
export class Prefetcher {
  readonly status: PrefetchStatus = { state: 'idle', totalChunks: 0, doneChunks: 0, failedChunks: 0, bytes: 0 }
  private stopped = false
  private started = 0

  constructor(
    private readonly r: BootstrapReader,
    private readonly fetcher: ChunkFetcher,
    private readonly o: PrefetchOptions,
    private readonly metrics: DaemonMetrics,
    private readonly log: Logger
  ) {}

  async run(): Promise<void> {
    const queue = this.plan()
    this.status.totalChunks = queue.length
    this.status.state = 'running'
    this.started = Date.now()
    this.metrics.prefetchChunks.set({ state: 'total' }, queue.length)
    let next = 0
    const worker = async (): Promise<void> => {
      while (!this.stopped && next < queue.length) {
        const c = queue[next++]
        while (this.fetcher.foregroundInflight > 0 && !this.stopped) await sleep(2)
        await this.throttle()
        if (this.stopped) return
        try {
          if (!this.fetcher.isCached(c)) {
            await this.fetcher.withChunk(c, () => {}, false)
            this.status.bytes += c.compressedSize
            this.metrics.prefetchBytes.inc(c.compressedSize)
          }
          this.status.doneChunks++
        } catch (err) {
          this.status.failedChunks++
          this.log.warn({ err: (err as Error).message }, 'prefetch of a chunk failed')
        }
        this.metrics.prefetchChunks.set({ state: 'done' }, this.status.doneChunks)
      }
    }
    await Promise.all(Array.from({ length: this.o.threads }, worker))
    await this.fetcher.flush() // done means on disk
    this.status.state = this.stopped ? 'stopped' : 'done'
    this.log.info({ ...this.status, seconds: (Date.now() - this.started) / 1000 }, 'prefetch finished')
  }

  stop(): void {
    this.stopped = true
  }

  /** Keeps the average rate at or under bandwidth_rate. */
  private async throttle(): Promise<void> {
    if (this.o.bandwidthRate <= 0) return
    const due = this.started + (this.status.bytes / this.o.bandwidthRate) * 1000
    const wait = due - Date.now()
    if (wait > 0) await sleep(wait)
  }

  /** Chunks of the prefetch table's files (directories expand to everything below), then the rest in blob order. */
  private plan(): ChunkRef[] {
    const out: ChunkRef[] = []
    const seen = new Set<string>()
    const add = (c: ChunkRef): void => {
      const k = `${c.blobIndex}/${c.compressedOffset}`
      if (!seen.has(k)) {
        seen.add(k)
        out.push(c)
      }
    }
    const addInode = (rec: InodeRecord): void => {
      if (isReg(rec.mode)) for (const c of this.r.fileChunks(rec)) add(c)
      else if (isDir(rec.mode)) for (const child of this.r.children(rec)) addInode(child)
    }
    for (const i of this.r.prefetch()) addInode(this.r.inode(i))
    if (this.o.all) {
      const rest: ChunkRef[] = []
      for (let i = 0; i < this.r.sb.chunkCount; i++) rest.push(this.r.chunk(i))
      rest.sort((a, b) => a.blobIndex - b.blobIndex || a.compressedOffset - b.compressedOffset)
      for (const c of rest) add(c)
    }
    return out
  }
}
