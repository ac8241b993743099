import test from 'ava'
import { mkdir, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { NydusError } from '@nydusjs/errors'
import { tempDir } from '@nydusjs/testkit'
import { compileFilters, OverlaySnapshotter } from '../src/index.js'

async function open(t: Parameters<typeof tempDir>[0]): Promise<OverlaySnapshotter> {
  const sn = await OverlaySnapshotter.open(await tempDir(t))
  t.teardown(async () => await sn.close())
  return sn
}

const code = (e: unknown): string | undefined => (e as NydusError | undefined)?.code

test("prepare, commit, view: mounts as containerd's overlayfs snapshotter gives them; Mounts is idempotent", async t => {
  const sn = await open(t)
  const base = await sn.prepare('ns/1/base', '', {})
  t.is(base[0].type, 'bind')
  t.deepEqual(base[0].options, ['rw', 'rbind'])
  await sn.commit('layer-1', 'ns/1/base', { 'containerd.io/snapshot.ref': 'sha256:aa' })
  await sn.prepare('ns/2/up', 'layer-1', {})
  await sn.commit('layer-2', 'ns/2/up', {})
  const rw = await sn.prepare('ns/3/ctr', 'layer-2', {})
  t.is(rw[0].type, 'overlay')
  t.regex(rw[0].options.join(','), /workdir=.*,upperdir=.*,lowerdir=.*\/fs:.*\/fs$/)
  t.deepEqual(await sn.mounts('ns/3/ctr'), rw)
  t.deepEqual(await sn.mounts('ns/3/ctr'), rw)
  const ro = await sn.view('ns/4/view', 'layer-1', {})
  t.deepEqual(ro[0].options, ['ro', 'rbind'])
  t.is(sn.stat('layer-1').kind, 'COMMITTED')
  t.is(sn.stat('layer-1').labels['containerd.io/snapshot.ref'], 'sha256:aa')
  t.is(sn.stat('ns/3/ctr').parent, 'layer-2')
})

test("errors have containerd's kinds: exists, not found, children first, only active commits", async t => {
  const sn = await open(t)
  await sn.prepare('a', '', {})
  t.is(code(await t.throwsAsync(sn.prepare('a', '', {}))), 'ERR_SNAPSHOT_EXISTS')
  t.is(code(await t.throwsAsync(sn.prepare('b', 'missing', {}))), 'ERR_SNAPSHOT_NOT_FOUND')
  t.is(code(await t.throwsAsync(sn.prepare('b', 'a', {}))), 'ERR_BAD_ARGUMENT', 'an active parent is refused')
  await sn.commit('c', 'a', {})
  t.is(code(await t.throwsAsync(sn.commit('d', 'c', {}))), 'ERR_SNAPSHOT_IN_USE')
  await sn.prepare('child', 'c', {})
  t.is(code(await t.throwsAsync(sn.remove('c'))), 'ERR_SNAPSHOT_IN_USE')
  t.is(code(t.throws(() => sn.stat('nope'))), 'ERR_SNAPSHOT_NOT_FOUND')
  t.is(code(await t.throwsAsync(sn.prepare('big', '', { k: 'v'.repeat(5000) }))), 'ERR_BAD_ARGUMENT')
  await sn.remove('child')
  await sn.remove('c')
  t.deepEqual(sn.list([]), [])
})

test('update changes labels by field mask; list filters as containerd sends them', async t => {
  const sn = await open(t)
  await sn.prepare('k', '', { a: '1', b: '2' })
  await sn.commit('sha256:x', 'k', { 'containerd.io/snapshot.ref': 'sha256:x' })
  await sn.prepare('up', 'sha256:x', {})
  t.deepEqual((await sn.update('sha256:x', { a: '9', c: '3' }, ['labels.a', 'labels.b'])).labels, {
    a: '9',
    'containerd.io/snapshot.ref': 'sha256:x'
  })
  t.deepEqual((await sn.update('sha256:x', { z: '1' }, [])).labels, { z: '1' })
  t.is(code(await t.throwsAsync(sn.update('sha256:x', {}, ['parent']))), 'ERR_BAD_ARGUMENT')
  await sn.update('sha256:x', { 'containerd.io/snapshot.ref': 'sha256:x' }, ['labels.containerd.io/snapshot.ref'])
  const names = (f: string[]): string[] => sn.list(f).map(i => i.name)
  t.deepEqual(names(['labels."containerd.io/snapshot.ref"==sha256:x']), ['sha256:x'])
  t.deepEqual(names(['parent==sha256:x']), ['up'])
  t.deepEqual(names(['kind==active', 'name==sha256:x']).sort(), ['sha256:x', 'up'])
  t.deepEqual(names(['labels."containerd.io/snapshot.ref"==sha256:x,parent==nope']), [])
  t.deepEqual(names(['name~=^sha']), ['sha256:x'])
  t.deepEqual(names(['parent==']), ['sha256:x'], 'containerd asks for a layer without a parent with an empty value')
  t.deepEqual(names(['parent']), ['up'])
  t.true(compileFilters(['labels.z'])({ name: 'n', parent: '', kind: 'VIEW', labels: { z: '' } }))
  t.throws(() => compileFilters(['name~=(']), { message: /invalid regular expression/ })
})

test("usage counts the layer's own bytes; cleanup removes directories no record names", async t => {
  const root = await tempDir(t)
  const sn = await OverlaySnapshotter.open(root)
  t.teardown(async () => await sn.close())
  const [m] = await sn.prepare('u', '', {})
  await writeFile(join(m.source, 'f'), Buffer.alloc(100_000, 1))
  const u = await sn.usage('u')
  t.true(u.size >= 100_000, String(u.size))
  t.is(u.inodes, 2)
  await mkdir(join(root, 'snapshots', '999', 'fs'), { recursive: true })
  t.deepEqual(await sn.cleanup(), ['999'])
  t.deepEqual((await readdir(join(root, 'snapshots'))).sort(), ['1'])
})

test('the store survives a reopen (records are committed transactions)', async t => {
  const root = await tempDir(t)
  const a = await OverlaySnapshotter.open(root)
  await a.prepare('p', '', { x: 'y' })
  await a.commit('c', 'p', {})
  await a.close()
  const b = await OverlaySnapshotter.open(root)
  t.teardown(async () => await b.close())
  t.is(b.stat('c').labels.x, 'y')
  await b.prepare('q', '', {})
  t.not(b.store.get('q')?.id, b.store.get('c')?.id, 'ids are not reused after a reopen')
})
