import { readFile } from 'node:fs/promises'
import type { Logger } from 'pino'
import { ChainBackend, LocalFsBackend, type ChainLink } from '@nydusjs/storage/local'
import type { RegistryBackendOptions } from '@nydusjs/storage'
import type { BackendConfig, NydusdConfig } from './config.js'
import { NydusdError } from './errors.js'
import type { DaemonMetrics } from './metrics.js'

type LinkOptions = ChainLink['options']
type RegistryConfig = Extract<BackendConfig, { type: 'registry' }>

/**
 * Every backend is a chain: a single one is a chain of one, a registry's
 * mirrors are links before it, and a dragonfly link reads through the node's
 * dfdaemon on behalf of the registry link that follows it.
 */
export async function makeBackend(c: NydusdConfig, metrics: DaemonMetrics, log: Logger): Promise<ChainBackend> {
  const b = c.device.backend
  const list = b.type === 'chain' ? b.config.backends : [b]
  const links = await Promise.all(list.map(async (l, i) => await linksOf(l, list.slice(i + 1))))
  return new ChainBackend(links.flat(), {
    onFailover: (link, err) => {
      // A refused chunk is counted (and logged) where it was judged: the fetcher.
      metrics.backendFailovers.inc({ backend: link })
      log.warn({ backend: link, err: err.message }, 'source failed; trying the next one')
    }
  })
}

async function linksOf(l: BackendConfig, after: readonly BackendConfig[]): Promise<ChainLink[]> {
  const options = {
    retries: l.retry_limit,
    timeoutMs: l.request_timeout * 1000,
    concurrency: l.concurrency ?? (l.type === 'localfs' ? 4 : 16),
    breakerThreshold: l.breaker_threshold,
    breakerResetMs: l.breaker_reset * 1000
  }
  if (l.type === 'localfs') return [{ backend: new LocalFsBackend(l.config.dir), options }]
  // Loaded only for a network backend: the HTTP client is about a fifth of the daemon's start-up.
  const { HttpBackend, S3Backend, s3Options, registryLinks, dragonflyLink, PingGatedBackend } = await import('@nydusjs/storage')
  if (l.type === 'http')
    return [
      {
        backend: new HttpBackend({
          url: l.config.url,
          timeoutMs: l.config.timeout * 1000,
          connections: l.config.connections,
          headers: l.config.headers
        }),
        options
      }
    ]
  if (l.type === 's3') return [{ backend: new S3Backend(s3Options(l.config)), options }]
  if (l.type === 'dragonfly') {
    const origin = after.find((n): n is RegistryConfig => n.type === 'registry')
    if (origin === undefined)
      throw new NydusdError(
        'ERR_CONFIG',
        'backend dragonfly: a registry link must follow it in the chain (the origin it reads on behalf of)'
      )
    return [dragonflyLink(l.config.proxy, await registryOptions(origin.config), { ...options, timeoutMs: l.config.timeout * 1000 })]
  }
  const r = l.config
  const mirrors = r.mirrors.map(m => ({
    host: m.host,
    scheme: m.scheme,
    headers: m.headers,
    authThrough: m.auth_through,
    failureLimit: m.failure_limit,
    healthCheckInterval: m.health_check_interval
  }))
  const origin = await registryOptions(r)
  const links = registryLinks(origin, mirrors, options as LinkOptions)
  const p = r.proxy
  if (p === undefined) return links
  // nydus's proxy: blob reads through the node's dfdaemon first; with ping_url, skipped while it does not answer.
  const proxy = dragonflyLink(p.url, origin, options)
  if (p.ping_url !== undefined)
    proxy.backend = new PingGatedBackend(proxy.backend, { pingUrl: p.ping_url, intervalMs: p.check_interval * 1000 })
  return p.fallback ? [proxy, ...links] : [proxy]
}

async function registryOptions(r: RegistryConfig['config']): Promise<RegistryBackendOptions> {
  const ca =
    r.ca_file === undefined
      ? undefined
      : await readFile(r.ca_file, 'utf8').catch((err: Error) => {
          throw new NydusdError('ERR_CONFIG', `registry ca_file ${r.ca_file}: ${err.message}`)
        })
  return {
    scheme: r.scheme,
    host: r.host,
    repo: r.repo,
    auth: r.auth,
    registryToken: r.registry_token,
    dockerConfig: r.docker_config,
    skipVerify: r.skip_verify,
    ca,
    timeoutMs: r.timeout * 1000,
    connectTimeoutMs: r.connect_timeout * 1000
  }
}
