import { exitCodeOf } from '@nydusjs/errors'
import test from 'ava'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { isMounted, mountImage, mustRun, nydusImage, nydusdBin, run, startBlobServer, tempDir } from '@nydusjs/testkit'
import { buildImage, httpConfig, localConfig, type Image } from './helpers.js'

const MiB = 1024 * 1024

/** 48 files of 1 MiB (random, so they do not compress) and a few small ones, as a tar. */
async function bigLayer(t: Parameters<typeof tempDir>[0]): Promise<string> {
  const dir = await tempDir(t)
  const root = join(dir, 'root')
  await mkdir(join(root, 'data'), { recursive: true })
  for (let i = 0; i < 48; i++) await writeFile(join(root, 'data', `f${String(i).padStart(2, '0')}.bin`), randomBytes(MiB))
  await writeFile(join(root, 'small.txt'), 'a small file\n')
  await writeFile(join(root, 'other.txt'), 'another small file\n'.repeat(100))
  const tar = join(dir, 'big.tar')
  await mustRun('tar', ['-cf', tar, '-C', root, '.'])
  return tar
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

async function readAll(mnt: string): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (const f of await readdir(join(mnt, 'data'))) out.set(`data/${f}`, sha(await readFile(join(mnt, 'data', f))))
  for (const f of ['small.txt', 'other.txt']) out.set(f, sha(await readFile(join(mnt, f))))
  return out
}

