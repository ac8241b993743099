import { randomBytes, randomInt } from 'node:crypto'
import { reaper } from './reaper.js'
import { mustRun, run } from './run.js'

interface Teardown {
  teardown: (fn: () => Promise<void> | void) => void
}

export interface TestNetns {
  name: string
  /** The host's end of the veth pair (198.18.N.1). */
  hostIp: string
  /** The namespace's end (198.18.N.2): servers started in it listen here. */
  nsIp: string
  /** `ip netns exec NAME` prefix for spawning a command inside. */
  prefix: string[]
  /** Shapes traffic leaving the namespace (the servers' answers) with `tc tbf` at `mbit`; 0 removes it. */
  limit: (mbit: number) => Promise<void>
  /** Bytes that left the namespace through its veth since it was made (tc's counter). */
  sentBytes: () => Promise<number>
  stop: () => Promise<void>
}

/**
 * A network namespace joined to the host by a veth pair on 198.18.N.0/24
 * (a benchmarking range, no route out). Deleted when the test ends, and by
 * the reaper if the worker dies first.
 */
export async function startNetns(t: Teardown): Promise<TestNetns> {
  const id = randomBytes(3).toString('hex')
  const name = `nydustest-${id}`
  const [hostIf, nsIf] = [`nyh${id}`, `nyn${id}`]
  const subnet = `198.18.${randomInt(1, 255)}`
  const [hostIp, nsIp] = [`${subnet}.1`, `${subnet}.2`]
  const inNs = (args: string[]): string[] => ['netns', 'exec', name, ...args]
  reaper.netns(name)
  const stop = async (): Promise<void> => {
    const pids = (await run('ip', ['netns', 'pids', name])).stdout.split('\n').filter(Boolean)
    if (pids.length > 0) await run('kill', ['-9', ...pids])
    await run('ip', ['netns', 'del', name])
    await run('ip', ['link', 'del', hostIf])
    reaper.unnetns(name)
  }
  t.teardown(stop)
  await mustRun('ip', ['netns', 'add', name])
  await mustRun('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', name])
  await mustRun('ip', ['addr', 'add', `${hostIp}/24`, 'dev', hostIf])
  await mustRun('ip', ['link', 'set', hostIf, 'up'])
  await mustRun('ip', inNs(['ip', 'addr', 'add', `${nsIp}/24`, 'dev', nsIf]))
  await mustRun('ip', inNs(['ip', 'link', 'set', nsIf, 'up']))
  await mustRun('ip', inNs(['ip', 'link', 'set', 'lo', 'up']))
  const limit = async (mbit: number): Promise<void> => {
    if (mbit === 0) {
      await run('ip', inNs(['tc', 'qdisc', 'del', 'dev', nsIf, 'root']))
      return
    }
    // A burst of 64 KiB and 100 ms of queue: the shape of a real link, not a drop-everything policer.
    await mustRun(
      'ip',
      inNs(['tc', 'qdisc', 'replace', 'dev', nsIf, 'root', 'tbf', 'rate', `${mbit}mbit`, 'burst', '64kb', 'latency', '100ms'])
    )
  }
  const sentBytes = async (): Promise<number> => {
    const stats = await mustRun('ip', inNs(['ip', '-s', '-j', 'link', 'show', 'dev', nsIf]))
    return Number((JSON.parse(stats) as Array<{ stats64: { tx: { bytes: number } } }>)[0].stats64.tx.bytes)
  }
  return { name, hostIp, nsIp, prefix: ['ip', ...inNs([])], limit, sentBytes, stop }
}
