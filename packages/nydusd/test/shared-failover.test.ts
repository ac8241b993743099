import test from 'ava'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { isMounted, killUnder, nydusdBin, run, startSharedNydusd, tempDir } from '@nydusjs/testkit'
import { buildImage, type Image, localConfig } from './helpers.js'
import { allRight, layer, startReader } from './slow-reader.js'

/** The keepers (sh) holding sessions of `mnt`. */
const keepers = async (mnt: string): Promise<string[]> =>
  (await run('pgrep', ['-f', `nydusd-keeper ${mnt}( |$)`])).stdout.trim().split('\n').filter(Boolean)

test.serial(
  'shared --supervisor: the daemon killed with SIGKILL mid-read; the next one started with the file takes every session over, readers see right bytes and no error',
  async t => {
    const root = await tempDir(t, 'shared-failover-')
    const imgs: Image[] = []
    const wants: Array<Map<string, string>> = []
    for (let i = 0; i < 2; i++) {
      const { tar, want } = await layer(t)
      imgs.push(await buildImage(t, tar))
      wants.push(want)
    }
    for (const img of imgs) t.teardown(async () => await killUnder(img.mnt))
    const args = ['--supervisor', join(root, 'shared.state')]
    const first = await startSharedNydusd(t, { apisock: join(root, 'api.sock'), args })
    for (const img of imgs) {
      const r = await first.mount(img.mnt, { source: img.boot, fs_type: 'rafs', config: localConfig(img) })
      t.is(r.status, 200, r.body)
    }
    const state = JSON.parse(await readFile(join(root, 'shared.state'), 'utf8'))
    t.deepEqual(
      state.mounts.map((m: { mountpoint: string }) => m.mountpoint),
      imgs.map(i => i.mnt)
    )
    const readers = imgs.map(img => startReader(img.mnt))
    await sleep(700)
    first.proc.kill('SIGKILL')
    await sleep(300)
    // Nobody serves the mounts now; they stay, held, and readers wait.
    for (const img of imgs) t.true(await isMounted(img.mnt), `${img.mnt} stays mounted`)
    const second = await startSharedNydusd(t, { apisock: join(root, 'api.sock'), args })
    const outs = await Promise.all(readers)
    for (const [i, out] of outs.entries()) allRight(t, out, wants[i]!)
    const mounts = (await second.get('/api/v1/mount')) as Array<{ mountpoint: string; state: string }>
    t.deepEqual(
      mounts.map(m => [m.mountpoint, m.state]),
      imgs.map(i => [i.mnt, 'RUNNING'])
    )
    t.regex(second.logs(), /mount taken over from a dead daemon/)
    // The old keepers went once their sessions were taken: one keeper per mount, the new daemon's.
    for (const img of imgs) t.is((await keepers(img.mnt)).length, 1, `keepers of ${img.mnt}`)
    // A clean stop empties the file: a daemon started after it has nothing to take over.
    t.is(await second.stop(), 0)
    t.deepEqual(JSON.parse(await readFile(join(root, 'shared.state'), 'utf8')).mounts, [])
    for (const img of imgs) t.false(await isMounted(img.mnt))
  }
)

test('shared --supervisor: a bad supervisor file is refused in one line naming it; --supervisor with an image is a usage error', async t => {
  const root = await tempDir(t, 'shared-failover-')
  const file = join(root, 'shared.state')
  await writeFile(file, JSON.stringify({ version: 1, mounts: [{ mountpoint: 'relative', source: 'x', config: {}, keeper: 1 }] }))
  const bad = await run(process.execPath, [nydusdBin, '--apisock', join(root, 'api.sock'), '--supervisor', file])
  t.not(bad.code, 0)
  t.is(bad.stderr.trim().split('\n').length, 1, bad.stderr)
  t.true(bad.stderr.includes(`supervisor state ${file}: mounts.0.mountpoint`), bad.stderr)
  const usage = await run(process.execPath, [nydusdBin, '--bootstrap', 'b', '--config', 'c', '--mountpoint', root, '--supervisor', file])
  t.is(usage.code, 2)
  t.regex(usage.stderr, /--supervisor is for a shared daemon/)
})
