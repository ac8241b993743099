#!/usr/bin/env node
// npm run bench:backend: the Debian/python3 image through nydusd from a local
// docker-registry (cold, no cache) against `skopeo copy` of the same image's
// OCI layer from the same registry plus extraction, in one run; time to first
// byte of a small file through each source; and bytes fetched per byte read
// when 5% of the image is read. Writes .bench/backend.json.
import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { request } from 'node:http'
import { join, dirname } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { startRegistry, pushBlob, startS3, startBlobServer } from '../packages/testkit/dist/src/index.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const work = join(root, '.bench', 'backend')
const sh = (cmd, args, opts = {}) =>
  String(execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26, ...opts }) ?? '')
const cleanups = []
const t = { teardown: fn => cleanups.push(fn) }
const secs = async fn => {
  const s = process.hrtime.bigint()
  const r = await fn()
  return [Number(process.hrtime.bigint() - s) / 1e9, r]
}
const mounted = mnt =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some(l => l.split(' ')[4] === mnt)
const api = (sock, path) =>
  new Promise((resolve, reject) =>
    request({ socketPath: sock, path }, res => {
      let s = ''
      res.on('data', d => {
        s += d
      })
      res.on('end', () => resolve(s))
    })
      .on('error', reject)
      .end()
  )
