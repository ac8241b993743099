import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request, type Dispatcher } from 'undici'
import { RegistryError } from './errors.js'
import { CredentialStore, type RegistryCredentials } from './credentials.js'
import { readRange, transportError } from './http-util.js'
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

export interface FetchedManifest {
  mediaType: string
  digest: string
  body: Buffer
}
export type PushResult = 'exists' | 'mounted' | 'pushed'

export const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json'
]
const MAX_MANIFEST = 4 * 1024 * 1024
const DEFAULT_UPLOAD_CHUNK = 96 * 1024 * 1024
const CANCEL_TIMEOUT_MS = 2000
const RETRYABLE = new Set(['ERR_BACKEND_HTTP', 'ERR_BACKEND_TIMEOUT', 'ERR_BACKEND_SHORT_READ'])
/** Statuses that say "this registry does not take chunked uploads": fall back to one PUT. */
const NO_CHUNKS = new Set([400, 404, 405, 416, 501])

interface SendOptions {
  scope: string
  what: string
  expect: number[]
  headers?: Record<string, string>
  body?: () => Readable | Buffer | string
  signal?: AbortSignal
}

/**
 * The OCI distribution API for pulling and pushing whole images: manifests,
 * blob streams, existence checks, cross-repository mounts and uploads
 * (chunked, or monolithic where the registry refuses chunks), with the same
 * auth as the blob backend and retries for transient failures.
 */
export class RegistryClient {
  readonly host: string
  readonly scheme: 'http' | 'https'
  readonly name: string
  private readonly origin: string
  private readonly dispatcher: Agent
  private readonly auth: RegistryAuth

