#!/usr/bin/env node
// The registry-mirror half of npm run bench:p2p (issue #19): 8 nodes (network
// namespaces on one bridge, each running a dfdaemon) pull the Debian/python3
// image with skopeo through their own mirrors at the same moment, the
// registry in its own namespace limited to 100 Mbit/s by tc tbf; then 8
// nodes pull it straight from the registry. Registry bytes and completion.
import { mkdirSync, writeFileSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import {
  debianFixture,
  run,
  skopeoPush,
  startBridgeNet,
  startDfdaemon,
  startRegistry,
  startSupernode,
  tempDir
} from '../packages/testkit/dist/src/index.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const N = Number(process.env.BENCH_MIRROR_NODES ?? 8)
const MBIT = 100

async function pulls(viaMirror) {
  const mine = []
  const t = { teardown: fn => mine.push(fn) }
  try {
    const net = await startBridgeNet(t, 2 + N)
    const [originNs, snNs, ...nodeNs] = net.nodes
    const reg = await startRegistry(t, { netns: { nsIp: originNs.ip, prefix: originNs.prefix } })
    const { oci } = await debianFixture()
    await skopeoPush(`${oci}:latest`, `${reg.host}/lib/debian:1`)
    let sources = nodeNs.map(() => reg.host)
    if (viaMirror) {
      const sn = await startSupernode(t, { home: await tempDir(t), host: snNs.ip, prefix: snNs.prefix })
      const ds = await Promise.all(
        nodeNs.map(
          async n =>
            await startDfdaemon(t, {
              home: await tempDir(t),
              host: n.ip,
              prefix: n.prefix,
              nodes: [sn.addr],
              args: ['--registry', reg.url]
            })
        )
      )
      sources = ds.map(d => d.addr)
    }
    await originNs.limit(MBIT)
    const outs = await Promise.all(nodeNs.map(async () => await tempDir(t)))
    const go = join(await tempDir(t), 'go')
    const before = await originNs.sentBytes()
    const done = nodeNs.map(async (n, i) => {
      const cmd = `while [ ! -e ${go} ]; do sleep 0.01; done; skopeo copy --quiet --src-tls-verify=false docker://${sources[i]}/lib/debian:1 oci:${outs[i]}:x`
      return await run(n.prefix[0], [...n.prefix.slice(1), 'sh', '-c', cmd], { timeoutMs: 900_000 })
    })
    await sleep(500 + 50 * N)
    const t0 = process.hrtime.bigint()
    writeFileSync(go, '')
    const results = await Promise.all(done)
    const secs = Number(process.hrtime.bigint() - t0) / 1e9
    const sent = (await originNs.sentBytes()) - before
    let size = 0
    const blobs = (await readdir(join(outs[0], 'blobs', 'sha256'))).sort()
    for (const b of blobs) size += (await readFile(join(outs[0], 'blobs', 'sha256', b))).length
    let bad = results.filter(r => r.code !== 0).length
    for (const o of outs.slice(1)) if ((await readdir(join(o, 'blobs', 'sha256'))).sort().join() !== blobs.join()) bad++
    return { n: N, mode: viaMirror ? 'mirror (P2P)' : 'direct', secs, originBytes: sent, imageBytes: size, bad }
  } finally {
    for (const fn of mine.reverse()) await fn().catch(() => {})
  }
}

const rows = []
for (const viaMirror of [true, false]) {
  const r = await pulls(viaMirror)
  rows.push(r)
  console.log(JSON.stringify(r))
}
const [m, d] = rows
console.log(`\n| nodes | pull | completion s | registry MB | registry / image | failed or wrong copies |`)
console.log('|---|---|---|---|---|---|')
for (const r of rows)
  console.log(
    `| ${r.n} | ${r.mode} | ${r.secs.toFixed(1)} | ${(r.originBytes / 1e6).toFixed(1)} | ${(r.originBytes / r.imageBytes).toFixed(2)} | ${r.bad} |`
  )
const ratio = m.originBytes / m.imageBytes
console.log(`\n| target (#19) | measured | wanted | met |`)
console.log('|---|---|---|---|')
console.log(`| registry bytes / image, 8 through mirrors | ${ratio.toFixed(2)}x | <= 1.1x | ${ratio <= 1.1 ? 'yes' : '**no**'} |`)
console.log(
  `| completion of 8 through mirrors / 8 direct | ${(m.secs / d.secs).toFixed(2)}x | <= 0.3x | ${m.secs / d.secs <= 0.3 ? 'yes' : '**no**'} |`
)
mkdirSync(join(root, '.bench'), { recursive: true })
writeFileSync(join(root, '.bench', 'p2p-mirror.json'), JSON.stringify({ date: new Date().toISOString(), mbit: MBIT, rows }, null, 2))
