import type { IncomingMessage, ServerResponse } from 'node:http'
import { upstreamOf, type BlobFace } from '@nydusjs/p2p-backend'
import type { Logger } from 'pino'
import type { DfdaemonConfig } from './config.js'
import type { ProxyRules } from './rules.js'
import type { TlsTrust } from './tls-trust.js'
import { isLocalClient } from './local-clients.js'
import { passThrough, proxyError } from './upstream.js'

export interface MirrorOptions {
  face: BlobFace
  rules: ProxyRules
  trust: TlsTrust
  config: DfdaemonConfig
  /** `--registry`: the upstream when a request names none (before registry_mirror.remote). */
  registry?: string
  log: Logger
}

/**
 * dfdaemon's registry-mirror face (Dragonfly v1's, on port 65001): `/v2/...`
 * for the registry a request names (X-Dragonfly-Registry, containerd's
 * `?ns=`, else the configured remote), and absolute-form requests as an
 * HTTP forward proxy. Blob GETs the proxy rules send to P2P go through the
 * swarm; manifests, tags, pings and token requests pass straight through.
 */
export class RegistryMirror {
  constructor(private readonly o: MirrorOptions) {}

  /** Answers `req` if it is a mirror or proxy request; false for anything else (the node's own API). */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const raw = req.url ?? '/'
    const proxied = /^https?:\/\//i.test(raw)
    if (!proxied && !/^\/v2(\/|$|\?)/.test(raw)) return false
    if (!isLocalClient(req.socket)) {
      proxyError(res, 403, 'only clients on this host may use the mirror')
      return true
    }
    if (proxied) {
      await this.forward(req, res, new URL(raw))
      return true
    }
    const url = new URL(raw, 'http://mirror')
    const upstream = upstreamOf(req, url, this.o.registry ?? this.o.config.registry_mirror.remote)
    if (upstream === undefined) {
      proxyError(res, 400, 'no upstream registry: send X-Dragonfly-Registry or ?ns=, or set --registry or registry_mirror.remote')
      return true
    }
    url.searchParams.delete('ns')
    const target = new URL(`${upstream}${url.pathname}${url.search}`)
    if (this.o.config.registry_mirror.direct) await this.direct(req, res, target)
    else await this.forward(req, res, target)
    return true
  }

  /** A request for `url` (a mirror's upstream URL, or what a proxy client asked for), routed by the proxy rules. */
  async forward(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const route = this.o.rules.route(url, req.method ?? 'GET')
    // No supernode answering: the origin serves (a pull never fails for want of the swarm).
    if (route.kind === 'p2p' && (await this.o.face.serve(req, res, route.url, true))) return
    await this.direct(req, res, route.url)
  }

  private async direct(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return proxyError(res, 400, `${url.protocol} URLs are not proxied`)
    await passThrough(req, res, url, this.o.trust.dispatcher(url.host))
  }
}
