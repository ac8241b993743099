import { Readable } from 'node:stream'
import { RegistryError } from './errors.js'
import type { PushResult, RegistryClient } from './registry-client.js'

export interface StreamedUploadOptions {
  /** Bytes per PATCH. Each PATCH ends with the registry syncing what it got, so the last one should be small. */
  chunkSize?: number
  /** Bytes waiting for a slow registry before the streamed upload is given up (the caller then pushes from its file). */
  maxBuffered?: number
}

const DEFAULT_CHUNK = 8 * 1024 * 1024
const DEFAULT_MAX_BUFFERED = 64 * 1024 * 1024

/**
 * A blob sent to a registry while it is still being written, so the push
 * overlaps its making: chunked PATCHes of exactly `chunkSize` bytes (with
 * Content-Range and Content-Length, as the distribution spec has them), one
 * at a time. The
 * digest is named only at `finish`, which first asks whether the registry has
 * the blob already (then the session is dropped) and sends the last bytes in
 * the closing PUT. Any failure leaves the blob to the caller's ordinary push:
 * `write` never blocks and never throws, `finish` returns the error.
 */
export class StreamedBlobUpload {
  private pending: Buffer[] = []
  private pendingBytes = 0
  /** Bytes the registry's session holds. */
  private sent = 0
  private loc?: string
  private inflight?: Promise<void>
  private failure?: Error
  private readonly aborter = new AbortController()
  private readonly chunkSize: number
  private readonly maxBuffered: number

  constructor(
    private readonly client: RegistryClient,
    private readonly repo: string,
    o: StreamedUploadOptions = {}
  ) {
    this.chunkSize = o.chunkSize ?? DEFAULT_CHUNK
    this.maxBuffered = Math.max(o.maxBuffered ?? DEFAULT_MAX_BUFFERED, this.chunkSize)
  }

  /** Bytes in the registry's session so far. */
  get uploaded(): number {
    return this.sent
  }

  /** The next bytes of the blob, in order. The caller must not change them afterwards. */
  write(bufs: Buffer[]): void {
    if (this.failure !== undefined) return
    for (const b of bufs) {
      this.pending.push(b)
      this.pendingBytes += b.length
    }
    if (this.pendingBytes > this.maxBuffered) {
      this.fail(
        new RegistryError(
          'ERR_BACKEND_TIMEOUT',
          `registry ${this.client.host}/${this.repo}: streamed upload: more than ${this.maxBuffered} bytes waiting for the registry`,
          { backend: 'registry' }
        )
      )
      return
    }
    this.pump()
  }

  /** Completes the upload as `digest` ('pushed'), or drops it when the registry has the blob ('exists'); an Error when the caller must push the blob itself. */
  async finish(digest: string, size: number): Promise<PushResult | Error> {
    try {
      while (this.inflight !== undefined) await this.inflight
      if (this.failure !== undefined) throw this.failure
      if (this.sent + this.pendingBytes !== size) {
        throw new RegistryError(
          'ERR_BACKEND_SHORT_READ',
          `registry ${this.client.host}/${this.repo}: streamed upload got ${this.sent + this.pendingBytes} of ${size} bytes`,
          { backend: 'registry' }
        )
      }
      if (await this.client.hasBlob(this.repo, digest)) {
        await this.abort()
        return 'exists'
      }
      const rest = this.pending
      this.loc ??= await this.client.openUpload(this.repo)
      await this.client.completeUpload(this.repo, this.loc, digest, this.sent, this.pendingBytes, () =>
        Readable.from(rest, { objectMode: false })
      )
      this.loc = undefined
      return 'pushed'
    } catch (err) {
      await this.abort()
      return err as Error
    }
  }

  /** Stops sending and drops the session. */
  async abort(): Promise<void> {
    this.fail(new RegistryError('ERR_BACKEND_HTTP', 'streamed upload aborted', { backend: 'registry' }))
    await this.inflight
    if (this.loc !== undefined) await this.client.cancelUpload(this.repo, this.loc)
    this.loc = undefined
  }

  private pump(): void {
    if (this.inflight !== undefined || this.failure !== undefined || this.pendingBytes < this.chunkSize) return
    const bufs = this.take(this.chunkSize)
    const n = this.chunkSize
    this.inflight = this.send(bufs, n).then(
      () => {
        this.inflight = undefined
        this.pump()
      },
      err => {
        this.inflight = undefined
        this.fail(err as Error)
      }
    )
  }

  /** Exactly `n` pending bytes, from the front (a buffer on the boundary is split). */
  private take(n: number): Buffer[] {
    let i = 0
    let got = 0
    while (i < this.pending.length && got + this.pending[i].length <= n) got += this.pending[i++].length
    const out = this.pending.splice(0, i)
    if (got < n) {
      const b = this.pending[0]
      out.push(b.subarray(0, n - got))
      this.pending[0] = b.subarray(n - got)
    }
    this.pendingBytes -= n
    return out
  }

  private async send(bufs: Buffer[], n: number): Promise<void> {
    this.loc ??= await this.client.openUpload(this.repo)
    // Given up while the session was opening: send nothing more.
    if (this.failure !== undefined) throw this.failure
    this.loc = await this.client.uploadChunk(
      this.repo,
      this.loc,
      this.sent,
      n,
      () => Readable.from(bufs, { objectMode: false }),
      this.aborter.signal
    )
    this.sent += n
  }

  private fail(err: Error): void {
    if (this.failure !== undefined) return
    this.failure = err
    this.aborter.abort()
    this.pending = []
    this.pendingBytes = 0
  }
}
