import { setTimeout as sleep } from 'node:timers/promises'
import type { BlobBackend } from './backend.js'
import { StorageError } from './errors.js'

export interface LinkOptions {
  /** Extra attempts for retryable failures. */
  retries?: number
  /** First backoff in ms; doubles each retry, with full jitter, up to maxBackoffMs. */
  backoffMs?: number
  maxBackoffMs?: number
  /** Whole-request timeout in ms, waiting for a slot included; enforced whatever the backend does. */
  timeoutMs?: number
  /** Requests in flight at most; one abandoned after its timeout keeps its slot until it settles. */
  concurrency?: number
  /** Consecutive failures that open the breaker, and how long it stays open before one probe. */
  breakerThreshold?: number
  breakerResetMs?: number
  /** The clock of the breaker (tests). */
  now?: () => number
}

export const LINK_DEFAULTS: Required<Omit<LinkOptions, 'now'>> = {
  retries: 2,
  backoffMs: 50,
  maxBackoffMs: 1000,
  timeoutMs: 30_000,
  concurrency: 16,
  breakerThreshold: 5,
  breakerResetMs: 10_000
}

const NOT_RETRYABLE = new Set(['ERR_BLOB_NOT_FOUND', 'ERR_BACKEND_AUTH', 'ERR_BACKEND_VERIFY', 'ERR_BACKEND_CIRCUIT_OPEN'])

/**
 * Thrown by `readInto` when an attempt was abandoned at its timeout: the
 * backend may still write into the caller's buffer later, so that buffer
 * must never be used again (the chain gives the next link a fresh one).
 */
export class AbandonedBufferError extends StorageError {
  readonly bufferAbandoned = true
}

class Semaphore {
  private active = 0
  private readonly waiting: Array<() => void> = []
  constructor(private readonly max: number) {}
  /** A slot, or false when `signal` fired first. */
  async acquire(signal: AbortSignal): Promise<boolean> {
    if (this.active < this.max) {
      this.active++
      return true
    }
    return await new Promise<boolean>(resolve => {
      const grant = (): void => {
        signal.removeEventListener('abort', give)
        resolve(true)
      }
      const give = (): void => {
        this.waiting.splice(this.waiting.indexOf(grant), 1)
        resolve(false)
      }
      this.waiting.push(grant)
      signal.addEventListener('abort', give, { once: true })
    })
  }

  release(): void {
    const next = this.waiting.shift()
    if (next !== undefined) next()
    else this.active--
  }
}

export class Breaker {
  private failures = 0
  private openUntil = 0
  private probing = false
  constructor(
    private readonly threshold: number,
    private readonly resetMs: number,
    private readonly now: () => number = Date.now
  ) {}
  /** Closed, or open but due for one probe. */
  allow(): boolean {
    if (this.failures < this.threshold) return true
    if (this.now() < this.openUntil || this.probing) return false
    this.probing = true
    return true
  }

  success(): void {
    this.failures = 0
    this.probing = false
  }
  failure(): void {
    this.failures++
    this.probing = false
    if (this.failures >= this.threshold) this.openUntil = this.now() + this.resetMs
  }

  get open(): boolean {
    return this.failures >= this.threshold && this.now() < this.openUntil
  }
}

/**
 * Any backend with retries (full-jitter backoff), an enforced timeout, a
 * concurrency cap and a circuit breaker around it (nydus wraps every backend
 * the same way). A late answer is dropped: the caller already has its error.
 */
export class ResilientBackend implements BlobBackend {
  readonly name: string
  readonly readInto?: (blobId: string, offset: number, dst: Buffer, signal?: AbortSignal) => Promise<void>
  readonly o: Required<Omit<LinkOptions, 'now'>>
  readonly breaker: Breaker
  private readonly sem: Semaphore

  constructor(
    readonly inner: BlobBackend,
    options: LinkOptions = {}
  ) {
    this.name = inner.name
    const o = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as LinkOptions
    this.o = { ...LINK_DEFAULTS, ...o }
    this.sem = new Semaphore(this.o.concurrency)
    this.breaker = new Breaker(this.o.breakerThreshold, this.o.breakerResetMs, options.now)
    if (inner.readInto !== undefined) {
      const into = inner.readInto.bind(inner)
      this.readInto = async (blobId, offset, dst, signal) => {
        // In place, and only once: after an abandoned attempt the buffer is not ours to fill again.
        await this.guarded(
          blobId,
          `${offset}+${dst.length}`,
          async s => {
            await into(blobId, offset, dst, s)
          },
          signal,
          true
        )
      }
    }
  }

  async read(blobId: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    return await this.guarded(blobId, `${offset}+${length}`, async s => await this.inner.read(blobId, offset, length, s), signal, false)
  }

