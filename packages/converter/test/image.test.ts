import test, { type ExecutionContext } from 'ava'
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import {
  busyboxFixture,
  fixture,
  gnuExtract,
  layerFixture,
  mustRun,
  nydusImage,
  nydusImageBin,
  run,
  snapshotTree,
  tempDir
} from '@nydusjs/testkit'

const sha = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex')

async function ok(t: ExecutionContext, args: string[]): Promise<string> {
  const r = await nydusImage(args)
  t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** Unpacks an image with the CLI and extracts it with GNU tar; returns the extraction's path. */
async function extractImage(t: ExecutionContext, dir: string, boot: string, blobs: string): Promise<string> {
  const tar = join(dir, 'image.tar')
  await ok(t, ['unpack', '--bootstrap', boot, '--blob-dir', blobs, '--output', tar])
  const root = join(dir, 'rootfs')
  await mkdir(root)
  await gnuExtract(tar, root)
  return root
}

/** Every path of an extracted tree as 'dir' or the sha256 of its content, like ml-expected.json. */
async function describe(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const [path, info] of await snapshotTree(root)) {
    if (path === '') continue
    out[path] = info.type === 'dir' ? 'dir' : `sha256:${info.sha256 ?? ''}`
  }
  return out
}

const expectedMerge = async (): Promise<Record<string, string>> =>
  JSON.parse(await readFile(layerFixture('ml-expected.json'), 'utf8')) as Record<string, string>

test('merge applies whiteouts and opaque dirs as overlayfs would', async t => {
  const dir = await tempDir(t)
  const blobs = join(dir, 'blobs')
  const boots = []
  for (const n of [1, 2, 3]) {
    const boot = join(dir, `l${n}.boot`)
    await ok(t, ['create', layerFixture(`ml-${n}.tar`), '--bootstrap', boot, '--blob-dir', blobs])
    boots.push(boot)
  }
  const merged = join(dir, 'image.boot')
  await ok(t, ['merge', '--bootstrap', merged, ...boots])
  await ok(t, ['check', '--bootstrap', merged, '--blob-dir', blobs])
  const root = await extractImage(t, dir, merged, blobs)
  t.deepEqual(await describe(root), await expectedMerge())
  const snap = await snapshotTree(root)
  t.is(snap.get('etc')?.mode, 0o750, "the upper directory's metadata wins")
  t.is(snap.get('etc/keep.conf')?.mode, 0o600)
})

test('--parent-bootstrap builds the merged image directly', async t => {
  const dir = await tempDir(t)
  const blobs = join(dir, 'blobs')
  await ok(t, ['create', layerFixture('ml-1.tar'), '--bootstrap', join(dir, 'p1.boot'), '--blob-dir', blobs])
  await ok(t, [
    'create',
    layerFixture('ml-2.tar'),
    '--bootstrap',
    join(dir, 'p2.boot'),
    '--blob-dir',
    blobs,
    '--parent-bootstrap',
    join(dir, 'p1.boot')
  ])
  await ok(t, [
    'create',
    layerFixture('ml-3.tar'),
    '--bootstrap',
    join(dir, 'p3.boot'),
    '--blob-dir',
    blobs,
    '--parent-bootstrap',
    join(dir, 'p2.boot')
  ])
  const root = await extractImage(t, dir, join(dir, 'p3.boot'), blobs)
  t.deepEqual(await describe(root), await expectedMerge())
})

test('--chunk-dict references chunks of an earlier blob; stat reports the dedup', async t => {
  const dir = await tempDir(t)
  const blobs = join(dir, 'blobs')
  await ok(t, ['create', layerFixture('ml-1.tar'), '--bootstrap', join(dir, 'a.boot'), '--blob-dir', blobs])
  const without = JSON.parse(
    await ok(t, [
      'create',
      layerFixture('ml-2.tar'),
      '--bootstrap',
      join(dir, 'b0.boot'),
      '--blob-dir',
      join(dir, 'other'),
      '--output-json',
      '-'
    ])
  ) as { stats: { blobSize: number; dictHits: number } }
  const withDict = JSON.parse(
    await ok(t, [
      'create',
      layerFixture('ml-2.tar'),
      '--bootstrap',
      join(dir, 'b.boot'),
      '--blob-dir',
      blobs,
      '--chunk-dict',
      join(dir, 'a.boot'),
      '--output-json',
      '-'
    ])
  ) as { blobs: string[]; stats: { blobSize: number; dictHits: number } }
  t.is(without.stats.dictHits, 0)
  t.is(withDict.stats.dictHits, 1, 'shared-copy.bin equals shared.bin of the dictionary')
  t.true(withDict.stats.blobSize < without.stats.blobSize)
  t.is(withDict.blobs.length, 2, "the layer references its own blob and the dictionary's")
  await ok(t, ['check', '--bootstrap', join(dir, 'b.boot'), '--blob-dir', blobs])
  const stat = JSON.parse(await ok(t, ['stat', '--bootstrap', join(dir, 'a.boot'), '--bootstrap', join(dir, 'b.boot'), '--json'])) as {
    total: { dedupRatio: number; uniqueChunks: number }
  }
  t.true(stat.total.dedupRatio > 1)
  const text = await ok(t, ['stat', '--bootstrap', join(dir, 'a.boot'), '--bootstrap', join(dir, 'b.boot')])
  t.regex(text, /dedup ratio [\d.]+, compression ratio [\d.]+/)
})

