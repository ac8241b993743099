import { setTimeout as sleep } from 'node:timers/promises'
import type { BlobBackend } from './backend.js'
import { StorageError } from './errors.js'

export interface LinkOptions {
  /** Extra attempts on this link for retryable failures. */
  retries?: number
  /** First backoff in ms; doubles each retry, with full jitter, up to maxBackoffMs. */
  backoffMs?: number
  maxBackoffMs?: number
  /** Whole-request timeout in ms (connect and first-byte timeouts belong to the backend). */
  timeoutMs?: number
  /** Requests in flight on this link at most. */
  concurrency?: number
  /** Consecutive failures that open the breaker, and how long it stays open before one probe. */
  breakerThreshold?: number
  breakerResetMs?: number
}

export interface ChainLink { backend: BlobBackend, options?: LinkOptions }

export interface ChainEvents {
  /** A link gave up on a request; the chain moves on. */
  onFailover?: (link: string, err: Error) => void
  onServed?: (link: string, bytes: number) => void
}

/** What a verified read returns: the bytes and the link that served them. */
export interface ServedRange { data: Buffer, source: string }

const NOT_RETRYABLE = new Set(['ERR_BLOB_NOT_FOUND', 'ERR_BACKEND_AUTH'])

class Semaphore {
  private active = 0
  private readonly waiting: Array<() => void> = []
  constructor (private readonly max: number) {}
  async acquire (): Promise<void> {
    if (this.active < this.max) { this.active++; return }
    await new Promise<void>(resolve => this.waiting.push(resolve))
  }

  release (): void {
    const next = this.waiting.shift()
    if (next !== undefined) next()
    else this.active--
  }
}

class Breaker {
  private failures = 0
  private openUntil = 0
  private probing = false
  constructor (private readonly threshold: number, private readonly resetMs: number) {}
  /** Closed, or open but due for one probe. */
  allow (): boolean {
    if (this.failures < this.threshold) return true
    if (Date.now() < this.openUntil || this.probing) return false
    this.probing = true
    return true
  }

  success (): void { this.failures = 0; this.probing = false }
  failure (): void {
    this.failures++
    this.probing = false
    if (this.failures >= this.threshold) this.openUntil = Date.now() + this.resetMs
  }

  get open (): boolean { return this.failures >= this.threshold && Date.now() < this.openUntil }
}

interface Link { backend: BlobBackend, o: Required<LinkOptions>, sem: Semaphore, breaker: Breaker }

/**
 * Sources tried in order for every range: each link retries retryable
 * failures with backoff, caps its concurrency, and has a circuit breaker
 * that skips it for a while after repeated failures. A range that fails the
 * caller's verification counts as a failure of the link that served it.
 */
export class ChainBackend implements BlobBackend {
  readonly name = 'chain'
  private readonly links: Link[]

  constructor (links: ChainLink[], private readonly events: ChainEvents = {}) {
    if (links.length === 0) throw new TypeError('a chain needs at least one backend')
    this.links = links.map(({ backend, options: o = {} }) => {
      const opts: Required<LinkOptions> = {
        retries: o.retries ?? 2,
        backoffMs: o.backoffMs ?? 50,
        maxBackoffMs: o.maxBackoffMs ?? 1000,
        timeoutMs: o.timeoutMs ?? 30_000,
        concurrency: o.concurrency ?? 16,
        breakerThreshold: o.breakerThreshold ?? 5,
        breakerResetMs: o.breakerResetMs ?? 10_000
      }
      return { backend, o: opts, sem: new Semaphore(opts.concurrency), breaker: new Breaker(opts.breakerThreshold, opts.breakerResetMs) }
    })
  }

  /** Link names with an open breaker, for metrics and the API. */
  openLinks (): string[] {
    return this.links.filter(l => l.breaker.open).map(l => l.backend.name)
  }

  async read (blobId: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    return (await this.readVerified(blobId, offset, length, () => true, signal)).data
  }

  async readInto (blobId: string, offset: number, dst: Buffer, signal?: AbortSignal): Promise<void> {
    await this.readVerified(blobId, offset, dst.length, () => true, signal, dst)
  }

