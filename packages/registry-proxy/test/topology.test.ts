import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'ava'
import { debianFixture, run, skopeoPush, startDfdaemon, startRegistry, startSupernode, startSwarmNet, tempDir } from '@nydusjs/testkit'
import { snMetric } from './helpers.js'

test.serial(
  'eight nodes (network namespaces on a bridge) pull the Debian/python3 image through their own mirrors at once: every copy right, the registry sends each blob about once; a mirror refuses other hosts',
  async t => {
    const net = await startSwarmNet(t, 10)
    if (net.why !== undefined) t.log(`${net.why}: the nodes run on loopback addresses`)
    const [originNs, snNs, ...nodeNs] = net.nodes
    const reg = await startRegistry(t, { netns: { nsIp: originNs.ip, prefix: originNs.prefix } })
    const { oci } = await debianFixture()
    await skopeoPush(`${oci}:latest`, `${reg.host}/lib/debian:1`)
    // The image's compressed size: what the registry would send one puller.
    const direct = await tempDir(t)
    const copy = await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${reg.host}/lib/debian:1`, `oci:${direct}:x`])
    t.is(copy.code, 0, copy.stderr)
    const blobs = (await readdir(join(direct, 'blobs', 'sha256'))).sort()
    let size = 0
    for (const b of blobs) size += (await readFile(join(direct, 'blobs', 'sha256', b))).length
    const sn = await startSupernode(t, { home: await tempDir(t), host: snNs.ip, prefix: snNs.prefix })
    const nodes = await Promise.all(
      nodeNs.map(
        async n =>
          await startDfdaemon(t, { home: await tempDir(t), host: n.ip, prefix: n.prefix, nodes: [sn.addr], args: ['--registry', reg.url] })
      )
    )
    const sentBefore = net.loopback ? 0 : await originNs.sentBytes()
    const outs = await Promise.all(nodeNs.map(async () => await tempDir(t)))
    const pulls = await Promise.all(
      nodeNs.map(
        async (n, i) =>
          await run(
            n.prefix[0],
            [
              ...n.prefix.slice(1),
              'skopeo',
              'copy',
              '--quiet',
              '--src-tls-verify=false',
              `docker://${nodes[i].addr}/lib/debian:1`,
              `oci:${outs[i]}:x`
            ],
            { timeoutMs: 600_000 }
          )
      )
    )
    for (const [i, p] of pulls.entries()) {
      t.is(p.code, 0, p.stderr)
      t.deepEqual((await readdir(join(outs[i], 'blobs', 'sha256'))).sort(), blobs, `node ${i}: blobs`)
    }
    const sent = net.loopback ? await snMetric(sn, 'dragonfly_supernode_origin_bytes_total') : (await originNs.sentBytes()) - sentBefore
    t.log(
      `the registry sent ${(sent / 2 ** 20).toFixed(1)} MiB for an image of ${(size / 2 ** 20).toFixed(1)} MiB pulled by ${nodes.length} nodes`
    )
    t.true(sent <= 1.15 * size, `the registry sent ${sent} bytes for a ${size}-byte image`)
    t.true((await snMetric(sn, 'dragonfly_supernode_pieces_scheduled_total{source="peer"}')) > 0, 'no peer traded a piece')
    if (!net.loopback) {
      // Another host (node 0 asking node 1's mirror) is refused: a node is no open proxy into its network.
      const other = await run(nodeNs[0].prefix[0], [...nodeNs[0].prefix.slice(1), 'curl', '-s', '-i', `http://${nodes[1].addr}/v2/`])
      t.regex(other.stdout, /^HTTP\/1\.1 403/)
      t.regex(other.stdout, /x-dragonfly-error-type: proxy/i)
    }
  }
)
