import test from 'ava'
import { NydusError } from '@nydusjs/errors'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdir, readdir, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { startBlobServer, tempDir } from '@nydusjs/testkit'
import { ChunkCache, HttpBackend, LocalFsBackend, RegistryBackend } from '../src/index.js'

const ID = 'a'.repeat(64)
const data = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251))

test('localfs: positional range reads; a missing blob is ERR_BLOB_NOT_FOUND; a bad id is refused', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, ID), data)
  const b = new LocalFsBackend(dir)
  t.true((await b.read(ID, 100, 50)).equals(data.subarray(100, 150)))
  t.is(await b.size(ID), data.length)
  const short = await t.throwsAsync(b.read(ID, 9_990, 20), { instanceOf: NydusError })
  t.is(short?.code, 'ERR_BACKEND_SHORT_READ')
  const missing = await t.throwsAsync(b.read('b'.repeat(64), 0, 1), { instanceOf: NydusError })
  t.is(missing?.code, 'ERR_BLOB_NOT_FOUND')
  await t.throwsAsync(b.read('../../etc/passwd', 0, 1), { instanceOf: TypeError })
  await b.close()
})

test('http: range GETs against a loopback server; 404 and short bodies are typed errors', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, ID), data)
  const srv = await startBlobServer(t, dir)
  const b = new HttpBackend({ url: srv.url, timeoutMs: 2000 })
  t.true((await b.read(ID, 1234, 4321)).equals(data.subarray(1234, 5555)))
  t.is(srv.bytesSent(), 4321)
  t.is(await b.size(ID), data.length)
  const nf = await t.throwsAsync(b.read('c'.repeat(64), 0, 10), { instanceOf: NydusError })
  t.is(nf?.code, 'ERR_BLOB_NOT_FOUND')
  const short = await t.throwsAsync(b.read(ID, 9_000, 5_000), { instanceOf: NydusError })
  t.is(short?.code, 'ERR_BACKEND_SHORT_READ')
  await b.close()
})

test('http: a server that ignores Range still yields the right bytes', async t => {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': data.length })
    res.end(data)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.close()
  })
  const b = new HttpBackend({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/x` })
  t.true((await b.read(ID, 500, 700)).equals(data.subarray(500, 1200)))
  await b.close()
})

test("http: readInto fills the caller's (shared) buffer with exactly the range", async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, ID), data)
  const srv = await startBlobServer(t, dir)
  const b = new HttpBackend({ url: srv.url })
  const dst = Buffer.from(new SharedArrayBuffer(3000))
  await b.readInto(ID, 777, dst)
  t.true(dst.equals(data.subarray(777, 3777)))
  await b.close()
})

/** A server that answers every GET wrongly, as `mode` says; counts what it sent. */
async function misbehaving(
  t: Parameters<typeof tempDir>[0]
): Promise<{ url: string; host: string; mode: (m: 'endless' | 'wrong-start' | 'too-long') => void; sent: () => number }> {
  let mode = 'endless'
  let sent = 0
  const server = createServer((_req, res) => {
    if (mode === 'endless') {
      // Ignores Range and streams the pattern forever (until the client hangs up).
      res.writeHead(200)
      const pump = (): void => {
        while (!res.destroyed && res.write(data)) sent += data.length
      }
      res.on('drain', pump)
      pump()
    } else if (mode === 'wrong-start') {
      res.writeHead(206, { 'content-range': `bytes 0-699/${data.length}`, 'content-length': 700 })
      res.end(data.subarray(0, 700))
    } else {
      res.writeHead(206, { 'content-range': `bytes 500-1199/${data.length}` })
      res.end(data.subarray(500, 2500))
    }
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url: `http://${host}/x`,
    host,
    mode: m => {
      mode = m
    },
    sent: () => sent
  }
}

