import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request, type Dispatcher } from 'undici'
import { RegistryError } from './errors.js'
import { readRange, transportError } from './http-util.js'
import { pull, push, RegistryTransport, RETRYABLE } from './transport.js'

export type { RegistryClientOptions } from './transport.js'

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
/** Statuses that say "this registry does not take chunked uploads": fall back to one PUT. */
const NO_CHUNKS = new Set([400, 404, 405, 416, 501])

/**
 * The OCI distribution API for pulling and pushing whole images: manifests,
 * blob streams and ranges, existence checks, cross-repository mounts and
 * uploads (chunked, or monolithic where the registry refuses chunks).
 */
export class RegistryClient extends RegistryTransport {
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

const sha256 = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex')

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
