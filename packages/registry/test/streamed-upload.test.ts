import test, { type ExecutionContext } from 'ava'
import { createHash, randomBytes } from 'node:crypto'
import { setImmediate as tick } from 'node:timers/promises'
import { startFaultProxy, startRegistry, type FaultProxy } from '@nydusjs/testkit'
import { RegistryClient, StreamedBlobUpload, RegistryError } from '../src/index.js'

const REPO = 'nydusjs/stream'
const MiB = 1024 * 1024

/** A registry behind a fault proxy that logs blob requests, and a client for it. */
async function setup(t: ExecutionContext): Promise<{ proxy: FaultProxy; client: RegistryClient }> {
  const reg = await startRegistry(t)
  const proxy = await startFaultProxy(t, reg.url)
  const client = new RegistryClient({ host: proxy.host, scheme: 'http', retries: 1 })
  t.teardown(async () => await client.close())
  return { proxy, client }
}

const digestOf = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex')
const methods = (p: FaultProxy): string =>
  p
    .requests()
    .map(r => r.method)
    .join(' ')

/** Hands `data` over in pieces that do not divide a chunk (so chunks split them), yielding between them as a build would. */
async function feed(up: StreamedBlobUpload, data: Buffer): Promise<void> {
  for (let o = 0; o < data.length; o += 50_000) {
    up.write([data.subarray(o, o + 50_000)])
    await tick()
  }
}

async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise(resolve => setTimeout(resolve, 10))
}

test('a streamed upload sends PATCHes while it is written; the last bytes go in the closing PUT after a HEAD', async t => {
  const { proxy, client } = await setup(t)
  const data = randomBytes(3 * MiB + 12345)
  const up = new StreamedBlobUpload(client, REPO, { chunkSize: MiB })
  await feed(up, data)
  await waitFor(() => up.uploaded >= 3 * MiB)
  t.is(up.uploaded, 3 * MiB, 'whole chunks reached the registry before the blob was finished')
  t.is(await up.finish(digestOf(data), data.length), 'pushed')
  t.is(methods(proxy), 'POST PATCH PATCH PATCH HEAD PUT')
  t.true((await client.blobBuffer(REPO, digestOf(data), 8 * MiB)).equals(data))
})

test('a streamed blob smaller than one chunk goes up in one PUT at the end', async t => {
  const { proxy, client } = await setup(t)
  const data = randomBytes(300 * 1024)
  const up = new StreamedBlobUpload(client, REPO, { chunkSize: MiB })
  await feed(up, data)
  t.is(await up.finish(digestOf(data), data.length), 'pushed')
  t.is(methods(proxy), 'HEAD POST PUT')
  t.true((await client.blobBuffer(REPO, digestOf(data), MiB)).equals(data))
})

test('a streamed blob the registry has already is dropped: exists, and the session cancelled', async t => {
  const { proxy, client } = await setup(t)
  const data = randomBytes(2 * MiB + 5)
  t.is(await client.pushBlob(REPO, { digest: digestOf(data), size: data.length }, (a, b) => data.subarray(a, b + 1)), 'pushed')
  const before = proxy.requests().length
  const up = new StreamedBlobUpload(client, REPO, { chunkSize: MiB })
  await feed(up, data)
  t.is(await up.finish(digestOf(data), data.length), 'exists')
  t.is(
    proxy
      .requests()
      .slice(before)
      .map(r => r.method)
      .join(' '),
    'POST PATCH PATCH HEAD DELETE'
  )
})

test('a streamed upload that fails in transit returns the error from finish, never throws from write, and commits nothing', async t => {
  const { proxy, client } = await setup(t)
  const data = randomBytes(3 * MiB)
  proxy.next('pass') // POST
  proxy.next('reset') // the first PATCH
  const up = new StreamedBlobUpload(client, REPO, { chunkSize: MiB })
  await feed(up, data)
  const res = await up.finish(digestOf(data), data.length)
  t.true(res instanceof RegistryError, String(res))
  t.false(await client.hasBlob(REPO, digestOf(data)))
  t.is(
    await client.pushBlob(REPO, { digest: digestOf(data), size: data.length }, (a, b) => data.subarray(a, b + 1)),
    'pushed',
    'the ordinary push still works'
  )
})

test('a registry that stops answering: past maxBuffered the streamed upload gives up at once, without waiting for a timeout', async t => {
  const { proxy, client } = await setup(t)
  const data = randomBytes(4 * MiB)
  proxy.next('pass') // POST
  proxy.set('stall') // then no answer at all: the PATCH, if it started, and the DELETE that drops the session
  const up = new StreamedBlobUpload(client, REPO, { chunkSize: MiB, maxBuffered: 2 * MiB })
  await feed(up, data)
  const t0 = Date.now()
  const res = await up.finish(digestOf(data), data.length)
  // The DELETE is bounded at 2 s; the client's own timeout is 60 s.
  t.true(Date.now() - t0 < 5000, `finish took ${Date.now() - t0} ms`)
  t.regex(String(res), /more than 2097152 bytes waiting for the registry/)
})

test('finish refuses a size that is not what was written', async t => {
  const { client } = await setup(t)
  const data = randomBytes(1000)
  const up = new StreamedBlobUpload(client, REPO)
  up.write([data])
  t.regex(String(await up.finish(digestOf(data), 999)), /streamed upload got 1000 of 999 bytes/)
})