const metric = (text, name, label) => Number(new RegExp(`^${name}\\{[^}]*${label}[^}]*\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0)

async function mount(backend, mergingSize = 131072) {
  const mnt = join(work, 'mnt')
  mkdirSync(mnt, { recursive: true })
  const cfg = join(work, 'nydusd.json')
  writeFileSync(cfg, JSON.stringify({ device: { backend }, fs_prefetch: { merging_size: mergingSize } }))
  const sock = join(work, 'api.sock')
  const p = spawn(
    process.execPath,
    [
      join(root, 'packages/nydusd/bin/nydusd.cjs'),
      '--config',
      cfg,
      '--bootstrap',
      join(work, 'image.boot'),
      '--mountpoint',
      mnt,
      '--apisock',
      sock,
      '--log-level',
      'warn'
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] }
  )
  for (let i = 0; i < 200 && !mounted(mnt); i++) await sleep(25)
  const stop = async () => {
    if (p.exitCode === null) {
      p.kill('SIGTERM')
      await new Promise(resolve => p.once('exit', resolve))
    }
  }
  cleanups.push(stop)
  return { mnt, sock, stop }
}

try {
  rmSync(work, { recursive: true, force: true })
  mkdirSync(work, { recursive: true })
  sh('bash', [join(root, 'fixtures/scripts/build-debian.sh')], { stdio: 'inherit' })
  const tar = join(root, 'fixtures/.cache/debian-python3/rootfs.tar')
  sh(process.execPath, [
    join(root, 'packages/converter/bin/run.js'),
    'create',
    tar,
    '--bootstrap',
    join(work, 'image.boot'),
    '--blob-dir',
    join(work, 'blobs')
  ])
  const [blob] = readdirSync(join(work, 'blobs'))
  const blobBytes = readFileSync(join(work, 'blobs', blob))
  sh('bash', [join(root, 'fixtures/scripts/make-oci-layout.sh'), join(work, 'oci'), 'latest', tar])
  const reg = await startRegistry(t)
  await pushBlob(reg, 'bench/nydus', blobBytes)
  sh('skopeo', ['copy', '--dest-tls-verify=false', `oci:${join(work, 'oci')}:latest`, `docker://${reg.host}/bench/oci:latest`])
  const registry = { type: 'registry', config: { scheme: 'http', host: reg.host, repo: 'bench/nydus' } }
  const files = sh('sh', ['-c', `tar -tvf '${tar}' | awk '$1 ~ /^-/ {print $3, $6}'`])
    .trim()
    .split('\n')
    .map(l => {
      const [size, path] = l.split(' ')
      return { size: Number(size), path: path.replace(/^\.\//, '') }
    })
  const imageBytes = files.reduce((s, f) => s + f.size, 0)

  // 1. Whole image: nydusd over the registry vs skopeo copy + extraction; 3 interleaved runs, medians.
  const median = xs => [...xs].sort((a, b) => a - b)[xs.length >> 1]
  const nydusRuns = []
  const skopeoRuns = []
  let fetchedAll = 0
  for (let run = 0; run < 3; run++) {
    const m = await mount(registry)
    const [n] = await secs(async () => sh('sh', ['-c', `cd '${m.mnt}' && find . -type f -print0 | xargs -0 cat > /dev/null`]))
    fetchedAll = metric(await api(m.sock, '/api/v1/metrics'), 'nydusd_backend_bytes_total', 'registry')
    await m.stop()
    nydusRuns.push(n)
    rmSync(join(work, 'pulled'), { recursive: true, force: true })
    rmSync(join(work, 'rootfs'), { recursive: true, force: true })
    const [k] = await secs(async () => {
      sh('skopeo', ['copy', '--src-tls-verify=false', `docker://${reg.host}/bench/oci:latest`, `oci:${join(work, 'pulled')}:latest`])
      const idx = JSON.parse(readFileSync(join(work, 'pulled', 'index.json'), 'utf8'))
      const man = JSON.parse(readFileSync(join(work, 'pulled', 'blobs', 'sha256', idx.manifests[0].digest.slice(7)), 'utf8'))
      mkdirSync(join(work, 'rootfs'))
      for (const l of man.layers)
        sh('tar', ['-xzf', join(work, 'pulled', 'blobs', 'sha256', l.digest.slice(7)), '-C', join(work, 'rootfs')])
    })
    skopeoRuns.push(k)
  }
  const nydusSecs = median(nydusRuns)
  const skopeoSecs = median(skopeoRuns)

  // 2. 5% of the image's bytes, file by file in path order of a spread sample.
  const sample = []
  let want = 0
  for (let i = 0; i < files.length && want < imageBytes * 0.05; i += 7) {
    sample.push(files[i])
    want += files[i].size
  }
  const partial = {}
  for (const merging of [131072, 0]) {
    const p = await mount(registry, merging)
    let read = 0
    for (const f of sample) read += readFileSync(join(p.mnt, f.path)).length
    const fetched = metric(await api(p.sock, '/api/v1/metrics'), 'nydusd_backend_bytes_total', 'registry')
    await p.stop()
    partial[merging] = {
      read,
      fetched,
      fetchedPerRead: fetched / read,
      readFractionOfImage: read / imageBytes,
      fetchedFractionOfBlob: fetched / blobBytes.length
    }
  }

  // 3. First byte of a small file through each source, each on a fresh mount.
  const s3 = await startS3(t)
  await s3.put(blob, blobBytes)
  const http = await startBlobServer(t, join(work, 'blobs'))
  const sources = {
    localfs: { type: 'localfs', config: { dir: join(work, 'blobs') } },
    http: { type: 'http', config: { url: http.url } },
    registry,
    s3: {
      type: 's3',
      config: {
        endpoint: s3.endpoint,
        scheme: 'http',
        bucket_name: s3.bucket,
        access_key_id: s3.accessKeyId,
        access_key_secret: s3.secretAccessKey
      }
    }
  }
  const ttfb = {}
  for (const [name, backend] of Object.entries(sources)) {
    const mm = await mount(backend)
    // Async reads: the http and s3 servers live in this process and must keep answering.
    const [s] = await secs(async () => {
      const fh = await open(join(mm.mnt, 'etc/hostname'), 'r')
      await fh.read(Buffer.alloc(1), 0, 1, 0)
      await fh.close()
    })
    ttfb[name] = s * 1000
    await mm.stop()
  }
  const out = {
    date: new Date().toISOString(),
    imageBytes,
    blobBytes: blobBytes.length,
    nydusdWholeImage: { seconds: nydusSecs, runs: nydusRuns, fetched: fetchedAll },
    skopeoCopyExtract: { seconds: skopeoSecs, runs: skopeoRuns },
    partial,
    ttfbMs: ttfb
  }
  writeFileSync(join(root, '.bench', 'backend.json'), JSON.stringify(out, null, 2))
  console.log(`image: ${(imageBytes / 1e6).toFixed(0)} MB of files, blob ${(blobBytes.length / 1e6).toFixed(0)} MB`)
  console.log('| whole image from the local registry | seconds | x skopeo+extract |')
  console.log('|---|---|---|')
  console.log(
    `| nydusd (registry backend, cold, no cache), every file read | ${nydusSecs.toFixed(2)} | ${(nydusSecs / skopeoSecs).toFixed(2)} |`
  )
  console.log(`| skopeo copy + tar -xzf | ${skopeoSecs.toFixed(2)} | 1.00 |`)
  for (const [merging, r] of Object.entries(partial)) {
    console.log(
      `\nmerging_size ${merging}: reading ${(100 * r.readFractionOfImage).toFixed(1)}% of the image (${(r.read / 1e6).toFixed(1)} MB) fetched ${(r.fetched / 1e6).toFixed(1)} MB, ${(100 * r.fetchedFractionOfBlob).toFixed(1)}% of the blob (${r.fetchedPerRead.toFixed(2)} bytes fetched per byte read)`
    )
  }
  console.log('\n| source | first byte of /etc/hostname, ms |\n|---|---|')
  for (const [k, v] of Object.entries(ttfb)) console.log(`| ${k} | ${v.toFixed(1)} |`)
} finally {
  for (const fn of cleanups.reverse()) await fn()
}
