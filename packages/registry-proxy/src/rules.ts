import { compile, type DfdaemonConfig } from './config.js'

/** What to do with one request URL. */
export type Route =
  /** Through the swarm (a blob GET the rules send to P2P). */
  | { kind: 'p2p'; url: URL }
  /** To the origin as it is (after use_https and redirect). */
  | { kind: 'direct'; url: URL }

interface Rule {
  re: RegExp
  useHttps: boolean
  direct: boolean
  redirect: string
}

const BLOB = /\/v2\/.+\/blobs\/sha256:[0-9a-f]{64}$/

/**
 * Dragonfly v1's `proxies`: the first rule whose `regx` matches the full URL
 * decides. `direct` sends it to the origin, `redirect` swaps the host,
 * `use_https` upgrades the scheme; otherwise it goes through P2P. No rule:
 * direct. Only blob GETs (named by digest) can go through P2P here: a
 * matching manifest or token request goes direct.
 */
export class ProxyRules {
  private readonly rules: Rule[]

  constructor(config: Pick<DfdaemonConfig, 'proxies'>) {
    this.rules = config.proxies.map(p => ({
      re: compile(p.regx, 'proxies regx'),
      useHttps: p.use_https,
      direct: p.direct,
      redirect: p.redirect
    }))
  }

  route(url: URL, method: string): Route {
    const rule = this.rules.find(r => r.re.test(url.href))
    if (rule === undefined) return { kind: 'direct', url }
    const out = new URL(url.href)
    if (rule.useHttps && out.protocol === 'http:') out.protocol = 'https:'
    if (rule.redirect !== '') out.host = rule.redirect
    const p2p = !rule.direct && (method === 'GET' || method === 'HEAD') && BLOB.test(out.pathname)
    return { kind: p2p ? 'p2p' : 'direct', url: out }
  }
}
