import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import test, { type ExecutionContext } from 'ava'
import {
  pushBlob,
  run,
  startBridgeNet,
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
 * `mbit`), supernodes in theirs, and `n` nodes each running a dfdaemon.
 */
async function swarm(
  t: ExecutionContext,
  n: number,
  o: { size: number; supernodes?: number; redis?: boolean; mbit?: number }
): Promise<Swarm> {
  const k = o.supernodes ?? 1
  const net = await startBridgeNet(t, 1 + k + (o.redis === true ? 1 : 0) + n)
  const [origin, ...rest] = net.nodes
  const reg = await startRegistry(t, { netns: { nsIp: origin.ip, prefix: origin.prefix } })
  const digest = await pushBlob(reg, 'p2p/big', randomBytes(o.size))
  if (o.mbit !== undefined) await origin.limit(o.mbit)
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
  return { origin, blobUrlPath: `/v2/p2p/big/blobs/${digest}`, upstream: reg.url, digest, size: o.size, supernodes, nodes }
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

for (const n of [8, 32]) {
  test.serial(
    `${n} nodes pull one 64 MiB blob at once: every copy right, the origin sends it about once, no node uploads more than 3x the mean`,
    async t => {
      const s = await swarm(t, n, { size: 64 * MiB })
      const before = await Promise.all(s.nodes.map(async x => await x.net.sentBytes()))
      const originBefore = await s.origin.sentBytes()
      const got = await pullAll(t, s)
      const peers = JSON.parse(await s.supernodes[0].get('/api/v1/peers')) as Array<{
        ID: string
        uploadedBytes: number
        succeeded: number
      }>
      t.log(peers.map(p => `${p.ID.split('.').pop()} ${(p.uploadedBytes / MiB).toFixed(0)}`).join(', '))
      for (const g of got) t.is(g, s.digest)
      const originSent = (await s.origin.sentBytes()) - originBefore
      t.true(originSent <= 1.1 * s.size, `the origin sent ${originSent} bytes for ${s.size}`)
      const up = await Promise.all(s.nodes.map(async (x, i) => (await x.net.sentBytes()) - before[i]))
      const mean = up.reduce((a, b) => a + b, 0) / up.length
      t.log(`uploads MiB: mean ${(mean / MiB).toFixed(1)}, max ${(Math.max(...up) / MiB).toFixed(1)}`)
      t.true(Math.max(...up) <= 3 * mean, `a node uploaded ${Math.max(...up)} bytes, the mean is ${mean}`)
      t.true(metric(await s.supernodes[0].get('/metrics'), 'dragonfly_supernode_pieces_scheduled_total', 'source="peer"') > 0)
    }
  )
}

test.serial(
  'two supernodes sharing Redis: the one in use is killed mid-transfer; every node finishes through the other, which lets peers trade the pieces the first one copied',
  async t => {
    const s = await swarm(t, 8, { size: 48 * MiB, supernodes: 2, redis: true, mbit: 100 })
    const originBefore = await s.origin.sentBytes()
    const pulls = pullAll(t, s)
    const [a, b] = s.supernodes
    for (let i = 0; i < 2000 && metric(await a.get('/metrics'), 'dragonfly_supernode_origin_bytes_total') < 16 * MiB; i++) await sleep(10)
    a.proc.kill('SIGKILL')
    for (const g of await pulls) t.is(g, s.digest)
    const originSent = (await s.origin.sentBytes()) - originBefore
    t.log(`origin sent ${(originSent / MiB).toFixed(1)} MiB for a ${s.size / MiB} MiB blob`)
    t.true(originSent <= 1.5 * s.size, `the origin sent ${originSent} bytes for ${s.size}`)
    t.true(
      metric(await b.get('/metrics'), 'dragonfly_supernode_pieces_scheduled_total', 'source="peer"') > 0,
      'no peer trade through the second supernode'
    )
  }
)
