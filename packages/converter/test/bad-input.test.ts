import { exitCodeOf, isErrorCode, type ErrorCode } from '@nydusjs/errors'
import test, { type ExecutionContext } from 'ava'
import { readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { compressedFixture, fixture, layerFixture, nydusImage, tempDir } from '@nydusjs/testkit'

/** Fails with exit != 0, one line on stderr matching `pattern`, and leaves no output behind. */
async function refused(t: ExecutionContext, source: string, pattern: RegExp, extra: string[] = []): Promise<void> {
  const dir = await tempDir(t)
  const boot = join(dir, 'out.boot')
  const blobs = join(dir, 'blobs')
  const r = await nydusImage(['create', source, '--bootstrap', boot, '--blob-dir', blobs, ...extra])
  t.regex(r.stderr, pattern)
  t.is(r.stderr.trim().split('\n').length, 1, r.stderr)
  t.notRegex(r.stderr, /\n\s+at /)
  // The exit code is the error table's for the code the line names.
  const code = /\[(ERR_\w+)\]$/.exec(r.stderr.trim())?.[1]
  t.true(isErrorCode(code), r.stderr)
  t.is(r.code, exitCodeOf(code as ErrorCode))
  t.deepEqual(
    (await readdir(dir)).filter(f => f !== 'blobs'),
    [],
    'no bootstrap or temporary file is left'
  )
  t.deepEqual(await readdir(blobs).catch(() => []), [], 'no blob or temporary file is left')
}

async function mutated(t: ExecutionContext, src: string, name: string, edit: (b: Buffer) => Buffer): Promise<string> {
  const dir = await tempDir(t)
  const p = join(dir, name)
  await writeFile(p, edit(await readFile(src)))
  return p
}

test('a truncated tar (cut inside a file body)', async t => {
  const p = await mutated(t, layerFixture('gnu.tar'), 'cut.tar', b => b.subarray(0, 100_000 + 17))
  await refused(t, p, /cut\.tar is truncated at byte \d+/)
})

test('a truncated tar (cut inside a header)', async t => {
  const p = await mutated(t, layerFixture('pax.tar'), 'cut.tar', b => b.subarray(0, 512 * 3 + 100))
  await refused(t, p, /truncated/)
})

test('a corrupt gzip stream', async t => {
  const p = await mutated(t, await compressedFixture('pax.tar', 'gz'), 'bad.tar.gz', b => {
    const c = Buffer.from(b)
    for (let i = 2000; i < 2100; i++) c[i] ^= 0x5a
    return c
  })
  await refused(t, p, /bad\.tar\.gz: corrupt gzip stream/)
})

test('a truncated gzip stream', async t => {
  const p = await mutated(t, await compressedFixture('pax.tar', 'gz'), 'short.tar.gz', b => b.subarray(0, b.length >> 1))
  await refused(t, p, /short\.tar\.gz: corrupt gzip stream|truncated/)
})

test('a corrupt zstd stream', async t => {
  const p = await mutated(t, await compressedFixture('pax.tar', 'zst'), 'bad.tar.zst', b => {
    const c = Buffer.from(b)
    for (let i = 200; i < 300; i++) c[i] ^= 0xa5
    return c
  })
  await refused(t, p, /bad\.tar\.zst: corrupt zstd stream|checksum error|truncated/)
})

test('a header checksum error', async t => {
  const p = await mutated(t, layerFixture('gnu.tar'), 'sum.tar', b => {
    const c = Buffer.from(b)
    c[5] ^= 1 // a name byte of the first header
    return c
  })
  await refused(t, p, /sum\.tar: header checksum error at byte 0/)
})

test('a hard link to a missing target', async t => {
  await refused(t, fixture('bad', 'hardlink-missing.tar'), /hard link "link" points at "absent", which is not in the layer/)
})

test('.. climbing above the root', async t => {
  await refused(t, fixture('bad', 'dotdot.tar'), /path "a\/..\/..\/escape" climbs above the root/)
})

test('an unsupported entry type is named', async t => {
  await refused(t, fixture('bad', 'unsupported-type.tar'), /unsupported type 'V' \(GNU volume header\)/)
})

test('a source that does not exist', async t => {
  await refused(t, '/nonexistent/layer.tar', /source \/nonexistent\/layer\.tar: no such file or directory/)
})

test('a source that is not a tar', async t => {
  const p = await mutated(t, layerFixture('gnu.tar'), 'junk.bin', () => Buffer.from('just some text, not an archive\n'.repeat(40)))
  await refused(t, p, /junk\.bin: not a tar, gzip or zstd stream/)
})

test('a bad chunk size', async t => {
  await refused(t, layerFixture('gnu.tar'), /--chunk-size 0x3000 is not a power of two/, ['--chunk-size', '0x3000'])
})

test('a chunk dict that is not a bootstrap', async t => {
  await refused(t, layerFixture('gnu.tar'), /chunk dict .*gnu\.tar: not a RAFS-TS bootstrap/, ['--chunk-dict', layerFixture('gnu.tar')])
})

test('a missing required flag', async t => {
  const r = await nydusImage(['create', layerFixture('gnu.tar')])
  t.not(r.code, 0)
  t.regex(r.stderr, /Missing required flag/)
  t.is(r.stderr.trim().split('\n').length, 1, r.stderr)
})

test('merge and inspect refuse a corrupt bootstrap', async t => {
  const dir = await tempDir(t)
  const boot = join(dir, 'l.boot')
  t.is((await nydusImage(['create', layerFixture('ml-1.tar'), '--bootstrap', boot, '--blob-dir', join(dir, 'blobs')])).code, 0)
  const buf = await readFile(boot)
  buf[buf.length - 3] ^= 0xff
  await writeFile(boot, buf)
  const m = await nydusImage(['merge', '--bootstrap', join(dir, 'm.boot'), boot])
  t.is(m.code, exitCodeOf('ERR_RAFS_CHECKSUM'))
  t.regex(m.stderr, /l\.boot: bootstrap checksum mismatch.* \[ERR_RAFS_CHECKSUM\]\n$/)
  t.deepEqual((await readdir(dir)).sort(), ['blobs', 'l.boot'])
  const i = await nydusImage(['inspect', '--bootstrap', boot])
  t.not(i.code, 0)
  t.regex(i.stderr, /checksum mismatch/)
  const trunc = join(dir, 't.boot')
  await writeFile(trunc, buf.subarray(0, 200))
  const c = await nydusImage(['check', '--bootstrap', trunc])
  t.not(c.code, 0)
  t.regex(c.stderr, /shorter than its 256-byte superblock/)
})
