import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import test from 'ava'
import { startDfdaemon, startSupernode, tempDir } from '@nydusjs/testkit'
import { blobOrigin, dfget, metric, originBytes } from './helpers.js'

const MiB = 1024 * 1024

test('a supernode killed mid-transfer: every node finishes through the next supernode in its list, with right bytes', async t => {
  const o = await blobOrigin(t, 48 * MiB)
  const a = await startSupernode(t, { home: await tempDir(t) })
  const b = await startSupernode(t, { home: await tempDir(t) })
  const runs = Array.from({ length: 4 }, async () => await dfget(t, ['--url', o.url, '--node', `${a.addr},${b.addr}`, '--notbs']))
  for (let i = 0; i < 400 && metric(await a.get('/metrics').catch(() => ''), 'dragonfly_supernode_pieces_scheduled_total') === 0; i++)
    await sleep(10)
  a.proc.kill('SIGKILL')
  for (const r of await Promise.all(runs)) {
    t.is(r.code, 0, r.stderr)
    t.true(r.out?.equals(o.data))
  }
  t.true(metric(await b.get('/metrics'), 'dragonfly_supernode_pieces_scheduled_total') > 0, 'the second supernode scheduled nothing')
})

test('no supernode answers: dfget goes back to the source; with --notbs it fails in one line and leaves no file', async t => {
  const o = await blobOrigin(t, 2 * MiB)
  const back = await dfget(t, ['--url', o.url, '--node', '127.0.0.1:1'])
  t.is(back.code, 0, back.stderr)
  t.true(back.out?.equals(o.data))
  t.regex(back.stderr, /no supernode answered; downloading from the source/)
  const strict = await dfget(t, ['--url', o.url, '--node', '127.0.0.1:1', '--notbs'])
  t.not(strict.code, 0)
  t.is(strict.out, undefined, 'a file was left')
  t.regex(strict.stderr, /^dfget: error: no supernode answered, and --notbs forbids the source\n$/)
})

test('a node that uploads corrupt pieces: every copy is still right, and the supernode excludes that node', async t => {
  const o = await blobOrigin(t, 16 * MiB)
  const sn = await startSupernode(t, { home: await tempDir(t) })
  // The bad node: registers, claims every piece, and answers every piece request with garbage.
  let served = 0
  const bad = createServer((_req, res) => {
    served++
    res.writeHead(206, { 'content-length': 4 * MiB }).end(Buffer.alloc(4 * MiB, 0x5a))
  })
  await new Promise<void>(resolve => bad.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    bad.closeAllConnections()
    bad.close()
  })
  const port = (bad.address() as AddressInfo).port
  const reg = await fetch(`http://${sn.addr}/peer/registry`, {
    method: 'POST',
    body: JSON.stringify({ rawURL: o.url, cID: 'evil', IP: '127.0.0.1', port })
  })
  const { data } = (await reg.json()) as { data: { taskId: string; fileLength: number; pieceSize: number } }
  // It heartbeats like any node (a slow machine must not let it expire before it claims anything).
  const hb = setInterval(
    () =>
      void fetch(`http://${sn.addr}/peer/heartbeat`, { method: 'POST', body: JSON.stringify({ IP: '127.0.0.1', port }) }).catch(() => {}),
    200
  )
  t.teardown(() => clearInterval(hb))
  // Wait for the supernode's copy, then claim every piece.
  await dfget(t, ['--url', o.url, '--node', sn.addr])
  for (let start = 0; start < data.fileLength; start += data.pieceSize) {
    const end = Math.min(data.fileLength, start + data.pieceSize) - 1
    await fetch(`http://${sn.addr}/peer/piece/suc?taskId=${data.taskId}&cid=evil&dstCid=supernode&pieceRange=${start}-${end}`)
  }
  const runs = await Promise.all(Array.from({ length: 4 }, async () => await dfget(t, ['--url', o.url, '--node', sn.addr])))
  for (const r of runs) {
    t.is(r.code, 0, r.stderr)
    t.true(r.out?.equals(o.data), 'a corrupt copy')
  }
  t.true(served > 0, 'the bad node was never asked')
  t.true(metric(await sn.get('/metrics'), 'dragonfly_supernode_peer_evictions_total', 'scope="task"') >= 1, 'the bad node was not excluded')
  const after = served
  await dfget(t, ['--url', o.url, '--node', sn.addr])
  t.is(served, after, 'the excluded node was scheduled again')
  t.true(originBytes(o) <= 1.1 * o.data.length)
})