test.serial('lazy: reading one small file fetches only the chunks that cover it (plus merging)', async t => {
  const img = await buildImage(t, await bigLayer(t), ['--compressor', 'none'])
  const srv = await startBlobServer(t, img.blobs)
  const merging = 128 * 1024
  const m = await mountImage(t, {
    dir: img.dir,
    bootstrap: img.boot,
    mnt: img.mnt,
    config: httpConfig(img, srv.url, { fs_prefetch: { merging_size: merging }, amplify_io: 0 })
  })
  t.is(srv.bytesSent(), 0, 'mounting reads nothing from the blob')
  t.is(await readFile(join(m.mnt, 'small.txt'), 'utf8'), 'a small file\n')
  const [blob] = await readdir(img.blobs)
  const blobSize = (await stat(join(img.blobs, blob))).size
  t.true(srv.bytesSent() > 0)
  t.true(srv.bytesSent() <= merging, `fetched ${srv.bytesSent()} of a ${blobSize}-byte blob`)
  srv.reset()
  const one = await readFile(join(m.mnt, 'data', 'f07.bin'))
  t.is(one.length, MiB)
  t.true(srv.bytesSent() >= MiB && srv.bytesSent() <= MiB + merging, `one 1 MiB file cost ${srv.bytesSent()} bytes`)
  const metrics = (await m.api('/api/v1/metrics', true)) as string
  t.regex(metrics, /nydusd_backend_requests_total\{backend="http",result="ok",mountpoint="[^"]+"\} \d+/)
})

test.serial('amplify_io: small files read in name order, stored in another, cost few requests; with amplify_io 0 one each', async t => {
  const dir = await tempDir(t)
  await mkdir(join(dir, 'root', 'd'), { recursive: true })
  for (let i = 0; i < 300; i++)
    await writeFile(join(dir, 'root', 'd', `f${String(i).padStart(3, '0')}`), randomBytes(3072).toString('base64'))
  await mustRun('tar', ['-cf', join(dir, 'l.tar'), '-C', join(dir, 'root'), '.'])
  const img = await buildImage(t, join(dir, 'l.tar'))
  const srv = await startBlobServer(t, img.blobs)
  const requests = new Map<number, number>()
  for (const amplify of [0, 1024 * 1024]) {
    await rm(img.cache, { recursive: true, force: true })
    const m = await mountImage(t, {
      dir: img.dir,
      bootstrap: img.boot,
      mnt: img.mnt,
      config: httpConfig(img, srv.url, { amplify_io: amplify })
    })
    for (const f of (await readdir(join(m.mnt, 'd'))).sort()) t.is((await readFile(join(m.mnt, 'd', f))).length, 4096)
    const metrics = (await m.api('/api/v1/metrics', true)) as string
    requests.set(amplify, Number(/nydusd_backend_requests_total\{backend="http",result="ok",mountpoint="[^"]+"\} (\d+)/.exec(metrics)?.[1]))
    await m.stop()
  }
  t.log(JSON.stringify([...requests]))
  t.true(requests.get(0)! >= 250, `${requests.get(0)} requests without amplify_io`)
  // The whole directory lies in one amplify_io window, fetched behind the miss as well as ahead of it.
  t.true(requests.get(1024 * 1024)! <= 30, `${requests.get(1024 * 1024)} requests with amplify_io 1 MiB`)
})

test.serial('corruption: a flipped blob byte gives EIO for that file only, never wrong bytes; the metric counts it', async t => {
  const img = await buildImage(t, await bigLayer(t), ['--compressor', 'none'])
  const info = JSON.parse((await nydusImage(['inspect', '--bootstrap', img.boot, '--json', '/data/f03.bin'])).stdout) as {
    chunks: Array<{ compressed_offset: number }>
  }
  const [blob] = await readdir(img.blobs)
  const buf = await readFile(join(img.blobs, blob))
  buf[info.chunks[0].compressed_offset + 1000] ^= 0x40
  await writeFile(join(img.blobs, blob), buf)
  const m = await mountImage(t, {
    dir: img.dir,
    bootstrap: img.boot,
    mnt: img.mnt,
    config: localConfig(img, { fs_prefetch: { merging_size: 0 } })
  })
  await t.throwsAsync(readFile(join(m.mnt, 'data', 'f03.bin')), { code: 'EIO' })
  const cat = await run('cat', [join(m.mnt, 'data', 'f03.bin')])
  t.not(cat.code, 0)
  t.regex(cat.stderr, /Input\/output error/)
  t.is((await readFile(join(m.mnt, 'data', 'f04.bin'))).length, MiB)
  t.is(await readFile(join(m.mnt, 'small.txt'), 'utf8'), 'a small file\n')
  const metrics = (await m.api('/api/v1/metrics', true)) as string
  t.regex(metrics, /nydusd_chunk_verify_failures_total\{backend="localfs",mountpoint="[^"]+"\} [1-9]/)
  t.regex(m.logs(), new RegExp(`"blob":"${blob}".*"backend":"localfs".*chunk failed verification`))
  const f04 = JSON.parse((await nydusImage(['inspect', '--bootstrap', img.boot, '--json', '/data/f04.bin'])).stdout) as {
    chunks: Array<{ compressed_offset: number; uncompressed_size: number }>
  }
  const good = `${f04.chunks[0].compressed_offset}.${f04.chunks[0].uncompressed_size}`
  let cached: string[] = []
  // Cache writes happen after the read is answered.
  for (let i = 0; i < 100 && !cached.includes(good); i++) {
    await sleep(50)
    cached = await readdir(join(img.cache, blob)).catch((): string[] => [])
  }
  t.true(cached.includes(good), 'a good chunk read beside it is cached')
  t.false(
    cached.some(f => f.startsWith(`${info.chunks[0].compressed_offset}.`)),
    'a bad chunk is never cached'
  )
})

test.serial('restart: a second mount with the same cache reads everything with zero backend bytes', async t => {
  const img = await buildImage(t, await bigLayer(t))
  const srv = await startBlobServer(t, img.blobs)
  const first = await mountImage(t, { dir: img.dir, bootstrap: img.boot, mnt: img.mnt, config: httpConfig(img, srv.url) })
  const want = await readAll(first.mnt)
  t.true(srv.bytesSent() > 0)
  t.is(await first.stop(), 0)
  t.false(await isMounted(img.mnt), 'SIGTERM unmounts')
  srv.reset()
  const second = await mountImage(t, { dir: img.dir, bootstrap: img.boot, mnt: img.mnt, config: httpConfig(img, srv.url) })
  t.deepEqual(await readAll(second.mnt), want)
  t.is(srv.bytesSent(), 0)
  t.is(srv.requests(), 0)
})

test.serial('prefetch: the whole image lands in the cache without reads, within the bandwidth limit', async t => {
  const img = await buildImage(t, await bigLayer(t), ['--compressor', 'none'])
  const srv = await startBlobServer(t, img.blobs)
  const rate = 24 * MiB
  const t0 = Date.now()
  const m = await mountImage(t, {
    dir: img.dir,
    bootstrap: img.boot,
    mnt: img.mnt,
    args: ['--prefetch'],
    config: httpConfig(img, srv.url, { fs_prefetch: { enable: false, threads_count: 4, bandwidth_rate: rate } })
  })
  let status: { state: string; totalChunks: number; doneChunks: number } = await m.api('/api/v1/daemon/prefetch')
  for (let i = 0; i < 200 && status.state !== 'done'; i++) {
    await sleep(100)
    status = await m.api('/api/v1/daemon/prefetch')
  }
  const elapsed = (Date.now() - t0) / 1000
  t.is(status.state, 'done')
  t.is(status.doneChunks, status.totalChunks)
  const [blob] = await readdir(img.blobs)
  const cached = await readdir(join(img.cache, blob))
  t.is(cached.length, status.totalChunks)
  const sent = srv.bytesSent()
  t.true(sent >= 48 * MiB)
  t.true(sent / elapsed <= rate * 1.15, `${(sent / elapsed / MiB).toFixed(1)} MiB/s over a ${rate / MiB} MiB/s limit`)
  srv.reset()
  t.is((await readAll(m.mnt)).size, 50)
  t.is(srv.bytesSent(), 0, 'reads after prefetch are served from the cache')
})

test.serial('the prefetch table from --prefetch-files is fetched at mount', async t => {
  const dir = await tempDir(t)
  const list = join(dir, 'prefetch.txt')
  await writeFile(list, '/data/f10.bin\n/small.txt\n')
  const img: Image = await buildImage(t, await bigLayer(t), ['--prefetch-files', list])
  const srv = await startBlobServer(t, img.blobs)
  const m = await mountImage(t, {
    dir: img.dir,
    bootstrap: img.boot,
    mnt: img.mnt,
    config: httpConfig(img, srv.url, { fs_prefetch: { merging_size: 0 } })
  })
  let status: { state: string; totalChunks: number } = await m.api('/api/v1/daemon/prefetch')
  for (let i = 0; i < 100 && status.state !== 'done'; i++) {
    await sleep(50)
    status = await m.api('/api/v1/daemon/prefetch')
  }
  t.is(status.state, 'done')
  t.is(status.totalChunks, 2)
  srv.reset()
  await readFile(join(m.mnt, 'data', 'f10.bin'))
  t.is(srv.bytesSent(), 0)
})

test.serial('a missing blob gives EIO on read and a log line naming it', async t => {
  const img = await buildImage(t, await bigLayer(t))
  const [blob] = await readdir(img.blobs)
  const m = await mountImage(t, {
    dir: img.dir,
    bootstrap: img.boot,
    mnt: img.mnt,
    config: localConfig(img, { device: { backend: { type: 'localfs', config: { dir: join(img.dir, 'empty') } } } })
  })
  await t.throwsAsync(readFile(join(m.mnt, 'small.txt')), { code: 'EIO' })
  t.regex(m.logs(), new RegExp(`blob ${blob} not found`))
  t.deepEqual((await readdir(m.mnt)).sort(), ['data', 'other.txt', 'small.txt'], 'metadata still works')
})

test('with check_blobs, a blob missing from the backend or of the wrong size fails the start naming it; nothing is mounted', async t => {
  const img = await buildImage(t, await bigLayer(t))
  const [blob] = await readdir(img.blobs)
  const short = join(img.dir, 'short')
  await mkdir(short)
  await writeFile(join(short, blob), (await readFile(join(img.blobs, blob))).subarray(0, 100))
  for (const [dir, code, pattern] of [
    [join(img.dir, 'empty'), 'ERR_BLOB_NOT_FOUND', `blob sha256:${blob}: .*not found`],
    [short, 'ERR_BLOB_CORRUPT', `blob sha256:${blob} is 100 bytes in the backend; the bootstrap records \\d+`]
  ] as const) {
    const cfg = join(img.dir, 'check.json')
    await writeFile(cfg, JSON.stringify(localConfig(img, { check_blobs: true, device: { backend: { type: 'localfs', config: { dir } } } })))
    const r = await run(process.execPath, [nydusdBin, '--config', cfg, '--bootstrap', img.boot, '--mountpoint', img.mnt])
    t.is(r.code, exitCodeOf(code), r.stderr)
    t.regex(r.stderr, new RegExp(`^nydusd: error: ${pattern} \\[${code}\\]\n$`))
    t.false(await isMounted(img.mnt))
  }
})

test('a corrupt or truncated bootstrap is refused at start; nothing is mounted', async t => {
  const img = await buildImage(t, await bigLayer(t))
  const cfg = join(img.dir, 'c.json')
  await writeFile(cfg, JSON.stringify(localConfig(img)))
  const buf = await readFile(img.boot)
  const bad = join(img.dir, 'bad.boot')
  for (const [what, bytes, pattern] of [
    ['flipped', Buffer.concat([buf.subarray(0, 500), Buffer.from([buf[500] ^ 1]), buf.subarray(501)]), /checksum mismatch/],
    ['truncated', buf.subarray(0, 300), /is 300 bytes, its superblock says/]
  ] as const) {
    await writeFile(bad, bytes)
    const r = await run(process.execPath, [nydusdBin, '--config', cfg, '--bootstrap', bad, '--mountpoint', img.mnt])
    t.is(r.code, exitCodeOf('ERR_RAFS_CHECKSUM'), what)
    t.regex(r.stderr, pattern)
    t.regex(r.stderr, /^nydusd: error: bootstrap .*bad\.boot: .* \[ERR_RAFS_\w+\]\n$/)
    t.false(await isMounted(img.mnt))
  }
})

test('config errors name every wrong field', async t => {
  const dir = await tempDir(t)
  const cfg = join(dir, 'c.json')
  await writeFile(
    cfg,
    JSON.stringify({
      device: { backend: { type: 'localfs', config: { dirr: '/x' } }, cache: { type: 'blobcache', config: { work_dir: 5 } } },
      digest_validate: 'yes',
      fs_prefetch: { threads_count: 0 }
    })
  )
  await mkdir(join(dir, 'mnt'))
  const r = await run(process.execPath, [nydusdBin, '--config', cfg, '--bootstrap', '/nonexistent', '--mountpoint', join(dir, 'mnt')])
  t.is(r.code, exitCodeOf('ERR_CONFIG'))
  t.is(r.stderr.trim().split('\n').length, 1)
  for (const field of [
    'device.backend.config.dir',
    'device.backend.config',
    'device.cache.config.work_dir',
    'digest_validate',
    'fs_prefetch.threads_count'
  ])
    t.true(r.stderr.includes(field), `${field} in ${r.stderr}`)
  const bad = await run(process.execPath, [nydusdBin, '--config', join(dir, 'nope.json'), '--bootstrap', 'x', '--mountpoint', 'y'])
  t.regex(bad.stderr, /^nydusd: error: config .*nope\.json: no such file/)
  const flag = await run(process.execPath, [nydusdBin, '--bogus'])
  t.regex(flag.stderr, /^nydusd: error: Unknown option '--bogus'/)
})
