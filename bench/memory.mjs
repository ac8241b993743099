#!/usr/bin/env node
// npm run bench:memory: the Debian/python3 image mounted 1, 10 and 30 times
// (each mount its own mountpoint, bootstrap copy and blobcache, so nothing is
// shared but the daemon), once with one nydusd per image (dedicated) and once
// in one nydusd started with no image (shared, POST /api/v1/mount). For each:
// the daemons' resident memory (RSS summed, and PSS, which counts node's
// shared code pages once) idle after mounting (past the first idle release), right after every image was
// read once (tar of every file through a pipe, two at a time), and after the
// idle release (memory.idle_release_secs). Then one image read cold in a
// shared daemon holding 30 mounts against the same read in a dedicated one,
// alternated, 5 rounds. Prints issue #20's targets; writes .bench/memory.json.
// BENCH_COUNTS=1,10 changes the counts; BENCH_DEDICATED_MAX=1 skips dedicated runs above 1.
import { spawn, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const work = join(root, '.bench', 'memory')
const nydusd = join(root, 'packages/nydusd/bin/nydusd.cjs')
const COUNTS = (process.env.BENCH_COUNTS ?? '1,10,30').split(',').map(Number)
const MAX = Math.max(...COUNTS)
/** BENCH_DEDICATED_MAX=1: one daemon per image only up to this count (30 daemons reading take minutes). */
const DEDICATED_MAX = Number(process.env.BENCH_DEDICATED_MAX ?? MAX)
const IDLE_RELEASE = 10
const mb = kb => Math.round(kb / 1024)
const sh = (cmd, args) => {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}`)
  return String(r.stdout)
}
const mounted = mnt =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some(l => l.split(' ')[4] === mnt)
const dropCaches = () => {
  sh('sync', [])
  writeFileSync('/proc/sys/vm/drop_caches', '3')
}

/** The image converted once (kept across runs); `n` mount slots, each with its own bootstrap copy. */
function prepare() {
  const image = join(work, 'image')
  if (!existsSync(join(image, 'done'))) {
    sh('bash', [join(root, 'fixtures/scripts/build-debian.sh')])
    rmSync(image, { recursive: true, force: true })
    mkdirSync(image, { recursive: true })
    const tar = join(root, 'fixtures/.cache/debian-python3/rootfs.tar')
    sh(process.execPath, [
      join(root, 'packages/converter/bin/run.js'),
      'create',
      tar,
      '--bootstrap',
      join(image, 'boot'),
      '--blob-dir',
      join(image, 'blobs')
    ])
    writeFileSync(join(image, 'done'), '')
  }
  return Array.from({ length: MAX }, (_, i) => {
    const dir = join(work, 'slots', String(i))
    mkdirSync(join(dir, 'mnt'), { recursive: true })
    copyFileSync(join(image, 'boot'), join(dir, 'boot'))
    const config = {
      device: {
        backend: { type: 'localfs', config: { dir: join(image, 'blobs') } },
        cache: { type: 'blobcache', config: { work_dir: join(dir, 'cache') } }
      },
      memory: { idle_release_secs: IDLE_RELEASE }
    }
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config))
    return { dir, mnt: join(dir, 'mnt'), boot: join(dir, 'boot'), config, cache: join(dir, 'cache') }
  })
}

/** RSS and PSS (KiB) of these processes, summed. */
function memory(pids) {
  let rss = 0
  let pss = 0
  for (const pid of pids) {
    const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
    rss += Number(/^Rss:\s+(\d+)/m.exec(t)[1])
    pss += Number(/^Pss:\s+(\d+)/m.exec(t)[1])
  }
  return { rss, pss }
}

const api = (sock, method, path, body) =>
  new Promise((resolve, reject) => {
    const req = request({ socketPath: sock, method, path }, res => {
      let text = ''
      res.on('data', b => (text += b))
      res.on('end', () => resolve({ status: res.statusCode, body: text }))
    })
    req.on('error', reject)
    req.end(body)
  })

async function waitFor(test, what) {
  for (let i = 0; i < 1200; i++) {
    if (await test().catch(() => false)) return
    await sleep(50)
  }
  throw new Error(`timed out waiting for ${what}`)
}

const procs = new Set()
function start(args) {
  const p = spawn(process.execPath, ['--max-semi-space-size=1', nydusd, '--log-level', 'warn', ...args], {
    stdio: ['ignore', 'ignore', 'inherit']
  })
  procs.add(p)
  return p
}
async function stopAll(slots) {
  for (const p of procs) p.kill('SIGTERM')
  await Promise.all([...procs].map(p => (p.exitCode === null ? new Promise(r => p.once('exit', r)) : undefined)))
  procs.clear()
  for (const s of slots) if (mounted(s.mnt)) spawnSync('umount', ['-l', s.mnt])
}

/** Mounts `slots`: one daemon each (dedicated) or all in one (shared). Returns the daemons' pids. */
async function mountAll(mode, slots) {
  for (const s of slots) rmSync(s.cache, { recursive: true, force: true })
  if (mode === 'dedicated') {
    const ps = slots.map(s => start(['--config', join(s.dir, 'config.json'), '--bootstrap', s.boot, '--mountpoint', s.mnt]))
    for (const s of slots) await waitFor(async () => mounted(s.mnt), s.mnt)
    return ps.map(p => p.pid)
  }
  const sock = join(work, 'shared.sock')
  const p = start(['--apisock', sock])
  await waitFor(async () => (await api(sock, 'GET', '/api/v1/daemon')).status === 200, 'the shared daemon')
  for (const s of slots) {
    const r = await api(
      sock,
      'POST',
      `/api/v1/mount?mountpoint=${encodeURIComponent(s.mnt)}`,
      JSON.stringify({ source: s.boot, fs_type: 'rafs', config: s.config })
    )
    if (r.status !== 200) throw new Error(`mount ${s.mnt}: ${r.status} ${r.body}`)
  }
  return [p.pid]
}

/** Every file of each mount read once, two mounts at a time. */
async function readEach(slots) {
  const queue = [...slots]
  const worker = async () => {
    for (let s = queue.shift(); s !== undefined; s = queue.shift()) {
      await new Promise((resolve, reject) =>
        // Through a pipe: GNU tar writing to /dev/null itself skips reading file contents.
        spawn('bash', ['-c', 'set -o pipefail; tar -cf - -C "$1" . | cat > /dev/null', 'bash', s.mnt], { stdio: 'ignore' }).once(
          'exit',
          c => (c === 0 ? resolve() : reject(new Error(`tar ${s.mnt}: ${c}`)))
        )
      )
    }
  }
  await Promise.all([worker(), worker()])
}

async function measure(mode, slots) {
  try {
    const pids = await mountAll(mode, slots)
    // Idle: after the first idle release (start-up's garbage collected).
    await sleep((IDLE_RELEASE + 5) * 1000)
    const mountedMem = memory(pids)
    dropCaches()
    await readEach(slots)
    const readMem = memory(pids)
    // A daemon collects the garbage of a burst of reads once none came for one or two 2 s ticks.
    await sleep(5000)
    const settledMem = memory(pids)
    await sleep(IDLE_RELEASE * 1000)
    const idleMem = memory(pids)
    return { mode, n: slots.length, daemons: pids.length, mounted: mountedMem, read: readMem, settled: settledMem, released: idleMem }
  } finally {
    await stopAll(slots)
  }
}

/** One image read cold: seconds. */
async function coldRead(slot) {
  dropCaches()
  const t = process.hrtime.bigint()
  await readEach([slot])
  return Number(process.hrtime.bigint() - t) / 1e9
}

/** Cold reads alternate between the modes; the median of each is kept (one read varies by 20% here). */
const ROUNDS = 5

async function throughput(slots) {
  const rounds = { shared: [], dedicated: [] }
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of round % 2 === 0 ? ['shared', 'dedicated'] : ['dedicated', 'shared']) {
      try {
        // Shared: the image read is one of 30 mounts; dedicated: a daemon of its own.
        await mountAll(mode, mode === 'shared' ? slots : [slots[0]])
        rounds[mode].push(await coldRead(slots[0]))
      } finally {
        await stopAll(slots)
      }
    }
  }
  const median = a => [...a].sort((x, y) => x - y)[ROUNDS >> 1]
  return { shared: median(rounds.shared), dedicated: median(rounds.dedicated), rounds }
}

const slots = prepare()
const size = Number(sh('du', ['-sb', join(work, 'image/blobs')]).split('\t')[0])
process.on('SIGINT', () => stopAll(slots).then(() => process.exit(130)))
const results = []
for (const n of COUNTS)
  for (const mode of ['dedicated', 'shared']) {
    if (mode === 'dedicated' && n > DEDICATED_MAX) continue
    const r = await measure(mode, slots.slice(0, n))
    results.push(r)
    console.log(
      `${mode.padEnd(9)} ${String(n).padStart(2)} images, ${r.daemons} daemon(s): RSS MB mounted and idle ${mb(r.mounted.rss)}, after reading ${mb(r.read.rss)}, 5 s later ${mb(r.settled.rss)}, after idle release ${mb(r.released.rss)}; PSS ${mb(r.mounted.pss)} / ${mb(r.read.pss)} / ${mb(r.settled.pss)} / ${mb(r.released.pss)}; per image after reading ${mb(r.read.rss / n)} MB RSS`
    )
  }
const tp = await throughput(slots.slice(0, Math.min(30, MAX)))
const mbps = s => Math.round(size / 1e6 / s)
console.log(`one image cold (blobs ${Math.round(size / 1e6)} MB): shared ${tp.shared.toFixed(2)} s, dedicated ${tp.dedicated.toFixed(2)} s`)
const shared30 = results.find(r => r.mode === 'shared' && r.n === MAX)
const one = results.find(r => r.mode === 'dedicated' && r.n === 1)
console.log('\ntargets (issue #20):')
console.log(
  `  shared, ${MAX} images after reading: ${mb(shared30.read.rss)} MB RSS (5 s later ${mb(shared30.settled.rss)} MB, after idle release ${mb(shared30.released.rss)} MB); want <= 150 MB`
)
// BENCH_COUNTS without 1 measures no idle dedicated daemon.
if (one !== undefined)
  console.log(
    `  idle dedicated daemon: ${mb(one.mounted.rss)} MB RSS mounted and idle, ${mb(one.released.rss)} MB idle after reading; want <= 60 MB`
  )
console.log(
  `  one image in a shared daemon: ${(tp.dedicated / tp.shared).toFixed(2)}x the dedicated read speed (${mbps(tp.shared)} vs ${mbps(tp.dedicated)} MB/s compressed); want >= 0.90x`
)
mkdirSync(join(root, '.bench'), { recursive: true })
writeFileSync(join(root, '.bench', 'memory.json'), JSON.stringify({ results, throughput: tp, blobBytes: size }, null, 2))
rmSync(join(work, 'slots'), { recursive: true, force: true })