test('convert --oci-dir: a multi-layer image with whiteouts', async t => {
  const dir = await tempDir(t)
  const out = join(dir, 'out')
  const summary = JSON.parse(
    await ok(t, ['convert', '--oci-dir', `${fixture('oci', 'multilayer')}:latest`, '--output', out, '--output-json', '-'])
  ) as { bootstrap: string; layers: unknown[] }
  t.is(summary.layers.length, 3)
  await ok(t, ['check', '--bootstrap', join(out, 'image.boot'), '--blob-dir', join(out, 'blobs')])
  const root = await extractImage(t, dir, join(out, 'image.boot'), join(out, 'blobs'))
  t.deepEqual(await describe(root), await expectedMerge())
})

test('convert --oci-dir: busybox-static runs from the converted image', async t => {
  const { oci, tar } = await busyboxFixture()
  const dir = await tempDir(t)
  const out = join(dir, 'out')
  await ok(t, ['convert', '--oci-dir', oci, '--output', out])
  const root = await extractImage(t, dir, join(out, 'image.boot'), join(out, 'blobs'))
  const echo = await mustRun('chroot', [root, '/bin/sh', '-c', 'echo hello from busybox | /usr/bin/tr a-z A-Z'])
  t.is(echo.trim(), 'HELLO FROM BUSYBOX')
  const ref = join(dir, 'ref')
  await mkdir(ref)
  await gnuExtract(tar, ref)
  t.deepEqual(await describe(root), await describe(ref))
})