test('a node killed while others download from it: they finish, with right bytes', async t => {
  const o = await blobOrigin(t, 32 * MiB)
  const sn = await startSupernode(t, { home: await tempDir(t) })
  const seed = await startDfdaemon(t, { home: await tempDir(t), nodes: [sn.addr] })
  const path = new URL(o.url).pathname
  const whole = await fetch(`http://${seed.addr}${path}`, { headers: { 'x-dragonfly-registry': new URL(o.url).origin } })
  t.true(Buffer.from(await whole.arrayBuffer()).equals(o.data))
  const runs = Array.from({ length: 3 }, async () => await dfget(t, ['--url', o.url, '--node', sn.addr, '--notbs']))
  for (let i = 0; i < 400 && metric(await sn.get('/metrics'), 'dragonfly_supernode_pieces_scheduled_total', 'source="peer"') === 0; i++)
    await sleep(5)
  seed.proc.kill('SIGKILL')
  for (const r of await Promise.all(runs)) {
    t.is(r.code, 0, r.stderr)
    t.true(r.out?.equals(o.data))
  }
})

test('uploads need a token the supernode signed for that node and piece: none, forged or for another piece gets 403', async t => {
  const o = await blobOrigin(t, 6 * MiB)
  const sn = await startSupernode(t, { home: await tempDir(t) })
  const d = await startDfdaemon(t, { home: await tempDir(t), nodes: [sn.addr] })
  const res = await fetch(`http://${d.addr}${new URL(o.url).pathname}`, { headers: { 'x-dragonfly-registry': new URL(o.url).origin } })
  t.is(res.status, 200)
  await res.arrayBuffer()
  const task = o.digest.replace(':', '-')
  const ask = async (token?: string, range = 'bytes=0-4194303'): Promise<number> =>
    (
      await fetch(`http://${d.addr}/peer/file/${task}`, {
        headers: { range, ...(token === undefined ? {} : { 'x-dragonfly-piece-token': token }) }
      })
    ).status
  t.is(await ask(), 403)
  t.is(await ask('not.a.token'), 403)
  const forged = `${Buffer.from('{"alg":"EdDSA"}').toString('base64url')}.${Buffer.from(JSON.stringify({ task, src: d.addr, dst: 'x', pieces: [0] })).toString('base64url')}.AAAA`
  t.is(await ask(forged), 403)
  t.is(await ask(undefined, 'bytes=5-10'), 416)
  t.is((await fetch(`http://${sn.addr}/peer/file/${task}`, { headers: { range: 'bytes=0-4194303' } })).status, 403)
})

test('bad input to the supernode gets a clear 4xx, and it keeps answering', async t => {
  const sn = await startSupernode(t, { home: await tempDir(t) })
  const base = `http://${sn.addr}`
  const cases: Array<[string, RequestInit | undefined, number, RegExp]> = [
    ['/peer/registry', { method: 'POST', body: 'not json' }, 400, /body is not JSON/],
    ['/peer/registry', { method: 'POST', body: JSON.stringify({ cID: 'x', port: 1 }) }, 400, /rawURL/],
    ['/peer/registry', { method: 'POST', body: JSON.stringify({ rawURL: 'ftp://x/y', cID: 'x', port: 1 }) }, 400, /scheme ftp/],
    ['/peer/registry', { method: 'POST', body: JSON.stringify({ rawURL: 'http://x/y', cID: 'x', port: 99999 }) }, 400, /port/],
    ['/peer/registry', { method: 'POST', body: 'x'.repeat(100_000) }, 400, /larger than/],
    ['/peer/task?taskId=../../etc&srcCid=a', undefined, 400, /taskId/],
    [`/peer/task?taskId=${'a'.repeat(64)}&srcCid=a`, undefined, 404, /not known/],
    ['/peer/piece/suc?taskId=zz', undefined, 400, /taskId/],
    ['/peer/heartbeat', { method: 'POST', body: '{"port":"x"}' }, 400, /port/],
    ['/peer/file/nope', { headers: { range: 'bytes=0-1' } }, 400, /malformed/],
    ['/preheat', { method: 'POST', body: '{}' }, 400, /url/],
    ['/no/such/api', undefined, 404, /no API/]
  ]
  for (const [path, init, status, msg] of cases) {
    const res = await fetch(base + path, init)
    t.is(res.status, status, path)
    t.regex(await res.text(), msg, path)
  }
  t.is(await sn.get('/_ping'), 'OK')
})
