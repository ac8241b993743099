import test, { type ExecutionContext } from 'ava'
import { writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  apiGet,
  busyboxFixture,
  convertImage,
  mustRun,
  skopeoPush,
  startContainerd,
  startRegistry,
  startSnapshotter,
  tempDir
} from '@nydusjs/testkit'
import { BIN, nydusdPids } from './setup.js'

/** busybox, and busybox with one more layer holding /marker.txt: two images, both converted in one registry. */
async function twoImages(t: Parameters<typeof tempDir>[0]) {
  const { oci } = await busyboxFixture()
  const reg = await startRegistry(t)
  const work = await tempDir(t)
  await mustRun('cp', ['-a', oci, join(work, 'oci')])
  await mustRun('umoci', ['unpack', '--image', `${join(work, 'oci')}:latest`, join(work, 'bundle')])
  await writeFile(join(work, 'bundle/rootfs/marker.txt'), 'the second image\n')
  await mustRun('umoci', ['repack', '--image', `${join(work, 'oci')}:marked`, join(work, 'bundle')])
  const refs: string[] = []
  for (const [tag, from] of [
    ['plain', `${join(work, 'oci')}:latest`],
    ['marked', `${join(work, 'oci')}:marked`]
  ]) {
    await skopeoPush(from, `${reg.host}/library/busybox:${tag}`)
    await convertImage(`${reg.host}/library/busybox:${tag}`, `${reg.host}/library/busybox:${tag}-nydus`)
    refs.push(`${reg.host}/library/busybox:${tag}-nydus`)
  }
  return refs
}

/** The snapshotter in shared mode (with `args`), containerd, and containers "one" and "two" (of each image) hashing busybox in a loop. */
async function twoRunning(t: ExecutionContext, args: string[]) {
  const [plain, marked] = await twoImages(t)
  const sn = await startSnapshotter(t, BIN, { args: ['--daemon-mode', 'shared', ...args] })
  const cd = await startContainerd(t, { proxyPlugins: { nydus: sn.address } })
  for (const ref of [plain, marked]) t.is((await cd.rpull(ref)).code, 0)
  const loop = 'while :; do md5sum /bin/busybox > /tmp/sum.new && mv /tmp/sum.new /tmp/sum; sleep 0.1; done'
  for (const [ref, name] of [
    [plain, 'one'],
    [marked, 'two']
  ]) {
    const r = await cd.ctr(['run', '-d', '--snapshotter', 'nydus', ref, name, '/bin/sh', '-c', loop])
    t.is(r.code, 0, r.stderr + sn.logs())
  }
  const exec = async (name: string, cmd: string): Promise<string> =>
    (await cd.ctr(['task', 'exec', '--exec-id', `e${Date.now()}${Math.random()}`, name, '/bin/sh', '-c', cmd])).stdout
  let sums = ['', '']
  for (let i = 0; i < 100 && sums.some(s => s === ''); i++)
    sums = await Promise.all(['one', 'two'].map(async n => await exec(n, 'cat /tmp/sum')))
  t.regex(sums[0], /^[0-9a-f]{32} {2}\/bin\/busybox\n$/)
  t.is(sums[1], sums[0], 'the same busybox in both')
  return { plain: plain!, marked: marked!, sn, cd, exec, sum: sums[0]! }
}

/** The shared daemon killed with SIGKILL: the new one's pid once both images are mounted again and the snapshotter logged `said`. */
async function killShared(t: ExecutionContext, sn: { root: string; address: string; logs: () => string }, said: RegExp): Promise<string> {
  const daemons = await nydusdPids(sn.root)
  t.is(daemons.length, 1, 'one nydusd for both images')
  const sys = join(dirname(sn.address), 'system.sock')
  process.kill(Number(daemons[0]), 'SIGKILL')
  let now: string[] = []
  let back: Array<{ alive: boolean; mounted: boolean }> = []
  for (let i = 0; i < 200; i++) {
    await sleep(100)
    now = await nydusdPids(sn.root)
    back = JSON.parse((await apiGet(sys, '/api/v1/daemons')).body)
    if (now.length === 1 && now[0] !== daemons[0] && back.every(d => d.alive && d.mounted) && said.test(sn.logs())) break
  }
  t.is(now.length, 1)
  t.not(now[0], daemons[0], 'a new daemon')
  t.true(back.length === 2 && back.every(d => d.alive && d.mounted), JSON.stringify(back) + sn.logs())
  t.regex(sn.logs(), said)
  return now[0]!
}

test.serial('daemon_mode shared: two images run at once from one nydusd; killed, it comes back with both mounts', async t => {
  const { plain, marked, sn, cd, exec, sum } = await twoRunning(t, [])
  const sums = [sum]
  t.is(await exec('two', 'cat /marker.txt'), 'the second image\n')
  t.is(await exec('one', 'cat /marker.txt 2>&1; true'), "cat: can't open '/marker.txt': No such file or directory\n")

  const daemons = await nydusdPids(sn.root)
  t.is(daemons.length, 1, 'one nydusd for both images')
  const sys = join(dirname(sn.address), 'system.sock')
  const listed = JSON.parse((await apiGet(sys, '/api/v1/daemons')).body) as Array<{ pid: number; mounted: boolean; apisock: string }>
  t.is(listed.length, 2)
  t.true(
    listed.every(d => String(d.pid) === daemons[0] && d.mounted),
    JSON.stringify(listed)
  )
  const inside = JSON.parse((await apiGet(listed[0].apisock, '/api/v1/daemon')).body) as { mode: string; mounts: unknown[] }
  t.is(inside.mode, 'shared')
  t.is(inside.mounts.length, 2)
  t.regex((await apiGet(sys, '/metrics')).body, /^snapshotter_nydusd_count 1$/m)

  // Killed: its mounts are detached, a new daemon is started and both images mounted again.
  await killShared(t, sn, /shared nydusd had died: restarted, mounting every image again/)
  for (const [ref, cmd, want] of [
    [plain, 'md5sum /bin/busybox', sums[0]],
    [marked, 'cat /marker.txt', 'the second image\n']
  ]) {
    const r = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', ref, `after-${Date.now()}`, '/bin/sh', '-c', cmd])
    t.is(r.stdout, want, r.stderr + sn.logs())
  }
})

test.serial(
  'daemon_mode shared, recover_policy failover: the daemon killed, the next takes both sessions over; running containers read on',
  async t => {
    const { plain, sn, cd, exec, sum } = await twoRunning(t, ['--recover-policy', 'failover'])
    await killShared(t, sn, /shared nydusd had died: restarted, taking its sessions over/)
    // First read of /marker.txt, and of /etc: through the session the new daemon took over, in the running container.
    t.is(await exec('two', 'cat /marker.txt'), 'the second image\n')
    t.regex(await exec('one', 'ls /etc'), /passwd/)
    const tasks = (await cd.ctr(['task', 'ls'])).stdout
    t.regex(tasks, /^one\s+\d+\s+RUNNING$/m)
    t.regex(tasks, /^two\s+\d+\s+RUNNING$/m)
    // The loops went on: /tmp/sum is rewritten after the takeover, still right.
    const before = Number(await exec('one', 'stat -c %Y /tmp/sum'))
    await sleep(2500)
    t.true(Number(await exec('one', 'stat -c %Y /tmp/sum')) > before, 'the loop still runs')
    t.is(await exec('one', 'cat /tmp/sum'), sum)
    const r = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', plain, `after-${Date.now()}`, '/bin/sh', '-c', 'md5sum /bin/busybox'])
    t.is(r.stdout, sum, r.stderr + sn.logs())
  }
)
