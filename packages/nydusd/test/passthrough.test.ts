import test, { type ExecutionContext } from 'ava'
import { randomBytes } from 'node:crypto'
import { mkdir, open, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { mountImage, mustRun, reaper, tempDir, type MountedImage } from '@nydusjs/testkit'
import { buildImage, localConfig, mountOver } from './helpers.js'

const MiB = 1024 * 1024

async function layer(t: ExecutionContext): Promise<{ tar: string; files: Map<string, Buffer> }> {
  const dir = await tempDir(t)
  const root = join(dir, 'root')
  await mkdir(root)
  const files = new Map<string, Buffer>([
    ['big.bin', randomBytes(6 * MiB + 12345)],
    ['mixed.bin', Buffer.concat([randomBytes(MiB), Buffer.alloc(2 * MiB, 7)])],
    ['small.txt', Buffer.from('a small file\n')]
  ])
  for (const [name, data] of files) await writeFile(join(root, name), data)
  const tar = join(dir, 'layer.tar')
  await mustRun('tar', ['-cf', tar, '-C', root, '.'])
  return { tar, files }
}

const reads = async (m: MountedImage): Promise<number> => {
  const metrics = (await m.api('/api/v1/metrics', true)) as string
  return Number(/^nydusd_fuse_ops_total\{op="read",result="ok",mountpoint="[^"]+"\} (\d+)$/m.exec(metrics)?.[1] ?? 0)
}
const daemon = async (m: MountedImage): Promise<{ passthrough: { enabled: boolean; opens: number; files_written: number } }> =>
  (await m.api('/api/v1/daemon')) as never

async function waitWritten(m: MountedImage, n: number): Promise<void> {
  for (let i = 0; i < 200 && (await daemon(m)).passthrough.files_written < n; i++) await sleep(50)
}

test.serial('passthrough: once a file is cached, its reads are served by the kernel from a verified copy', async t => {
  const { tar, files } = await layer(t)
  const img = await buildImage(t, tar)
  const m = await mountImage(t, { dir: img.dir, bootstrap: img.boot, config: localConfig(img, { fuse_passthrough: true }), mnt: img.mnt })
  t.true((await daemon(m)).passthrough.enabled)
  for (const [name, data] of files) t.true((await readFile(join(m.mnt, name))).equals(data), name)
  await waitWritten(m, files.size)
  t.is((await daemon(m)).passthrough.files_written, files.size)
  const copies = (await readdir(join(img.cache, 'passthrough'))).filter(n => !n.endsWith('.tmp'))
  t.is(copies.length, files.size)
  // The kernel's own page cache of the mount is dropped, so the reads below must come from somewhere.
  await writeFile('/proc/sys/vm/drop_caches', '3')
  const before = await reads(m)
  for (const [name, data] of files) t.true((await readFile(join(m.mnt, name))).equals(data), `${name} through passthrough`)
  t.is(await reads(m), before, 'no READ reached the daemon')
  t.true((await daemon(m)).passthrough.opens >= files.size)
})

test.serial('passthrough: a read-through handle still open keeps new opens read-through; overlayfs stacks on the mount', async t => {
  const { tar, files } = await layer(t)
  const img = await buildImage(t, tar)
  const m = await mountImage(t, { dir: img.dir, bootstrap: img.boot, config: localConfig(img, { fuse_passthrough: true }), mnt: img.mnt })
  const big = files.get('big.bin')!
  const held = await open(join(m.mnt, 'big.bin'))
  try {
    t.true((await readFile(join(m.mnt, 'big.bin'))).equals(big))
    await waitWritten(m, 1)
    t.is((await daemon(m)).passthrough.files_written, 1)
    // The kernel refuses a passthrough open beside a cached one: this one must read through.
    const opensBefore = (await daemon(m)).passthrough.opens
    t.true((await readFile(join(m.mnt, 'big.bin'))).equals(big))
    t.is((await daemon(m)).passthrough.opens, opensBefore)
    const buf = Buffer.alloc(4096)
    await held.read(buf, 0, buf.length, 3 * MiB)
    t.true(buf.equals(big.subarray(3 * MiB, 3 * MiB + 4096)))
  } finally {
    await held.close()
  }
  t.true((await readFile(join(m.mnt, 'big.bin'))).equals(big))
  t.is((await daemon(m)).passthrough.opens, 1)
  // Stack depth 1: a container's overlayfs on top of the mount still works (what the snapshotter does).
  const ov = await tempDir(t)
  for (const d of ['upper', 'work', 'merged']) await mkdir(join(ov, d))
  reaper.mount(`${ov}/merged`)
  await mustRun('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${m.mnt},upperdir=${ov}/upper,workdir=${ov}/work`, `${ov}/merged`])
  try {
    t.true((await readFile(join(ov, 'merged', 'big.bin'))).equals(big))
  } finally {
    await mustRun('umount', [`${ov}/merged`])
    reaper.unmount(`${ov}/merged`)
  }
})

test.serial('passthrough off (the default): opens never reach the daemon and no copies are written', async t => {
  const { tar, files } = await layer(t)
  const img = await buildImage(t, tar)
  const m = await mountImage(t, { dir: img.dir, bootstrap: img.boot, config: localConfig(img), mnt: img.mnt })
  for (const [name, data] of files) t.true((await readFile(join(m.mnt, name))).equals(data), name)
  await sleep(300)
  const d = await daemon(m)
  t.false(d.passthrough.enabled)
  t.is(d.passthrough.files_written, 0)
  const metrics = (await m.api('/api/v1/metrics', true)) as string
  t.false(/op="open",result="ok"/.test(metrics), 'no OPEN answered')
})

test.serial('passthrough asked for over fuse-native: one warning, and reads go through the daemon', async t => {
  const { tar, files } = await layer(t)
  const img = await buildImage(t, tar)
  const m = await mountOver(t, img, 'fuse-native', { fuse_passthrough: true })
  for (const [name, data] of files) t.true((await readFile(join(m.mnt, name))).equals(data), name)
  t.false((await daemon(m)).passthrough.enabled)
  t.regex(m.logs(), /fuse_passthrough needs the direct transport/)
})
