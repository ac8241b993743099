#!/usr/bin/env node
// npm run bench:convert: converts the Debian/python3 image's tar with nydus-image
// and, in the same run on the same content, compresses it with `zstd -T0 -3` and
// builds a squashfs with `mksquashfs -comp zstd -Xcompression-level 3`.
// Prints a table with ratios against zstd and writes .bench/convert.json.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const work = join(root, '.bench', 'convert')
const runs = Number(process.env.BENCH_RUNS ?? 3)
const sh = (cmd, args, opts = {}) => String(execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], ...opts }) ?? '')

for (const [tool, pkg] of [
  ['zstd', 'zstd'],
  ['mksquashfs', 'squashfs-tools'],
  ['/usr/bin/time', 'time']
]) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) sh('apt-get', ['install', '-y', '--no-install-recommends', pkg])
}
sh('bash', [join(root, 'fixtures/scripts/build-debian.sh')], { stdio: 'inherit' })
const tar = join(root, 'fixtures/.cache/debian-python3/rootfs.tar')
const tarBytes = statSync(tar).size
rmSync(work, { recursive: true, force: true })
mkdirSync(join(work, 'rootfs'), { recursive: true })
sh('tar', ['--xattrs', '--numeric-owner', '-xpf', tar, '-C', join(work, 'rootfs')])
sh('sh', ['-c', `cat '${tar}' > /dev/null`]) // same page-cache state for every tool

/** Wall seconds and peak RSS (MB) of one command, from GNU time. */
function timed(cmd, args) {
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`)
  const last = r.stderr.toString().trim().split('\n').pop().split(' ')
  return { seconds: Number(last[0]), rssMB: Number(last[1]) / 1024, stdout: r.stdout.toString() }
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s[s.length >> 1]
}

const tools = {
  'nydus-image create': () => {
    rmSync(join(work, 'blobs'), { recursive: true, force: true })
    const r = timed(process.execPath, [
      join(root, 'packages/converter/bin/run.js'),
      'create',
      tar,
      '--bootstrap',
      join(work, 'image.boot'),
      '--blob-dir',
      join(work, 'blobs'),
      '--output-json',
      join(work, 'out.json')
    ])
    const out = JSON.parse(readFileSync(join(work, 'out.json'), 'utf8'))
    return { ...r, outBytes: out.stats.blobSize + statSync(join(work, 'image.boot')).size }
  },
  'zstd -T0 -3': () => {
    const r = timed('zstd', ['-q', '-f', '-T0', '-3', tar, '-o', join(work, 'rootfs.tar.zst')])
    return { ...r, outBytes: statSync(join(work, 'rootfs.tar.zst')).size }
  },
  'mksquashfs -comp zstd -Xcompression-level 3': () => {
    const r = timed('mksquashfs', [
      join(work, 'rootfs'),
      join(work, 'rootfs.sqfs'),
      '-comp',
      'zstd',
      '-Xcompression-level',
      '3',
      '-noappend',
      '-quiet',
      '-no-progress'
    ])
    return { ...r, outBytes: statSync(join(work, 'rootfs.sqfs')).size }
  }
}

const results = {}
for (let i = 0; i < runs; i++) {
  for (const [name, fn] of Object.entries(tools)) (results[name] ??= []).push(fn()) // interleaved, so drift hits every tool alike
}
const stat = JSON.parse(
  sh(process.execPath, [join(root, 'packages/converter/bin/run.js'), 'stat', '--bootstrap', join(work, 'image.boot'), '--json'])
)
const rows = Object.entries(results).map(([name, rs]) => {
  const seconds = median(rs.map(r => r.seconds))
  return { tool: name, seconds, mbps: tarBytes / 1e6 / seconds, rssMB: Math.max(...rs.map(r => r.rssMB)), outMB: rs[0].outBytes / 1e6 }
})
const zstdRate = rows.find(r => r.tool.startsWith('zstd')).mbps
const summary = {
  date: new Date().toISOString(),
  input: { tar, bytes: tarBytes, files: stat.images[0].files },
  runs,
  rows: rows.map(r => ({ ...r, vsZstd: r.mbps / zstdRate })),
  nydus: { dedupRatio: stat.total.dedupRatio, compressionRatio: stat.total.compressionRatio }
}
writeFileSync(join(root, '.bench', 'convert.json'), JSON.stringify(summary, null, 2))
console.log(`input: ${(tarBytes / 1e6).toFixed(0)} MB tar, ${stat.images[0].files} files; median of ${runs} runs`)
console.log('| tool | wall s | MB/s of input | x zstd | peak RSS MB | output MB |')
console.log('|---|---|---|---|---|---|')
for (const r of summary.rows)
  console.log(
    `| ${r.tool} | ${r.seconds.toFixed(2)} | ${r.mbps.toFixed(0)} | ${r.vsZstd.toFixed(2)} | ${r.rssMB.toFixed(0)} | ${r.outMB.toFixed(1)} |`
  )
console.log(`nydus-image: dedup ratio ${summary.nydus.dedupRatio}, compression ratio ${summary.nydus.compressionRatio}`)
