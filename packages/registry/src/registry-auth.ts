import { request, type Dispatcher } from 'undici'
import type { CredentialStore } from './credentials.js'
import { RegistryError } from './errors.js'
import { transportError } from './http-util.js'

interface Token {
  value: string
  expires: number
}

/**
 * The auth side of the distribution API, shared by blob reads and pushes:
 * Basic credentials and Bearer tokens from the challenge's realm, cached per
 * host and scope until they expire. What is sent to a host is only what
 * belongs to it (CredentialStore); the realm asked for a token is the one the
 * host itself named. Secrets never appear in errors.
 */
export class RegistryAuth {
  private readonly tokens = new Map<string, Token>()
  /** Hosts that answered a Basic challenge: later requests send credentials up front. */
  private readonly basicHosts = new Set<string>()

  constructor(
    private readonly creds: CredentialStore,
    private readonly dispatcher: Dispatcher,
    private readonly backend = 'registry'
  ) {}

  /** The Authorization header to start with for `host`: a static or cached token, else Basic if the host wants it. */
  async header(host: string, scope: string): Promise<string | undefined> {
    const fixed = this.creds.token(host)
    if (fixed !== undefined) return `Bearer ${fixed}`
    const tok = this.tokens.get(`${host} ${scope}`)
    if (tok !== undefined && tok.expires > Date.now()) return `Bearer ${tok.value}`
    const basic = this.basicHosts.has(host) ? await this.creds.basic(host) : undefined
    return basic === undefined ? undefined : `Basic ${basic}`
  }

  /**
   * Answers a 401 challenge: Basic with our credentials, or a Bearer token
   * from the realm for `scope` (space-separated scopes, one `scope` parameter each).
   */
  async answer(host: string, label: string, challenge: string, scope: string, signal?: AbortSignal): Promise<string> {
    const basic = await this.creds.basic(host)
    const m = /^\s*(\w+)\s*(.*)$/.exec(challenge)
    const scheme = m?.[1].toLowerCase()
    if (scheme === 'basic') {
      if (basic === undefined) throw this.error(`${label}: the registry wants Basic credentials and none are configured`)
      this.basicHosts.add(host)
      return `Basic ${basic}`
    }
    if (scheme !== 'bearer') throw this.error(`${label}: unsupported auth challenge ${JSON.stringify(scheme ?? challenge)}`)
    const params = parseParams(m![2])
    if (params.realm === undefined) throw this.error(`${label}: Bearer challenge without a realm`)
    const url = new URL(params.realm)
    if (params.service !== undefined) url.searchParams.set('service', params.service)
    for (const s of scope.split(' ')) url.searchParams.append('scope', s)
    let res: Dispatcher.ResponseData
    try {
      res = await request(url, {
        headers: basic === undefined ? {} : { authorization: `Basic ${basic}` },
        signal,
        dispatcher: this.dispatcher
      })
    } catch (err) {
      throw transportError(`${label}: token service`, err, this.backend)
    }
    if (res.statusCode !== 200) {
      await res.body.dump()
      throw this.error(
        `${label}: the token service refused ${basic === undefined ? 'anonymous access' : 'the configured credentials'} (${res.statusCode})`
      )
    }
    const body = (await res.body.json().catch(() => ({}))) as { token?: string; access_token?: string; expires_in?: number }
    const value = body.token ?? body.access_token
    if (typeof value !== 'string') throw this.error(`${label}: the token service answered without a token`)
    const ttl = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60
    this.tokens.set(`${host} ${scope}`, { value, expires: Date.now() + Math.max(1, ttl - 5) * 1000 })
    return `Bearer ${value}`
  }

  private error(msg: string): RegistryError {
    return new RegistryError('ERR_BACKEND_AUTH', msg, { backend: this.backend })
  }
}

/** `realm="…",service="…",scope="…"` to an object. */
export function parseParams(s: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const m of s.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1].toLowerCase()] = m[2].replace(/\\(.)/g, '$1')
  return out
}
