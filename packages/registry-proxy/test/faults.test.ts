import { createHash, randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { type AddressInfo, connect } from 'node:net'
import test from 'ava'
import { freePort, pushBlob, startDfdaemon, startFaultProxy, startRegistry, tempDir } from '@nydusjs/testkit'
import { pushTestImages, skopeoBlobs, startMirror } from './helpers.js'

test('no supernode answers: pulls through the mirror still succeed, from the registry', async t => {
  const reg = await startRegistry(t)
  await pushTestImages(t, reg)
  const m = await startMirror(t, { registry: reg.url, nodes: [`127.0.0.1:${await freePort()}`] })
  const direct = await skopeoBlobs(`${reg.host}/lib/bb:1`, await tempDir(t))
  const mirrored = await skopeoBlobs(`${m.addr}/lib/bb:1`, await tempDir(t))
  t.is(mirrored.code, 0, mirrored.stderr)
  t.deepEqual(mirrored.blobs, direct.blobs)
})

test('a registry that closes mid-blob: the pull through the mirror gets the right bytes', async t => {
  const reg = await startRegistry(t)
  const data = Buffer.alloc(6 << 20)
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i)
  const digest = await pushBlob(reg, 'lib/cut', data)
  const proxy = await startFaultProxy(t, reg.url)
  // The HEAD passes; the GET of the whole blob is cut off mid-body, and so is every other first try after it.
  proxy.firstTries(['pass', 'truncate'])
  const m = await startMirror(t, { registry: proxy.url })
  const res = await fetch(`http://${m.addr}/v2/lib/cut/blobs/${digest}`)
  t.is(res.status, 200)
  t.true(Buffer.from(await res.arrayBuffer()).equals(data))
  t.true(proxy.counts().truncate >= 1, 'the fault never happened')
})

test('bad input: a malformed request line or header, an absurd Range, no upstream: a clear 4xx marked as the proxy, and the daemon keeps answering', async t => {
  const reg = await startRegistry(t)
  const digest = await pushBlob(reg, 'lib/a', Buffer.alloc(1000, 1))
  const m = await startMirror(t)
  const [host, port] = m.addr.split(':')
  const raw = async (text: string): Promise<string> =>
    await new Promise((resolve, reject) => {
      const s = connect(Number(port), host, () => s.end(text))
      let out = ''
      s.on('data', b => {
        out += b.toString()
      })
      s.on('close', () => resolve(out))
      s.on('error', reject)
    })
  for (const bad of ['GARBAGE\r\n\r\n', 'GET /v2/ HTTP/1.1\r\nHo st: x\r\n\r\n', `GET /v2/ HTTP/1.1\r\nX: ${'a'.repeat(20_000)}\r\n\r\n`]) {
    const out = await raw(bad)
    t.regex(out, /^HTTP\/1\.1 4\d\d /, JSON.stringify(bad.slice(0, 30)))
    t.regex(out, /X-Dragonfly-Error-Type: proxy/i)
  }
  const none = await fetch(`http://${m.addr}/v2/lib/a/manifests/1`)
  t.is(none.status, 400)
  t.is(none.headers.get('x-dragonfly-error-type'), 'proxy')
  t.regex(await none.text(), /no upstream registry/)
  const absurd = await fetch(`http://${m.addr}/v2/lib/a/blobs/${digest}`, {
    headers: { 'x-dragonfly-registry': reg.url, range: 'bytes=99999999999-' }
  })
  t.is(absurd.status, 416)
  const ping = await fetch(`http://${m.addr}/v2/`, { headers: { 'x-dragonfly-registry': reg.url } })
  t.is(ping.status, 200, 'still answering')
})

test('a peer that serves corrupt pieces: a pull through another mirror still gets the blob with its digest', async t => {
  const reg = await startRegistry(t)
  const data = randomBytes(12 << 20)
  const digest = await pushBlob(reg, 'lib/evil', data)
  const a = await startMirror(t, { registry: reg.url })
  const url = `${reg.url}/v2/lib/evil/blobs/${digest}`
  t.is((await fetch(`http://${a.addr}/v2/lib/evil/blobs/${digest}`)).status, 200)
  // The bad node: registers, claims every piece, answers every piece request with garbage.
  let served = 0
  const bad = createServer((_req, res) => {
    served++
    res.writeHead(206, { 'content-length': 4 << 20 }).end(Buffer.alloc(4 << 20, 0x5a))
  })
  await new Promise<void>(resolve => bad.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    bad.closeAllConnections()
    bad.close()
  })
  const port = (bad.address() as AddressInfo).port
  const sn = `http://${a.sn.addr}`
  const reg1 = await (
    await fetch(`${sn}/peer/registry`, { method: 'POST', body: JSON.stringify({ rawURL: url, cID: 'evil', IP: '127.0.0.1', port }) })
  ).json()
  const { taskId, fileLength, pieceSize } = (reg1 as { data: { taskId: string; fileLength: number; pieceSize: number } }).data
  const hb = setInterval(
    () => void fetch(`${sn}/peer/heartbeat`, { method: 'POST', body: JSON.stringify({ IP: '127.0.0.1', port }) }).catch(() => {}),
    200
  )
  t.teardown(() => clearInterval(hb))
  for (let start = 0; start < fileLength; start += pieceSize)
    await fetch(
      `${sn}/peer/piece/suc?taskId=${taskId}&cid=evil&dstCid=supernode&pieceRange=${start}-${Math.min(fileLength, start + pieceSize) - 1}`
    )
  const b = await startDfdaemon(t, { home: await tempDir(t), nodes: [a.sn.addr], args: ['--registry', reg.url] })
  const res = await fetch(`http://${b.addr}/v2/lib/evil/blobs/${digest}`)
  t.is(res.status, 200)
  t.true(Buffer.from(await res.arrayBuffer()).equals(data), 'a corrupt copy')
  t.true(served > 0, 'the bad node was never asked')
})

test('a registry that sends wrong bytes for a digest: a client already streaming the blob has its connection cut, never a whole wrong blob', async t => {
  const data = randomBytes(24 << 20)
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`
  const wrong = Buffer.from(data)
  wrong[wrong.length - 10] ^= 0xff
  // A registry that is slow to send the end: the client's stream starts before the bad last piece arrives.
  const origin = createServer((req, res) => {
    if (!(req.url ?? '').endsWith(`/blobs/${digest}`)) return void res.writeHead(404).end()
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
    const start = m === null ? 0 : Number(m[1])
    const end = m === null || m[2] === '' ? wrong.length - 1 : Number(m[2])
    const head =
      m === null
        ? { 'content-length': wrong.length }
        : { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${wrong.length}` }
    res.writeHead(m === null ? 200 : 206, head)
    if (req.method === 'HEAD') return void res.end()
    const body = wrong.subarray(start, end + 1)
    res.write(body.subarray(0, body.length - (4 << 20)))
    setTimeout(() => res.end(body.subarray(body.length - (4 << 20))), 1500)
  })
  await new Promise<void>(resolve => origin.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    origin.closeAllConnections()
    origin.close()
  })
  const m = await startMirror(t, { registry: `http://127.0.0.1:${(origin.address() as AddressInfo).port}` })
  const res = await fetch(`http://${m.addr}/v2/lib/bad/blobs/${digest}`)
  t.is(res.status, 200, 'the stream starts as the first pieces arrive')
  await t.throwsAsync(res.arrayBuffer(), undefined, 'a whole answer for a blob that is not its digest')
  t.is((await fetch(`http://${m.addr}/_ping`)).status, 200)
})
