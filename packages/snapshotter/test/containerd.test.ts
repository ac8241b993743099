import test, { type ExecutionContext } from 'ava'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { exitCodeOf } from '@nydusjs/errors'
import { BIN, convertedBusybox, nydusdPids, plainBusybox } from './setup.js'
import { apiGet, apiRequest, freePort, repoRoot, run, startSnapshotter, tempDir } from '@nydusjs/testkit'

const metric = (text: string, name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN)

/** busybox converted and pulled lazily with ctr-remote. */
async function convertedImage(t: ExecutionContext, o: { args?: string[]; path?: string[] } = {}) {
  const img = await convertedBusybox(t, o)
  const pull = await img.cd.rpull(img.ref)
  if (pull.code !== 0) throw new Error(`rpull: ${pull.stderr}${img.sn.logs()}`)
  return img
}

test.serial('a plain OCI image through the snapshotter: containerd pulls it, runc runs it, and removing it leaves no snapshot', async t => {
  const { ref, sn, cd } = await plainBusybox(t, '1')
  const pull = await cd.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'nydus', ref])
  t.is(pull.code, 0, pull.stderr)
  const snaps = await cd.ctr(['snapshots', '--snapshotter', 'nydus', 'ls'])
  t.regex(snaps.stdout, /sha256:[0-9a-f]{64}\s+Committed/, 'the layer is a committed snapshot')
  const run = await cd.ctr([
    'run',
    '--rm',
    '--snapshotter',
    'nydus',
    ref,
    'c1',
    '/bin/sh',
    '-c',
    'echo hello from $(uname -s) > /tmp/x && cat /tmp/x /etc/passwd | head -2'
  ])
  t.is(run.code, 0, run.stderr + cd.logs() + sn.logs())
  t.regex(run.stdout, /^hello from Linux\nroot:x:0:0:/)
  // A second container sees the image, not the first one's writes.
  const again = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', ref, 'c2', '/bin/sh', '-c', 'test ! -e /tmp/x && echo clean'])
  t.is(again.stdout.trim(), 'clean', again.stderr)
  t.is((await cd.ctr(['images', 'rm', '--sync', ref])).code, 0)
  const left = await cd.ctr(['snapshots', '--snapshotter', 'nydus', 'ls'])
  t.is(left.stdout.trim().split('\n').length, 1, `only the header is left: ${left.stdout}`)
  t.false(/"level":50/.test(sn.logs()), 'no error logged')
})

test.serial('the snapshotter keeps its snapshots across a restart; a start on an unusable root fails with one line', async t => {
  const { ref, sn, cd } = await plainBusybox(t, '2')
  t.is((await cd.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'nydus', ref])).code, 0)
  await sn.stop()
  // While it is down, containerd cannot reach it: a clear failure, not a hang.
  const down = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', ref, 'd1', '/bin/true'])
  t.not(down.code, 0)
  const again = await startSnapshotter(t, BIN, { root: sn.root, address: sn.address })
  // containerd redials a proxy plugin with gRPC's backoff: the next container starts once it has.
  let run1 = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', ref, 'r1', '/bin/echo', 'back'])
  for (let i = 0; i < 60 && run1.code !== 0 && /connection error/.test(run1.stderr); i++) {
    await new Promise(resolve => setTimeout(resolve, 500))
    run1 = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', ref, 'r1', '/bin/echo', 'back'])
  }
  t.is(run1.stdout.trim(), 'back', run1.stderr + again.logs())
  for (const [root, why] of [
    ['/proc/nope', /is on \/proc or \/sys/],
    ['/etc/hostname/root', /ENOTDIR|not a directory/]
  ] as const) {
    const bad = await run(process.execPath, [BIN, '--root', root, '--address', join(again.root, 'x.sock')], { timeoutMs: 20_000 })
    t.is(bad.code, exitCodeOf('ERR_CONFIG'), bad.stderr)
    t.regex(bad.stderr, /^containerd-nydus-grpc: error: /)
    t.regex(bad.stderr, why)
    t.is(bad.stderr.trim().split('\n').length, 1, bad.stderr)
  }
  t.false(existsSync(join(again.root, 'x.sock')))
  const dir = await tempDir(t, 'badcfg-')
  await writeFile(join(dir, 'nydusd.json'), '{"device": ')
  for (const [args, why] of [
    [['--recover-policy', 'sometimes'], /--recover-policy "sometimes": want restart, failover or none/],
    [['--nydusd-config', join(dir, 'nydusd.json')], /nydusd config .*nydusd\.json: .*JSON/]
  ] as const) {
    const bad = await run(process.execPath, [BIN, '--root', join(dir, 'root'), '--address', join(dir, 'x.sock'), ...args], {
      timeoutMs: 20_000
    })
    t.is(bad.code, exitCodeOf('ERR_CONFIG'), bad.stderr)
    t.regex(bad.stderr, why)
    t.is(bad.stderr.trim().split('\n').length, 1, bad.stderr)
  }
})

