#!/usr/bin/env node
// npm run bench:convert-registry: the Debian/python3 image converted from one
// local docker-registry to another by `nydus-image convert`, against
// `skopeo copy` of the same image between the same two registries (the floor
// for moving the bytes), 3 interleaved runs, medians. Each run pushes to a
// fresh registry, so neither tool can skip the transfer with a mount. Also
// timed: a conversion that fills a --build-cache, and one to a new
// repository that finds every layer there (the CI case of an unchanged base).
// Writes .bench/convert-registry.json.
import { execFileSync } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createHash } from 'node:crypto'
import { createGunzip } from 'node:zlib'
import { Readable } from 'node:stream'
import { Compressor } from 'zstd-napi'
import { startRegistry } from '../packages/testkit/dist/src/index.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const work = join(root, '.bench', 'convert-registry')
const sh = (cmd, args, opts = {}) =>
  String(execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26, ...opts }) ?? '')
const cleanups = []
const t = { teardown: fn => cleanups.push(fn) }
const secs = fn => {
  const s = process.hrtime.bigint()
  const r = fn()
  return [Number(process.hrtime.bigint() - s) / 1e9, r]
}
const median = xs => [...xs].sort((a, b) => a - b)[xs.length >> 1]

/**
 * The work any converter to this format must do on these bytes, timed one
 * step at a time on one core: gunzip the layer, sha256 and zstd-3 every
 * 1 MiB chunk, sha256 the source and the new blob. Half of it is the wall
 * time on 2 perfectly busy cores: a floor no pipeline can beat.
 */
async function workFloor(gz) {
  const t = fn => {
    const s = process.hrtime.bigint()
    const r = fn()
    return [Number(process.hrtime.bigint() - s) / 1e9, r]
  }
  // Streamed with 1 MiB output pieces, as the converter does (faster than gunzipSync).
  const s0 = process.hrtime.bigint()
  const parts = []
  for await (const b of Readable.from([gz]).pipe(createGunzip({ chunkSize: 1 << 20 }))) parts.push(b)
  const gunzip = Number(process.hrtime.bigint() - s0) / 1e9
  const tar = Buffer.concat(parts)
  const z = new Compressor()
  z.setParameters({ compressionLevel: 3 })
  let blob = 0
  const [zstd] = t(() => {
    for (let o = 0; o < tar.length; o += 1 << 20) blob += z.compress(tar.subarray(o, o + (1 << 20))).length
  })
  const [sha] = t(() => {
    for (let o = 0; o < tar.length; o += 1 << 20)
      createHash('sha256')
        .update(tar.subarray(o, o + (1 << 20)))
        .digest()
    createHash('sha256').update(gz).digest()
    createHash('sha256')
      .update(gz.subarray(0, Math.min(blob, gz.length)))
      .digest()
  })
  return { gunzip_s: gunzip, zstd3_s: zstd, sha256_s: sha, cpu_s: gunzip + zstd + sha, two_core_floor_s: (gunzip + zstd + sha) / 2 }
}

