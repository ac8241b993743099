import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import test from 'ava'
import { mountImage, mustRun, nydusImage, pushBlob, startDfdaemon, startRegistry, startSupernode, tempDir } from '@nydusjs/testkit'
import { snMetric } from './helpers.js'

const REPO = 'lib/lazy'

test("nydusd's registry backend with nydus's proxy config: reads go through the mirror; while its ping_url fails they go to the registry; when it answers again they come back", async t => {
  const dir = await tempDir(t)
  const root = join(dir, 'root')
  await mkdir(root)
  const files = new Map<string, Buffer>()
  for (let i = 0; i < 30; i++) {
    files.set(`f${i}`, randomBytes(600 * 1024))
    await writeFile(join(root, `f${i}`), files.get(`f${i}`)!)
  }
  await mustRun('tar', ['-cf', join(dir, 'l.tar'), '-C', root, '.'])
  const made = await nydusImage(['create', join(dir, 'l.tar'), '--bootstrap', join(dir, 'image.boot'), '--blob-dir', join(dir, 'blobs')])
  t.is(made.code, 0, made.stderr)
  const reg = await startRegistry(t)
  for (const b of await readdir(join(dir, 'blobs'))) await pushBlob(reg, REPO, await readFile(join(dir, 'blobs', b)))
  const sn = await startSupernode(t, { home: await tempDir(t) })
  const home = await tempDir(t)
  let d = await startDfdaemon(t, { home, nodes: [sn.addr] })
  const port = Number(d.addr.split(':')[1])
  const mnt = join(dir, 'mnt')
  await mkdir(mnt)
  const proxy = { url: `http://${d.addr}`, ping_url: `http://${d.addr}/_ping`, check_interval: 0.2, fallback: true }
  await mountImage(t, {
    dir,
    bootstrap: join(dir, 'image.boot'),
    mnt,
    config: { device: { backend: { type: 'registry', config: { scheme: 'http', host: reg.host, repo: REPO, proxy } } } }
  })
  const readSome = async (from: number, to: number): Promise<void> => {
    for (let i = from; i < to; i++) t.true((await readFile(join(mnt, `f${i}`))).equals(files.get(`f${i}`)!), `f${i}`)
  }
  await readSome(0, 10)
  const viaSwarm = await snMetric(sn, 'dragonfly_supernode_origin_bytes_total')
  t.true(viaSwarm > 0, 'nothing went through the proxy')
  await d.stop()
  await sleep(600)
  await readSome(10, 20)
  t.is(await snMetric(sn, 'dragonfly_supernode_origin_bytes_total'), viaSwarm, 'the swarm served while its daemon was down?')
  d = await startDfdaemon(t, { home, nodes: [sn.addr], port })
  await sleep(600)
  await readSome(20, 30)
  t.true((await snMetric(sn, 'dragonfly_supernode_origin_bytes_total')) > viaSwarm, 'reads did not come back to the proxy')
})
