import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import type { S3Backend } from '@nydusjs/storage'
import { RegistryClient, StreamedBlobUpload, insecureScheme, type PushResult } from '@nydusjs/registry'
import { ConverterError } from '../errors.js'

/**
 * One client per registry host. An insecure host is tried over HTTPS without
 * certificate checks first and over plain HTTP if TLS does not answer, as
 * containerd's resolver does; a secure one uses HTTPS with the system CAs
 * (plus NODE_EXTRA_CA_CERTS).
 */
export class Registries {
  private readonly clients = new Map<string, Promise<RegistryClient>>()

  constructor(private readonly o: { dockerConfig?: string; retries?: number } = {}) {}

  async client(host: string, insecure: boolean): Promise<RegistryClient> {
    const key = `${host} ${insecure}`
    let c = this.clients.get(key)
    if (c === undefined) {
      c = this.make(host, insecure)
      this.clients.set(key, c)
    }
    return await c
  }

  async close(): Promise<void> {
    for (const c of this.clients.values()) await (await c.catch(() => undefined))?.close()
  }

  private async make(host: string, insecure: boolean): Promise<RegistryClient> {
    const base = { host, dockerConfig: this.o.dockerConfig, retries: this.o.retries }
    if (!insecure) return new RegistryClient({ ...base, scheme: 'https' })
    return new RegistryClient({ ...base, scheme: await insecureScheme(host), skipVerify: true })
  }
}

/** A blob pushed while it is built (`StreamedBlobUpload`). */
export interface BlobStream {
  write: (bufs: Buffer[]) => void
  finish: (digest: string, size: number) => Promise<PushResult | Error>
  abort: () => Promise<void>
}

/** Where a converted image's data blobs go. */
export interface BlobTarget {
  readonly kind: 'registry' | 's3'
  /** A push that starts before the blob is complete, where the target takes one. */
  openStream?: () => BlobStream
  /** Makes the blob at `path` (named by its sha256 `id`) available to readers of the converted image. */
  put: (id: string, size: number, path: string, onBytes?: (n: number) => void) => Promise<PushResult>
  /** A blob converted earlier (a chunk dictionary's), present here or fetched from its own repository. */
  putForeign: (id: string, size: number, from: { client: RegistryClient; repo: string } | undefined, workDir: string) => Promise<PushResult>
}

export class RegistryBlobTarget implements BlobTarget {
  readonly kind = 'registry'
  constructor(
    private readonly client: RegistryClient,
    private readonly repo: string
  ) {}

  async put(id: string, size: number, path: string, onBytes?: (n: number) => void): Promise<PushResult> {
    return await this.client.pushBlob(
      this.repo,
      { digest: `sha256:${id}`, size },
      (start, end) => createReadStream(path, { start, end, highWaterMark: 1 << 20 }),
      [],
      onBytes
    )
  }

  openStream(): BlobStream {
    return new StreamedBlobUpload(this.client, this.repo)
  }

  async putForeign(
    id: string,
    size: number,
    from: { client: RegistryClient; repo: string } | undefined,
    workDir: string
  ): Promise<PushResult> {
    const digest = `sha256:${id}`
    if (await this.client.hasBlob(this.repo, digest)) return 'exists'
    if (from === undefined)
      throw new ConverterError(
        'ERR_BLOB_MISSING',
        `chunk dict blob ${id} is not in ${this.client.host}/${this.repo}; give the dictionary as an image reference so it can be copied`
      )
    if (from.client === this.client && (await this.client.mountBlob(this.repo, digest, from.repo))) return 'mounted'
    const path = await download(from.client, from.repo, id, workDir)
    try {
      return await this.put(id, size, path)
    } finally {
      await rm(path, { force: true })
    }
  }
}

export class S3BlobTarget implements BlobTarget {
  readonly kind = 's3'
  constructor(private readonly s3: S3Backend) {}

  async put(id: string, size: number, path: string, onBytes?: (n: number) => void): Promise<PushResult> {
    if (await this.s3.has(id)) return 'exists'
    await this.s3.put(id, size, () => createReadStream(path, { highWaterMark: 1 << 20 }))
    onBytes?.(size)
    return 'pushed'
  }

  async putForeign(id: string): Promise<PushResult> {
    if (await this.s3.has(id)) return 'exists'
    throw new ConverterError(
      'ERR_BLOB_MISSING',
      `chunk dict blob ${id} is not in the S3 bucket; convert the dictionary image with the same --backend-config`
    )
  }
}

/** A blob to a temporary file, checked against its id. */
async function download(client: RegistryClient, repo: string, id: string, dir: string): Promise<string> {
  const path = join(dir, `foreign-${id}`)
  const h = createHash('sha256')
  const body = await client.blobStream(repo, `sha256:${id}`)
  body.on('data', (b: Buffer) => h.update(b))
  await pipeline(body, createWriteStream(path))
  if (h.digest('hex') !== id) throw new ConverterError('ERR_OCI_DIGEST', `${client.host}/${repo}: blob ${id} does not match its digest`)
  return path
}
