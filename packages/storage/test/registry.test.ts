import test from 'ava'
import { NydusError } from '@nydusjs/errors'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { adminToken, pushBlob, startRegistry, tempDir } from '@nydusjs/testkit'
import { ChainBackend, RegistryBackend, registryLinks } from '../src/index.js'

const REPO = 'nydusjs/app'
const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) % 256))
const b64 = (s: string): string => Buffer.from(s).toString('base64')
const idOf = (digest: string): string => digest.slice(7)

test('anonymous: range reads; a missing blob is ERR_BLOB_NOT_FOUND', async t => {
  const reg = await startRegistry(t)
  const id = idOf(await pushBlob(reg, REPO, data))
  const b = new RegistryBackend({ scheme: 'http', host: reg.host, repo: REPO })
  t.true((await b.read(id, 1000, 5000)).equals(data.subarray(1000, 6000)))
  t.is(await b.size(id), data.length)
  const nf = await t.throwsAsync(b.read('f'.repeat(64), 0, 10), { instanceOf: NydusError })
  t.is(nf?.code, 'ERR_BLOB_NOT_FOUND')
  t.regex(nf?.message ?? '', new RegExp(`registry ${reg.host}/${REPO}: blob sha256:f{64}: not found`))
  await b.close()
})

test('htpasswd Basic auth; a wrong password fails naming registry and repository, never the secret', async t => {
  const reg = await startRegistry(t, { auth: { type: 'htpasswd', users: { alice: 's3cret-Pa55' } } })
  const id = idOf(await pushBlob(reg, REPO, data, `Basic ${b64('alice:s3cret-Pa55')}`))
  const ok = new RegistryBackend({ scheme: 'http', host: reg.host, repo: REPO, auth: b64('alice:s3cret-Pa55') })
  t.true((await ok.read(id, 0, 100)).equals(data.subarray(0, 100)))
  t.true((await ok.read(id, 200, 100)).equals(data.subarray(200, 300)))
  const bad = new RegistryBackend({ scheme: 'http', host: reg.host, repo: REPO, auth: b64('alice:wrong-Pa55word') })
  const err = await t.throwsAsync(bad.read(id, 0, 10), { instanceOf: NydusError })
  t.is(err?.code, 'ERR_BACKEND_AUTH')
  t.regex(err?.message ?? '', new RegExp(`registry ${reg.host}/${REPO}: blob sha256:[0-9a-f]{64}: denied \\(401`))
  t.false((err?.message ?? '').includes('wrong-Pa55word') || (err?.message ?? '').includes(b64('alice:wrong-Pa55word')))
  const none = new RegistryBackend({ scheme: 'http', host: reg.host, repo: REPO, dockerConfig: '/nonexistent' })
  const e2 = await t.throwsAsync(none.read(id, 0, 10), { instanceOf: NydusError })
  t.regex(e2?.message ?? '', /wants Basic credentials and none are configured/)
  await Promise.all([ok.close(), bad.close(), none.close()])
})

test('credentials from a docker config.json', async t => {
  const reg = await startRegistry(t, { auth: { type: 'htpasswd', users: { bob: 'pw-bob' } } })
  const id = idOf(await pushBlob(reg, REPO, data, `Basic ${b64('bob:pw-bob')}`))
  const dir = await tempDir(t)
  await writeFile(join(dir, 'config.json'), JSON.stringify({ auths: { [`http://${reg.host}`]: { auth: b64('bob:pw-bob') } } }))
  const b = new RegistryBackend({ scheme: 'http', host: reg.host, repo: REPO, dockerConfig: join(dir, 'config.json') })
  t.true((await b.read(id, 5, 5)).equals(data.subarray(5, 10)))
  await b.close()
})