test.serial(
  'a converted image: ctr-remote rpull skips its blob, runc runs it from a lazily mounted nydusd, and removing it stops the daemon',
  async t => {
    const { ref, blob, sn, cd } = await convertedImage(t)
    const out = await cd.ctr([
      'run',
      '--rm',
      '--snapshotter',
      'nydus',
      ref,
      'n1',
      '/bin/sh',
      '-c',
      'head -1 /etc/passwd; echo written > /tmp/w; cat /tmp/w'
    ])
    t.is(out.code, 0, out.stderr + sn.logs())
    t.is(out.stdout, 'root:x:0:0:root:/root:/bin/sh\nwritten\n')
    t.false(
      (await cd.ctr(['content', 'ls', '-q'])).stdout.includes(blob.replace(/^sha256:/, '')),
      'the nydus blob never entered the content store'
    )
    const daemons = await nydusdPids(sn.root)
    t.is(daemons.length, 1, 'one nydusd for the image')
    t.true((await readFile('/proc/mounts', 'utf8')).includes(join(sn.root, 'mnt')), 'its mount is up')
    const sys = join(dirname(sn.address), 'system.sock')
    const listed = JSON.parse((await apiGet(sys, '/api/v1/daemons')).body) as Array<Record<string, unknown>>
    t.like(listed, [{ image: ref, pid: Number(daemons[0]), alive: true, mounted: true }])
    const text = (await apiGet(sys, '/metrics')).body
    t.is(metric(text, 'snapshotter_nydusd_count'), 1)
    t.is(metric(text, 'snapshotter_remote_mounts'), 1)
    t.true(metric(text, 'snapshotter_requests_total\\{method="Prepare"\\}') >= 3, text)
    t.is((await apiGet(sys, '/nope')).status, 404)
    const up = await apiRequest(sys, '/api/v1/nydusd/upgrade', 'PUT', '{}')
    t.is(up.status, 400, 'a hot upgrade needs recover_policy failover')
    t.regex(JSON.parse(up.body).message, /recover_policy "failover"/)
    t.is((await cd.ctr(['images', 'rm', '--sync', ref])).code, 0)
    t.is((await cd.ctr(['snapshots', '--snapshotter', 'nydus', 'ls'])).stdout.trim().split('\n').length, 1, 'no snapshot left')
    t.is((await nydusdPids(sn.root)).join(' '), '', 'no nydusd left')
    t.false((await readFile('/proc/mounts', 'utf8')).includes(join(sn.root, 'mnt')), 'no mount left')
  }
)