try {
  rmSync(work, { recursive: true, force: true })
  mkdirSync(work, { recursive: true })
  sh('bash', [join(root, 'fixtures/scripts/build-debian.sh')], { stdio: 'inherit' })
  const tar = join(root, 'fixtures/.cache/debian-python3/rootfs.tar')
  sh('bash', [join(root, 'fixtures/scripts/make-oci-layout.sh'), join(work, 'oci'), 'latest', tar])
  const src = await startRegistry(t)
  sh('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${join(work, 'oci')}:latest`, `docker://${src.host}/bench/debian:1`])
  const manifest = JSON.parse(sh('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${src.host}/bench/debian:1`]))
  const layerBytes = manifest.layers.reduce((n, l) => n + l.size, 0)
  // The image has one layer (make-oci-layout.sh with one tar).
  const floor = await workFloor(
    Buffer.from(await (await fetch(`${src.url}/v2/bench/debian/blobs/${manifest.layers[0].digest}`)).arrayBuffer())
  )
  const runs = { convert: [], skopeo: [], cache_fill: [], cache_hit: [] }
  let report
  for (let run = 0; run < 3; run++) {
    // A fresh target registry per run and tool: skopeo remembers where blobs went and would mount instead of copying.
    const dst = await startRegistry(t)
    const dst2 = await startRegistry(t)
    const [tc, out] = secs(() =>
      sh(process.execPath, [
        join(root, 'packages/converter/bin/run.js'),
        'convert',
        '--source',
        `${src.host}/bench/debian:1`,
        '--target',
        `${dst.host}/bench/nydus-${run}:1`,
        '--source-insecure',
        '--target-insecure',
        '--output-json',
        '-'
      ])
    )
    report = JSON.parse(out)
    runs.convert.push(tc)
    const [ts] = secs(() =>
      sh('skopeo', [
        'copy',
        '--quiet',
        '--src-tls-verify=false',
        '--dest-tls-verify=false',
        `docker://${src.host}/bench/debian:1`,
        `docker://${dst2.host}/bench/copy-${run}:1`
      ])
    )
    runs.skopeo.push(ts)
    const dst3 = await startRegistry(t)
    const conv = target =>
      secs(() =>
        sh(process.execPath, [
          join(root, 'packages/converter/bin/run.js'),
          'convert',
          '--source',
          `${src.host}/bench/debian:1`,
          '--target',
          `${dst3.host}/${target}`,
          '--source-insecure',
          '--target-insecure',
          '--build-cache',
          `${dst3.host}/bench/cache:1`,
          '--output-json',
          '-'
        ])
      )
    const [tf] = conv(`bench/fill-${run}:1`)
    const [th, hit] = conv(`bench/hit-${run}:1`)
    if (JSON.parse(hit).build_cache.hits !== manifest.layers.length) throw new Error('the second conversion missed the build cache')
    runs.cache_fill.push(tf)
    runs.cache_hit.push(th)
  }
  const c = median(runs.convert)
  const s = median(runs.skopeo)
  const result = {
    source_layer_bytes: layerBytes,
    pushed_bytes: report.pushed_bytes,
    convert_s: c,
    skopeo_copy_s: s,
    convert_mb_s: layerBytes / 1e6 / c,
    skopeo_mb_s: layerBytes / 1e6 / s,
    ratio_convert_over_skopeo: c / s,
    build_cache_fill_s: median(runs.cache_fill),
    build_cache_hit_s: median(runs.cache_hit),
    work_floor: floor,
    runs
  }
  writeFileSync(join(root, '.bench', 'convert-registry.json'), JSON.stringify(result, null, 2))
  console.log(
    `source image: ${(layerBytes / 1e6).toFixed(1)} MB compressed; converted image pushed ${(report.pushed_bytes / 1e6).toFixed(1)} MB`
  )
  console.log(
    `nydus-image convert  ${c.toFixed(2)} s  ${(layerBytes / 1e6 / c).toFixed(0)} MB/s  (runs ${runs.convert.map(x => x.toFixed(2)).join(', ')})`
  )
  console.log(
    `skopeo copy          ${s.toFixed(2)} s  ${(layerBytes / 1e6 / s).toFixed(0)} MB/s  (runs ${runs.skopeo.map(x => x.toFixed(2)).join(', ')})`
  )
  console.log(`convert / skopeo copy = ${(c / s).toFixed(2)}x (target: within 2x)`)
  console.log(
    `with --build-cache: filling it ${median(runs.cache_fill).toFixed(2)} s (runs ${runs.cache_fill.map(x => x.toFixed(2)).join(', ')}); every layer found there, new repository ${median(runs.cache_hit).toFixed(2)} s (runs ${runs.cache_hit.map(x => x.toFixed(2)).join(', ')}) = ${(median(runs.cache_hit) / s).toFixed(2)}x skopeo copy`
  )
  console.log(
    `the conversion's own work, one core: gunzip ${floor.gunzip_s.toFixed(2)} s + zstd-3 ${floor.zstd3_s.toFixed(2)} s + sha256 ${floor.sha256_s.toFixed(2)} s = ${floor.cpu_s.toFixed(2)} CPU-s;` +
      ` on 2 cores at best ${floor.two_core_floor_s.toFixed(2)} s = ${(floor.two_core_floor_s / s).toFixed(2)}x skopeo copy, before start-up, tar parsing and the push`
  )
} finally {
  for (const fn of cleanups.reverse()) await fn()
}
