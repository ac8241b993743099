import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { request, type Dispatcher } from 'undici'
import { StorageError } from './errors.js'
import { transportError } from './http-util.js'

export interface RegistryCredentials {
  /** base64("user:password"), as in the original nydusd's config and docker's config.json. */
  auth?: string
  /** A bearer token used as is. */
  registryToken?: string
  /** A docker config.json to take `auths` from when `auth` is not set. */
  dockerConfig?: string
}

interface Token { value: string, expires: number }

/**
 * The auth side of the distribution API, shared by blob reads and pushes:
 * Basic credentials (configured or from docker's config.json) and Bearer
 * tokens from the challenge's realm, cached per host and scope until they
 * expire. Secrets never appear in errors.
 */
export class RegistryAuth {
  private readonly tokens = new Map<string, Token>()
  /** Hosts that answered a Basic challenge: later requests send credentials up front. */
  private readonly basicHosts = new Set<string>()
  private basic?: string
  private credsLoaded = false

  constructor (private readonly o: RegistryCredentials, private readonly dispatcher: Dispatcher, private readonly backend = 'registry') {}

  /** The Authorization header to start with: a static or cached token, else Basic if the host wants it. */
  async header (host: string, scope: string): Promise<string | undefined> {
    if (this.o.registryToken !== undefined) return `Bearer ${this.o.registryToken}`
    const tok = this.tokens.get(`${host} ${scope}`)
    if (tok !== undefined && tok.expires > Date.now()) return `Bearer ${tok.value}`
    if (this.basicHosts.has(host)) return `Basic ${(await this.credentials(host))!}`
    return undefined
  }

  /**
   * Answers a 401 challenge: Basic with our credentials, or a Bearer token
   * from the realm for `scope` (space-separated scopes, one `scope` parameter each).
   */
  async answer (host: string, label: string, challenge: string, scope: string, signal?: AbortSignal): Promise<string> {
    const basic = await this.credentials(host)
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
      res = await request(url, { headers: basic === undefined ? {} : { authorization: `Basic ${basic}` }, signal, dispatcher: this.dispatcher })
    } catch (err) {
      throw transportError(`${label}: token service`, err, this.backend)
    }
    if (res.statusCode !== 200) {
      await res.body.dump()
      throw this.error(`${label}: the token service refused ${basic === undefined ? 'anonymous access' : 'the configured credentials'} (${res.statusCode})`)
    }
    const body = await res.body.json().catch(() => ({})) as { token?: string, access_token?: string, expires_in?: number }
    const value = body.token ?? body.access_token
    if (typeof value !== 'string') throw this.error(`${label}: the token service answered without a token`)
    const ttl = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60
    this.tokens.set(`${host} ${scope}`, { value, expires: Date.now() + Math.max(1, ttl - 5) * 1000 })
    return `Bearer ${value}`
  }

  /** base64 "user:password": from the config, else from docker's config.json `auths`. */
  async credentials (host: string): Promise<string | undefined> {
    if (this.o.auth !== undefined) return this.o.auth
    if (!this.credsLoaded) {
      this.credsLoaded = true
      const path = this.o.dockerConfig ?? join(process.env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json')
      try {
        const cfg = JSON.parse(await readFile(path, 'utf8')) as { auths?: Record<string, { auth?: string }> }
        const hit = Object.entries(cfg.auths ?? {}).find(([k]) => k.replace(/^https?:\/\//, '').replace(/\/.*$/, '') === host)
        this.basic = hit?.[1].auth
      } catch {
        this.basic = undefined
      }
    }
    return this.basic
  }

  private error (msg: string): StorageError {
    return new StorageError('ERR_BACKEND_AUTH', msg, { backend: this.backend })
  }
}

/** `realm="…",service="…",scope="…"` to an object. */
export function parseParams (s: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const m of s.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1].toLowerCase()] = m[2].replace(/\\(.)/g, '$1')
  return out
}
