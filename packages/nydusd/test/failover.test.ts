import test, { type ExecutionContext } from 'ava'
import { setTimeout as sleep } from 'node:timers/promises'
import { apiRequest, killUnder, type MountedImage, mountImage, run } from '@nydusjs/testkit'
import { buildImage, type Image, localConfig } from './helpers.js'
import { allRight, layer, startReader } from './slow-reader.js'

const daemons = async (mnt: string): Promise<string[]> =>
  // Daemons only (their command line starts with node), not the keepers (sh) that name them.
  (await run('pgrep', ['-f', `^${process.execPath} .*nydusd.cjs .*--mountpoint ${mnt}`])).stdout.trim().split('\n').filter(Boolean)

/** A --failover mount of the 96-file image; the daemons a keeper starts, and the keepers, name the mountpoint. */
async function keptMount(t: ExecutionContext): Promise<{ m: MountedImage; img: Image; want: Map<string, string> }> {
  const { tar, want } = await layer(t)
  const img = await buildImage(t, tar)
  const m = await mountImage(t, { dir: img.dir, bootstrap: img.boot, config: localConfig(img), mnt: img.mnt, args: ['--failover'] })
  t.teardown(async () => {
    await killUnder(img.mnt)
  })
  return { m, img, want }
}

test.serial(
  'failover: nydusd killed twice with SIGKILL while a reader goes through the image; new daemons take the session over, the reader sees no error and right bytes',
  async t => {
    const { m, img, want } = await keptMount(t)
    const done = startReader(img.mnt)
    await sleep(700)
    m.proc.kill('SIGKILL')
    // A second crash: the daemon the keeper started goes the same way.
    let second: string[] = []
    for (let i = 0; i < 100 && (second.length === 0 || second.includes(String(m.proc.pid))); i++) {
      await sleep(50)
      second = await daemons(img.mnt)
    }
    t.is(second.length, 1, `one daemon took over: ${second.join(' ')}`)
    // Killed while it is still starting: the keeper, which holds the session throughout, starts a third.
    await sleep(100)
    process.kill(Number(second[0]), 'SIGKILL')
    allRight(t, await done, want)
    const now = await daemons(img.mnt)
    t.is(now.length, 1)
    t.false(now.includes(second[0] ?? ''), 'a third daemon serves now')
    t.like(await m.api('/api/v1/daemon'), { state: 'RUNNING' })
  }
)

test.serial('failover: an unmount from outside ends the daemon for good; its keeper starts no successor', async t => {
  const { m, img } = await keptMount(t)
  const exited = new Promise<number | null>(resolve => m.proc.once('exit', code => resolve(code)))
  t.is((await run('umount', [img.mnt])).code, 0)
  t.is(await exited, 0)
  await sleep(1500)
  t.deepEqual(await daemons(img.mnt), [], 'no successor')
  t.is((await run('pgrep', ['-f', `nydusd-keeper ${img.mnt}`])).stdout, '', 'no keeper')
})

const put = async (sock: string, path: string): Promise<number> => (await apiRequest(sock, path, 'PUT')).status

test.serial(
  'upgrade: PUT /api/v1/daemon/exit hands the session to a new nydusd while a reader goes through the image; it sees no error and right bytes',
  async t => {
    const { m, img, want } = await keptMount(t)
    const done = startReader(img.mnt)
    const exited = new Promise<number | null>(resolve => m.proc.once('exit', code => resolve(code)))
    await sleep(700)
    t.is(await put(m.apisock, '/api/v1/daemon/exit'), 204)
    t.is(await exited, 99, 'the old daemon leaves with the hand-over code')
    let next: string[] = []
    for (let i = 0; i < 100 && next.length === 0; i++) {
      await sleep(50)
      next = await daemons(img.mnt)
    }
    t.is(next.length, 1, 'one successor')
    t.false(next.includes(String(m.proc.pid)))
    // A second upgrade, of the successor (once it answers on the API): hand-overs are not counted as deaths.
    for (let i = 0; i < 100; i++) {
      const d = await m.api('/api/v1/daemon').catch(() => undefined)
      if (d?.id === next[0] && d?.state === 'RUNNING') break
      await sleep(50)
    }
    t.is(await put(m.apisock, '/api/v1/daemon/exit'), 204)
    allRight(t, await done, want)
    let last: string[] = []
    for (let i = 0; i < 100 && (last.length === 0 || last.includes(next[0] ?? '')); i++) {
      await sleep(50)
      last = await daemons(img.mnt)
    }
    t.is(last.length, 1)
    t.false(last.includes(next[0] ?? ''), 'a third daemon serves now')
    t.like(await m.api('/api/v1/daemon'), { state: 'RUNNING' })
  }
)

test.serial('PUT /api/v1/daemon/exit without --failover stops the daemon and unmounts', async t => {
  const { tar } = await layer(t)
  const img = await buildImage(t, tar)
  const m = await mountImage(t, { dir: img.dir, bootstrap: img.boot, config: localConfig(img), mnt: img.mnt })
  const exited = new Promise<number | null>(resolve => m.proc.once('exit', code => resolve(code)))
  t.is(await put(m.apisock, '/api/v1/daemon/exit'), 204)
  t.is(await exited, 0)
  t.false((await run('mountpoint', ['-q', img.mnt])).code === 0, 'unmounted')
})
