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
  startSwarmNet,
  tempDir
} from '@nydusjs/testkit'

const REPO = 'p2p/image'
const AUTH = Buffer.from('puller:pull-Secret-7').toString('base64')

test.serial(
  'nydusd through the dragonfly link: eight nodes (network namespaces, one nydusd and one dfdaemon each) read one image, every file right, the registry sends each byte about once; without the swarm the registry link serves',
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
    // The supernode and the nodes in namespaces on one bridge; the registry (behind a counting proxy on the bridge) on the host.
    const net = await startSwarmNet(t, 9)
    if (net.why !== undefined) t.log(`${net.why}: the nodes run on loopback addresses`)
    const origin = await startFaultProxy(t, reg.url, { host: net.hostIp })
    const served = (): number => [...origin.blobBytes().values()].reduce((a, b) => a + b, 0)
    const [snNet, ...nodeNets] = net.nodes
    const sn = await startSupernode(t, { home: await tempDir(t), host: snNet.ip, prefix: snNet.prefix })
    const nodes = await Promise.all(
      nodeNets.map(async n => await startDfdaemon(t, { home: await tempDir(t), host: n.ip, prefix: n.prefix, nodes: [sn.addr] }))
    )
    const registry = { type: 'registry', config: { scheme: 'http', host: origin.host, repo: REPO, auth: AUTH } }
    // nydusd enters its node's network namespace only: its FUSE mount stays visible to the test.
    const mount = async (i: number): Promise<string> => {
      const d = await tempDir(t)
      const mnt = join(d, 'mnt')
      await mkdir(mnt)
      const proxy = `http://${nodes[i].addr}`
      await mountImage(t, {
        dir: d,
        bootstrap: join(dir, 'image.boot'),
        mnt,
        prefix: nodeNets[i].netPrefix,
        config: { device: { backend: { type: 'chain', config: { backends: [{ type: 'dragonfly', config: { proxy } }, registry] } } } }
      })
      return mnt
    }
    const mnts = await Promise.all(nodes.map(async (_, i) => await mount(i)))
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
    const alone = await mount(0)
    for (const [name, want] of files) t.true((await readFile(join(alone, name))).equals(want), `without the swarm: ${name}`)
    t.true(served() - before >= 0.9 * blobBytes, 'the registry link did not serve')
  }
)
