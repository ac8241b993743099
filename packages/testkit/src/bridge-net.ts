import { randomBytes } from 'node:crypto'
import { reaper } from './reaper.js'
import { mustRun, run } from './run.js'

interface Teardown {
  teardown: (fn: () => Promise<void> | void) => void
}

/** One network namespace on the test's bridge. */
export interface NetNode {
  name: string
  /** Its address on the bridge (198.18.X.N). */
  ip: string
  /** `ip netns exec NAME` prefix for spawning a command inside. */
  prefix: string[]
  /**
   * `nsenter --net=...`: enters the network namespace only. `ip netns exec`
   * also gives the command a mount namespace of its own, which hides a FUSE
   * mount made inside from the test; nydusd starts with this one.
   */
  netPrefix: string[]
  /** Shapes what leaves it (its answers) with `tc tbf` at `mbit`; 0 removes it. */
  limit: (mbit: number) => Promise<void>
  /** Bytes that left it through its veth since it was made. */
  sentBytes: () => Promise<number>
}

export interface BridgeNet {
  /** The host's address on the bridge. */
  hostIp: string
  nodes: NetNode[]
  stop: () => Promise<void>
}

/**
 * `count` network namespaces on one bridge, 198.18.X.0/24 (a benchmarking
 * range) with no route out: the topology of a swarm (an origin, supernodes,
 * nodes), each with its own address and tc. Deleted when the test ends, and
 * by the reaper if the worker dies first.
 */
export async function startBridgeNet(t: Teardown, count: number): Promise<BridgeNet> {
  const id = randomBytes(3).toString('hex')
  const bridge = `nyb${id}`
  const used = await run('ip', ['-4', '-o', 'addr'])
  let x = 0
  for (let tries = 0; tries < 100; tries++) {
    x = 1 + (randomBytes(1)[0] % 254)
    if (!used.stdout.includes(`198.18.${x}.`)) break
  }
  const hostIp = `198.18.${x}.1`
  const names = Array.from({ length: count }, (_, i) => `nydusbr-${id}-${i}`)
  reaper.link(bridge)
  for (const n of names) reaper.netns(n)
  const stop = async (): Promise<void> => {
    for (const n of names) {
      const pids = (await run('ip', ['netns', 'pids', n])).stdout.split('\n').filter(Boolean)
      if (pids.length > 0) await run('kill', ['-9', ...pids])
      await run('ip', ['netns', 'del', n])
      reaper.unnetns(n)
    }
    await run('ip', ['link', 'del', bridge])
    reaper.unlink(bridge)
  }
  t.teardown(stop)
  await mustRun('ip', ['link', 'add', bridge, 'type', 'bridge'])
  await mustRun('ip', ['addr', 'add', `${hostIp}/24`, 'dev', bridge])
  await mustRun('ip', ['link', 'set', bridge, 'up'])
  const nodes: NetNode[] = []
  for (let i = 0; i < count; i++) {
    const name = names[i]
    const [hostIf, nsIf] = [`nyv${id}${i}`, `nyw${id}${i}`]
    const ip = `198.18.${x}.${i + 2}`
    const inNs = (args: string[]): string[] => ['netns', 'exec', name, ...args]
    await mustRun('ip', ['netns', 'add', name])
    await mustRun('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', name])
    await mustRun('ip', ['link', 'set', hostIf, 'master', bridge])
    await mustRun('ip', ['link', 'set', hostIf, 'up'])
    await mustRun('ip', inNs(['ip', 'addr', 'add', `${ip}/24`, 'dev', nsIf]))
    await mustRun('ip', inNs(['ip', 'link', 'set', nsIf, 'up']))
    await mustRun('ip', inNs(['ip', 'link', 'set', 'lo', 'up']))
    nodes.push({
      name,
      ip,
      prefix: ['ip', ...inNs([])],
      netPrefix: ['nsenter', `--net=/run/netns/${name}`],
      limit: async mbit => {
        if (mbit === 0) await run('ip', inNs(['tc', 'qdisc', 'del', 'dev', nsIf, 'root']))
        else
          await mustRun(
            'ip',
            inNs(['tc', 'qdisc', 'replace', 'dev', nsIf, 'root', 'tbf', 'rate', `${mbit}mbit`, 'burst', '64kb', 'latency', '100ms'])
          )
      },
      sentBytes: async () => {
        const stats = await mustRun('ip', inNs(['ip', '-s', '-j', 'link', 'show', 'dev', nsIf]))
        return Number((JSON.parse(stats) as Array<{ stats64: { tx: { bytes: number } } }>)[0].stats64.tx.bytes)
      }
    })
  }
  return { hostIp, nodes, stop }
}

export interface SwarmNet extends BridgeNet {
  /** True when the nodes are loopback addresses, not namespaces: no tc shaping, no per-node byte counts. */
  loopback: boolean
  /** Why it fell back to loopback, to be said in the test's log. */
  why?: string
}

/**
 * The swarm's network: namespaces on a bridge, or, where they cannot be made
 * (no CAP_NET_ADMIN, no `ip netns`) or NYDUS_TEST_NET=loopback asks for it,
 * one loopback address per node (127.0.X.N, ports on loopback only): the same
 * processes and addresses, without `limit` and `sentBytes`.
 */
export async function startSwarmNet(t: Teardown, count: number, o: { loopback?: boolean } = {}): Promise<SwarmNet> {
  let why = o.loopback === true || process.env.NYDUS_TEST_NET === 'loopback' ? 'loopback asked for' : undefined
  if (why === undefined) {
    const steps: Array<() => Promise<void>> = []
    try {
      return { ...(await startBridgeNet({ teardown: fn => steps.push(async () => await fn()) }, count)), loopback: false }
    } catch (err) {
      why = `network namespaces unavailable: ${(err as Error).message.split('\n')[0]}`
    } finally {
      for (const fn of steps) t.teardown(fn)
    }
  }
  const x = 2 + (randomBytes(1)[0] % 250)
  const nodes = Array.from(
    { length: count },
    (_, i): NetNode => ({
      name: `loopback-${i}`,
      ip: `127.0.${x}.${i + 2}`,
      prefix: ['env'],
      netPrefix: ['env'],
      limit: async () => {
        throw new Error('tc shaping needs network namespaces; this swarm is on loopback')
      },
      sentBytes: async () => {
        throw new Error('per-node byte counts need network namespaces; this swarm is on loopback')
      }
    })
  )
  return { hostIp: '127.0.0.1', nodes, stop: async () => {}, loopback: true, why }
}
