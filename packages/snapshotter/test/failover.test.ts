import test from 'ava'
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { dirname, join } from 'node:path'
import { apiRequest, nydusdBin, run, tempDir } from '@nydusjs/testkit'
import { convertedBusybox, nydusdPids } from './setup.js'

test.serial(
  'recover_policy failover: nydusd is SIGKILLed twice, then hot-upgraded, while a container reads through it; each new nydusd takes the session over and the container sees no error',
  async t => {
    const { ref, sn, cd } = await convertedBusybox(t, { args: ['--recover-policy', 'failover'] })
    t.is((await cd.rpull(ref)).code, 0)
    const loop = 'while :; do md5sum /bin/busybox /etc/passwd > /tmp/sum 2>/tmp/err || echo FAIL >> /tmp/fails; sleep 0.05; done'
    const started = await cd.ctr(['run', '-d', '--snapshotter', 'nydus', ref, 'reader', '/bin/sh', '-c', loop])
    t.is(started.code, 0, started.stderr + sn.logs())
    const exec = async (cmd: string): Promise<string> =>
      (await cd.ctr(['task', 'exec', '--exec-id', `e${Date.now()}${Math.random()}`, 'reader', '/bin/sh', '-c', cmd])).stdout
    let before = ''
    for (let i = 0; i < 100 && !before.includes('/etc/passwd'); i++) before = await exec('cat /tmp/sum')
    t.regex(before, /^[0-9a-f]{32} {2}\/bin\/busybox\n/)
    const daemons = async (): Promise<string[]> => await nydusdPids(sn.root)
    const [first] = await daemons()
    for (let round = 0; round < 2; round++) {
      const [victim] = await daemons()
      process.kill(Number(victim), 'SIGKILL')
      // Cold pages: the next reads must go through FUSE, to whichever daemon serves by then.
      await writeFile('/proc/sys/vm/drop_caches', '3')
      // The loop's next md5sum rewrites the file: wait until a whole one is there again.
      const t0 = Date.now()
      let after = ''
      for (let i = 0; i < 100 && after !== before; i++) {
        await sleep(100)
        after = await exec('cat /tmp/sum')
      }
      t.log(`round ${round}: reads went on ${Date.now() - t0} ms after the kill`)
      t.is(after, before, `round ${round}: same bytes ${(await run('sh', ['-c', `tail -5 ${sn.root}/daemons/*.log`])).stdout}`)
    }
    // A hot upgrade (nydus-snapshotter's PUT /api/v1/nydusd/upgrade) while the container reads on.
    const sys = join(dirname(sn.address), 'system.sock')
    t.is((await apiRequest(sys, '/api/v1/nydusd/upgrade', 'PUT', '{"nydusd_path": 7}')).status, 400, 'a bad body is refused')
    const [old] = await daemons()
    // The "new build": the same nydusd under another path, which the successor must run.
    const v2 = join(await tempDir(t), 'nydusd-v2')
    await mkdir(v2)
    await symlink(nydusdBin, join(v2, 'nydusd.cjs'))
    const up = await apiRequest(sys, '/api/v1/nydusd/upgrade', 'PUT', JSON.stringify({ nydusd_path: join(v2, 'nydusd.cjs') }))
    t.is(up.status, 200, up.body)
    const moved = JSON.parse(up.body) as Array<{ from: number; to: number }>
    t.is(moved.length, 1)
    t.is(String(moved[0].from), old)
    await writeFile('/proc/sys/vm/drop_caches', '3')
    let after = ''
    for (let i = 0; i < 100 && after !== before; i++) {
      await sleep(100)
      after = await exec('cat /tmp/sum')
    }
    t.is(after, before, 'same bytes after the upgrade')
    t.is(await exec('cat /tmp/fails 2>/dev/null; true'), '', 'no read failed')
    const now = await daemons()
    t.deepEqual(now, [String(moved[0].to)], 'the upgraded daemon serves')
    t.true((await readFile(`/proc/${moved[0].to}/cmdline`, 'utf8')).includes(v2), 'it runs the new path')
    t.false(now.includes(first ?? ''), 'not the first one')
    t.notRegex(sn.logs(), /nydusd had died: restarted/, 'taken over, not restarted')
    const next = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', ref, 'next', '/bin/cat', '/etc/passwd'])
    t.regex(next.stdout, /^root:x:0:0:/, next.stderr + sn.logs())
  }
)
