import { readFileSync } from 'node:fs'
import { Agent, type Dispatcher } from 'undici'
import { compile, type DfdaemonConfig } from './config.js'

interface Trust {
  re?: RegExp
  host?: string
  insecure: boolean
  certs: string[]
}

/**
 * Which TLS an origin gets: registry_mirror's `insecure` and `certs` for the
 * remote, a hijack_https host's for the hosts its `regx` matches, the
 * system's otherwise. One connection pool per distinct trust.
 */
export class TlsTrust {
  private readonly trusts: Trust[] = []
  private readonly agents = new Map<Trust | undefined, Dispatcher>()

  constructor(config: DfdaemonConfig, remote?: string) {
    const m = config.registry_mirror
    if (remote !== undefined) this.trusts.push({ host: new URL(remote).host, insecure: m.insecure, certs: m.certs })
    for (const h of config.hijack_https?.hosts ?? [])
      this.trusts.push({ re: compile(h.regx, 'hijack_https.hosts regx'), insecure: h.insecure, certs: h.certs })
    // Unreadable CA files are a config error: found now, not at the first pull.
    for (const c of [...m.certs, ...this.trusts.flatMap(x => x.certs)]) readCa(c)
  }

  dispatcher(host: string): Dispatcher {
    const withPort = host.includes(':') ? host : `${host}:443`
    const t = this.trusts.find(x => x.host === host || x.re?.test(withPort) === true)
    let a = this.agents.get(t)
    if (a === undefined) {
      const tls = t === undefined ? {} : { rejectUnauthorized: !t.insecure, ...(t.certs.length > 0 ? { ca: t.certs.map(readCa) } : {}) }
      a = new Agent({ connect: { timeout: 10_000, ...tls }, keepAliveTimeout: 30_000 })
      this.agents.set(t, a)
    }
    return a
  }

  async close(): Promise<void> {
    for (const a of this.agents.values()) await a.close()
  }
}

function readCa(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (err) {
    throw new Error(`certs: ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}
