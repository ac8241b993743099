#!/usr/bin/env node
// npm run bench:p2p: N = 8, 16 and 32 nodes (each a network namespace on one
// bridge, running a dfdaemon) pull the same 64 MiB blob at once through the
// swarm, the origin registry in its own namespace limited to 100 Mbit/s by
// tc tbf; the same blob pulled directly from the origin by 8 nodes, in the
// same run; then the supernode's scheduler alone on one core (taskset):
// /peer/task answers per second. Prints issue #18's targets; writes
// .bench/p2p.json. BENCH_NODES=8,16 and BENCH_MB=64 change the sizes.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import {
  pushBlob,
  run,
  startBlobServer,
  startBridgeNet,
  startDfdaemon,
  startRegistry,
  startSupernode,
  supernodeBin,
  tempDir
} from '../packages/testkit/dist/src/index.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const NODES = (process.env.BENCH_NODES ?? '8,16,32').split(',').map(Number)
const MB = Number(process.env.BENCH_MB ?? 64)
const MBIT = 100
const scope = () => {
  const mine = []
  return {
    t: { teardown: fn => mine.push(fn) },
    close: async () => {
      for (const fn of mine.reverse()) await fn().catch(() => {})
    }
  }
}

/** The origin (registry, tbf-limited) and `n` more namespaces; a fresh random blob in it. */
async function topology(t, n, extra) {
  const net = await startBridgeNet(t, 1 + extra + n)
  const [origin, ...rest] = net.nodes
  const reg = await startRegistry(t, { netns: { nsIp: origin.ip, prefix: origin.prefix } })
  const digest = await pushBlob(reg, 'bench/blob', randomBytes(MB << 20))
  await origin.limit(MBIT)
  return { origin, rest, reg, digest, path: `/v2/bench/blob/blobs/${digest}` }
}

/** CPU seconds (user + system) used so far by every process in these namespaces, and by the ones that ended (children). */
async function cpuSeconds(nodes) {
  let ticks = 0
  for (const node of nodes) {
    const pids = (await run('ip', ['netns', 'pids', node.name])).stdout.split('\n').filter(Boolean)
    for (const pid of pids) {
      const st = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ')
      if (f.length > 14) ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])
    }
  }
  return ticks / 100
}

/** Every node runs `cmd(node)` at the same moment (they wait for one go file); seconds until all are done, and their outputs. */
async function together(t, nodes, cmd) {
  const go = join(await tempDir(t), 'go')
  const done = nodes.map(async (node, i) => {
    const r = await run(
      node.prefix[0],
      [...node.prefix.slice(1), 'sh', '-c', `while [ ! -e ${go} ]; do sleep 0.01; done; ${cmd(node, i)}`],
      {
        timeoutMs: 900_000
      }
    )
    return r.stdout.trim()
  })
  await sleep(500 + 50 * nodes.length)
  const t0 = process.hrtime.bigint()
  writeFileSync(go, '')
  const out = await Promise.all(done)
  return { secs: Number(process.hrtime.bigint() - t0) / 1e9, out }
}

async function p2p(n) {
  const s = scope()
  try {
    const topo = await topology(s.t, n, 1)
    const [snNs, ...nodeNs] = topo.rest
    const sn = await startSupernode(s.t, { home: await tempDir(s.t), host: snNs.ip, prefix: snNs.prefix })
    const daemons = await Promise.all(
      nodeNs.map(async ns => await startDfdaemon(s.t, { home: await tempDir(s.t), host: ns.ip, prefix: ns.prefix, nodes: [sn.addr] }))
    )
    const before = await topo.origin.sentBytes()
    const cpu0 = await cpuSeconds([snNs, ...nodeNs])
    const r = await together(
      s.t,
      nodeNs,
      (_ns, i) => `curl -sf -H 'X-Dragonfly-Registry: ${topo.reg.url}' http://${daemons[i].addr}${topo.path} | sha256sum | cut -c1-64`
    )
    const bad = r.out.filter(o => `sha256:${o}` !== topo.digest).length
    const originBytes = (await topo.origin.sentBytes()) - before
    // The daemons' CPU while the pulls ran (curl and sha256sum ended: not counted): on 2 cores, wall >= cpu / 2.
    const cpu = (await cpuSeconds([snNs, ...nodeNs])) - cpu0
    return { n, mode: 'p2p', secs: r.secs, originBytes, bad, cpu }
  } finally {
    await s.close()
  }
}

async function direct(n) {
  const s = scope()
  try {
    const topo = await topology(s.t, n, 0)
    const before = await topo.origin.sentBytes()
    const r = await together(s.t, topo.rest, () => `curl -sf ${topo.reg.url}${topo.path} | sha256sum | cut -c1-64`)
    const bad = r.out.filter(o => `sha256:${o}` !== topo.digest).length
    return { n, mode: 'direct', secs: r.secs, originBytes: (await topo.origin.sentBytes()) - before, bad }
  } finally {
    await s.close()
  }
}

/**
 * The scheduler alone: a supernode pinned to one core, a task of 1,024 pieces
 * that one (fake) seed peer holds, and 64 downloaders on the other core, each
 * asking /peer/task for its next piece while reporting the last one done (v1's
 * range/result), as fast as the answers come. Answers per second over 5 s.
 */