test('http, registry: a server that ignores Range is read only as far as needed; a wrong or overlong range is refused by name', async t => {
  const srv = await misbehaving(t)
  const backends = [
    new HttpBackend({ url: srv.url, timeoutMs: 3000 }),
    new RegistryBackend({ scheme: 'http', host: srv.host, repo: 'r/x', timeoutMs: 3000 })
  ]
  for (const b of backends) {
    srv.mode('endless')
    const got = await Promise.race([b.read(ID, 500, 700), new Promise<string>(resolve => setTimeout(() => resolve('hung'), 5000))])
    t.true(
      Buffer.isBuffer(got) && got.equals(data.subarray(500, 1200)),
      `${b.name}: the right bytes, without waiting for the end of an endless body`
    )
    t.true(srv.sent() < 64 * 1024 * 1024, `${b.name}: the server got to send ${srv.sent()} bytes`)
    srv.mode('wrong-start')
    const wrong = await t.throwsAsync(b.read(ID, 500, 700), { instanceOf: NydusError })
    t.is(wrong?.code, 'ERR_BACKEND_HTTP')
    t.regex(wrong?.message ?? '', /asked for bytes from 500, the server sent them from 0/)
    srv.mode('too-long')
    const long = await t.throwsAsync(b.read(ID, 500, 700), { instanceOf: NydusError })
    t.regex(long?.message ?? '', /range 500\+700: the server sent more than 700 bytes/)
    await b.close()
  }
})

test('http: a stalled server times out with ERR_BACKEND_TIMEOUT', async t => {
  const server = createServer(() => {
    /* never answers */
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const b = new HttpBackend({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`, timeoutMs: 300 })
  const err = await t.throwsAsync(b.read(ID, 0, 10), { instanceOf: NydusError })
  t.is(err?.code, 'ERR_BACKEND_TIMEOUT')
  await b.close()
})

test('chunk cache: survives a reopen, drops torn temporary files, evicts least recently used past the limit', async t => {
  const dir = await tempDir(t)
  const c = await ChunkCache.open(dir, { sizeLimit: 3000 })
  await c.put(ID, 0, data.subarray(0, 1000))
  await c.put(ID, 1000, data.subarray(1000, 2000))
  t.true((await c.get(ID, 0, 1000))!.equals(data.subarray(0, 1000)))
  await c.put(ID, 2000, data.subarray(2000, 3000))
  await c.put(ID, 3000, data.subarray(3000, 4000))
  t.false(c.has(ID, 1000), 'offset 1000 was the least recently used')
  t.true(c.has(ID, 0))
  t.is(c.size, 3000)
  t.deepEqual((await readdir(join(dir, ID))).sort(), ['0.1000', '2000.1000', '3000.1000'], 'offset and size name each chunk file')
  await writeFile(join(dir, ID, '.5000.abcd.tmp'), 'torn')
  await writeFile(join(dir, ID, '6000'), 'a name without a size')
  await mkdir(join(dir, 'not-a-blob'), { recursive: true })
  const again = await ChunkCache.open(dir, { sizeLimit: 3000 })
  t.is(again.count, 3)
  t.is(again.size, 3000, 'sizes come from the names')
  t.false(again.has(ID, 6000))
  t.true((await again.get(ID, 3000, 1000))!.equals(data.subarray(3000, 4000)))
  t.deepEqual((await readdir(join(dir, ID))).sort(), ['0.1000', '2000.1000', '3000.1000'], 'leftovers are gone')
  t.is(await again.get(ID, 3000, 999), undefined, 'a size mismatch is a miss, and the file is dropped')
  t.false(again.has(ID, 3000))
})

test('chunk cache: get into a caller buffer returns a view of it; a file cut short since it was indexed is a miss and dropped', async t => {
  const dir = await tempDir(t)
  const c = await ChunkCache.open(dir)
  await c.put(ID, 0, data.subarray(0, 1000))
  await c.put(ID, 1000, data.subarray(1000, 2000))
  const dst = Buffer.alloc(4096, 0xee)
  const got = await c.get(ID, 0, 1000, dst)
  t.true(got!.equals(data.subarray(0, 1000)))
  t.is(got!.buffer, dst.buffer, 'a view of the caller buffer')
  t.is(dst[1000], 0xee, 'nothing written past the chunk')
  await truncate(join(dir, ID, '1000.1000'), 600)
  t.is(await c.get(ID, 1000, 1000, dst), undefined)
  t.false(c.has(ID, 1000))
  t.is(c.size, 1000)
})
