import type { Readable } from 'node:stream'
import aws4 from 'aws4'
import { Agent, request, type Dispatcher } from 'undici'
import { checkBlobId, type BlobBackend } from './backend.js'
import { StorageError } from './errors.js'
import { readRange, transportError } from '@nydusjs/registry'
import type { S3Config } from './s3-config.js'

export interface S3BackendOptions {
  /** host[:port] of the service, e.g. `s3.us-east-1.amazonaws.com` or a MinIO/Ceph endpoint. */
  endpoint: string
  scheme?: 'http' | 'https'
  region?: string
  bucket: string
  /** Prepended to the blob id to form the object key. */
  objectPrefix?: string
  /** `path` (endpoint/bucket/key) or `virtual` (bucket.endpoint/key). */
  addressing?: 'path' | 'virtual'
  accessKeyId?: string
  secretAccessKey?: string
  sessionToken?: string
  /** Connect to this host:port instead of resolving the request's host (like curl --connect-to). */
  connectTo?: string
  skipVerify?: boolean
  ca?: string
  timeoutMs?: number
}

/** Range GETs of `objectPrefix + blobId`, signed with SigV4 by the aws4 library. */
export class S3Backend implements BlobBackend {
  readonly name = 's3'
  private readonly dispatcher: Agent
  private readonly creds: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }

  constructor(private readonly o: S3BackendOptions) {
    const id = o.accessKeyId ?? process.env.AWS_ACCESS_KEY_ID
    const secret = o.secretAccessKey ?? process.env.AWS_SECRET_ACCESS_KEY
    if (id === undefined || secret === undefined)
      throw new StorageError(
        'ERR_BACKEND_AUTH',
        `s3 ${o.endpoint}/${o.bucket}: no credentials (set access_key_id/access_key_secret or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)`,
        { backend: 's3' }
      )
    this.creds = { accessKeyId: id, secretAccessKey: secret, sessionToken: o.sessionToken ?? process.env.AWS_SESSION_TOKEN }
    const t = o.timeoutMs ?? 30_000
    this.dispatcher = new Agent({
      connect: { ca: o.ca, rejectUnauthorized: o.skipVerify !== true },
      headersTimeout: t,
      bodyTimeout: t,
      connections: 16
    })
  }

  private get label(): string {
    return `s3 ${this.o.endpoint}/${this.o.bucket}`
  }

  async read(blobId: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    const res = await this.send('GET', blobId, { range: `bytes=${offset}-${offset + length - 1}` }, signal)
    return await readRange(res, offset, length, `${this.label}: blob ${blobId}`, this.name)
  }

  async readInto(blobId: string, offset: number, dst: Buffer, signal?: AbortSignal): Promise<void> {
    const res = await this.send('GET', blobId, { range: `bytes=${offset}-${offset + dst.length - 1}` }, signal)
    await readRange(res, offset, dst.length, `${this.label}: blob ${blobId}`, this.name, dst)
  }

  async size(blobId: string, signal?: AbortSignal): Promise<number> {
    const res = await this.send('HEAD', blobId, {}, signal)
    await res.body.dump()
    return Number(res.headers['content-length'])
  }

  /** Whether the object for this blob exists (HEAD). */
  async has(blobId: string): Promise<boolean> {
    try {
      await this.size(blobId)
      return true
    } catch (err) {
      if ((err as StorageError).code === 'ERR_BLOB_NOT_FOUND') return false
      throw err
    }
  }

  /** Uploads a blob; its id is the sha256 of its bytes, so the payload is signed without reading it twice. */
  async put(blobId: string, size: number, body: () => Readable): Promise<void> {
    const res = await this.send(
      'PUT',
      blobId,
      { 'content-length': String(size), 'content-type': 'application/octet-stream', 'x-amz-content-sha256': blobId },
      undefined,
      body()
    )
    await res.body.dump()
  }

  async close(): Promise<void> {
    await this.dispatcher.close()
  }

  private async send(
    method: 'GET' | 'HEAD' | 'PUT',
    blobId: string,
    headers: Record<string, string>,
    signal?: AbortSignal,
    body?: Readable
  ): Promise<Dispatcher.ResponseData> {
    const key = `${this.o.objectPrefix ?? ''}${checkBlobId(blobId)}`
    const virtual = this.o.addressing === 'virtual'
    const host = virtual ? `${this.o.bucket}.${this.o.endpoint}` : this.o.endpoint
    const path = virtual ? `/${encodeKey(key)}` : `/${this.o.bucket}/${encodeKey(key)}`
    const signed = aws4.sign(
      { host, path, method, service: 's3', region: this.o.region ?? process.env.AWS_REGION ?? 'us-east-1', headers: { ...headers } },
      this.creds
    )
    const origin = `${this.o.scheme ?? 'https'}://${this.o.connectTo ?? host}`
    let res: Dispatcher.ResponseData
    try {
      res = await request(origin + path, {
        method,
        headers: signed.headers as Record<string, string>,
        body,
        signal,
        dispatcher: this.dispatcher
      })
    } catch (err) {
      throw transportError(this.label, err, this.name)
    }
    if (res.statusCode === 200 || res.statusCode === 206) return res
    let text = ''
    if (method === 'GET') text = (await res.body.text()).slice(0, 500)
    else await res.body.dump()
    const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? String(res.statusCode)
    if (res.statusCode === 404)
      throw new StorageError('ERR_BLOB_NOT_FOUND', `${this.label}: blob ${blobId} not found (object ${key})`, { backend: this.name })
    if (res.statusCode === 403 || res.statusCode === 401)
      throw new StorageError(
        'ERR_BACKEND_AUTH',
        `${this.label}: access to ${key} denied (${code}); check the access key and its permissions`,
        { backend: this.name }
      )
    throw new StorageError('ERR_BACKEND_HTTP', `${this.label}: ${key}: status ${res.statusCode} (${code})`, { backend: this.name })
  }
}

const encodeKey = (k: string): string => k.split('/').map(encodeURIComponent).join('/')

/** nydusd's s3 config fields to S3Backend options. */
export function s3Options(c: S3Config): S3BackendOptions {
  return {
    endpoint: c.endpoint,
    scheme: c.scheme,
    region: c.region,
    bucket: c.bucket_name,
    objectPrefix: c.object_prefix,
    accessKeyId: c.access_key_id,
    secretAccessKey: c.access_key_secret,
    addressing: c.addressing,
    connectTo: c.connect_to,
    skipVerify: c.skip_verify,
    timeoutMs: c.timeout * 1000
  }
}
