import { Agent, request, type Dispatcher } from 'undici'
import { checkBlobId, type BlobBackend } from './backend.js'
import { StorageError } from './errors.js'
import { readRange, transportError } from './http-util.js'
import { RegistryAuth, type RegistryCredentials } from './registry-auth.js'

export interface RegistryMirror {
  host: string
  scheme?: 'http' | 'https'
  /** Extra headers sent to this mirror only. */
  headers?: Record<string, string>
}

export interface RegistryBackendOptions extends RegistryCredentials {
  scheme?: 'http' | 'https'
  host: string
  repo: string
  skipVerify?: boolean
  /** PEM of extra CAs to trust. */
  ca?: string
  timeoutMs?: number
  connectTimeoutMs?: number
  mirrors?: RegistryMirror[]
}

interface Endpoint { origin: string, host: string, headers: Record<string, string>, label: string }

const MAX_REDIRECTS = 5

/**
 * OCI distribution blob reads: `GET /v2/<repo>/blobs/sha256:<id>` with Range,
 * anonymous, Basic or Bearer (token fetched from the challenge's realm for
 * `repository:<repo>:pull`, cached until it expires, refreshed on 401).
 * Mirrors are tried before the origin. Redirects to storage are followed
 * without the Authorization header. Secrets never appear in errors.
 */
export class RegistryBackend implements BlobBackend {
  readonly name = 'registry'
  private readonly dispatcher: Agent
  private readonly auth: RegistryAuth

  constructor (private readonly o: RegistryBackendOptions) {
    this.dispatcher = new Agent({
      connect: { ca: o.ca, rejectUnauthorized: o.skipVerify !== true, timeout: o.connectTimeoutMs ?? 10_000 },
      headersTimeout: o.timeoutMs ?? 30_000,
      bodyTimeout: o.timeoutMs ?? 30_000,
      connections: 16
    })
    this.auth = new RegistryAuth(o, this.dispatcher, this.name)
  }

  private get scope (): string { return `repository:${this.o.repo}:pull` }

  private get endpoints (): Endpoint[] {
    const origin = { origin: `${this.o.scheme ?? 'https'}://${this.o.host}`, host: this.o.host, headers: {}, label: `registry ${this.o.host}/${this.o.repo}` }
    const mirrors = (this.o.mirrors ?? []).map(m => ({ origin: `${m.scheme ?? 'https'}://${m.host}`, host: m.host, headers: m.headers ?? {}, label: `mirror ${m.host}/${this.o.repo}` }))
    return [...mirrors, origin]
  }

  async read (blobId: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    return await this.readRange(blobId, offset, length, undefined, signal)
  }

  async readInto (blobId: string, offset: number, dst: Buffer, signal?: AbortSignal): Promise<void> {
    await this.readRange(blobId, offset, dst.length, dst, signal)
  }

  private async readRange (blobId: string, offset: number, length: number, dst: Buffer | undefined, signal?: AbortSignal): Promise<Buffer> {
    // Mirrors first; any failure of a mirror falls through to the next one and finally the origin.
    let last: unknown
    for (const ep of this.endpoints) {
      try {
        const res = await this.send(ep, 'GET', blobId, { range: `bytes=${offset}-${offset + length - 1}` }, signal)
        return await readRange(res, offset, length, `${ep.label}: blob ${blobId}`, this.name, dst)
      } catch (err) {
        last = err
      }
    }
    throw last
  }

  async size (blobId: string, signal?: AbortSignal): Promise<number> {
    const ep = this.endpoints.at(-1)!
    const res = await this.send(ep, 'HEAD', blobId, {}, signal)
    await res.body.dump()
    const n = Number(res.headers['content-length'])
    if (!Number.isSafeInteger(n)) throw new StorageError('ERR_BACKEND_HTTP', `${ep.label}: blob ${blobId} has no Content-Length`, { backend: this.name })
    return n
  }

  async close (): Promise<void> {
    await this.dispatcher.close()
  }

  /** One request with auth and redirects handled; resolves only with a 2xx response. */
  private async send (ep: Endpoint, method: 'GET' | 'HEAD', blobId: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Dispatcher.ResponseData> {
    const url = `${ep.origin}/v2/${this.o.repo}/blobs/sha256:${checkBlobId(blobId)}`
    let auth = await this.auth.header(ep.host, this.scope)
    for (let attempt = 0; ; attempt++) {
      let res = await this.call(ep, url, method, { ...ep.headers, ...headers, ...(auth === undefined ? {} : { authorization: auth }) }, signal)
      if (res.statusCode === 401 && attempt === 0) {
        const challenge = String(res.headers['www-authenticate'] ?? '')
        await res.body.dump()
        auth = await this.auth.answer(ep.host, ep.label, challenge, this.scope, signal)
        continue
      }
      for (let hops = 0; res.statusCode >= 300 && res.statusCode < 400 && res.headers.location !== undefined; hops++) {
        await res.body.dump()
        if (hops >= MAX_REDIRECTS) throw new StorageError('ERR_BACKEND_HTTP', `${ep.label}: blob ${blobId}: too many redirects`, { backend: this.name })
        // The storage behind a redirect gets the Range, never the registry's credentials.
        res = await this.call(ep, new URL(String(res.headers.location), url).toString(), method, headers, signal)
      }
      if (res.statusCode === 200 || res.statusCode === 206) return res
      await res.body.dump()
      if (res.statusCode === 404) throw new StorageError('ERR_BLOB_NOT_FOUND', `${ep.label}: blob ${blobId} not found`, { backend: this.name })
      if (res.statusCode === 401 || res.statusCode === 403) throw new StorageError('ERR_BACKEND_AUTH', `${ep.label}: access to blob ${blobId} denied (${res.statusCode}); check the credentials for this registry and repository`, { backend: this.name })
      throw new StorageError('ERR_BACKEND_HTTP', `${ep.label}: blob ${blobId}: status ${res.statusCode}`, { backend: this.name })
    }
  }

  private async call (ep: Endpoint, url: string, method: 'GET' | 'HEAD', headers: Record<string, string>, signal?: AbortSignal): Promise<Dispatcher.ResponseData> {
    try {
      return await request(url, { method, headers, signal, dispatcher: this.dispatcher })
    } catch (err) {
      throw transportError(ep.label, err, this.name)
    }
  }
}