test.serial(
  'a running container keeps reading while the snapshotter is killed; the restarted snapshotter adopts the running nydusd',
  async t => {
    const { ref, sn, cd } = await convertedImage(t)
    const loop = 'while :; do md5sum /bin/busybox /etc/passwd > /tmp/sum 2>/tmp/err || echo FAIL >> /tmp/fails; sleep 0.1; done'
    const started = await cd.ctr(['run', '-d', '--snapshotter', 'nydus', ref, 'reader', '/bin/sh', '-c', loop])
    t.is(started.code, 0, started.stderr + sn.logs())
    const sums = async (): Promise<string> =>
      (await cd.ctr(['task', 'exec', '--exec-id', `e${Date.now()}`, 'reader', '/bin/cat', '/tmp/sum'])).stdout
    // The loop truncates /tmp/sum before each md5sum: read until a whole one is there.
    const whole = async (): Promise<string> => {
      let s = ''
      for (let i = 0; i < 100 && !s.includes('/etc/passwd'); i++) s = await sums()
      return s
    }
    const before = await whole()
    t.regex(before, /^[0-9a-f]{32} {2}\/bin\/busybox\n[0-9a-f]{32} {2}\/etc\/passwd\n$/)
    // The snapshotter dies; the image's nydusd was started detached and keeps serving.
    process.kill(sn.pid!, 'SIGKILL')
    await new Promise(resolve => setTimeout(resolve, 1000))
    t.is(await whole(), before, 'same bytes while the snapshotter is gone')
    t.is(
      (await cd.ctr(['task', 'exec', '--exec-id', 'f1', 'reader', '/bin/sh', '-c', 'cat /tmp/fails 2>/dev/null; true'])).stdout,
      '',
      'no read failed'
    )
    const again = await startSnapshotter(t, BIN, { root: sn.root, address: sn.address })
    // The restarted snapshotter adopts the running daemon: the same one serves the next container.
    const daemons = await nydusdPids(sn.root)
    t.is(daemons.length, 1, again.logs())
    // containerd redials the proxy plugin with gRPC's backoff after the restart.
    let next = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', ref, 'next', '/bin/cat', '/etc/passwd'])
    for (let i = 0; i < 60 && next.code !== 0 && /connection error/.test(next.stderr); i++) {
      await new Promise(resolve => setTimeout(resolve, 500))
      next = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', ref, `next${i}`, '/bin/cat', '/etc/passwd'])
    }
    t.regex(next.stdout, /^root:x:0:0:/, next.stderr + again.logs())
    t.deepEqual(await nydusdPids(sn.root), daemons, 'no second daemon')
    t.regex(again.logs(), /image adopted from an earlier run/)
  }
)

test.serial(
  "a corrupt bootstrap: the container start fails with nydusd's one-line reason in containerd's answer, and nothing stays mounted",
  async t => {
    const { ref, sn, cd } = await convertedImage(t)
    // The bootstrap as unpacked by containerd, flipped in place: what a bad disk or a bad layer would give.
    const boot = (await run('sh', ['-c', `ls ${sn.root}/snapshots/*/fs/image/image.boot`])).stdout.trim()
    const buf = await readFile(boot)
    buf[buf.length - 10] ^= 0xff
    await writeFile(boot, buf)
    const r = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', ref, 'bad', '/bin/true'])
    t.not(r.code, 0)
    t.regex(r.stderr, /nydusd for .* did not mount: .*checksum mismatch.*\[ERR_RAFS_CHECKSUM\]/)
    t.is((await nydusdPids(sn.root)).join(' '), '', 'no daemon left')
    t.false((await readFile('/proc/mounts', 'utf8')).includes(sn.root), 'nothing mounted')
  }
)

