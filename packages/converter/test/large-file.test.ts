import test from 'ava'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { once } from 'node:events'
import { mustRun, nydusImageBin, run, tempDir } from '@nydusjs/testkit'
import { END_OF_ARCHIVE, encodeHeader, padding } from '../src/index.js'

const SIZE = 4 * 1024 ** 3 + 4097 // over 4 GiB, not chunk-aligned
const MiB = 1024 * 1024

/** A ustar header whose size field is GNU base-256, as tars of files this large carry it. */
function base256Header(name: string, size: number): Buffer {
  const h = encodeHeader({
    path: Buffer.from(name),
    type: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtimeSec: 1_700_000_000,
    mtimeNsec: 0
  })
  h.fill(0, 124, 136)
  h[124] = 0x80
  let v = size
  for (let i = 135; i > 124; i--) {
    h[i] = v % 256
    v = Math.floor(v / 256)
  }
  h.fill(0x20, 148, 156)
  let sum = 0
  for (const b of h) sum += b
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1')
  return h
}

test('a file over 4 GiB (base-256 size) converts and round-trips, in bounded memory', async t => {
  const dir = await tempDir(t)
  const boot = join(dir, 'huge.boot')
  const blobs = join(dir, 'blobs')
  // GNU time reports the converter's peak RSS on its last stderr line.
  const child = spawn(
    '/usr/bin/time',
    ['-f', 'maxrss_kb=%M', process.execPath, nydusImageBin, 'create', '-', '--bootstrap', boot, '--blob-dir', blobs, '--output-json', '-'],
    { stdio: ['pipe', 'pipe', 'pipe'] }
  )
  const out: Buffer[] = []
  const err: Buffer[] = []
  child.stdout.on('data', (b: Buffer) => out.push(b))
  child.stderr.on('data', (b: Buffer) => err.push(b))
  const closed = once(child, 'close')
  const want = createHash('sha256')
  const write = async (b: Buffer): Promise<void> => {
    if (!child.stdin.write(b)) await once(child.stdin, 'drain')
  }
  await write(base256Header('huge.bin', SIZE))
  const block = Buffer.alloc(MiB)
  for (let off = 0, i = 0; off < SIZE; off += MiB, i++) {
    const piece = Buffer.from(block.subarray(0, Math.min(MiB, SIZE - off)))
    if (piece.length >= 8) piece.writeDoubleLE(i, 0) // every chunk unique, still compressible
    want.update(piece)
    await write(piece)
  }
  await write(padding(SIZE))
  await write(END_OF_ARCHIVE)
  child.stdin.end()
  const [code] = (await closed) as [number]
  const stderr = Buffer.concat(err).toString()
  t.is(code, 0, stderr)
  const rssKB = Number(/maxrss_kb=(\d+)/.exec(stderr)?.[1])
  t.true(rssKB > 0 && rssKB < 512 * 1024, `peak RSS ${rssKB} KB while converting a ${SIZE}-byte file`)
  const summary = JSON.parse(Buffer.concat(out).toString()) as { stats: { uniqueChunks: number; bytesIn: number } }
  t.is(summary.stats.bytesIn, SIZE)
  t.is(summary.stats.uniqueChunks, Math.ceil(SIZE / MiB))

  const tar = join(dir, 'back.tar')
  const u = await run(process.execPath, [nydusImageBin, 'unpack', '--bootstrap', boot, '--blob-dir', blobs, '--output', tar])
  t.is(u.code, 0, u.stderr)
  const listing = await mustRun('tar', ['-tvf', tar])
  t.regex(listing, new RegExp(`\\s${SIZE}\\s.*huge\\.bin`))
  const got = await mustRun('sh', ['-c', `tar -xOf '${tar}' huge.bin | sha256sum`])
  t.is(got.split(' ')[0], want.digest('hex'))
})