test('convert refuses a layer whose digest does not match', async t => {
  const dir = await tempDir(t)
  const oci = join(dir, 'oci')
  await mustRun('cp', ['-r', fixture('oci', 'multilayer'), oci])
  const index = JSON.parse(await readFile(join(oci, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
  const manifest = JSON.parse(await readFile(join(oci, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8')) as {
    layers: Array<{ digest: string }>
  }
  const layer = join(oci, 'blobs/sha256', manifest.layers[1].digest.slice(7))
  const buf = await readFile(layer)
  buf[buf.length >> 1] ^= 1
  await writeFile(layer, buf)
  const r = await nydusImage(['convert', '--oci-dir', oci, '--output', join(dir, 'out')])
  t.not(r.code, 0)
  t.regex(r.stderr, new RegExp(`layer ${manifest.layers[1].digest} has digest sha256:[0-9a-f]{64}`))
  t.deepEqual(await readdir(join(dir, 'out', 'blobs')), [], 'blobs of the layers before it are not left behind')
  t.is(sha(buf) === manifest.layers[1].digest, false)
})

test('convert names the images when the reference is unknown', async t => {
  const r = await nydusImage(['convert', '--oci-dir', `${fixture('oci', 'multilayer')}:nope`, '--output', '/tmp/never-written'])
  t.not(r.code, 0)
  t.regex(r.stderr, /no image named "nope" \(have: latest\)/)
})

test('check detects a flipped byte in a blob and in a bootstrap', async t => {
  const dir = await tempDir(t)
  const blobs = join(dir, 'blobs')
  const boot = join(dir, 'l.boot')
  await ok(t, ['create', layerFixture('pax.tar'), '--bootstrap', boot, '--blob-dir', blobs])
  const [blobId] = await readdir(blobs)
  const blob = join(blobs, blobId)
  const good = await readFile(blob)
  const bad = Buffer.from(good)
  bad[100] ^= 0x01
  await writeFile(blob, bad)
  const r = await nydusImage(['check', '--bootstrap', boot, '--blob-dir', blobs])
  t.not(r.code, 0)
  t.regex(r.stderr, new RegExp(`blob ${blobId}: content does not match its id`))
  await writeFile(blob, good)
  t.is((await nydusImage(['check', '--bootstrap', boot, '--blob-dir', blobs])).code, 0)

  const bootBuf = await readFile(boot)
  const flipped = Buffer.from(bootBuf)
  flipped[300] ^= 0x80 // inside the inode table
  await writeFile(boot, flipped)
  const b = await nydusImage(['check', '--bootstrap', boot])
  t.not(b.code, 0)
  t.regex(b.stderr, /bootstrap: checksum does not match/)
  const u = await nydusImage(['unpack', '--bootstrap', boot, '--blob-dir', blobs, '--output', join(dir, 'x.tar')])
  t.not(u.code, 0)
  t.false((await readdir(dir)).includes('x.tar'))
})

test('unpack refuses a blob whose chunk was altered in place (verified on the way out)', async t => {
  const dir = await tempDir(t)
  const blobs = join(dir, 'blobs')
  const boot = join(dir, 'l.boot')
  await ok(t, ['create', layerFixture('pax.tar'), '--bootstrap', boot, '--blob-dir', blobs, '--compressor', 'none'])
  const [blobId] = await readdir(blobs)
  const buf = await readFile(join(blobs, blobId))
  buf[10] ^= 0x20
  await writeFile(join(blobs, blobId), buf)
  const r = await nydusImage(['unpack', '--bootstrap', boot, '--blob-dir', blobs, '--output', join(dir, 'x.tar')])
  t.not(r.code, 0)
  t.regex(r.stderr, /content does not match digest/)
  t.deepEqual((await readdir(dir)).sort(), ['blobs', 'l.boot'])
})

test("inspect shows the superblock, a listing and a file's chunks", async t => {
  const dir = await tempDir(t)
  const blobs = join(dir, 'blobs')
  const boot = join(dir, 'l.boot')
  const prefetch = join(dir, 'prefetch.txt')
  await writeFile(prefetch, '/text.txt\n# a comment\na/b\n/missing\n')
  await ok(t, [
    'create',
    layerFixture('pax.tar'),
    '--bootstrap',
    boot,
    '--blob-dir',
    blobs,
    '--chunk-size',
    '0x10000',
    '--prefetch-files',
    prefetch
  ])
  const sb = JSON.parse(await ok(t, ['inspect', '--bootstrap', boot, '--json'])) as {
    chunk_size: string
    prefetch: string[]
    layer: boolean
    stats: { files: number }
  }
  t.is(sb.chunk_size, '0x10000')
  t.deepEqual(sb.prefetch, ['/text.txt', '/a/b'])
  t.true(sb.layer)
  const file = JSON.parse(await ok(t, ['inspect', '--bootstrap', boot, '--json', '/big.bin'])) as {
    chunks: unknown[]
    nlink: number
    xattrs: Record<string, string>
  }
  t.is(file.chunks.length, 4)
  t.is(file.nlink, 2)
  t.is(Buffer.from(file.xattrs['security.capability'], 'base64').toString('hex'), '0100000200200000000000000000000000000000')
  const ls = await ok(t, ['inspect', '--bootstrap', boot, '/a'])
  t.regex(ls, /^d0755 +0 +0 +0 b\/$/m)
  t.regex(ls, /^l0777 .* rel-link -> \.\.\/a\/b\/c\/hello\.txt$/m)
  const missing = await nydusImage(['inspect', '--bootstrap', boot, '/nope'])
  t.not(missing.code, 0)
  t.regex(missing.stderr, /no such path in the image: \/nope/)
})

test('--help lists examples', async t => {
  const r = await nydusImage(['create', '--help'])
  t.is(r.code, 0)
  t.regex(r.stdout, /EXAMPLES/)
  t.regex(r.stdout, /--chunk-dict/)
})

test('a progress line is drawn on a TTY only', async t => {
  const dir = await tempDir(t)
  const args = ['create', layerFixture('pax.tar'), '--bootstrap', join(dir, 'p.boot'), '--blob-dir', join(dir, 'blobs')]
  const env = { ...process.env }
  delete env.CI
  // util-linux `script` gives the child a pseudo-terminal.
  const cmd = [process.execPath, nydusImageBin, ...args].map(a => `'${a}'`).join(' ')
  const tty = await run('script', ['-qec', cmd, '/dev/null'], { env })
  t.is(tty.code, 0, tty.stderr)
  t.regex(tty.stdout, /\r\x1b\[Kconverting .* MB\/s/)
  const piped = await nydusImage([...args.slice(0, 2), '--bootstrap', join(dir, 'q.boot'), '--blob-dir', join(dir, 'blobs')])
  t.notRegex(piped.stderr + piped.stdout, /MB\/s/)
})
