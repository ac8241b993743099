import { rootCertificates } from 'node:tls'
import { Agent, interceptors, type Dispatcher } from 'undici'

/** Headers that describe a connection or the caller's own request, never the resource: not sent on. */
const HOP = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'range',
  'accept-encoding',
  'content-length'
])

/** `K: V` lines (dfget --header, v1's `headers` field) as a header record; hop-by-hop ones dropped. */
export function headerRecord(lines: readonly string[] = []): Record<string, string> {
  const out: Record<string, string> = {}
  for (const l of lines) {
    const i = l.indexOf(':')
    if (i <= 0) continue
    const k = l.slice(0, i).trim().toLowerCase()
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(k) || HOP.has(k)) continue
    out[k] = l.slice(i + 1).trim()
  }
  return out
}

export interface OriginHead {
  status: number
  length?: number
  wwwAuthenticate?: string
}

/** The origin side of the supernode: HEADs and range GETs with the caller's headers, redirects followed. */
export class Origin {
  readonly dispatcher: Dispatcher

  /** `ca`: PEM of extra CAs an origin's TLS may chain to (registries with a private CA), beside the system's. */
  constructor(o: { timeoutMs?: number; ca?: string } = {}) {
    const timeoutMs = o.timeoutMs ?? 60_000
    const tls = o.ca === undefined ? {} : { ca: [...rootCertificates, o.ca] }
    this.dispatcher = new Agent({ headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connect: { timeout: 10_000, ...tls } }).compose(
      interceptors.redirect({ maxRedirections: 5 })
    )
  }

  /** Status and length of `url` with `headers`: HEAD, else a one-byte GET for servers that refuse HEAD. */
  async head(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<OriginHead> {
    const res = await this.dispatcher.request({ ...target(url), method: 'HEAD', headers, signal })
    await res.body.dump()
    const www = res.headers['www-authenticate']
    const out: OriginHead = { status: res.statusCode, wwwAuthenticate: typeof www === 'string' ? www : undefined }
    if (res.statusCode === 200) {
      const n = Number(res.headers['content-length'])
      if (Number.isSafeInteger(n) && n >= 0) return { ...out, length: n }
    }
    if (res.statusCode !== 405 && res.statusCode !== 200) return out
    const g = await this.dispatcher.request({ ...target(url), method: 'GET', headers: { ...headers, range: 'bytes=0-0' }, signal })
    await g.body.dump()
    const total = /\/(\d+)$/.exec(String(g.headers['content-range'] ?? ''))?.[1]
    return { status: g.statusCode === 206 ? 200 : g.statusCode, length: total === undefined ? undefined : Number(total) }
  }

  /** A GET of bytes [start, end] (end inclusive, or to the end). */
  async get(
    url: string,
    headers: Record<string, string>,
    start: number,
    end?: number,
    signal?: AbortSignal
  ): Promise<Dispatcher.ResponseData> {
    const range = `bytes=${start}-${end ?? ''}`
    return await this.dispatcher.request({ ...target(url), method: 'GET', headers: { ...headers, range }, signal })
  }

  async close(): Promise<void> {
    await this.dispatcher.close()
  }
}

function target(url: string): { origin: string; path: string } {
  const u = new URL(url)
  return { origin: u.origin, path: u.pathname + u.search }
}
