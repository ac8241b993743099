import { exitCodeOf } from '@nydusjs/errors'
import test, { type ExecutionContext } from 'ava'
import { readFileSync } from 'node:fs'
import { mkdir, open, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  busyboxFixture,
  diffTrees,
  fixture,
  forceUnmount,
  gnuExtract,
  layerFixture,
  mountImage,
  nydusdBin,
  nydusImage,
  reaper,
  run,
  snapshotTree,
  spawnOwned,
  tempDir
} from '@nydusjs/testkit'
import { buildImage, localConfig, mountOver, nonUtf8 } from './helpers.js'

/** The mount must equal GNU tar's extraction of the source (mtimes at the millisecond fuse-native carries). */
async function compareMount(t: ExecutionContext, source: string, extra: string[] = [], ignoreMtime: string[] = []): Promise<void> {
  const img = await buildImage(t, source, extra)
  const m = await mountImage(t, { dir: img.dir, bootstrap: img.boot, config: localConfig(img), mnt: img.mnt })
  const ref = join(img.dir, 'ref')
  await mkdir(ref)
  await gnuExtract(source, ref)
  const diffs = diffTrees(await snapshotTree(ref), await snapshotTree(m.mnt), {
    mtimePrecisionNs: 1e6,
    skip: nonUtf8,
    ignoreMtime: new Set(ignoreMtime)
  })
  t.deepEqual(diffs, [])
  t.is(await m.stop(), 0)
}

for (const name of ['gnu.tar', 'pax.tar', 'ml-1.tar']) {
  test.serial(`mount equals tar -x: ${name}`, async t => {
    await compareMount(t, layerFixture(name), ['--chunk-size', '0x10000'])
  })
}
test.serial('mount equals tar -x: crafted entries', async t => {
  await compareMount(t, layerFixture('crafted.tar'), [], ['implied', 'implied/parents', 'abs', 'abs/path'])
})
test.serial('mount equals tar -x: busybox-static', async t => {
  const { tar } = await busyboxFixture()
  await compareMount(t, tar)
})

test.serial('a merged multi-layer image mounts as overlayfs would show it', async t => {
  const dir = await tempDir(t)
  const out = join(dir, 'out')
  t.is((await nydusImage(['convert', '--oci-dir', fixture('oci', 'multilayer'), '--output', out])).code, 0)
  const mnt = join(dir, 'mnt')
  await mkdir(mnt)
  const m = await mountImage(t, {
    dir,
    bootstrap: join(out, 'image.boot'),
    mnt,
    config: { device: { backend: { type: 'localfs', config: { dir: join(out, 'blobs') } } } }
  })
  const expected = JSON.parse(await readFile(layerFixture('ml-expected.json'), 'utf8')) as Record<string, string>
  const got: Record<string, string> = {}
  for (const [p, info] of await snapshotTree(m.mnt)) if (p !== '') got[p] = info.type === 'dir' ? 'dir' : `sha256:${info.sha256 ?? ''}`
  t.deepEqual(got, expected)
})

test.serial('writes get EROFS; the daemon reports itself on the API', async t => {
  const img = await buildImage(t, layerFixture('pax.tar'))
  const m = await mountImage(t, { dir: img.dir, bootstrap: img.boot, config: localConfig(img), mnt: img.mnt })
  await t.throwsAsync(writeFile(join(m.mnt, 'new'), 'x'), { code: 'EROFS' })
  await t.throwsAsync(writeFile(join(m.mnt, 'text.txt'), 'x'), { code: 'EROFS' })
  const rm = await run('rm', ['-f', join(m.mnt, 'text.txt')])
  t.regex(rm.stderr, /Read-only file system/)
  const d = await m.api('/api/v1/daemon')
  t.is(d.state, 'RUNNING')
  t.is(d.mountpoint, img.mnt)
  t.is(d.backend.type, 'localfs')
  const df = await run('stat', ['-f', '-c', '%T %l', m.mnt])
  t.regex(df.stdout, /fuse.* 255/)
})