test.serial('a nydusd that dies is restarted by the snapshotter on the same mountpoint, and new containers start', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'sncfg-'))
  t.teardown(() => run('rm', ['-rf', dir]).then(() => undefined))
  const port = await freePort()
  await writeFile(join(dir, 'config.toml'), `version = 1\n[metrics]\naddress = "127.0.0.1:${port}"\n[daemon]\nrecover_policy = "restart"\n`)
  const { ref, sn, cd } = await convertedImage(t, { args: ['--config', join(dir, 'config.toml')] })
  const first = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', ref, 'k1', '/bin/cat', '/etc/passwd'])
  t.is(first.code, 0, first.stderr + sn.logs())
  const pids = async (): Promise<string[]> => await nydusdPids(sn.root)
  const [dead] = await pids()
  process.kill(Number(dead), 'SIGKILL')
  let now: string[] = []
  for (let i = 0; i < 200 && (now.length === 0 || now.includes(dead)); i++) {
    await new Promise(resolve => setTimeout(resolve, 100))
    now = await pids()
  }
  t.is(now.length, 1, sn.logs())
  t.not(now[0], dead, 'a new daemon')
  const next = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', ref, 'k2', '/bin/sh', '-c', 'md5sum /bin/busybox | cut -c1-32'])
  t.is(next.code, 0, next.stderr + sn.logs())
  t.regex(next.stdout, /^[0-9a-f]{32}\n$/)
  t.regex(sn.logs(), /nydusd had died: restarted/)
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  t.is(metric(text, 'snapshotter_nydusd_restarts_total'), 1, text)
  t.is(metric(text, 'snapshotter_nydusd_count'), 1, text)
})

test.serial(
  "Kata's mount: with --enable-nydus-overlayfs the rootfs is fuse.nydus-overlayfs with the image in extraoption=, and the helper mounts it for runc",
  async t => {
    // containerd's shim runs mount.fuse, which runs nydus-overlayfs from PATH.
    const helpers = await mkdtemp(join(tmpdir(), 'helpers-'))
    t.teardown(() => run('rm', ['-rf', helpers]).then(() => undefined))
    await symlink(join(repoRoot, 'packages/snapshotter/bin/nydus-overlayfs.cjs'), join(helpers, 'nydus-overlayfs'))
    await symlink(process.execPath, join(helpers, 'node'))
    const { ref, sn, cd } = await convertedImage(t, { args: ['--enable-nydus-overlayfs'], path: [helpers] })
    const out = await cd.ctr([
      'run',
      '--rm',
      '--snapshotter',
      'nydus',
      ref,
      'kata1',
      '/bin/sh',
      '-c',
      'head -1 /etc/passwd; echo w > /w; cat /w'
    ])
    t.is(out.code, 0, out.stderr + sn.logs() + cd.logs())
    t.is(out.stdout, 'root:x:0:0:root:/root:/bin/sh\nw\n')
    const image = (await cd.ctr(['images', 'ls', '-q'])).stdout.trim()
    t.is(image, ref)
    const prep = await cd.ctr(['snapshots', '--snapshotter', 'nydus', 'ls'])
    const parent = /^(\S+)\s+\S+\s+Committed/m.exec(
      prep.stdout
        .split('\n')
        .filter(l => l.includes('sha256:'))
        .at(-1) ?? ''
    )?.[1]
    t.truthy(parent, prep.stdout)
    const m = await cd.ctr(['snapshots', '--snapshotter', 'nydus', 'prepare', '--mounts', 'kata-view', parent!])
    const [mount] = JSON.parse(m.stdout) as Array<{ Type: string; Options: string[] }>
    t.is(mount.Type, 'fuse.nydus-overlayfs', m.stdout + m.stderr)
    t.true(mount.Options.some(o => o.startsWith('lowerdir=')))
    const encoded = mount.Options.find(o => o.startsWith('extraoption='))?.slice('extraoption='.length) ?? ''
    const extra = JSON.parse(Buffer.from(encoded, 'base64').toString()) as Record<string, string>
    t.regex(extra.source, /\/image\/image\.boot$/)
    t.is(JSON.parse(extra.config).device.backend.type, 'registry')
    t.regex(extra.fs_version, /^rafs-js-v\d+$/)
    // The helper on its own: bad arguments get one line and a non-zero exit.
    const bad = await run(process.execPath, [
      join(repoRoot, 'packages/snapshotter/bin/nydus-overlayfs.cjs'),
      'overlay',
      '/mnt/x',
      '-o',
      'extraoption=e30='
    ])
    t.is(bad.code, 1)
    t.is(bad.stderr, 'nydus-overlayfs: error: mount of /mnt/x: no lowerdir= among the options\n')
  }
)
