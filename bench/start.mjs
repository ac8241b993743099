#!/usr/bin/env node
// npm run bench:start: time from pull start to the first output of
// `python3 -c 'print(1)'` in the Debian/python3 image, and in a variant with
// 500 MB more content the command never reads, with the registry in a network
// namespace behind `tc tbf` (100 and 20 Mbit/s). In one run: containerd's
// overlayfs snapshotter with a full pull, our lazy start (cold cache), and the
// limit (bytes the lazy start fetched divided by the bandwidth).
// BENCH_RATES=100 runs one rate only. Writes .bench/start.json.
import { execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  convertImage,
  run,
  skopeoPush,
  startContainerd,
  startNetns,
  startRegistry,
  startSnapshotter
} from '../packages/testkit/dist/src/index.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const work = join(root, '.bench', 'start')
const BIN = join(root, 'packages/snapshotter/bin/containerd-nydus-grpc.cjs')
const RATES = (process.env.BENCH_RATES ?? '100,20').split(',').map(Number)
const EXTRA_MB = 500
const sh = (cmd, args) => String(execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 }))
const cleanups = []
const t = { teardown: fn => cleanups.push(fn) }
const scope = () => {
  const mine = []
  return {
    t: { teardown: fn => mine.push(fn) },
    close: async () => {
      for (const fn of mine.reverse()) await fn()
    }
  }
}

/** The OCI layouts: the Debian/python3 root, and it plus a layer of incompressible files nobody reads. */
function layouts() {
  sh('bash', [join(root, 'fixtures/scripts/build-debian.sh')])
  const tar = join(root, 'fixtures/.cache/debian-python3/rootfs.tar')
  const small = join(work, 'oci-small')
  const large = join(work, 'oci-large')
  if (!existsSync(join(small, 'index.json'))) sh('bash', [join(root, 'fixtures/scripts/make-oci-layout.sh'), small, 'latest', tar])
  if (!existsSync(join(large, 'index.json'))) {
    const dir = join(work, 'extra')
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(join(dir, 'opt/unread'), { recursive: true })
    for (let i = 0; i < EXTRA_MB / 10; i++) writeFileSync(join(dir, 'opt/unread', `data-${i}.bin`), randomBytes(10 << 20))
    sh('tar', ['--sort=name', '--numeric-owner', '-cf', join(work, 'extra.tar'), '-C', dir, '.'])
    rmSync(dir, { recursive: true, force: true })
    sh('bash', [join(root, 'fixtures/scripts/make-oci-layout.sh'), `${large}.tmp`, 'latest', tar, join(work, 'extra.tar')])
    renameSync(`${large}.tmp`, large)
  }
  return { small, large }
}

/** Runs the container and resolves with the seconds from `t0` to its first output byte. */
function firstOutput(cd, args, t0) {
  return new Promise((resolve, reject) => {
    const p = spawn('ctr', ['--address', cd.address, '--namespace', cd.namespace, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let at
    let out = ''
    let err = ''
    p.stdout.on('data', b => {
      at ??= Number(process.hrtime.bigint() - t0) / 1e9
      out += b
    })
    p.stderr.on('data', b => {
      err += b
    })
    p.on('close', code =>
      code === 0 && out.trim() === '1' ? resolve(at) : reject(new Error(`ctr ${args.join(' ')}: ${code} ${out}${err}`))
    )
  })
}

/** One cold start: a fresh containerd (and snapshotter), the pull, then the container. */
async function coldStart(ns, ref, mode) {
  const s = scope()
  try {
    const sn = mode === 'lazy' ? await startSnapshotter(s.t, BIN, { args: ['--nydusd-config', join(work, 'nydusd.json')] }) : undefined
    const cd = await startContainerd(s.t, { proxyPlugins: sn === undefined ? {} : { nydus: sn.address } })
    const before = await ns.sentBytes()
    const t0 = process.hrtime.bigint()
    const pull =
      mode === 'lazy'
        ? await cd.rpull(ref, { timeoutMs: 600_000 })
        : await run(
            'ctr',
            ['--address', cd.address, '--namespace', cd.namespace, 'image', 'pull', '--plain-http', '--snapshotter', 'overlayfs', ref],
            {
              timeoutMs: 1_800_000
            }
          )
    if (pull.code !== 0) throw new Error(`pull ${ref}: ${pull.stderr}`)
    const pullSecs = Number(process.hrtime.bigint() - t0) / 1e9
    const snapshotter = mode === 'lazy' ? 'nydus' : 'overlayfs'
    const secs = await firstOutput(
      cd,
      ['run', '--rm', '--snapshotter', snapshotter, ref, `c${Date.now()}`, '/usr/bin/python3', '-c', 'print(1)'],
      t0
    )
    return { secs, pullSecs, bytes: (await ns.sentBytes()) - before }
  } finally {
    await s.close()
  }
}

try {
  mkdirSync(work, { recursive: true })
  const { small, large } = layouts()
  writeFileSync(join(work, 'nydusd.json'), JSON.stringify({ device: { backend: { type: 'registry', config: { scheme: 'http' } } } }))
  const ns = await startNetns(t)
  const reg = await startRegistry(t, { netns: ns })
  const images = {}
  for (const [name, layout] of Object.entries({ small, large })) {
    await skopeoPush(`${layout}:latest`, `${reg.host}/bench/debian:${name}`)
    const { report } = await convertImage(`${reg.host}/bench/debian:${name}`, `${reg.host}/bench/debian:${name}-nydus`)
    const oci = JSON.parse(sh('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/bench/debian:${name}`]))
    images[name] = {
      oci: `${reg.host}/bench/debian:${name}`,
      nydus: `${reg.host}/bench/debian:${name}-nydus`,
      ociBytes: oci.layers.reduce((n, l) => n + l.size, 0),
      report
    }
  }
  const rows = []
  for (const mbit of RATES) {
    await ns.limit(mbit)
    for (const name of ['small', 'large']) {
      const img = images[name]
      const full = await coldStart(ns, img.oci, 'full')
      const lazy = await coldStart(ns, img.nydus, 'lazy')
      const limit = (lazy.bytes * 8) / (mbit * 1e6)
      const row = {
        mbit,
        image: name,
        ociMB: img.ociBytes / 1e6,
        full,
        lazy,
        limit,
        speedup: full.secs / lazy.secs,
        ofLimit: lazy.secs / (limit + 1)
      }
      rows.push(row)
      console.error(JSON.stringify(row))
    }
  }
  await ns.limit(0)
  writeFileSync(join(root, '.bench', 'start.json'), JSON.stringify({ date: new Date().toISOString(), rows }, null, 2))
  console.log(
    '| link | image (OCI layers) | full pull + run (overlayfs) s | lazy (nydus, cold) s | fetched MB | limit s | full / lazy | lazy / (limit + 1 s) |'
  )
  console.log('|---|---|---|---|---|---|---|---|')
  for (const r of rows)
    console.log(
      `| ${r.mbit} Mbit/s | ${r.image} (${r.ociMB.toFixed(0)} MB) | ${r.full.secs.toFixed(2)} | ${r.full.pullSecs.toFixed(2)} | ${r.lazy.secs.toFixed(2)} | ${r.lazy.pullSecs.toFixed(2)} | ${(r.lazy.bytes / 1e6).toFixed(1)} | ${r.limit.toFixed(2)} | ${r.speedup.toFixed(1)}x | ${r.ofLimit.toFixed(2)} |`
    )
} finally {
  for (const fn of cleanups.reverse()) await fn()
}
