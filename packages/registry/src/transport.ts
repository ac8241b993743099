import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request, type Dispatcher } from 'undici'
import { CredentialStore, type RegistryCredentials } from './credentials.js'
import { RegistryError } from './errors.js'
import { transportError } from './http-util.js'
import { RegistryAuth } from './registry-auth.js'

export interface RegistryClientOptions extends RegistryCredentials {
  host: string
  /** `http` for a plain-text registry (`--source-insecure`/`--target-insecure`). */
  scheme?: 'http' | 'https'
  skipVerify?: boolean
  ca?: string
  timeoutMs?: number
  connectTimeoutMs?: number
  /** Connections to the host at most. */
  connections?: number
  /** Extra headers sent to this host only (never to a redirect target or a token realm). */
  headers?: Record<string, string>
  /** Names the source in errors, logs and metrics (default `registry`). */
  name?: string
  /** Extra attempts for transient failures (5xx, resets, timeouts) of whole-image calls; blob ranges are not retried here. */
  retries?: number
  /**
   * Blobs larger than this are uploaded in PATCH chunks of this size; smaller
   * ones in one PUT, which the registry takes faster. Default 96 MiB: under the
   * 100 MB request-body limit common at CDN fronts.
   */
  uploadChunkSize?: number
}

export const RETRYABLE = new Set(['ERR_BACKEND_HTTP', 'ERR_BACKEND_TIMEOUT', 'ERR_BACKEND_SHORT_READ'])

export interface SendOptions {
  scope: string
  what: string
  expect: number[]
  headers?: Record<string, string>
  body?: () => Readable | Buffer | string
  signal?: AbortSignal
}

/**
 * One registry host on the wire: a connection pool, auth (one fresh token on
 * a 401), redirects (the Range only, nothing else, to another host), one
 * status mapping, and retries for the calls that want them. RegistryClient
 * builds the distribution API on it.
 */
export class RegistryTransport {
  readonly host: string
  readonly scheme: 'http' | 'https'
  readonly name: string
  protected readonly origin: string
  protected readonly dispatcher: Agent
  protected readonly auth: RegistryAuth

  constructor(protected readonly o: RegistryClientOptions) {
    this.host = o.host
    this.scheme = o.scheme ?? 'https'
    this.origin = `${this.scheme}://${o.host}`
    const t = o.timeoutMs ?? 60_000
    this.name = o.name ?? 'registry'
    this.dispatcher = new Agent({
      connect: { ca: o.ca, rejectUnauthorized: o.skipVerify !== true, timeout: o.connectTimeoutMs ?? 10_000 },
      headersTimeout: t,
      bodyTimeout: t,
      connections: o.connections ?? 8
    })
    this.auth = new RegistryAuth(new CredentialStore(o.host, o), this.dispatcher, this.name)
  }

  async close(): Promise<void> {
    await this.dispatcher.close()
  }

  protected location(res: Dispatcher.ResponseData, what: string): string {
    const l = res.headers.location
    if (typeof l !== 'string')
      throw new RegistryError('ERR_REGISTRY_RESPONSE', `registry ${this.host}: ${what}: no Location in the answer`, { backend: this.name })
    return new URL(l, this.origin).toString()
  }

