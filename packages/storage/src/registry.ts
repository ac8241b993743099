import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { Agent, request, type Dispatcher } from 'undici'
import { checkBlobId, type BlobBackend } from './backend.js'
import { StorageError } from './errors.js'
import { rangeBody, transportError } from './http-util.js'

export interface RegistryMirror {
  host: string
  scheme?: 'http' | 'https'
  /** Extra headers sent to this mirror only. */
  headers?: Record<string, string>
}

export interface RegistryBackendOptions {
  scheme?: 'http' | 'https'
  host: string
  repo: string
  /** base64("user:password"), as in the original nydusd's config and docker's config.json. */
  auth?: string
  /** A bearer token used as is. */
  registryToken?: string
  /** A docker config.json to take `auths` from when `auth` is not set. */
  dockerConfig?: string
  skipVerify?: boolean
  /** PEM of extra CAs to trust. */
  ca?: string
  timeoutMs?: number
  connectTimeoutMs?: number
  mirrors?: RegistryMirror[]
}

interface Endpoint { origin: string, host: string, headers: Record<string, string>, label: string }
interface Token { value: string, expires: number }

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
  private readonly tokens = new Map<string, Token>()
  /** Hosts that answered a Basic challenge: later requests send credentials up front. */
  private readonly basicHosts = new Set<string>()
  private basic?: string
  private credsLoaded = false

  constructor (private readonly o: RegistryBackendOptions) {
    this.dispatcher = new Agent({
      connect: { ca: o.ca, rejectUnauthorized: o.skipVerify !== true, timeout: o.connectTimeoutMs ?? 10_000 },
      headersTimeout: o.timeoutMs ?? 30_000,
      bodyTimeout: o.timeoutMs ?? 30_000,
      connections: 16
    })
  }

  private get endpoints (): Endpoint[] {
    const origin = { origin: `${this.o.scheme ?? 'https'}://${this.o.host}`, host: this.o.host, headers: {}, label: `registry ${this.o.host}/${this.o.repo}` }
    const mirrors = (this.o.mirrors ?? []).map(m => ({ origin: `${m.scheme ?? 'https'}://${m.host}`, host: m.host, headers: m.headers ?? {}, label: `mirror ${m.host}/${this.o.repo}` }))
    return [...mirrors, origin]
  }

  async read (blobId: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    // Mirrors first; any failure of a mirror falls through to the next one and finally the origin.
    let last: unknown
    for (const ep of this.endpoints) {
      try {
        return await this.readFrom(ep, blobId, offset, length, signal)
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

  private async readFrom (ep: Endpoint, blobId: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    const res = await this.send(ep, 'GET', blobId, { range: `bytes=${offset}-${offset + length - 1}` }, signal)
    return await rangeBody(res, offset, length, `${ep.label}: blob ${blobId}`, this.name)
  }

  /** One request with auth and redirects handled; resolves only with a 2xx response. */
  private async send (ep: Endpoint, method: 'GET' | 'HEAD', blobId: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Dispatcher.ResponseData> {
    const url = `${ep.origin}/v2/${this.o.repo}/blobs/sha256:${checkBlobId(blobId)}`
    let auth = await this.authorization(ep)
    for (let attempt = 0; ; attempt++) {
      let res = await this.call(ep, url, method, { ...ep.headers, ...headers, ...(auth === undefined ? {} : { authorization: auth }) }, signal)
      if (res.statusCode === 401 && attempt === 0) {
        const challenge = String(res.headers['www-authenticate'] ?? '')
        await res.body.dump()
        auth = await this.answer(ep, challenge, signal)
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

  /** The Authorization header to start with: a static or cached token, else Basic if we have credentials. */
  private async authorization (ep: Endpoint): Promise<string | undefined> {
    if (this.o.registryToken !== undefined) return `Bearer ${this.o.registryToken}`
    const tok = this.tokens.get(ep.host)
    if (tok !== undefined && tok.expires > Date.now()) return `Bearer ${tok.value}`
    if (this.basicHosts.has(ep.host)) return `Basic ${(await this.credentials(ep.host))!}`
    return undefined
  }

  /** Answers a 401 challenge: Basic with our credentials, or a Bearer token from the realm. */
  private async answer (ep: Endpoint, challenge: string, signal?: AbortSignal): Promise<string | undefined> {
    const basic = await this.credentials(ep.host)
    const m = /^\s*(\w+)\s*(.*)$/.exec(challenge)
    const scheme = m?.[1].toLowerCase()
    if (scheme === 'basic') {
      if (basic === undefined) throw new StorageError('ERR_BACKEND_AUTH', `${ep.label}: the registry wants Basic credentials and none are configured`, { backend: this.name })
      this.basicHosts.add(ep.host)
      return `Basic ${basic}`
    }
    if (scheme !== 'bearer') throw new StorageError('ERR_BACKEND_AUTH', `${ep.label}: unsupported auth challenge ${JSON.stringify(scheme ?? challenge)}`, { backend: this.name })
    const params = parseParams(m![2])
    if (params.realm === undefined) throw new StorageError('ERR_BACKEND_AUTH', `${ep.label}: Bearer challenge without a realm`, { backend: this.name })
    const url = new URL(params.realm)
    if (params.service !== undefined) url.searchParams.set('service', params.service)
    url.searchParams.set('scope', `repository:${this.o.repo}:pull`)
    const res = await this.call(ep, url.toString(), 'GET', basic === undefined ? {} : { authorization: `Basic ${basic}` }, signal)
    if (res.statusCode !== 200) {
      await res.body.dump()
      throw new StorageError('ERR_BACKEND_AUTH', `${ep.label}: the token service refused ${basic === undefined ? 'anonymous access' : 'the configured credentials'} (${res.statusCode})`, { backend: this.name })
    }
    const body = await res.body.json() as { token?: string, access_token?: string, expires_in?: number }
    const value = body.token ?? body.access_token
    if (typeof value !== 'string') throw new StorageError('ERR_BACKEND_AUTH', `${ep.label}: the token service answered without a token`, { backend: this.name })
    const ttl = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60
    this.tokens.set(ep.host, { value, expires: Date.now() + Math.max(1, ttl - 5) * 1000 })
    return `Bearer ${value}`
  }

  /** base64 "user:password": from the config, else from docker's config.json `auths`. */
  private async credentials (host: string): Promise<string | undefined> {
    if (this.o.auth !== undefined) return this.o.auth
    if (!this.credsLoaded) {
      this.credsLoaded = true
      const path = this.o.dockerConfig ?? join(process.env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json')
      try {
        const cfg = JSON.parse(await readFile(path, 'utf8')) as { auths?: Record<string, { auth?: string }> }
        const hit = Object.entries(cfg.auths ?? {}).find(([k]) => k.replace(/^https?:\/\//, '').replace(/\/.*$/, '') === host)
        this.basic = hit?.[1].auth
      } catch {
        this.basic = undefined
      }
    }
    return this.basic
  }
}

/** `realm="…",service="…",scope="…"` to an object. */
export function parseParams (s: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const m of s.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1].toLowerCase()] = m[2].replace(/\\(.)/g, '$1')
  return out
}
