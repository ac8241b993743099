import test, { type ExecutionContext } from 'ava'
import { mkdir, readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { compressedFixture, diffTrees, gnuExtract, layerFixture, nydusImage, snapshotTree, tempDir, busyboxFixture } from '@nydusjs/testkit'

/** create -> check --blob-dir -> unpack, then GNU tar's extraction of both must match. */
async function roundTrip(t: ExecutionContext, source: string, extra: string[] = [], ignoreMtime: string[] = []): Promise<void> {
  const dir = await tempDir(t)
  const boot = join(dir, 'layer.boot')
  const blobs = join(dir, 'blobs')
  const created = await nydusImage(['create', source, '--bootstrap', boot, '--blob-dir', blobs, ...extra])
  t.is(created.code, 0, created.stderr)
  t.regex(created.stdout, /root digest [0-9a-f]{64}/)
  const checked = await nydusImage(['check', '--bootstrap', boot, '--blob-dir', blobs])
  t.is(checked.code, 0, checked.stderr)
  const out = join(dir, 'back.tar')
  const unpacked = await nydusImage(['unpack', '--bootstrap', boot, '--blob-dir', blobs, '--output', out])
  t.is(unpacked.code, 0, unpacked.stderr)
  const a = join(dir, 'expected')
  const b = join(dir, 'actual')
  await mkdir(a)
  await mkdir(b)
  await gnuExtract(source, a)
  await gnuExtract(out, b)
  const diffs = diffTrees(await snapshotTree(a), await snapshotTree(b), { ignoreMtime: new Set(ignoreMtime) })
  t.deepEqual(diffs, [])
  t.true((await snapshotTree(b)).size > 1)
}

for (const name of ['gnu.tar', 'pax.tar', 'ml-1.tar', 'ml-2.tar', 'ml-3.tar']) {
  test(`round trip: ${name}`, async t => {
    await roundTrip(t, layerFixture(name))
  })
}

test('round trip: crafted entries (implied dirs, repeats, ./ and / prefixes, huge uid)', async t => {
  await roundTrip(t, layerFixture('crafted.tar'), [], ['implied', 'implied/parents', 'abs', 'abs/path'])
})

test('round trip: gzip layer', async t => {
  await roundTrip(t, await compressedFixture('pax.tar', 'gz'))
})
test('round trip: zstd layer', async t => {
  await roundTrip(t, await compressedFixture('pax.tar', 'zst'))
})
test('round trip: small chunks, no compression, blake3', async t => {
  await roundTrip(t, layerFixture('pax.tar'), ['--chunk-size', '0x1000', '--compressor', 'none', '--digester', 'blake3'])
})
test('round trip: 64 KiB chunks', async t => {
  await roundTrip(t, layerFixture('gnu.tar'), ['--chunk-size', '0x10000'])
})
test("round trip: busybox-static image from Debian's package", async t => {
  const { tar } = await busyboxFixture()
  await roundTrip(t, tar)
})

test('a directory source converts (without xattrs: Node has no xattr API)', async t => {
  const dir = await tempDir(t)
  const src = join(dir, 'src')
  await mkdir(src)
  await gnuExtract(layerFixture('gnu.tar'), src)
  const boot = join(dir, 'd.boot')
  const r = await nydusImage(['create', src, '--bootstrap', boot, '--blob-dir', join(dir, 'blobs')])
  t.is(r.code, 0, r.stderr)
  const out = join(dir, 'back.tar')
  t.is((await nydusImage(['unpack', '--bootstrap', boot, '--blob-dir', join(dir, 'blobs'), '--output', out])).code, 0)
  const b = join(dir, 'b')
  await mkdir(b)
  await gnuExtract(out, b)
  t.deepEqual(diffTrees(await snapshotTree(src), await snapshotTree(b)), [])
})

test('identical chunks are stored once per blob', async t => {
  const dir = await tempDir(t)
  const blobs = join(dir, 'blobs')
  const r = await nydusImage([
    'create',
    layerFixture('gnu.tar'),
    '--bootstrap',
    join(dir, 'l.boot'),
    '--blob-dir',
    blobs,
    '--chunk-size',
    '0x10000',
    '--output-json',
    '-'
  ])
  t.is(r.code, 0, r.stderr)
  const out = JSON.parse(r.stdout) as { stats: { chunks: number; uniqueChunks: number; dedupHits: number } }
  // big.bin and big-copy.bin are equal (4 chunks each at 64 KiB); the hard link adds no chunks.
  t.true(out.stats.dedupHits >= 4)
  t.is(out.stats.uniqueChunks, out.stats.chunks - out.stats.dedupHits)
  t.is((await readdir(blobs)).length, 1)
})

test('output is byte-identical across runs and worker counts', async t => {
  const dir = await tempDir(t)
  const outs = []
  for (const workers of ['1', '2', '3']) {
    const boot = join(dir, `w${workers}.boot`)
    const r = await nydusImage([
      'create',
      layerFixture('pax.tar'),
      '--bootstrap',
      boot,
      '--blob-dir',
      join(dir, `b${workers}`),
      '--chunk-size',
      '0x1000',
      '--workers',
      workers,
      '--output-json',
      '-'
    ])
    t.is(r.code, 0, r.stderr)
    outs.push({ boot: await readFile(boot), blob: (JSON.parse(r.stdout) as { blob: string }).blob })
  }
  t.true(outs[0].boot.equals(outs[1].boot) && outs[1].boot.equals(outs[2].boot))
  t.is(new Set(outs.map(o => o.blob)).size, 1)
})
