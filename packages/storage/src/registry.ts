import { RegistryClient, type RegistryCredentials } from '@nydusjs/registry'
import { checkBlobId, type BlobBackend } from './backend.js'
import type { ChainLink, LinkOptions } from './chain.js'

export interface RegistryMirror {
  host: string
  scheme?: 'http' | 'https'
  /** Extra headers sent to this mirror only. */
  headers?: Record<string, string>
  /** Send the origin's credentials to this mirror too (nydus's `auth_through`); off by default. */
  authThrough?: boolean
  /** Its own breaker: failures that open it, and seconds until it is probed again (nydus's `failure_limit`, `health_check_interval`). */
  failureLimit?: number
  healthCheckInterval?: number
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
  /** Extra headers sent to this host only. */
  headers?: Record<string, string>
  /** Names the source in errors, logs and metrics (default `registry`). */
  name?: string
}

/**
 * Lazy blob reads from one registry host (`GET /v2/<repo>/blobs/sha256:<id>`
 * with Range) through the one RegistryClient: its auth, redirects and status
 * mapping. Retries, timeouts and breakers are the chain's (ResilientBackend).
 */
export class RegistryBackend implements BlobBackend {
  readonly name: string
  private readonly client: RegistryClient

  constructor(private readonly o: RegistryBackendOptions) {
    this.name = o.name ?? 'registry'
    this.client = new RegistryClient({ ...o, scheme: o.scheme ?? 'https', connections: 16, timeoutMs: o.timeoutMs ?? 30_000, retries: 0 })
  }

  async read(blobId: string, offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    return await this.client.blobRange(this.o.repo, `sha256:${checkBlobId(blobId)}`, offset, length, undefined, signal)
  }

  async readInto(blobId: string, offset: number, dst: Buffer, signal?: AbortSignal): Promise<void> {
    await this.client.blobRange(this.o.repo, `sha256:${checkBlobId(blobId)}`, offset, dst.length, dst, signal)
  }

  async size(blobId: string, signal?: AbortSignal): Promise<number> {
    return await this.client.blobSize(this.o.repo, `sha256:${checkBlobId(blobId)}`, signal)
  }

  async close(): Promise<void> {
    await this.client.close()
  }
}

/**
 * The links for a registry with mirrors: each mirror first, as a link with
 * its own breaker, then the origin. A mirror gets the origin's credentials
 * only with `authThrough`; otherwise only what docker's config holds for it.
 */
export function registryLinks(o: RegistryBackendOptions, mirrors: RegistryMirror[] = [], options: LinkOptions = {}): ChainLink[] {
  const links: ChainLink[] = mirrors.map(m => {
    const through = m.authThrough === true
    return {
      backend: new RegistryBackend({
        ...o,
        auth: through ? o.auth : undefined,
        registryToken: through ? o.registryToken : undefined,
        host: m.host,
        scheme: m.scheme ?? o.scheme,
        headers: m.headers,
        name: `mirror ${m.host}`
      }),
      options: {
        ...options,
        breakerThreshold: m.failureLimit ?? options.breakerThreshold,
        breakerResetMs: m.healthCheckInterval === undefined ? options.breakerResetMs : m.healthCheckInterval * 1000
      }
    }
  })
  return [...links, { backend: new RegistryBackend(o), options }]
}

/**
 * The node's dfdaemon as a link before the registry (nydus's dragonfly
 * proxy): blob range reads go to it as registry-mirror requests naming the
 * origin in X-Dragonfly-Registry, with the origin's credentials (the daemon
 * is this node's own and hands them only to the origin, through the
 * supernode's check); it serves them from the swarm as pieces of the whole
 * blob. When the swarm fails, the next link (the registry) serves.
 */
export function dragonflyLink(proxy: string, o: RegistryBackendOptions, options: LinkOptions = {}): ChainLink {
  const u = new URL(proxy)
  return {
    backend: new RegistryBackend({
      ...o,
      host: u.host,
      scheme: u.protocol === 'https:' ? 'https' : 'http',
      headers: { ...o.headers, 'x-dragonfly-registry': `${o.scheme ?? 'https'}://${o.host}` },
      credentialHost: o.host,
      name: 'dragonfly'
    }),
    options
  }
}