test.serial('the access list records files in first-access order', async t => {
  const img = await buildImage(t, layerFixture('pax.tar'))
  const m = await mountImage(t, { dir: img.dir, bootstrap: img.boot, config: localConfig(img), mnt: img.mnt })
  const sizes = new Map<string, number>()
  for (const f of ['text.txt', 'a/b/c/hello.txt', 'big.bin', 'text.txt']) sizes.set(f, (await readFile(join(m.mnt, f))).length)
  t.deepEqual(await m.api('/api/v1/metrics/files'), ['/text.txt', '/a/b/c/hello.txt', '/big.bin'])
  const metrics = (await m.api('/api/v1/metrics', true)) as string
  const value = (re: RegExp): number => Number(re.exec(metrics)?.[1] ?? NaN)
  // The second text.txt came from the page cache (kernel_cache): the daemon returned each file once.
  t.is(
    value(/^nydusd_read_bytes_total\{mountpoint="[^"]+"\} (\d+)$/m),
    [...sizes.values()].reduce((a, b) => a + b)
  )
  const reads = value(/^nydusd_fuse_ops_total\{op="read",result="ok",mountpoint="[^"]+"\} (\d+)$/m)
  t.true(reads >= 3, `${reads} reads`)
  t.is(value(/^nydusd_fuse_op_seconds_count\{op="read",mountpoint="[^"]+"\} (\d+)$/m), reads)
  // Metadata ops were counted too: getattr through libfuse (paths), lookup over the direct transport (node ids).
  const meta = (op: string): number =>
    Number(new RegExp(`^nydusd_fuse_ops_total\\{op="${op}",result="ok",mountpoint="[^"]+"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0)
  t.true(meta('getattr') + meta('lookup') >= 3, metrics)
})

test.serial('32 parallel readers at random offsets get exactly the expected bytes', async t => {
  const img = await buildImage(t, layerFixture('gnu.tar'), ['--chunk-size', '0x1000'])
  const m = await mountImage(t, { dir: img.dir, bootstrap: img.boot, config: localConfig(img), mnt: img.mnt })
  const ref = join(img.dir, 'ref')
  await mkdir(ref)
  await gnuExtract(layerFixture('gnu.tar'), ref)
  const files = ['big.bin', 'big-copy.bin', 'text.txt', 'sub/hello-hardlink', 'hardlink-to-big']
  const expected = new Map(await Promise.all(files.map(async f => [f, await readFile(join(ref, f))] as const)))
  let seed = 12345
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed % n
  }
  let checked = 0
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      for (let i = 0; i < 20; i++) {
        const f = files[rand(files.length)]
        const want = expected.get(f)!
        const off = rand(want.length)
        const len = 1 + rand(70_000)
        const fh = await open(join(m.mnt, f), 'r')
        try {
          const buf = Buffer.alloc(len)
          const { bytesRead } = await fh.read(buf, 0, len, off)
          t.true(buf.subarray(0, bytesRead).equals(want.subarray(off, off + len)), `${f} at ${off}+${len}`)
          checked++
        } finally {
          await fh.close()
        }
      }
    })
  )
  t.is(checked, 640)
})

test.serial('a busy mountpoint is refused with a clear message', async t => {
  const img = await buildImage(t, layerFixture('ml-3.tar'))
  await mountImage(t, { dir: img.dir, bootstrap: img.boot, config: localConfig(img), mnt: img.mnt })
  const cfg = join(img.dir, 'c.json')
  await writeFile(cfg, JSON.stringify(localConfig(img)))
  const r = await run(process.execPath, [nydusdBin, '--config', cfg, '--bootstrap', img.boot, '--mountpoint', img.mnt])
  t.is(r.code, exitCodeOf('ERR_MOUNTPOINT_BUSY'))
  t.regex(r.stderr, /^nydusd: error: mountpoint .* is busy/)
  t.is((await readdir(img.mnt)).length > 0, true, 'the first mount still serves')
})

test.serial('a daemon killed over the direct transport leaves no dead mount: its keeper detaches it', async t => {
  const img = await buildImage(t, layerFixture('ml-3.tar'))
  const m = await mountOver(t, img, 'direct')
  t.true((await readdir(m.mnt)).length > 0)
  m.proc.kill('SIGKILL')
  for (let i = 0; i < 100 && mountedSync(img.mnt); i++) await sleep(50)
  t.false(mountedSync(img.mnt), 'detached, as libfuse auto_unmount would')
  t.is((await run('pgrep', ['-f', `nydusd-keeper ${img.mnt}`])).stdout, '', 'the keeper is gone too')
})

test.serial('a dead mount left by a killed daemon is refused with a clear message that names the fix', async t => {
  const img = await buildImage(t, layerFixture('ml-3.tar'))
  // libfuse 2 has no keeper: a SIGKILL leaves the mount dead (ENOTCONN).
  const m = await mountOver(t, img, 'fuse-native')
  const exited = new Promise(resolve => m.proc.once('exit', resolve))
  m.proc.kill('SIGKILL')
  await exited
  t.true(mountedSync(img.mnt), 'the kill left its mount behind')
  const cfg = join(img.dir, 'c.json')
  await writeFile(cfg, JSON.stringify(localConfig(img)))
  const r = await run(process.execPath, [nydusdBin, '--config', cfg, '--bootstrap', img.boot, '--mountpoint', img.mnt])
  t.is(r.code, exitCodeOf('ERR_MOUNTPOINT_STALE'))
  t.is(
    r.stderr,
    `nydusd: error: mountpoint ${img.mnt} is a dead FUSE mount (ENOTCONN: the daemon that served it is gone); detach it first with: fusermount -uz ${img.mnt} [ERR_MOUNTPOINT_STALE]\n`
  )
  t.is((await run('fusermount', ['-uz', img.mnt])).code, 0, 'the fix it names works')
  const again = await mountImage(t, { dir: img.dir, bootstrap: img.boot, config: localConfig(img), mnt: img.mnt })
  t.true((await readdir(again.mnt)).length > 0, 'a new daemon mounts there afterwards')
})

test.serial('a mountpoint that does not exist is refused with a clear message', async t => {
  const img = await buildImage(t, layerFixture('ml-3.tar'))
  const cfg = join(img.dir, 'c.json')
  await writeFile(cfg, JSON.stringify(localConfig(img)))
  const missing = join(img.dir, 'no-such-dir')
  const r = await run(process.execPath, [nydusdBin, '--config', cfg, '--bootstrap', img.boot, '--mountpoint', missing])
  t.is(r.code, exitCodeOf('ERR_MOUNT'))
  t.is(r.stderr, `nydusd: error: mountpoint ${missing} does not exist [ERR_MOUNT]\n`)
})

test.serial('without /dev/fuse nydusd refuses with a clear message and mounts nothing', async t => {
  const img = await buildImage(t, layerFixture('ml-3.tar'))
  const cfg = join(img.dir, 'c.json')
  await writeFile(cfg, JSON.stringify(localConfig(img)))
  // A private mount namespace whose /dev is an empty tmpfs: no FUSE device.
  const r = await run('unshare', [
    '--mount',
    '--propagation',
    'private',
    'sh',
    '-c',
    `mount -t tmpfs none /dev && exec '${process.execPath}' '${nydusdBin}' --config '${cfg}' --bootstrap '${img.boot}' --mountpoint '${img.mnt}'`
  ])
  t.is(r.code, exitCodeOf('ERR_FUSE_MISSING'), r.stderr)
  t.regex(r.stderr, /^nydusd: error: FUSE is not available: \/dev\/fuse is missing/)
  t.deepEqual(await readdir(img.mnt), [])
})

test.serial('an unmount from outside ends the daemon, once the last open file is closed', async t => {
  const img = await buildImage(t, layerFixture('pax.tar'))
  const m = await mountImage(t, { dir: img.dir, bootstrap: img.boot, config: localConfig(img), mnt: img.mnt })
  const want = await readFile(join(m.mnt, 'text.txt'))
  const exited = new Promise<number | null>(resolve => m.proc.once('exit', code => resolve(code)))
  const fh = await open(join(m.mnt, 'text.txt'), 'r')
  t.is((await run('fusermount', ['-u', '-z', m.mnt])).code, 0)
  // Lazily detached but still in use: the daemon must keep serving the open file.
  await sleep(2500)
  t.is(m.proc.exitCode, null, 'still running while a file is open')
  t.true((await fh.readFile()).equals(want))
  await fh.close()
  const code = await Promise.race([exited, sleep(10_000).then(() => 'timeout' as const)])
  t.is(code, 0)
  t.regex(m.logs(), /FUSE session ended: the mountpoint was unmounted from outside/)
})

test.serial('a signal the moment the mount appears (before start-up is done) never leaves a dead or wedged mount', async t => {
  const img = await buildImage(t, layerFixture('pax.tar'))
  const cfg = join(img.dir, 'c.json')
  await writeFile(cfg, JSON.stringify(localConfig(img)))
  reaper.mount(img.mnt)
  t.teardown(async () => {
    await forceUnmount(img.mnt)
  })
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGKILL', 'SIGTERM', 'SIGKILL'] as const) {
    const proc = spawnOwned(
      process.execPath,
      [nydusdBin, '--config', cfg, '--bootstrap', img.boot, '--mountpoint', img.mnt, '--log-level', 'warn'],
      { stdio: 'ignore' }
    )
    const exited = new Promise<number | null>(resolve => proc.once('exit', code => resolve(code)))
    // Polled without yielding, so the signal lands within microseconds of the kernel showing the mount.
    const deadline = Date.now() + 10_000
    while (!mountedSync(img.mnt) && Date.now() < deadline && proc.exitCode === null) {}
    t.true(mountedSync(img.mnt), 'mounted')
    proc.kill(sig)
    const code = await Promise.race([exited, sleep(10_000).then(() => 'wedged' as const)])
    if (sig === 'SIGKILL') {
      t.not(code, 'wedged', 'a killed daemon is gone, not stuck waiting on its own mount')
      await forceUnmount(img.mnt)
    } else {
      t.is(code, 0, `${sig} stops cleanly`)
      t.false(mountedSync(img.mnt), `${sig} unmounts`)
    }
  }
})

test.serial('an internal error detaches the mount before the daemon exits: no dead mount is left behind', async t => {
  const img = await buildImage(t, layerFixture('pax.tar'))
  const cfg = join(img.dir, 'c.json')
  await writeFile(cfg, JSON.stringify(localConfig(img)))
  reaper.mount(img.mnt)
  t.teardown(async () => {
    await forceUnmount(img.mnt)
  })
  // Loaded into the daemon's process: a bug that throws from a timer once the mount is serving.
  const bug = join(img.dir, 'bug.mjs')
  await writeFile(
    bug,
    `import { readFileSync } from 'node:fs'
const tick = setInterval(() => {
  if (!readFileSync('/proc/self/mountinfo', 'utf8').split('\\n').some(l => l.split(' ')[4] === ${JSON.stringify(img.mnt)})) return
  clearInterval(tick)
  setTimeout(() => { throw new Error('a bug in nydusd') }, 500)
}, 10)
`
  )
  const proc = spawnOwned(
    process.execPath,
    ['--import', bug, nydusdBin, '--config', cfg, '--bootstrap', img.boot, '--mountpoint', img.mnt, '--log-level', 'warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] }
  )
  let stderr = ''
  proc.stderr!.on('data', (b: Buffer) => {
    stderr += b.toString()
  })
  const code = await new Promise<number | null>(resolve => proc.once('exit', c => resolve(c)))
  t.is(code, exitCodeOf('ERR_INTERNAL'))
  t.regex(stderr, new RegExp(`nydusd: error: internal error: a bug in nydusd \\(${img.mnt} detached\\)`))
  t.regex(stderr, /"level":60.*internal error: detaching the mount/)
  t.false(mountedSync(img.mnt), 'no mount left')
  t.deepEqual(await readdir(img.mnt), [], 'the mountpoint is an ordinary empty directory again')
})

const mountedSync = (mnt: string): boolean =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some(l => l.split(' ')[4] === mnt)
