import type { BlobBackend } from './backend.js'
import { StorageError, type StorageErrorCode } from './errors.js'
import { AbandonedBufferError, ResilientBackend, type LinkOptions } from './resilient.js'

export type { LinkOptions } from './resilient.js'

export interface ChainLink {
  backend: BlobBackend
  options?: LinkOptions
}

export interface ChainEvents {
  /** A link gave up on a request; the chain moves on. */
  onFailover?: (link: string, err: Error) => void
  onServed?: (link: string, bytes: number) => void
}

/** What a verified read returns: the bytes and the link that served them. */
export interface ServedRange {
  data: Buffer
  source: string
  /**
   * The caller's buffer was given up (a link that fills in place timed out and
   * may still write there): `data` is a fresh buffer, and the caller must never
   * reuse the one it passed.
   */
  abandoned: boolean
}

/** Judges a link's answer; `source` names the link, for the caller's logs and metrics. */
export type Verify = (data: Buffer, source: string) => boolean | Promise<boolean>

/**
 * Sources tried in order for every range, each wrapped in a ResilientBackend
 * (retries, enforced timeout, concurrency cap, breaker). A single backend is
 * a chain of one. A range that fails the caller's verification counts as a
 * failure of the link that served it, and the next link is asked.
 */
export class ChainBackend implements BlobBackend {
  readonly name = 'chain'
  readonly links: ResilientBackend[]

  constructor(
    links: ChainLink[],
    private readonly events: ChainEvents = {}
  ) {
    if (links.length === 0) throw new TypeError('a chain needs at least one backend')
    this.links = links.map(({ backend, options }) => new ResilientBackend(backend, options))
  }

  /** Link names with an open breaker, for metrics and the API. */
  openLinks(): string[] {
    return this.links.filter(l => l.breaker.open).map(l => l.name)
  }

  async read(blobId: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    return (await this.readVerified(blobId, offset, length, () => true, signal)).data
  }

  /** Fills `dst`; when a link that timed out may still write into it, fails with the buffer marked abandoned. */
  async readInto(blobId: string, offset: number, dst: Buffer, signal?: AbortSignal): Promise<void> {
    const r = await this.readVerified(blobId, offset, dst.length, () => true, signal, dst)
    if (r.abandoned)
      throw new AbandonedBufferError(
        'ERR_BACKEND_TIMEOUT',
        `blob ${blobId} range ${offset}+${dst.length}: a source timed out while filling the buffer (served by ${r.source} into another)`,
        { backend: this.name }
      )
  }

  /**
   * The range from the first link whose answer `verify` accepts. With `dst`
   * (`length` bytes) every answer is written there, in place by links that
   * have `readInto`, and the result is `dst`, unless a link abandoned it
   * (see ServedRange.abandoned). Links settle or time out before the next is asked.
   */
  async readVerified(
    blobId: string,
    offset: number,
    length: number,
    verify: Verify,
    signal?: AbortSignal,
    dst?: Buffer
  ): Promise<ServedRange> {
    if (dst !== undefined && dst.length !== length) throw new RangeError(`readVerified: a ${dst.length}-byte buffer for ${length} bytes`)
    const errors: string[] = []
    const codes: Array<StorageErrorCode | undefined> = []
    let buf = dst
    let abandoned = false
    for (const link of this.links) {
      try {
        const data = await link.fetch(blobId, offset, length, buf, signal)
        if (!(await verify(data, link.name))) {
          link.refused()
          throw new StorageError('ERR_BACKEND_VERIFY', `${link.name}: blob ${blobId} range ${offset}+${length} failed verification`, {
            backend: link.name
          })
        }
        link.accepted()
        this.events.onServed?.(link.name, data.length)
        return { data, source: link.name, abandoned }
      } catch (err) {
        if (signal?.aborted === true) throw err
        if ((err as { bufferAbandoned?: boolean }).bufferAbandoned === true) {
          abandoned = true
          buf = Buffer.allocUnsafe(length)
        }
        errors.push((err as Error).message)
        codes.push((err as StorageError).code)
        if ((err as StorageError).code !== 'ERR_BACKEND_CIRCUIT_OPEN') this.events.onFailover?.(link.name, err as Error)
      }
    }
    throw new StorageError(commonCode(codes), `every source failed for blob ${blobId} range ${offset}+${length}: ${errors.join('; ')}`, {
      backend: this.name
    })
  }

  async size(blobId: string, signal?: AbortSignal): Promise<number> {
    let last: unknown
    for (const link of this.links) {
      try {
        return await link.size(blobId, signal)
      } catch (err) {
        last = err
      }
    }
    throw last
  }

  async close(): Promise<void> {
    await Promise.all(this.links.map(async l => await l.close()))
  }
}

/** The code every link failed with (skipped links aside), else ERR_BACKEND_IO: a FUSE read then says ETIMEDOUT or EACCES where that is the whole story. */
function commonCode(codes: Array<StorageErrorCode | undefined>): StorageErrorCode {
  const tried = codes.filter(c => c !== 'ERR_BACKEND_CIRCUIT_OPEN')
  const first = tried[0]
  return first !== undefined && tried.every(c => c === first) ? first : 'ERR_BACKEND_IO'
}