test('Bearer tokens: fetched for pull, cached until they expire, refreshed after', async t => {
  const reg = await startRegistry(t, {
    auth: {
      type: 'token',
      ttl: 7,
      users: { admin: { password: 'adm', actions: ['pull', 'push'] }, reader: { password: 'rd-secret', actions: ['pull'] } }
    }
  })
  const id = idOf(await pushBlob(reg, REPO, data, await adminToken(reg, REPO, 'admin', 'adm')))
  const before = reg.token!.issued()
  const b = new RegistryBackend({ scheme: 'http', host: reg.host, repo: REPO, auth: b64('reader:rd-secret') })
  for (let i = 0; i < 5; i++) t.true((await b.read(id, i * 100, 100)).equals(data.subarray(i * 100, i * 100 + 100)))
  t.is(reg.token!.issued() - before, 1, 'one token for five reads')
  await sleep(3000) // the backend renews 5 s before expiry: 7 s tokens are stale after 2 s
  t.true((await b.read(id, 0, 10)).equals(data.subarray(0, 10)))
  t.is(reg.token!.issued() - before, 2, 'an expired token is replaced')
  const anon = new RegistryBackend({ scheme: 'http', host: reg.host, repo: REPO, dockerConfig: '/nonexistent' })
  const err = await t.throwsAsync(anon.read(id, 0, 10), { instanceOf: NydusError })
  t.is(err?.code, 'ERR_BACKEND_AUTH')
  t.regex(err?.message ?? '', new RegExp(`${reg.host}/${REPO}`))
  const wrong = new RegistryBackend({ scheme: 'http', host: reg.host, repo: REPO, auth: b64('reader:nope-secret') })
  const e2 = await t.throwsAsync(wrong.read(id, 0, 10), { instanceOf: NydusError })
  t.regex(e2?.message ?? '', /token service refused the configured credentials \(401\)/)
  t.false((e2?.message ?? '').includes('nope-secret'))
  await Promise.all([b.close(), anon.close(), wrong.close()])
})

test('TLS: a test CA is trusted when given, refused otherwise, skipped with skip_verify', async t => {
  const reg = await startRegistry(t, { tls: true })
  const id = idOf(await pushBlob(reg, REPO, data))
  const ok = new RegistryBackend({ host: reg.host, repo: REPO, ca: reg.ca!.caPem })
  t.true((await ok.read(id, 10, 10)).equals(data.subarray(10, 20)))
  const untrusted = new RegistryBackend({ host: reg.host, repo: REPO })
  const err = await t.throwsAsync(untrusted.read(id, 0, 10), { instanceOf: NydusError })
  t.regex(err?.message ?? '', /certificate/)
  const skip = new RegistryBackend({ host: reg.host, repo: REPO, skipVerify: true })
  t.true((await skip.read(id, 0, 10)).equals(data.subarray(0, 10)))
  await Promise.all([ok.close(), untrusted.close(), skip.close()])
})

test('redirects to storage are followed without the Authorization header', async t => {
  const seen: Array<{ host: string; auth?: string; range?: string }> = []
  const storage = createServer((req, res) => {
    seen.push({ host: 'storage', auth: req.headers.authorization, range: req.headers.range })
    const [, a, b] = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '')!
    res.writeHead(206).end(data.subarray(Number(a), Number(b) + 1))
  })
  await new Promise<void>(resolve => storage.listen(0, '127.0.0.1', resolve))
  const front = createServer((req, res) => {
    seen.push({ host: 'registry', auth: req.headers.authorization })
    if (req.headers.authorization === undefined) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="x"' }).end()
      return
    }
    res.writeHead(307, { location: `http://127.0.0.1:${(storage.address() as AddressInfo).port}/bucket/blob?sig=abc` }).end()
  })
  await new Promise<void>(resolve => front.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    storage.close()
    front.close()
  })
  const b = new RegistryBackend({
    scheme: 'http',
    host: `127.0.0.1:${(front.address() as AddressInfo).port}`,
    repo: REPO,
    auth: b64('u:p')
  })
  t.true((await b.read('a'.repeat(64), 100, 50)).equals(data.subarray(100, 150)))
  const st = seen.filter(s => s.host === 'storage')
  t.is(st.length, 1)
  t.is(st[0].auth, undefined)
  t.is(st[0].range, 'bytes=100-149')
  t.truthy(seen.find(s => s.host === 'registry' && s.auth?.startsWith('Basic ')))
  await b.close()
})

