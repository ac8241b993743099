import { createHash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { open, rm, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { SupernodeMetrics } from './metrics.js'
import type { Origin } from './origin.js'

export interface CdnOptions {
  id: string
  url: string
  length: number
  pieceSize: number
  dir: string
  origin: Origin
  /** The latest caller's headers for the origin (credentials expire; a resume uses the newest). */
  headers: () => Record<string, string>
  /** The sha256 the whole file must have, when known (an OCI blob's digest). */
  digest?: string
  metrics: SupernodeMetrics
  log: Logger
}

/** Pieces the stream reaches soon enough that a reader waits for it rather than asking the origin again. */
const STREAM_AHEAD = 8
const ATTEMPTS = 5

/**
 * The supernode's copy of one task (its CDN role): pieces written to one
 * sparse file as the origin sends them, each published with its sha256 the
 * moment it is complete, so peers start before the copy is whole. A whole
 * download streams the file in one GET, resumed by range after a failure; a
 * lazy reader's piece far ahead of the stream (or with no stream) is fetched
 * on its own. Emits 'piece' (n) and 'failed' (Error).
 */
export class CdnTask extends EventEmitter {
  readonly count: number
  /** Digests of the pieces this copy holds. */
  readonly digests: Array<string | undefined>
  /** Digests another supernode published (shared state) for pieces this copy may not hold. */
  private readonly known = new Map<number, string>()
  failed?: Error
  private fh?: FileHandle
  private streamPos = -1
  private streaming = false
  private readonly fetching = new Set<number>()
  private verified = false
  private closed = false
  private readonly abort = new AbortController()

  constructor(readonly o: CdnOptions) {
    super()
    this.setMaxListeners(0)
    this.count = Math.max(1, Math.ceil(o.length / o.pieceSize))
    this.digests = new Array<string | undefined>(this.count).fill(undefined)
  }

  get file(): string {
    return join(this.o.dir, `${this.o.id}.data`)
  }

  async open(): Promise<void> {
    this.fh = await open(this.file, 'w+')
    if (this.o.length > 0) await this.fh.truncate(this.o.length)
  }

  has(n: number): boolean {
    return this.digests[n] !== undefined
  }

  /** The piece's sha256: from this copy, else as another supernode published it. */
  digestOf(n: number): string | undefined {
    return this.digests[n] ?? this.known.get(n)
  }

  /** A digest from another supernode: peers holding the piece can trade it, checked against it. */
  adopt(n: number, hex: string): void {
    if (n >= 0 && n < this.count && this.digests[n] === undefined) this.known.set(n, hex)
  }

  /** Resolves once this copy holds piece `n` (fetched if need be), false after `ms`. */
  async fetched(n: number, ms: number): Promise<boolean> {
    if (this.has(n)) return true
    this.want(n)
    return await new Promise<boolean>(resolve => {
      const timer = setTimeout(() => done(false), ms)
      const on = (m: number): void => {
        if (m === n) done(true)
      }
      const done = (v: boolean): void => {
        clearTimeout(timer)
        this.off('piece', on)
        resolve(v)
      }
      this.on('piece', on)
    })
  }

  /** Still fetching from the origin (a preheat with no peer yet must not expire mid-copy). */
  get busy(): boolean {
    return this.streaming || this.fetching.size > 0
  }

  get complete(): boolean {
    return this.digests.every(d => d !== undefined)
  }

  /** Makes sure piece `n` is on its way: the stream brings it soon, or it is fetched alone. */
  want(n: number): void {
    if (this.failed !== undefined || this.has(n) || this.fetching.has(n)) return
    if (this.streaming && n >= this.streamPos && n - this.streamPos < STREAM_AHEAD) return
    this.fetching.add(n)
    this.fetch(n, n)
      .catch(err => this.fail(err as Error))
      .finally(() => this.fetching.delete(n))
  }

  /** Streams every missing piece from the first one on, in one GET (resumed by range on failure). */
  streamAll(): void {
    if (this.streaming || this.failed !== undefined || this.complete) return
    this.streaming = true
    void (async () => {
      try {
        // Runs of missing pieces: what a lazy reader already brought is not fetched again.
        // Pieces known from another supernode are the swarm's to trade: fetched here only when wanted.
        const missing = (n: number): boolean => !this.has(n) && !this.known.has(n)
        for (let first = 0; first < this.count; first++) {
          if (!missing(first)) continue
          let last = first
          while (last + 1 < this.count && missing(last + 1)) last++
          await this.fetch(first, last, true)
          first = last
        }
      } catch (err) {
        this.fail(err as Error)
      } finally {
        this.streaming = false
      }
    })()
  }

  /** The bytes of piece `n` from this copy, into `buf` (at least a piece long) when given. */
  async read(n: number, buf: Buffer = Buffer.allocUnsafe(this.o.pieceSize)): Promise<Buffer> {
    const start = n * this.o.pieceSize
    const len = Math.min(this.o.length, start + this.o.pieceSize) - start
    const { bytesRead } = await this.fh!.read(buf, 0, len, start)
    return buf.subarray(0, bytesRead)
  }

  /** Whether this copy of piece `n` still hashes to what was published (a peer's report is checked against it). */
  async intact(n: number): Promise<boolean> {
    const d = this.digests[n]
    return (
      d !== undefined &&
      createHash('sha256')
        .update(await this.read(n))
        .digest('hex') === d
    )
  }

  async close(remove = true): Promise<void> {
    this.closed = true
    this.abort.abort()
    await this.fh?.close().catch(() => {})
    if (remove) await rm(this.file, { force: true })
  }

  /** Pieces [first, last] from the origin, with retries that resume at the first piece not yet complete. */
  private async fetch(first: number, last: number, stream = false): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      let from = first
      while (from <= last && this.has(from)) from++
      if (from > last || this.closed) return
      try {
        await this.fetchOnce(from, last, stream)
        return
      } catch (err) {
        if (this.closed || attempt + 1 >= ATTEMPTS) throw err
        this.o.log.warn({ task: this.o.id, piece: from, attempt, err: (err as Error).message }, 'origin read failed; resuming')
        await sleep(200 * 2 ** attempt)
      }
    }
  }

  private async fetchOnce(first: number, last: number, stream: boolean): Promise<void> {
    const { pieceSize, length } = this.o
    const start = first * pieceSize
    const end = Math.min(length, (last + 1) * pieceSize) - 1
    this.o.metrics.originRequests.inc()
    const res = await this.o.origin.get(this.o.url, this.o.headers(), start, end, this.abort.signal)
    if (res.statusCode !== 206 && !(res.statusCode === 200 && start === 0)) {
      await res.body.dump()
      throw new Error(`origin answered ${res.statusCode} for bytes ${start}-${end}`)
    }
    let pos = start
    let n = first
    let hash = createHash('sha256')
    if (stream) this.streamPos = n
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      let off = 0
      while (off < chunk.length && pos <= end) {
        const pieceEnd = Math.min(length, (n + 1) * pieceSize)
        const take = Math.min(chunk.length - off, pieceEnd - pos)
        const part = chunk.subarray(off, off + take)
        hash.update(part)
        if (!this.has(n)) await this.fh!.write(part, 0, part.length, pos)
        this.o.metrics.originBytes.inc(take)
        pos += take
        off += take
        if (pos === pieceEnd) {
          this.publish(n, hash.digest('hex'))
          n++
          hash = createHash('sha256')
          if (stream) this.streamPos = n
        }
      }
      if (pos > end) break
    }
    if (pos <= end) throw new Error(`origin closed the connection at byte ${pos} of ${start}-${end}`)
  }

  private publish(n: number, digest: string): void {
    const had = this.digests[n] ?? this.known.get(n)
    if (had !== undefined && had !== digest) {
      this.fail(new Error(`the origin sent piece ${n} with content other than before`))
      return
    }
    if (this.digests[n] !== undefined) return
    this.digests[n] = digest
    this.emit('piece', n)
    if (this.complete) void this.verifyWhole()
  }

  /** An OCI blob's copy must hash to its digest once whole; a mismatch fails the task (the origin is wrong). */
  private async verifyWhole(): Promise<void> {
    if (this.verified || this.o.digest === undefined) return
    this.verified = true
    const h = createHash('sha256')
    const buf = Buffer.allocUnsafe(this.o.pieceSize)
    for (let n = 0; n < this.count; n++) h.update(await this.read(n, buf))
    const got = `sha256:${h.digest('hex')}`
    if (got !== this.o.digest) this.fail(new Error(`the origin's file hashes to ${got}, not ${this.o.digest}`))
    else this.emit('verified')
  }

  private fail(err: Error): void {
    if (this.failed !== undefined || this.closed) return
    this.failed = err
    this.o.log.error({ task: this.o.id, err: err.message }, 'CDN copy failed')
    this.emit('failed', err)
  }
}
