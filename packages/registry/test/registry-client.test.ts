import test, { type ExecutionContext } from 'ava'
import { createHash, randomBytes } from 'node:crypto'
import { startFaultProxy, startRegistry, type FaultProxy } from '@nydusjs/testkit'
import { RegistryClient } from '../src/index.js'

const REPO = 'nydusjs/push'
const MiB = 1024 * 1024

function blob(size: number): { data: Buffer; desc: { digest: string; size: number } } {
  const data = randomBytes(size)
  return { data, desc: { digest: 'sha256:' + createHash('sha256').update(data).digest('hex'), size } }
}

const slice =
  (data: Buffer) =>
  (start: number, end: number): Buffer =>
    data.subarray(start, end + 1)

/** A registry behind a fault proxy that logs blob requests, and a client for it. */
async function setup(t: ExecutionContext, uploadChunkSize: number): Promise<{ proxy: FaultProxy; client: RegistryClient }> {
  const reg = await startRegistry(t)
  const proxy = await startFaultProxy(t, reg.url)
  const client = new RegistryClient({ host: proxy.host, scheme: 'http', uploadChunkSize, retries: 2 })
  t.teardown(async () => await client.close())
  return { proxy, client }
}

const methods = (p: { requests: () => Array<{ method: string }> }): string =>
  p
    .requests()
    .map(r => r.method)
    .join(' ')

test('a blob larger than uploadChunkSize goes up in PATCH chunks, then an empty PUT; a second push is one HEAD', async t => {
  const { proxy, client } = await setup(t, MiB)
  const b = blob(3 * MiB + 12345)
  const sent: number[] = []
  t.is(await client.pushBlob(REPO, b.desc, slice(b.data), [], n => sent.push(n)), 'pushed')
  t.is(methods(proxy), 'HEAD POST PATCH PATCH PATCH PATCH PUT')
  t.is(
    sent.reduce((a, n) => a + n, 0),
    b.data.length
  )
  t.true((await client.blobBuffer(REPO, b.desc.digest, 8 * MiB)).equals(b.data))
  const before = proxy.requests().length
  t.is(await client.pushBlob(REPO, b.desc, slice(b.data)), 'exists')
  t.deepEqual(
    proxy
      .requests()
      .slice(before)
      .map(r => r.method),
    ['HEAD']
  )
})

test('a blob up to uploadChunkSize goes up in one PUT', async t => {
  const { proxy, client } = await setup(t, 4 * MiB)
  const b = blob(3 * MiB)
  t.is(await client.pushBlob(REPO, b.desc, slice(b.data)), 'pushed')
  t.is(methods(proxy), 'HEAD POST PUT')
  t.true((await client.blobBuffer(REPO, b.desc.digest, 8 * MiB)).equals(b.data))
})

test('a registry that refuses PATCH gets the blob in one PUT on a fresh upload', async t => {
  const { proxy, client } = await setup(t, MiB)
  const b = blob(2 * MiB + 1)
  proxy.next('pass', 2) // HEAD, POST
  proxy.next('status405') // the first PATCH
  t.is(await client.pushBlob(REPO, b.desc, slice(b.data)), 'pushed')
  t.is(methods(proxy), 'HEAD POST PATCH POST PUT')
  t.true((await client.blobBuffer(REPO, b.desc.digest, 8 * MiB)).equals(b.data))
})

test('a connection reset mid-upload resumes where the registry says the upload stands, and the blob arrives whole', async t => {
  const { proxy, client } = await setup(t, MiB)
  const b = blob(2 * MiB + 7)
  proxy.next('pass', 3) // HEAD, POST, first PATCH
  proxy.next('reset') // the second PATCH
  t.is(await client.pushBlob(REPO, b.desc, slice(b.data)), 'pushed')
  t.is(proxy.counts().reset, 1)
  t.is(methods(proxy), 'HEAD POST PATCH PATCH GET PATCH PATCH PUT', 'the first chunk is not sent again')
  t.true((await client.blobBuffer(REPO, b.desc.digest, 8 * MiB)).equals(b.data))
})

test('an upload cut in the middle of a chunk body starts afresh when the registry dropped the session, and the blob arrives whole', async t => {
  const { proxy, client } = await setup(t, MiB)
  const b = blob(2 * MiB + 7)
  proxy.next('pass', 3) // HEAD, POST, first PATCH
  proxy.next('cutBody') // half of the second PATCH reaches the registry
  t.is(await client.pushBlob(REPO, b.desc, slice(b.data)), 'pushed')
  t.is(proxy.counts().cutBody, 1)
  // docker's registry cancels a session whose state no longer matches what it stored, so the status GET fails.
  t.is(methods(proxy), 'HEAD POST PATCH PATCH GET POST PATCH PATCH PATCH PUT')
  t.true((await client.blobBuffer(REPO, b.desc.digest, 8 * MiB)).equals(b.data))
})

test('a blob in another repository of the same registry is mounted, not uploaded', async t => {
  const { proxy, client } = await setup(t, MiB)
  const b = blob(100_000)
  t.is(await client.pushBlob('nydusjs/base', b.desc, slice(b.data)), 'pushed')
  const before = proxy.requests().length
  t.is(await client.pushBlob(REPO, b.desc, slice(b.data), ['nydusjs/base']), 'mounted')
  t.deepEqual(
    proxy
      .requests()
      .slice(before)
      .map(r => r.method),
    ['HEAD', 'POST']
  )
  t.true((await client.blobBuffer(REPO, b.desc.digest)).equals(b.data))
})
