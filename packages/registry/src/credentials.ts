import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'

export interface RegistryCredentials {
  /** base64("user:password") for `host` only, as in the original nydusd's config and docker's config.json. */
  auth?: string
  /** A bearer token used as is, for `host` only. */
  registryToken?: string
  /** A docker config.json to take `auths`, `credHelpers` and `credsStore` from (default: $DOCKER_CONFIG/config.json). */
  dockerConfig?: string
  /**
   * The registry these credentials are for, when requests go to another host
   * on its behalf (the node's dfdaemon, which hands them to the origin): its
   * entry in docker's config is used for `host`. Default: `host` itself.
   */
  credentialHost?: string
}

interface DockerConfig {
  auths?: Record<string, { auth?: string }>
  credHelpers?: Record<string, string>
  credsStore?: string
}

const HELPER_TIMEOUT_MS = 10_000

/** `https://host:port/v1/` and `host:port` name the same registry. */
const hostOf = (key: string): string => key.replace(/^https?:\/\//, '').replace(/\/.*$/, '')

/**
 * Credentials looked up per host, never shared between hosts: the configured
 * ones belong to `host` (the origin) alone; every other host (a mirror, a
 * token realm of its own) gets only what docker's config holds for it.
 */
export class CredentialStore {
  private readonly byHost = new Map<string, Promise<string | undefined>>()
  private config?: Promise<DockerConfig>

  constructor(
    private readonly host: string,
    private readonly o: RegistryCredentials = {}
  ) {}

  /** The static bearer token, for the origin only. */
  token(host: string): string | undefined {
    return host === this.host ? this.o.registryToken : undefined
  }

  /** base64 "user:password" for `host`, or undefined. */
  async basic(host: string): Promise<string | undefined> {
    if (host === this.host && this.o.auth !== undefined) return this.o.auth
    const key = host === this.host ? (this.o.credentialHost ?? host) : host
    let p = this.byHost.get(key)
    if (p === undefined) {
      p = this.lookup(key)
      this.byHost.set(key, p)
    }
    return await p
  }

  private async lookup(host: string): Promise<string | undefined> {
    const cfg = await this.dockerConfig()
    const helper = Object.entries(cfg.credHelpers ?? {}).find(([k]) => hostOf(k) === host)?.[1] ?? cfg.credsStore
    if (helper !== undefined) {
      const fromHelper = await credentialHelper(helper, host)
      if (fromHelper !== undefined) return fromHelper
    }
    return Object.entries(cfg.auths ?? {}).find(([k]) => hostOf(k) === host)?.[1].auth
  }

  private async dockerConfig(): Promise<DockerConfig> {
    this.config ??= (async () => {
      const path = this.o.dockerConfig ?? join(process.env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json')
      try {
        const v = JSON.parse(await readFile(path, 'utf8')) as unknown
        return v !== null && typeof v === 'object' ? (v as DockerConfig) : {}
      } catch {
        return {}
      }
    })()
    return await this.config
  }
}

/**
 * docker's credential helper protocol: `docker-credential-NAME get` reads the
 * server on stdin and prints `{"Username","Secret"}`. A helper that is
 * missing, fails or answers junk gives nothing (docker's config may still).
 * Identity tokens (Username `<token>`) are not supported.
 */
async function credentialHelper(name: string, host: string): Promise<string | undefined> {
  if (!/^[\w.-]+$/.test(name)) return undefined
  return await new Promise(resolve => {
    const child = execFile(`docker-credential-${name}`, ['get'], { timeout: HELPER_TIMEOUT_MS, maxBuffer: 64 * 1024 }, (err, stdout) => {
      if (err !== null) {
        resolve(undefined)
        return
      }
      try {
        const v = JSON.parse(stdout) as { Username?: unknown; Secret?: unknown }
        const ok = typeof v.Username === 'string' && typeof v.Secret === 'string' && v.Username !== '<token>' && v.Secret !== ''
        resolve(ok ? Buffer.from(`${v.Username as string}:${v.Secret as string}`).toString('base64') : undefined)
      } catch {
        resolve(undefined)
      }
    })
    child.stdin?.on('error', () => {})
    child.stdin?.end(host)
  })
}
