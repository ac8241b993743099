#!/usr/bin/env node
// npm run demo: builds the busybox-static OCI image from Debian's package,
// converts it with nydus-image, verifies every chunk, then mounts it with
// nydusd over a loopback HTTP blob server, runs busybox from the mount, and
// prints how many bytes were fetched.
import { execFileSync, spawn } from 'node:child_process'
import { createReadStream, mkdirSync, readdirSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs'
import { createServer, request } from 'node:http'
import { join, dirname } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const out = join(root, '.bench', 'demo')
const cli = join(root, 'packages/converter/bin/run.js')
const step = (title, cmd, args) => {
  console.log(`\n$ ${title}`)
  execFileSync(cmd, args, { stdio: 'inherit', cwd: root })
}
// The blob server below lives in this process, so steps after the mount must not block the event loop.
const stepAsync = async (title, cmd, args) => {
  console.log(`\n$ ${title}`)
  const p = spawn(cmd, args, { stdio: 'inherit', cwd: root })
  const code = await new Promise(resolve => p.once('exit', resolve))
  if (code !== 0) throw new Error(`${title} exited ${code}`)
}
rmSync(out, { recursive: true, force: true })
step('bash fixtures/scripts/build-busybox.sh', 'bash', ['fixtures/scripts/build-busybox.sh'])
step('nydus-image convert --oci-dir fixtures/.cache/busybox/oci:latest --output .bench/demo', process.execPath, [
  cli,
  'convert',
  '--oci-dir',
  'fixtures/.cache/busybox/oci:latest',
  '--output',
  out
])
step('nydus-image check --bootstrap .bench/demo/image.boot --blob-dir .bench/demo/blobs', process.execPath, [
  cli,
  'check',
  '--bootstrap',
  join(out, 'image.boot'),
  '--blob-dir',
  join(out, 'blobs')
])
step('nydus-image inspect --bootstrap .bench/demo/image.boot /etc', process.execPath, [
  cli,
  'inspect',
  '--bootstrap',
  join(out, 'image.boot'),
  '/etc'
])

// A blob server on a free loopback port that counts what it sends.
let sent = 0
const blobs = join(out, 'blobs')
const server = createServer((req, res) => {
  const path = join(blobs, (req.url ?? '').split('/').pop())
  const size = statSync(path).size
  const [, a, b] = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '') ?? ['', 0, size - 1]
  res.writeHead(206, { 'content-length': Number(b) - Number(a) + 1 })
  createReadStream(path, { start: Number(a), end: Number(b) })
    .on('data', d => {
      sent += d.length
    })
    .pipe(res)
})
await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
const url = `http://127.0.0.1:${server.address().port}/blobs`
const mnt = join(out, 'mnt')
mkdirSync(mnt)
writeFileSync(
  join(out, 'nydusd.json'),
  JSON.stringify(
    { device: { backend: { type: 'http', config: { url } }, cache: { type: 'blobcache', config: { work_dir: join(out, 'cache') } } } },
    null,
    2
  )
)
console.log(
  `\n$ nydusd --config .bench/demo/nydusd.json --bootstrap .bench/demo/image.boot --mountpoint .bench/demo/mnt --apisock .bench/demo/api.sock`
)
const daemon = spawn(
  process.execPath,
  [
    join(root, 'packages/nydusd/bin/nydusd.cjs'),
    '--config',
    join(out, 'nydusd.json'),
    '--bootstrap',
    join(out, 'image.boot'),
    '--mountpoint',
    mnt,
    '--apisock',
    join(out, 'api.sock'),
    '--log-level',
    'warn'
  ],
  { stdio: 'inherit' }
)
try {
  for (let i = 0; i < 100 && !readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${mnt} `); i++) await sleep(100)
  const blobSize = readdirSync(blobs).reduce((s, f) => s + statSync(join(blobs, f)).size, 0)
  console.log(`mounted; fetched so far: ${sent} bytes of ${blobSize}`)
  await stepAsync('cat .bench/demo/mnt/etc/passwd', 'cat', [join(mnt, 'etc/passwd')])
  console.log(`fetched so far: ${sent} bytes of ${blobSize}`)
  await stepAsync('chroot .bench/demo/mnt /bin/sh -c "echo hello from a lazily mounted image | tr a-z A-Z"', 'chroot', [
    mnt,
    '/bin/sh',
    '-c',
    'echo hello from a lazily mounted image | tr a-z A-Z'
  ])
  console.log(`fetched so far: ${sent} bytes of ${blobSize} (busybox itself is one ${statSync(join(mnt, 'bin/busybox')).size}-byte file)`)
  const metrics = await new Promise(resolve =>
    request({ socketPath: join(out, 'api.sock'), path: '/api/v1/metrics' }, res => {
      let s = ''
      res.on('data', d => {
        s += d
      })
      res.on('end', () => resolve(s))
    }).end()
  )
  console.log(
    metrics
      .split('\n')
      .filter(l => /^nydusd_(read_bytes|cache_(hits|misses)|backend_(requests|bytes))_total/.test(l))
      .join('\n')
  )
} finally {
  daemon.kill('SIGTERM')
  await new Promise(resolve => daemon.once('exit', resolve))
  server.close()
  console.log('\nunmounted')
}