test('mirrors are links tried first, each with its own headers; a mirror without the blob falls back to the origin', async t => {
  const reg = await startRegistry(t)
  const id = idOf(await pushBlob(reg, REPO, data))
  const mirrorSeen: Array<Record<string, unknown>> = []
  const mirror = createServer((req, res) => {
    mirrorSeen.push({ url: req.url, tag: req.headers['x-mirror-tag'] })
    res.writeHead(404).end()
  })
  await new Promise<void>(resolve => mirror.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    mirror.close()
  })
  const mirrorReg = await startRegistry(t)
  await pushBlob(mirrorReg, REPO, data)
  const b = new ChainBackend(
    registryLinks(
      { scheme: 'http', host: reg.host, repo: REPO },
      [
        { scheme: 'http', host: `127.0.0.1:${(mirror.address() as AddressInfo).port}`, headers: { 'x-mirror-tag': 'dc1' } },
        { scheme: 'http', host: mirrorReg.host }
      ],
      { retries: 0 }
    )
  )
  t.true((await b.read(id, 0, 64)).equals(data.subarray(0, 64)))
  t.is(mirrorSeen.length, 1)
  t.is(mirrorSeen[0].tag, 'dc1')
  t.regex(String(mirrorSeen[0].url), new RegExp(`/v2/${REPO}/blobs/sha256:${id}`))
  await mirrorReg.stop()
  t.true((await b.read(id, 64, 64)).equals(data.subarray(64, 128)), 'the origin serves when every mirror fails')
  await b.close()
})

test('an image pushed with skopeo from an OCI layout is readable blob by blob', async t => {
  const { fixture, mustRun } = await import('@nydusjs/testkit')
  const { readFile } = await import('node:fs/promises')
  const reg = await startRegistry(t, { auth: { type: 'htpasswd', users: { ci: 'ci-pass' } } })
  await mustRun('skopeo', [
    'copy',
    '--dest-tls-verify=false',
    '--dest-creds',
    'ci:ci-pass',
    `oci:${fixture('oci', 'multilayer')}:latest`,
    `docker://${reg.host}/nydusjs/ml:latest`
  ])
  const index = JSON.parse(await readFile(fixture('oci', 'multilayer', 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
  const manifest = JSON.parse(
    await readFile(fixture('oci', 'multilayer', 'blobs', 'sha256', index.manifests[0].digest.slice(7)), 'utf8')
  ) as { layers: Array<{ digest: string; size: number }> }
  const b = new RegistryBackend({ scheme: 'http', host: reg.host, repo: 'nydusjs/ml', auth: b64('ci:ci-pass') })
  for (const l of manifest.layers) {
    const want = await readFile(fixture('oci', 'multilayer', 'blobs', 'sha256', l.digest.slice(7)))
    t.is(await b.size(l.digest.slice(7)), l.size)
    t.true((await b.read(l.digest.slice(7), 0, want.length)).equals(want))
  }
  await b.close()
})

test('a 401 on a cached token (it expired early, or was revoked) is answered with a fresh token, on the same source', async t => {
  const { startFaultProxy } = await import('@nydusjs/testkit')
  const reg = await startRegistry(t, {
    auth: { type: 'token', users: { admin: { password: 'adm', actions: ['pull', 'push'] }, reader: { password: 'rd', actions: ['pull'] } } }
  })
  const id = idOf(await pushBlob(reg, REPO, data, await adminToken(reg, REPO, 'admin', 'adm')))
  const proxy = await startFaultProxy(t, reg.url)
  const b = new RegistryBackend({ scheme: 'http', host: proxy.host, repo: REPO, auth: b64('reader:rd') })
  t.true((await b.read(id, 0, 10)).equals(data.subarray(0, 10)))
  const issued = reg.token!.issued()
  proxy.next('unauthorized')
  t.true((await b.read(id, 10, 10)).equals(data.subarray(10, 20)))
  t.is(reg.token!.issued(), issued + 1)
  t.is(proxy.counts().unauthorized, 1)
  await b.close()
})
