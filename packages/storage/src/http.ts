import { Pool } from 'undici'
import { checkBlobId, type BlobBackend } from './backend.js'
import { StorageError } from './errors.js'
import { readRange, transportError } from '@nydusjs/registry'

export interface HttpBackendOptions {
  /** Base URL; a blob is at `${url}/${blobId}`. */
  url: string
  /** Whole-request timeout in ms. */
  timeoutMs?: number
  connections?: number
  headers?: Record<string, string>
}

/** Plain HTTP range GETs against a base URL (a static file server, a CDN, a mirror). */
export class HttpBackend implements BlobBackend {
  readonly name = 'http'
  private readonly pool: Pool
  private readonly base: URL

  constructor(private readonly opts: HttpBackendOptions) {
    this.base = new URL(opts.url.endsWith('/') ? opts.url : opts.url + '/')
    this.pool = new Pool(this.base.origin, { connections: opts.connections ?? 8, pipelining: 1 })
  }

  async read(blobId: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    return await this.readRange(blobId, offset, length, undefined, signal)
  }

  async readInto(blobId: string, offset: number, dst: Buffer, signal?: AbortSignal): Promise<void> {
    await this.readRange(blobId, offset, dst.length, dst, signal)
  }

  private async readRange(blobId: string, offset: number, length: number, dst: Buffer | undefined, signal?: AbortSignal): Promise<Buffer> {
    const res = await this.request(blobId, 'GET', { range: `bytes=${offset}-${offset + length - 1}` }, signal)
    if (res.statusCode !== 206 && res.statusCode !== 200) {
      await res.body.dump()
      throw this.statusError(blobId, res.statusCode)
    }
    return await readRange(res, offset, length, `http ${this.base.origin}: blob ${blobId}`, this.name, dst)
  }

  async size(blobId: string, signal?: AbortSignal): Promise<number> {
    const res = await this.request(blobId, 'HEAD', {}, signal)
    await res.body.dump()
    if (res.statusCode !== 200) throw this.statusError(blobId, res.statusCode)
    const n = Number(res.headers['content-length'])
    if (!Number.isSafeInteger(n))
      throw new StorageError('ERR_BACKEND_HTTP', `http ${this.base.origin}: blob ${blobId} has no Content-Length`, { backend: this.name })
    return n
  }

  async close(): Promise<void> {
    await this.pool.close()
  }

  private async request(
    blobId: string,
    method: 'GET' | 'HEAD',
    headers: Record<string, string>,
    signal?: AbortSignal
  ): Promise<Awaited<ReturnType<Pool['request']>>> {
    const path = new URL(checkBlobId(blobId), this.base).pathname
    const timeout = this.opts.timeoutMs ?? 30_000
    try {
      return await this.pool.request({
        method,
        path,
        headers: { ...this.opts.headers, ...headers },
        signal,
        headersTimeout: timeout,
        bodyTimeout: timeout
      })
    } catch (err) {
      throw transportError(`http ${this.base.origin}: blob ${blobId}`, err, this.name)
    }
  }

  private statusError(blobId: string, status: number): StorageError {
    if (status === 404)
      return new StorageError('ERR_BLOB_NOT_FOUND', `http ${this.base.origin}: blob ${blobId} not found (404)`, { backend: this.name })
    return new StorageError('ERR_BACKEND_HTTP', `http ${this.base.origin}: blob ${blobId}: status ${status}`, { backend: this.name })
  }
}
