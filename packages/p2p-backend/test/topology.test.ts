import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import test, { type ExecutionContext } from 'ava'
import {
  pushBlob,
  run,
  startSwarmNet,
  startDfdaemon,
  startRedis,
  startRegistry,
  startSupernode,
  tempDir,
  type NetNode,
  type P2pDaemon
} from '@nydusjs/testkit'
import { metric } from './helpers.js'

const MiB = 1024 * 1024

interface Swarm {
  loopback: boolean
  origin: NetNode
  blobUrlPath: string
  upstream: string
  digest: string
  size: number
  supernodes: P2pDaemon[]
  nodes: Array<{ net: NetNode; d: P2pDaemon }>
}

/**
 * The topology on one bridge (198.18.X.0/24, no route out): the
 * origin registry in its own namespace (egress limited with tc tbf when
 * `mbit`), supernodes in theirs, and `n` nodes each running a dfdaemon. Where
 * namespaces cannot be made (or `loopback`), each gets a loopback address
 * instead, unshaped, and the test says so.
 */
async function swarm(
  t: ExecutionContext,
  n: number,
  o: { size: number; supernodes?: number; redis?: boolean; mbit?: number; loopback?: boolean }
): Promise<Swarm> {
  const k = o.supernodes ?? 1
  const net = await startSwarmNet(t, 1 + k + (o.redis === true ? 1 : 0) + n, { loopback: o.loopback })
  if (net.why !== undefined) t.log(`${net.why}: the swarm runs on loopback addresses, the origin unshaped`)
  const [origin, ...rest] = net.nodes
  const reg = await startRegistry(t, { netns: { nsIp: origin.ip, prefix: origin.prefix } })
  const digest = await pushBlob(reg, 'p2p/big', randomBytes(o.size))
  if (o.mbit !== undefined && !net.loopback) await origin.limit(o.mbit)
  let redisArgs: string[] = []
  if (o.redis === true) {
    const r = rest.pop()!
    redisArgs = ['--redis', (await startRedis(t, { host: r.ip, prefix: r.prefix })).url]
  }
  const supernodes: P2pDaemon[] = []
  for (const s of rest.slice(0, k))
    supernodes.push(await startSupernode(t, { home: await tempDir(t), host: s.ip, prefix: s.prefix, args: redisArgs }))
  const nodes = await Promise.all(
    rest.slice(k).map(async net => ({
      net,
      d: await startDfdaemon(t, {
        home: await tempDir(t),
        host: net.ip,
        prefix: net.prefix,
        nodes: supernodes.map(s => s.addr),
        args: ['--heartbeat', '1']
      })
    }))
  )
  return {
    loopback: net.loopback,
    origin,
    blobUrlPath: `/v2/p2p/big/blobs/${digest}`,
    upstream: reg.url,
    digest,
    size: o.size,
    supernodes,
    nodes
  }
}

/**
 * Each node pulls the whole blob through its own dfdaemon, from inside its
 * namespace, all at once (every puller waits for one go file, so spawning
 * 32 of them on 2 cores does not stagger the start); the sha256 of each copy.
 */
async function pullAll(t: ExecutionContext, s: Swarm): Promise<string[]> {
  const go = join(await tempDir(t), 'go')
  const pulls = s.nodes.map(async ({ net, d }) => {
    const cmd = `while [ ! -e ${go} ]; do sleep 0.01; done; curl -sf -H 'X-Dragonfly-Registry: ${s.upstream}' http://${d.addr}${s.blobUrlPath} | sha256sum`
    const r = await run(net.prefix[0], [...net.prefix.slice(1), 'sh', '-c', cmd], { timeoutMs: 300_000 })
    return `sha256:${r.stdout.split(' ')[0]}`
  })
  await sleep(500 + 50 * s.nodes.length)
  await writeFile(go, '')
  return await Promise.all(pulls)
}

/**
 * What the origin sent since now: its veth's count; on loopback, what the
 * supernodes fetched (their metric; a killed one's last answer).
 */
async function originMeter(s: Swarm): Promise<() => Promise<number>> {
  if (!s.loopback) {
    const before = await s.origin.sentBytes()
    return async () => (await s.origin.sentBytes()) - before
  }
  const last = s.supernodes.map(() => 0)
  return async () => {
    for (const [i, sn] of s.supernodes.entries())
      last[i] = await sn.get('/metrics').then(
        m => metric(m, 'dragonfly_supernode_origin_bytes_total'),
        () => last[i]
      )
    return last.reduce((a, b) => a + b, 0)
  }
}

for (const [n, loopback] of [
  [8, false],
  [16, false],
  [32, false],
  [8, true]
] as const) {
  test.serial(
    `${n} nodes${loopback ? ' on loopback addresses (the fallback without namespaces)' : ''} pull one 64 MiB blob at once: every copy right, the origin sends it about once, no node uploads more than 3x the mean`,
    async t => {
      const s = await swarm(t, n, { size: 64 * MiB, loopback })
      const originSent = await originMeter(s)
      const got = await pullAll(t, s)
      for (const g of got) t.is(g, s.digest)
      const sent = await originSent()
      t.true(sent <= 1.1 * s.size, `the origin sent ${sent} bytes for ${s.size}`)
      // Uploads as their receivers reported them (pieces that passed their digest check).
      const peers = JSON.parse(await s.supernodes[0].get('/api/v1/peers')) as Array<{ ID: string; uploadedBytes: number }>
      const up = s.nodes.map(x => peers.find(p => p.ID === x.d.addr)?.uploadedBytes ?? 0)
      const mean = up.reduce((a, b) => a + b, 0) / up.length
      t.log(`uploads MiB: mean ${(mean / MiB).toFixed(1)}, max ${(Math.max(...up) / MiB).toFixed(1)}`)
      t.true(mean > 0, 'no node uploaded anything')
      t.true(Math.max(...up) <= 3 * mean, `a node uploaded ${Math.max(...up)} bytes, the mean is ${mean}`)
      t.true(metric(await s.supernodes[0].get('/metrics'), 'dragonfly_supernode_pieces_scheduled_total', 'source="peer"') > 0)
    }
  )
}

test.serial(
  'two supernodes sharing Redis: the one in use is killed mid-transfer; every node finishes through the other, which lets peers trade the pieces the first one copied',
  async t => {
    const s = await swarm(t, 8, { size: 48 * MiB, supernodes: 2, redis: true, mbit: 100 })
    const originSent = await originMeter(s)
    const pulls = pullAll(t, s)
    const [a, b] = s.supernodes
    for (let i = 0; i < 2000 && (await originSent()) < 16 * MiB; i++) await sleep(10)
    a.proc.kill('SIGKILL')
    for (const g of await pulls) t.is(g, s.digest)
    const sent = await originSent()
    t.log(`origin sent ${(sent / MiB).toFixed(1)} MiB for a ${s.size / MiB} MiB blob`)
    t.true(sent <= 1.5 * s.size, `the origin sent ${sent} bytes for ${s.size}`)
    t.true(
      metric(await b.get('/metrics'), 'dragonfly_supernode_pieces_scheduled_total', 'source="peer"') > 0,
      'no peer trade through the second supernode'
    )
  }
)
