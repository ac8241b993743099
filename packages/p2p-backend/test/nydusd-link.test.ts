import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'ava'
import {
  mountImage,
  mustRun,
  nydusImage,
  pushBlob,
  startDfdaemon,
  startFaultProxy,
  startRegistry,
  startSupernode,
  tempDir
} from '@nydusjs/testkit'

const REPO = 'p2p/image'
const AUTH = Buffer.from('puller:pull-Secret-7').toString('base64')

test.serial(
  'nydusd through the dragonfly link: eight nodes (one nydusd and one dfdaemon each) read one image, every file right, the registry sends each byte about once; without the swarm the registry link serves',
  async t => {
    // An image of 40 files (12 MiB, incompressible) in a private registry behind a counting proxy.
    const dir = await tempDir(t)
    const root = join(dir, 'root')
    await mkdir(root)
    const files = new Map<string, Buffer>()
    for (let i = 0; i < 40; i++) {
      const b = randomBytes(i % 4 === 0 ? 1200 * 1024 : 4096 + i * 1000)
      files.set(`f${i}`, b)
      await writeFile(join(root, `f${i}`), b)
    }
    await mustRun('tar', ['-cf', join(dir, 'l.tar'), '-C', root, '.'])
    const r = await nydusImage(['create', join(dir, 'l.tar'), '--bootstrap', join(dir, 'image.boot'), '--blob-dir', join(dir, 'blobs')])
    t.is(r.code, 0, r.stderr)
    const reg = await startRegistry(t, { auth: { type: 'htpasswd', users: { puller: 'pull-Secret-7' } } })
    let blobBytes = 0
    for (const b of await readdir(join(dir, 'blobs'))) {
      const data = await readFile(join(dir, 'blobs', b))
      blobBytes += data.length
      await pushBlob(reg, REPO, data, `Basic ${AUTH}`)
    }
    const origin = await startFaultProxy(t, reg.url)
    const served = (): number => [...origin.blobBytes().values()].reduce((a, b) => a + b, 0)

    const sn = await startSupernode(t, { home: await tempDir(t) })
    const nodes = await Promise.all(
      [0, 1, 2, 3, 4, 5, 6, 7].map(async () => await startDfdaemon(t, { home: await tempDir(t), nodes: [sn.addr] }))
    )
    const registry = { type: 'registry', config: { scheme: 'http', host: origin.host, repo: REPO, auth: AUTH } }
    const mount = async (proxy: string): Promise<string> => {
      const d = await tempDir(t)
      const mnt = join(d, 'mnt')
      await mkdir(mnt)
      await mountImage(t, {
        dir: d,
        bootstrap: join(dir, 'image.boot'),
        mnt,
        config: { device: { backend: { type: 'chain', config: { backends: [{ type: 'dragonfly', config: { proxy } }, registry] } } } }
      })
      return mnt
    }
    const mnts = await Promise.all(nodes.map(async n => await mount(`http://${n.addr}`)))
    await Promise.all(
      mnts.map(async mnt => {
        for (const [name, want] of files) t.true((await readFile(join(mnt, name))).equals(want), `${mnt}/${name}`)
      })
    )
    t.true(served() <= 1.1 * blobBytes, `the registry sent ${served()} bytes for ${blobBytes} bytes of blobs read by eight nodes`)
    t.true(served() >= 0.9 * blobBytes)
    for (const n of nodes) t.false(n.stderr().includes(AUTH), 'a credential reached a dfdaemon log')
    t.false(sn.stderr().includes(AUTH), 'a credential reached the supernode log')

    // The swarm gone: a fresh node's nydusd reads through the registry link.
    for (const n of nodes) await n.stop()
    await sn.stop()
    const before = served()
    const alone = await mount(`http://${nodes[0].addr}`)
    for (const [name, want] of files) t.true((await readFile(join(alone, name))).equals(want), `without the swarm: ${name}`)
    t.true(served() - before >= 0.9 * blobBytes, 'the registry link did not serve')
  }
)