  /** One request with auth (one fresh token on 401) and redirects; resolves only with an expected status. */
  protected async send(method: Dispatcher.HttpMethod, path: string, o: SendOptions): Promise<Dispatcher.ResponseData> {
    const url = path.startsWith('http') ? path : this.origin + path
    const repo = /\/v2\/(.+?)\/(?:manifests|blobs)\//.exec(new URL(url).pathname)?.[1] ?? ''
    const label = `${this.name} ${this.host}/${repo}: ${o.what}`
    let auth = await this.auth.header(this.host, o.scope)
    for (let attempt = 0; ; attempt++) {
      let res = await this.call(
        url,
        method,
        { ...this.o.headers, ...o.headers, ...(auth === undefined ? {} : { authorization: auth }) },
        o.body?.(),
        o.signal,
        label
      )
      if (res.statusCode === 401 && attempt === 0) {
        const challenge = String(res.headers['www-authenticate'] ?? '')
        await res.body.dump()
        auth = await this.auth.answer(this.host, `${this.name} ${this.host}/${repo}`, challenge, o.scope, o.signal)
        continue
      }
      for (
        let hops = 0;
        (method === 'GET' || method === 'HEAD') && res.statusCode >= 300 && res.statusCode < 400 && res.headers.location !== undefined;
        hops++
      ) {
        await res.body.dump()
        if (hops >= 5) throw new RegistryError('ERR_BACKEND_HTTP', `${label}: too many redirects`, { backend: this.name })
        // The storage behind a redirect gets the Range, never the registry's credentials or extra headers.
        const range: Record<string, string> = o.headers?.range === undefined ? {} : { range: o.headers.range }
        res = await this.call(new URL(String(res.headers.location), url).toString(), method, range, undefined, o.signal, label)
      }
      if (o.expect.includes(res.statusCode)) return res
      throw await this.statusError(res, repo, method, o)
    }
  }

  private async statusError(res: Dispatcher.ResponseData, repo: string, method: string, o: SendOptions): Promise<RegistryError> {
    const text = method === 'HEAD' ? '' : (await res.body.text().catch(() => '')).slice(0, 2000)
    if (method === 'HEAD') await res.body.dump()
    const detail = registryErrors(text)
    const where = `${this.name} ${this.host}/${repo}: ${o.what}`
    const s = res.statusCode
    if (s === 401 || s === 403) {
      const need = o.scope.includes(`${repo}:pull,push`) ? 'push' : 'pull'
      return new RegistryError(
        'ERR_BACKEND_AUTH',
        `${where}: denied (${s}${detail}); the credentials lack ${need} access to ${this.host}/${repo}`,
        { backend: this.name }
      )
    }
    if (s === 404 && o.what.startsWith('manifest'))
      return new RegistryError('ERR_MANIFEST_NOT_FOUND', `${where}: not found${detail}`, { backend: this.name })
    if (s === 404) return new RegistryError('ERR_BLOB_NOT_FOUND', `${where}: not found${detail}`, { backend: this.name })
    if (s >= 500 || s === 429 || s === 408)
      return new RegistryError('ERR_BACKEND_HTTP', `${where}: status ${s}${detail}`, { backend: this.name })
    return new RegistryError('ERR_REGISTRY_REJECTED', `${where}: rejected with status ${s}${detail}`, { backend: this.name })
  }

  private async call(
    url: string,
    method: Dispatcher.HttpMethod,
    headers: Record<string, string>,
    body: Readable | Buffer | string | undefined,
    signal: AbortSignal | undefined,
    label: string
  ): Promise<Dispatcher.ResponseData> {
    try {
      return await request(url, { method, headers, body, signal, dispatcher: this.dispatcher })
    } catch (err) {
      throw transportError(label, err, 'registry')
    }
  }

  protected async retry<T>(fn: () => Promise<T>): Promise<T> {
    const retries = this.o.retries ?? 3
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn()
      } catch (err) {
        if (attempt >= retries || !RETRYABLE.has((err as RegistryError).code)) throw err
        await sleep(Math.random() * 200 * 2 ** attempt)
      }
    }
  }
}

export const pull = (repo: string): string => `repository:${repo}:pull`
export const push = (repo: string): string => `repository:${repo}:pull,push`

/** ` (CODE: message, …)` from a registry's JSON error body, or nothing. */
function registryErrors(text: string): string {
  try {
    const errs = (JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> }).errors ?? []
    const parts = errs
      .slice(0, 3)
      .map(e => [e.code, e.message].filter(Boolean).join(': '))
      .filter(Boolean)
    return parts.length === 0 ? '' : ` (${parts.join('; ')})`
  } catch {
    return ''
  }
}
