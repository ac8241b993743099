import { connect } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { repoRoot } from './paths.js'
import { ownedDaemon, type OwnedDaemon } from './reaper.js'

export const supernodeBin = join(repoRoot, 'packages/p2p-backend/bin/supernode.cjs')
export const dfdaemonBin = join(repoRoot, 'packages/registry-proxy/bin/dfdaemon.cjs')
export const dfgetBin = join(repoRoot, 'packages/p2p-backend/bin/dfget.cjs')

interface Teardown {
  teardown: (fn: () => Promise<void>) => void
}

export interface P2pDaemon extends OwnedDaemon {
  /** host:port it listens at. */
  addr: string
  /** GET of a path on it (e.g. /metrics), as text. */
  get: (path: string) => Promise<string>
}

export interface P2pDaemonOptions {
  home: string
  /** Address to bind and advertise (default 127.0.0.1). */
  host?: string
  port?: number
  /** `ip netns exec NAME`: started inside a namespace. */
  prefix?: string[]
  args?: string[]
}

/** Starts a daemon and waits for its "listening" log line (pino JSON on stderr), which names its port. */
async function start(t: Teardown, bin: string, what: string, args: string[], o: P2pDaemonOptions): Promise<P2pDaemon> {
  const host = o.host ?? '127.0.0.1'
  const argv = [bin, '--home', o.home, '--listen', host, '--port', String(o.port ?? 0), '--log-level', 'info', ...args, ...(o.args ?? [])]
  const d =
    o.prefix === undefined
      ? ownedDaemon(t, process.execPath, argv)
      : ownedDaemon(t, o.prefix[0], [...o.prefix.slice(1), process.execPath, ...argv])
  // Up to a minute: a machine busy with a 32-node swarm starts daemons slowly (they exit early on failure).
  for (let i = 0; i < 2400; i++) {
    const line = d
      .stderr()
      .split('\n')
      .find(l => l.includes(`"msg":"${what} listening"`))
    if (line !== undefined) {
      const port = (JSON.parse(line) as { port: number }).port
      const addr = `${host}:${port}`
      return { ...d, addr, get: async path => await (await fetch(`http://${addr}${path}`)).text() }
    }
    if (d.proc.exitCode !== null) break
    await sleep(25)
  }
  await d.stop()
  throw new Error(`${what} did not start: ${d.stderr().slice(-2000)}`)
}

/** A supernode (Dragonfly v1's scheduler and CDN), stopped when the test ends. */
export async function startSupernode(t: Teardown, o: P2pDaemonOptions): Promise<P2pDaemon> {
  return await start(t, supernodeBin, 'supernode', [], o)
}

/** A dfdaemon (a node of the swarm) that talks to `nodes`, stopped when the test ends. */
export async function startDfdaemon(t: Teardown, o: P2pDaemonOptions & { nodes: string[] }): Promise<P2pDaemon> {
  return await start(t, dfdaemonBin, 'dfdaemon', ['--node', o.nodes.join(','), ...(o.host === undefined ? [] : ['--ip', o.host])], o)
}

/** redis-server (Debian's) on a free port, nothing saved to disk, stopped when the test ends. */
export async function startRedis(
  t: Teardown,
  o: { host?: string; prefix?: string[] } = {}
): Promise<{ url: string; stop: () => Promise<void> }> {
  const { freePort } = await import('./registry.js')
  const host = o.host ?? '127.0.0.1'
  for (let attempt = 0; ; attempt++) {
    const port = await freePort()
    const args = ['--port', String(port), '--bind', host, '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--logfile', '']
    const cmd = [...(o.prefix ?? []), 'redis-server', ...args]
    const d = ownedDaemon(t, cmd[0], cmd.slice(1))
    let out = ''
    d.proc.stdout?.on('data', (b: Buffer) => {
      out += b.toString()
    })
    for (let i = 0; i < 2400 && d.proc.exitCode === null; i++) {
      const ok = await new Promise<boolean>(resolve => {
        const s = connect({ host, port }, () => {
          s.end('PING\r\n')
          resolve(true)
        })
        s.once('error', () => resolve(false))
      })
      if (ok) return { url: `redis://${host}:${port}`, stop: d.stop }
      await sleep(25)
    }
    await d.stop()
    if (attempt >= 3) throw new Error(`redis-server did not start: ${d.stderr()}${out}`)
  }
}