  /**
   * The range for a caller that judges the answer itself (the chain's
   * verification): the breaker hears of it through `accepted` or `refused`.
   */
  async fetch(blobId: string, offset: number, length: number, dst: Buffer | undefined, signal?: AbortSignal): Promise<Buffer> {
    const what = `${offset}+${length}`
    if (dst === undefined)
      return await this.guarded(blobId, what, async s => await this.inner.read(blobId, offset, length, s), signal, false, false)
    if (this.inner.readInto !== undefined) {
      const into = this.inner.readInto.bind(this.inner)
      await this.guarded(
        blobId,
        what,
        async s => {
          await into(blobId, offset, dst, s)
        },
        signal,
        true,
        false
      )
    } else {
      const data = await this.guarded(blobId, what, async s => await this.inner.read(blobId, offset, length, s), signal, false, false)
      if (data.length !== length) {
        this.breaker.failure()
        throw new StorageError(
          'ERR_BACKEND_SHORT_READ',
          `${this.name}: blob ${blobId}: ${data.length} bytes at ${offset}, wanted ${length}`,
          { backend: this.name }
        )
      }
      data.copy(dst)
    }
    return dst
  }

  accepted(): void {
    this.breaker.success()
  }

  async size(blobId: string, signal?: AbortSignal): Promise<number> {
    return await this.guarded(blobId, 'size', async s => await this.inner.size(blobId, s), signal, false)
  }

  async close(): Promise<void> {
    await this.inner.close()
  }

  /** Marks a served answer as bad (it failed the caller's verification). */
  refused(): void {
    this.breaker.failure()
  }

  private async guarded<T>(
    blobId: string,
    what: string,
    op: (s: AbortSignal) => Promise<T>,
    signal: AbortSignal | undefined,
    inPlace: boolean,
    judged = true
  ): Promise<T> {
    if (!this.breaker.allow())
      throw new StorageError('ERR_BACKEND_CIRCUIT_OPEN', `${this.name}: skipped (circuit open)`, { backend: this.name })
    for (let attempt = 0; ; attempt++) {
      try {
        const v = await this.attempt(blobId, what, op, signal, inPlace)
        if (judged) this.breaker.success()
        return v
      } catch (err) {
        const code = (err as StorageError).code
        const last =
          attempt >= this.o.retries ||
          NOT_RETRYABLE.has(code) ||
          signal?.aborted === true ||
          (err as AbandonedBufferError).bufferAbandoned === true
        if (last) {
          // A source that was not tried (gated off: its health URL fails) is no failure of this link.
          if (signal?.aborted !== true && code !== 'ERR_BLOB_NOT_FOUND' && code !== 'ERR_BACKEND_CIRCUIT_OPEN') this.breaker.failure()
          throw err
        }
        await sleep(Math.random() * Math.min(this.o.maxBackoffMs, this.o.backoffMs * 2 ** attempt))
      }
    }
  }

  /** One try: settles by the timeout whatever `op` does; the slot is held until `op` itself settles. */
  private async attempt<T>(
    blobId: string,
    what: string,
    op: (s: AbortSignal) => Promise<T>,
    signal: AbortSignal | undefined,
    inPlace: boolean
  ): Promise<T> {
    const ac = new AbortController()
    let timer: NodeJS.Timeout | undefined
    let abort = (): void => {}
    // Settles at the timeout or the caller's abort, whichever comes first; `op` may go on regardless.
    const expired = new Promise<never>((_resolve, reject) => {
      const give = (msg: string): void => {
        ac.abort()
        reject(
          inPlace
            ? new AbandonedBufferError('ERR_BACKEND_TIMEOUT', msg, { backend: this.name })
            : new StorageError('ERR_BACKEND_TIMEOUT', msg, { backend: this.name })
        )
      }
      timer = setTimeout(() => give(`${this.name}: blob ${blobId} ${what}: no answer within ${this.o.timeoutMs} ms`), this.o.timeoutMs)
      abort = () => give(`${this.name}: blob ${blobId} ${what}: aborted by the caller`)
      signal?.addEventListener('abort', abort, { once: true })
      if (signal?.aborted === true) abort()
    })
    expired.catch(() => {})
    try {
      const run = (async () => {
        if (!(await this.sem.acquire(ac.signal)))
          throw new StorageError('ERR_BACKEND_TIMEOUT', `${this.name}: no free slot`, { backend: this.name })
        try {
          return await op(ac.signal)
        } finally {
          this.sem.release()
        }
      })()
      run.catch(() => {})
      return await Promise.race([run, expired])
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', abort)
    }
  }
}
