import { request } from 'undici'
import type { BlobBackend } from './backend.js'
import { StorageError } from './errors.js'

/**
 * A source that is used only while its health URL answers (nydus's proxy
 * `ping_url` and `check_interval`): the URL is fetched every interval, and
 * while it fails every read fails at once, without a round trip, so the chain
 * goes to the next link (the registry, with `fallback`) until it is back.
 */
export class PingGatedBackend implements BlobBackend {
  readonly name: string
  private up = true
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly inner: BlobBackend,
    private readonly o: { pingUrl: string; intervalMs: number }
  ) {
    this.name = inner.name
    this.timer = setInterval(() => void this.ping(), o.intervalMs)
    this.timer.unref()
    void this.ping()
  }

  get healthy(): boolean {
    return this.up
  }

  async read(blobId: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    this.check()
    return await this.inner.read(blobId, offset, length, signal)
  }

  async readInto(blobId: string, offset: number, dst: Buffer, signal?: AbortSignal): Promise<void> {
    this.check()
    if (this.inner.readInto !== undefined) await this.inner.readInto(blobId, offset, dst, signal)
    else (await this.inner.read(blobId, offset, dst.length, signal)).copy(dst)
  }

  async size(blobId: string, signal?: AbortSignal): Promise<number> {
    this.check()
    return await this.inner.size(blobId, signal)
  }

  async close(): Promise<void> {
    clearInterval(this.timer)
    await this.inner.close()
  }

  private check(): void {
    if (!this.up)
      throw new StorageError('ERR_BACKEND_CIRCUIT_OPEN', `${this.name}: ${this.o.pingUrl} does not answer`, { backend: this.name })
  }

  private async ping(): Promise<void> {
    try {
      const res = await request(this.o.pingUrl, { method: 'GET', signal: AbortSignal.timeout(Math.min(5000, this.o.intervalMs)) })
      await res.body.dump()
      this.up = res.statusCode >= 200 && res.statusCode < 300
    } catch {
      this.up = false
    }
  }
}