  constructor(private readonly o: RegistryClientOptions) {
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

  /** A manifest or index by tag or digest; the digest is computed here (and checked when `ref` is one). */
  async getManifest(repo: string, ref: string, signal?: AbortSignal): Promise<FetchedManifest> {
    return await this.retry(async () => {
      const res = await this.send('GET', `/v2/${repo}/manifests/${ref}`, {
        scope: pull(repo),
        what: `manifest ${repo}:${ref}`,
        expect: [200],
        headers: { accept: MANIFEST_TYPES.join(', ') },
        signal
      })
      const body = await readCapped(res, MAX_MANIFEST, `${this.host}/${repo}: manifest ${ref}`)
      const digest = sha256(body)
      if (ref.startsWith('sha256:') && ref !== digest)
        throw new RegistryError('ERR_BACKEND_VERIFY', `${this.host}/${repo}: manifest ${ref} has digest ${digest}`, { backend: this.name })
      let mediaType = String(res.headers['content-type'] ?? '')
        .split(';')[0]
        .trim()
      try {
        const declared = (JSON.parse(body.toString('utf8')) as { mediaType?: unknown }).mediaType
        if (typeof declared === 'string') mediaType = declared
      } catch {
        throw new RegistryError('ERR_REGISTRY_RESPONSE', `${this.host}/${repo}: manifest ${ref} is not valid JSON`, { backend: this.name })
      }
      return { mediaType, digest, body }
    })
  }

  async putManifest(repo: string, ref: string, mediaType: string, body: Buffer): Promise<string> {
    await this.retry(async () => {
      const res = await this.send('PUT', `/v2/${repo}/manifests/${ref}`, {
        scope: push(repo),
        what: `manifest ${repo}:${ref}`,
        expect: [201],
        headers: { 'content-type': mediaType },
        body: () => body
      })
      await res.body.dump()
    })
    return sha256(body)
  }

  /** The blob's bytes as a stream (redirects to storage followed without credentials). */
  async blobStream(repo: string, digest: string, signal?: AbortSignal): Promise<Readable> {
    return await this.retry(async () => {
      const res = await this.send('GET', `/v2/${repo}/blobs/${digest}`, {
        scope: pull(repo),
        what: `blob ${digest}`,
        expect: [200],
        signal
      })
      return res.body
    })
  }

  /**
   * Bytes [offset, offset+length) of a blob, into `dst` when given. Not
   * retried: a reader wraps its own resilience around this (storage's chain).
   */
  async blobRange(repo: string, digest: string, offset: number, length: number, dst?: Buffer, signal?: AbortSignal): Promise<Buffer> {
    const what = `blob ${digest}`
    const res = await this.send('GET', `/v2/${repo}/blobs/${digest}`, {
      scope: pull(repo),
      what,
      expect: [200, 206],
      headers: { range: `bytes=${offset}-${offset + length - 1}` },
      signal
    })
    return await readRange(res, offset, length, `${this.name} ${this.host}/${repo}: ${what}`, this.name, dst)
  }

  /** A blob's size (HEAD), not retried. */
  async blobSize(repo: string, digest: string, signal?: AbortSignal): Promise<number> {
    const res = await this.send('HEAD', `/v2/${repo}/blobs/${digest}`, { scope: pull(repo), what: `blob ${digest}`, expect: [200], signal })
    await res.body.dump()
    const n = Number(res.headers['content-length'])
    if (!Number.isSafeInteger(n))
      throw new RegistryError('ERR_BACKEND_HTTP', `${this.name} ${this.host}/${repo}: blob ${digest} has no Content-Length`, {
        backend: this.name
      })
    return n
  }

  /** A small blob (a config) read whole and checked against its digest. */
  async blobBuffer(repo: string, digest: string, max = MAX_MANIFEST): Promise<Buffer> {
    const body = await readCapped({ body: await this.blobStream(repo, digest) }, max, `${this.host}/${repo}: blob ${digest}`)
    if (sha256(body) !== digest)
      throw new RegistryError('ERR_BACKEND_VERIFY', `${this.host}/${repo}: blob ${digest} has digest ${sha256(body)}`, {
        backend: this.name
      })
    return body
  }

  async hasBlob(repo: string, digest: string): Promise<boolean> {
    return await this.retry(async () => {
      const res = await this.send('HEAD', `/v2/${repo}/blobs/${digest}`, { scope: pull(repo), what: `blob ${digest}`, expect: [200, 404] })
      await res.body.dump()
      return res.statusCode === 200
    })
  }

  /**
   * Makes the blob present in `repo`: nothing if it is there already (HEAD),
   * a cross-repository mount from one of `mountFrom`, else an upload of
   * `open(start, end)` (inclusive byte range). A chunk that fails in transit
   * is resumed where the registry says it stands; other transient failures
   * retry the whole upload.
   */
  async pushBlob(
    repo: string,
    blob: { digest: string; size: number },
    open: (start: number, end: number) => Readable | Buffer,
    mountFrom: string[] = [],
    onBytes?: (n: number) => void
  ): Promise<PushResult> {
    if (await this.hasBlob(repo, blob.digest)) return 'exists'
    for (const from of mountFrom) if (await this.mountBlob(repo, blob.digest, from)) return 'mounted'
    await this.retry(async () => await this.upload(repo, blob, open, onBytes))
    return 'pushed'
  }

  /** A cross-repository mount (same registry); false when the registry would rather take an upload. */
  async mountBlob(repo: string, digest: string, from: string): Promise<boolean> {
    if (from === repo) return false
    const res = await this.retry(
      async () =>
        await this.send('POST', `/v2/${repo}/blobs/uploads/?mount=${digest}&from=${encodeURIComponent(from)}`, {
          scope: `${push(repo)} ${pull(from)}`,
          what: `mount of ${digest} from ${from}`,
          expect: [201, 202]
        })
    )
    await res.body.dump()
    return res.statusCode === 201
  }

  private async upload(
    repo: string,
    blob: { digest: string; size: number },
    open: (start: number, end: number) => Readable | Buffer,
    onBytes?: (n: number) => void
  ): Promise<void> {
    const chunk = this.o.uploadChunkSize ?? DEFAULT_UPLOAD_CHUNK
    let loc: string | undefined = await this.startUpload(repo, blob.digest)
    if (blob.size > chunk) {
      let resumes = 0
      for (let start = 0; start < blob.size; ) {
        const end = Math.min(blob.size, start + chunk) - 1
        let res: Dispatcher.ResponseData
        try {
          res = await this.patch(
            repo,
            loc!,
            start,
            end - start + 1,
            () => open(start, end),
            blob.digest,
            start === 0 ? [202, ...NO_CHUNKS] : [202]
          )
        } catch (err) {
          // A chunk that failed in transit: ask the registry what it kept and go on from there.
          if (resumes >= (this.o.retries ?? 3) || !RETRYABLE.has((err as RegistryError).code)) throw err
          await sleep(Math.random() * 200 * 2 ** resumes++)
          const status: { loc: string; next: number } | undefined = await this.uploadStatus(repo, loc!, blob.digest, blob.size).catch(
            () => undefined
          )
          // The session is gone (docker's registry cancels one that got part of a body): start afresh.
          if (status === undefined) throw err
          ;({ loc, next: start } = status)
          continue
        }
        await res.body.dump()
        if (res.statusCode !== 202) {
          loc = undefined
          break
        }
        loc = this.location(res, `upload of ${blob.digest}`)
        onBytes?.(end - start + 1)
        start = end + 1
      }
    }
    const whole = loc === undefined || blob.size <= chunk
    const body = whole && blob.size > 0 ? () => open(0, blob.size - 1) : () => Buffer.alloc(0)
    await this.completeUpload(
      repo,
      loc ?? (await this.startUpload(repo, blob.digest)),
      blob.digest,
      whole ? 0 : blob.size,
      whole ? blob.size : 0,
      body
    )
    if (whole) onBytes?.(blob.size)
  }

  /** Where an upload session stands (GET on its location): the next byte it wants. */
  private async uploadStatus(repo: string, loc: string, digest: string, size: number): Promise<{ loc: string; next: number }> {
    const what = `status of the upload of ${digest}`
    const res = await this.send('GET', loc, { scope: push(repo), what, expect: [204] })
    await res.body.dump()
    const m = /^0-(-?\d+)$/.exec(String(res.headers.range ?? ''))
    if (m === null || Number(m[1]) < -1 || Number(m[1]) >= size)
      throw new RegistryError('ERR_REGISTRY_RESPONSE', `registry ${this.host}/${repo}: ${what}: no usable Range in the answer`, {
        backend: this.name
      })
    return { loc: typeof res.headers.location === 'string' ? this.location(res, what) : loc, next: Number(m[1]) + 1 }
  }

  private async patch(
    repo: string,
    loc: string,
    start: number,
    length: number,
    body: () => Readable | Buffer,
    what: string,
    expect: number[],
    signal?: AbortSignal
  ): Promise<Dispatcher.ResponseData> {
    return await this.send('PATCH', loc, {
      scope: push(repo),
      what: `upload of ${what}`,
      expect,
      headers: {
        'content-type': 'application/octet-stream',
        'content-range': `${start}-${start + length - 1}`,
        'content-length': String(length)
      },
      body,
      signal
    })
  }

  private async startUpload(repo: string, digest: string): Promise<string> {
    const res = await this.send('POST', `/v2/${repo}/blobs/uploads/`, { scope: push(repo), what: `upload of ${digest}`, expect: [202] })
    await res.body.dump()
    return this.location(res, `upload of ${digest}`)
  }

  /** Opens an upload session for a blob whose digest is not known yet; its location. */
  async openUpload(repo: string): Promise<string> {
    return await this.retry(async () => await this.startUpload(repo, 'a blob'))
  }

  /** One chunk of an upload session, `length` bytes at `start`; the session's next location. */
  async uploadChunk(
    repo: string,
    loc: string,
    start: number,
    length: number,
    body: () => Readable | Buffer,
    signal?: AbortSignal
  ): Promise<string> {
    const res = await this.patch(repo, loc, start, length, body, 'a blob', [202], signal)
    await res.body.dump()
    return this.location(res, 'upload of a blob')
  }

  /**
   * Closes an upload session as blob `digest`, its last `length` bytes (from
   * `start`) in the PUT; from 0, the PUT is the whole (monolithic) upload.
   */
  async completeUpload(
    repo: string,
    loc: string,
    digest: string,
    start: number,
    length: number,
    body: () => Readable | Buffer
  ): Promise<void> {
    const url = new URL(loc)
    url.searchParams.set('digest', digest)
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream', 'content-length': String(length) }
    if (start > 0 && length > 0) headers['content-range'] = `${start}-${start + length - 1}`
    const res = await this.send('PUT', url.toString(), { scope: push(repo), what: `upload of ${digest}`, expect: [201], headers, body })
    await res.body.dump()
  }

  /** Drops an upload session; best effort and bounded (a registry forgets abandoned sessions anyway). */
  async cancelUpload(repo: string, loc: string): Promise<void> {
    try {
      const res = await this.send('DELETE', loc, {
        scope: push(repo),
        what: 'cancel of an upload',
        expect: [204, 404],
        signal: AbortSignal.timeout(CANCEL_TIMEOUT_MS)
      })
      await res.body.dump()
    } catch {}
  }

  private location(res: Dispatcher.ResponseData, what: string): string {
    const l = res.headers.location
    if (typeof l !== 'string')
      throw new RegistryError('ERR_REGISTRY_RESPONSE', `registry ${this.host}: ${what}: no Location in the answer`, { backend: this.name })
    return new URL(l, this.origin).toString()
  }

  /** One request with auth (one fresh token on 401) and redirects; resolves only with an expected status. */
  private async send(method: Dispatcher.HttpMethod, path: string, o: SendOptions): Promise<Dispatcher.ResponseData> {
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

  private async retry<T>(fn: () => Promise<T>): Promise<T> {
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

/** For an insecure registry: HTTPS without certificate checks when TLS answers, else plain HTTP (containerd's resolver falls back the same way). */
export async function insecureScheme(host: string): Promise<'http' | 'https'> {
  const dispatcher = new Agent({ connect: { rejectUnauthorized: false, timeout: 5000 }, headersTimeout: 5000 })
  try {
    const res = await request(`https://${host}/v2/`, { dispatcher })
    await res.body.dump()
    return 'https'
  } catch {
    return 'http'
  } finally {
    await dispatcher.close()
  }
}

const pull = (repo: string): string => `repository:${repo}:pull`
const push = (repo: string): string => `repository:${repo}:pull,push`
const sha256 = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex')

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

async function readCapped(res: { body: AsyncIterable<Uint8Array> & { destroy: () => void } }, max: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = []
  let n = 0
  try {
    for await (const b of res.body) {
      n += b.length
      if (n > max) throw new RegistryError('ERR_REGISTRY_RESPONSE', `${what} is larger than ${max} bytes`, { backend: 'registry' })
      parts.push(Buffer.from(b))
    }
  } catch (err) {
    res.body.destroy()
    if (err instanceof RegistryError) throw err
    throw transportError(what, err, 'registry')
  }
  return Buffer.concat(parts)
}