  /**
   * The range from the first link whose answer `verify` accepts. With `dst`
   * (`length` bytes) every answer is written there, in place by links that
   * have `readInto` (a caller's pooled, shared buffers stay in use), and the
   * result is `dst`; links settle before the next is asked, so an answer
   * never lands on another's.
   */
  async readVerified (blobId: string, offset: number, length: number, verify: (data: Buffer) => boolean | Promise<boolean>, signal?: AbortSignal, dst?: Buffer): Promise<ServedRange> {
    if (dst !== undefined && dst.length !== length) throw new RangeError(`readVerified: a ${dst.length}-byte buffer for ${length} bytes`)
    const errors: string[] = []
    for (const link of this.links) {
      if (!link.breaker.allow()) { errors.push(`${link.backend.name}: skipped (circuit open)`); continue }
      try {
        const fetch = async (s: AbortSignal): Promise<Buffer> => dst === undefined ? await link.backend.read(blobId, offset, length, s) : await fill(link.backend, blobId, offset, dst, s)
        const data = await this.tryLink(link, blobId, `${offset}+${length}`, fetch, verify, signal)
        link.breaker.success()
        this.events.onServed?.(link.backend.name, data.length)
        return { data, source: link.backend.name }
      } catch (err) {
        if (signal?.aborted === true) throw err
        link.breaker.failure()
        errors.push((err as Error).message)
        this.events.onFailover?.(link.backend.name, err as Error)
      }
    }
    throw new StorageError('ERR_BACKEND_IO', `every source failed for blob ${blobId} range ${offset}+${length}: ${errors.join('; ')}`, { backend: this.name })
  }

  async size (blobId: string, signal?: AbortSignal): Promise<number> {
    let last: unknown
    for (const link of this.links) {
      try { return await link.backend.size(blobId, signal) } catch (err) { last = err }
    }
    throw last
  }

  async close (): Promise<void> {
    await Promise.all(this.links.map(async l => await l.backend.close()))
  }

  private async tryLink (link: Link, blobId: string, range: string, fetch: (s: AbortSignal) => Promise<Buffer>, verify: (d: Buffer) => boolean | Promise<boolean>, signal?: AbortSignal): Promise<Buffer> {
    for (let attempt = 0; ; attempt++) {
      await link.sem.acquire()
      let err: Error
      const timeout = AbortSignal.timeout(link.o.timeoutMs)
      try {
        const data = await fetch(signal === undefined ? timeout : AbortSignal.any([signal, timeout]))
        if (await verify(data)) return data
        err = new StorageError('ERR_BACKEND_VERIFY', `${link.backend.name}: blob ${blobId} range ${range} failed verification`, { backend: link.backend.name })
      } catch (e) {
        err = e as Error
        if (timeout.aborted) err = new StorageError('ERR_BACKEND_TIMEOUT', `${link.backend.name}: blob ${blobId}: no answer within ${link.o.timeoutMs} ms`, { backend: link.backend.name })
      } finally {
        link.sem.release()
      }
      const code = (err as StorageError).code
      if (attempt >= link.o.retries || NOT_RETRYABLE.has(code ?? '') || signal?.aborted === true) throw err
      const cap = Math.min(link.o.maxBackoffMs, link.o.backoffMs * 2 ** attempt)
      await sleep(Math.random() * cap)
    }
  }
}

/** `dst` filled from `backend`: in place where it can, else copied from its answer. */
async function fill (backend: BlobBackend, blobId: string, offset: number, dst: Buffer, signal: AbortSignal): Promise<Buffer> {
  if (backend.readInto !== undefined) {
    await backend.readInto(blobId, offset, dst, signal)
  } else {
    const data = await backend.read(blobId, offset, dst.length, signal)
    if (data.length !== dst.length) throw new StorageError('ERR_BACKEND_SHORT_READ', `${backend.name}: blob ${blobId}: ${data.length} bytes at ${offset}, wanted ${dst.length}`, { backend: backend.name })
    data.copy(dst)
  }
  return dst
}
