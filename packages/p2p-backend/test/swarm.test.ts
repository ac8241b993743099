import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import test from 'ava'
import { startDfdaemon, startSupernode, tempDir } from '@nydusjs/testkit'
import { blobOrigin, dfget, metric, originBytes } from './helpers.js'

const MiB = 1024 * 1024

test('dfget: 6 downloads of one blob at once through the swarm; every copy right, the origin sends it once, peers trade pieces', async t => {
  const o = await blobOrigin(t, 24 * MiB)
  const sn = await startSupernode(t, { home: await tempDir(t) })
  const runs = await Promise.all(Array.from({ length: 6 }, async () => await dfget(t, ['--url', o.url, '--node', sn.addr])))
  for (const r of runs) {
    t.is(r.code, 0, r.stderr)
    t.true(r.out?.equals(o.data), 'copy differs from the blob')
  }
  t.true(originBytes(o) <= 1.1 * o.data.length, `origin sent ${originBytes(o)} bytes for a ${o.data.length}-byte blob`)
  const m = await sn.get('/metrics')
  t.true(metric(m, 'dragonfly_supernode_pieces_scheduled_total', 'source="peer"') > 0, 'no piece came from a peer')
  t.true(metric(m, 'dragonfly_supernode_upload_bytes_total') < 3 * o.data.length, 'the supernode served most copies itself')
})

test('dfdaemon: range reads of a blob (GET /v2/.../blobs/<digest> with Range) through three nodes; each range right, the origin sends each piece once', async t => {
  const o = await blobOrigin(t, 8 * MiB)
  const sn = await startSupernode(t, { home: await tempDir(t) })
  const nodes = await Promise.all([0, 1, 2].map(async () => await startDfdaemon(t, { home: await tempDir(t), nodes: [sn.addr] })))
  const path = new URL(o.url).pathname
  const upstream = new URL(o.url).origin
  for (const [i, d] of nodes.entries())
    for (const [start, len] of [
      [0, 100],
      [3 * MiB - 10, 20],
      [8 * MiB - 5, 5],
      [i * MiB + 7, MiB]
    ]) {
      const res = await fetch(`http://${d.addr}${path}`, {
        headers: { 'x-dragonfly-registry': upstream, range: `bytes=${start}-${start + len - 1}` }
      })
      t.is(res.status, 206)
      t.true(Buffer.from(await res.arrayBuffer()).equals(o.data.subarray(start, start + len)), `node ${i} range ${start}+${len}`)
    }
  // Lazy tasks: 1 MiB pieces, fetched only when read; each piece left the origin once.
  t.true(originBytes(o) <= 5 * MiB, `origin sent ${originBytes(o)} bytes`)
  const whole = await fetch(`http://${nodes[2].addr}${path}`, { headers: { 'x-dragonfly-registry': upstream } })
  t.is(whole.status, 200)
  t.true(Buffer.from(await whole.arrayBuffer()).equals(o.data))
  t.is(whole.headers.get('docker-content-digest'), o.digest)
  t.true(originBytes(o) <= 1.1 * o.data.length, `origin sent ${originBytes(o)} bytes`)
})

test('a task nobody asks about is dropped with its copy after --task-expire-time; asked again, it is made anew', async t => {
  const o = await blobOrigin(t, 2 * MiB)
  const home = await tempDir(t)
  const sn = await startSupernode(t, { home, args: ['--task-expire-time', '1', '--peer-expire', '1'] })
  const first = await dfget(t, ['--url', o.url, '--node', sn.addr])
  t.is(first.code, 0, first.stderr)
  // (A busy machine may take longer than a second to end dfget: the task can be gone before the first look.)
  let tasks = 1
  for (let i = 0; i < 400 && tasks > 0; i++) {
    await sleep(50)
    tasks = metric(await sn.get('/metrics'), 'dragonfly_supernode_tasks')
  }
  t.is(tasks, 0, 'the task was not dropped')
  t.true(sn.stderr().includes('task expired'), 'no expiry logged')
  t.deepEqual(await readdir(join(home, 'cdn')), [], 'its copy is still on disk')
  const again = await dfget(t, ['--url', o.url, '--node', sn.addr])
  t.is(again.code, 0, again.stderr)
  t.true(again.out?.equals(o.data))
  t.true(originBytes(o) >= 2 * o.data.length, 'the second download came from a fresh copy')
})