async function schedulerThroughput() {
  const s = scope()
  try {
    const dir = await tempDir(s.t)
    const size = 1024 << 20
    writeFileSync(join(dir, 'a'.repeat(64)), Buffer.alloc(size, 7))
    const origin = await startBlobServer(s.t, dir)
    const url = `${origin.url}/${'a'.repeat(64)}`
    const home = await tempDir(s.t)
    const p = spawn(
      'taskset',
      [
        '-c',
        '0',
        process.execPath,
        supernodeBin,
        '--home',
        home,
        '--listen',
        '127.0.0.1',
        '--port',
        '0',
        '--log-level',
        'info',
        '--long-poll',
        '0'
      ],
      {
        stdio: ['ignore', 'ignore', 'pipe']
      }
    )
    s.t.teardown(async () => p.kill('SIGKILL'))
    let err = ''
    p.stderr.on('data', b => {
      err += b
    })
    let port = 0
    for (let i = 0; i < 400 && port === 0; i++) {
      const line = err.split('\n').find(l => l.includes('"msg":"supernode listening"'))
      if (line !== undefined) port = JSON.parse(line).port
      else await sleep(25)
    }
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 64, pipelining: 1 })
    const post = async (path, body) =>
      JSON.parse(
        await (
          await pool.request({ path, method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
        ).body.text()
      )
    const get = async path => JSON.parse(await (await pool.request({ path, method: 'GET' })).body.text())
    const pieceSizeHint = 1 << 20
    const seed = await post('/peer/registry', {
      rawURL: url,
      cID: 'seed',
      IP: '127.0.0.2',
      port: 1,
      pieceSizeHint,
      have: Buffer.alloc(1024, 1).toString('base64')
    })
    const taskId = seed.data.taskId
    // The supernode copies the task (its digests are what it schedules with).
    const peers = Array.from({ length: 64 }, (_, i) => ({ cid: `p${i}`, port: 1000 + i }))
    for (const q of peers) await post('/peer/registry', { rawURL: url, cID: q.cid, IP: '127.0.0.3', port: q.port, pieceSizeHint })
    await post('/preheat', { url })
    for (let i = 0; i < 600; i++) {
      const st = await get(`/preheat/${taskId}`)
      if (st.status === 'SUCCESS') break
      await sleep(50)
    }
    let answers = 0
    let pieces = 0
    let stop = false
    const loop = async q => {
      let next = 0
      let last
      while (!stop) {
        const want = `${next % 1024}`
        const query = `taskId=${taskId}&srcCid=${q.cid}&want=${want}${last === undefined ? '' : `&range=${last}&result=501`}`
        const r = await get(`/peer/task?${query}`)
        answers++
        if (r.code === 601 && r.data.length > 0) {
          pieces += r.data.length
          last = r.data[0].range
        } else last = undefined
        next++
      }
    }
    const warm = peers.map(loop)
    await sleep(1000)
    answers = 0
    pieces = 0
    const t0 = Date.now()
    await sleep(5000)
    const secs = (Date.now() - t0) / 1000
    const rate = { answersPerSec: answers / secs, piecesPerSec: pieces / secs }
    stop = true
    await Promise.allSettled(warm)
    await pool.close()
    return rate
  } finally {
    await s.close()
  }
}

const rows = []
for (const n of NODES) {
  const r = await p2p(n)
  rows.push(r)
  console.log(JSON.stringify(r))
}
const d = await direct(8)
rows.push(d)
console.log(JSON.stringify(d))
const sched = await schedulerThroughput()
console.log(JSON.stringify(sched))

const blob = MB << 20
console.log(`\n| nodes | mode | completion s | origin MB | origin / blob | bad copies | daemons' CPU s (2 cores) |`)
console.log('|---|---|---|---|---|---|---|')
for (const r of rows)
  console.log(
    `| ${r.n} | ${r.mode} | ${r.secs.toFixed(1)} | ${(r.originBytes / 1e6).toFixed(1)} | ${(r.originBytes / blob).toFixed(2)} | ${r.bad} | ${r.cpu === undefined ? '-' : r.cpu.toFixed(1)} |`
  )
const at = n => rows.find(r => r.mode === 'p2p' && r.n === n)
const t8 = at(8)
const t16 = at(16)
const t32 = at(32)
console.log(`\n| target (#18) | measured | wanted | met |`)
console.log('|---|---|---|---|')
const maxOrigin = Math.max(...rows.filter(r => r.mode === 'p2p').map(r => r.originBytes / blob))
console.log(`| origin bytes / blob, every N | ${maxOrigin.toFixed(2)}x | <= 1.1x | ${maxOrigin <= 1.1 ? 'yes' : '**no**'} |`)
if (t8 && t32)
  console.log(
    `| completion 32 nodes / 8 nodes | ${(t32.secs / t8.secs).toFixed(2)}x | <= 1.5x | ${t32.secs / t8.secs <= 1.5 ? 'yes' : '**no**'} |`
  )
if (t16)
  console.log(
    `| completion 16 nodes P2P / 8 nodes direct | ${(t16.secs / d.secs).toFixed(2)}x | <= 0.25x | ${t16.secs / d.secs <= 0.25 ? 'yes' : '**no**'} |`
  )
console.log(
  `| /peer/task answers per second, one core | ${sched.answersPerSec.toFixed(0)} | >= 2000 | ${sched.answersPerSec >= 2000 ? 'yes' : '**no**'} |`
)
mkdirSync(join(root, '.bench'), { recursive: true })
writeFileSync(
  join(root, '.bench', 'p2p.json'),
  JSON.stringify({ date: new Date().toISOString(), mb: MB, mbit: MBIT, rows, scheduler: sched }, null, 2)
)
