import test from 'ava'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { abortFuseConnection, mustRun, tempDir } from '@nydusjs/testkit'
import { buildImage, mountOver } from './helpers.js'

const MiB = 1024 * 1024

/** One 16 MiB file and 40 small ones, as a tar. */
async function layer(t: Parameters<typeof tempDir>[0]): Promise<{ tar: string; big: Buffer }> {
  const dir = await tempDir(t)
  const root = join(dir, 'root')
  await mkdir(join(root, 'small'), { recursive: true })
  const big = randomBytes(16 * MiB)
  await writeFile(join(root, 'big.bin'), big)
  for (let i = 0; i < 40; i++) await writeFile(join(root, 'small', `s${i}.txt`), `small file ${i}\n`)
  const tar = join(dir, 'layer.tar')
  await mustRun('tar', ['-cf', tar, '-C', root, '.'])
  return { tar, big }
}

const counter = (metrics: string, op: string, result: string): number =>
  Number(new RegExp(`^nydusd_fuse_ops_total\\{op="${op}",result="${result}",mountpoint="[^"]+"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0)

const variants = [
  { transport: 'direct', reader: 'poll' },
  { transport: 'direct', reader: 'pool' },
  { transport: 'fuse-native', reader: undefined }
] as const

for (const { transport, reader } of variants) {
  test.serial(
    `${transport} transport${reader === undefined ? '' : ` (requests read by ${reader === 'poll' ? 'the main thread when libuv polls readable' : 'pool threads'})`}: a 16 MiB file comes in ${transport === 'direct' ? '1 MiB' : '128 KiB'} requests; opens reach the daemon at most once`,
    async t => {
      const { tar, big } = await layer(t)
      const img = await buildImage(t, tar)
      const m = await mountOver(t, img, transport, {}, reader === 'pool' ? { NYDUSD_FUSE_READER: 'pool' } : undefined)
      t.is((await m.api('/api/v1/daemon')).fuse_reader, reader)
      t.true((await readFile(join(m.mnt, 'big.bin'))).equals(big))
      for (let i = 0; i < 40; i++) t.is(await readFile(join(m.mnt, 'small', `s${i}.txt`), 'utf8'), `small file ${i}\n`)
      const metrics = (await m.api('/api/v1/metrics', true)) as string
      const reads = counter(metrics, 'read', 'ok')
      if (transport === 'direct') {
        // max_pages 256 and a 1 MiB readahead: about one request a MiB (plus the small files).
        t.true(reads <= 16 + 40 + 8, `${reads} reads`)
        // The first OPEN was answered ENOSYS; the kernel sent no more (zero-message opens).
        t.true(counter(metrics, 'open', 'error') <= 1, metrics)
      } else t.true(reads >= 16 * 8, `${reads} reads: libfuse 2 never negotiates max_pages`)
    }
  )
}

test.serial('an aborted FUSE connection (fusectl abort) ends the daemon cleanly and leaves no dead mount', async t => {
  const { tar } = await layer(t)
  const img = await buildImage(t, tar)
  const m = await mountOver(t, img, 'direct')
  const exited = new Promise<number | null>(resolve => m.proc.once('exit', code => resolve(code)))
  await abortFuseConnection(img.mnt)
  t.is(await exited, 0, m.logs())
  t.false((await readFile('/proc/mounts', 'utf8')).includes(` ${img.mnt} `), 'no dead mount left')
})
