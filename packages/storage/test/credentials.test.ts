import test, { type ExecutionContext } from 'ava'
import { chmod, mkdir, writeFile } from 'node:fs/promises'
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { pushBlob, startRegistry, tempDir } from '@nydusjs/testkit'
import { ChainBackend, RegistryBackend, registryLinks } from '../src/index.js'

const REPO = 'nydusjs/creds'
const data = Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 7) % 256))
const b64 = (s: string): string => Buffer.from(s).toString('base64')
const SECRET = 'origin-Secret-77'
const TOKEN = 'static-Token-Xyz'

interface Logged {
  host: string
  seen: Array<{ url: string; authorization?: string }>
}

/** A loopback server that records every request's Authorization header. */
async function logging(t: ExecutionContext, handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<Logged> {
  const seen: Logged['seen'] = []
  const server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', authorization: req.headers.authorization })
    handle(req, res)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return { host: `127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

const leaked = (l: Logged, ...secrets: string[]): string[] =>
  l.seen.map(s => s.authorization ?? '').filter(a => a !== '' && secrets.some(x => a.includes(x)))

async function origin(t: ExecutionContext): Promise<{ host: string; id: string }> {
  const reg = await startRegistry(t, { auth: { type: 'htpasswd', users: { puller: SECRET } } })
  const digest = await pushBlob(reg, REPO, data, `Basic ${b64(`puller:${SECRET}`)}`)
  return { host: reg.host, id: digest.slice(7) }
}

test("a mirror never gets the origin's Basic credentials or static token, even when it asks; with auth_through it does", async t => {
  const reg = await origin(t)
  const mirror = await logging(t, (req, res) => {
    if (req.headers.authorization === undefined) res.writeHead(401, { 'www-authenticate': 'Basic realm="mirror"' }).end()
    else res.writeHead(404).end()
  })
  for (const creds of [{ auth: b64(`puller:${SECRET}`) }, { registryToken: TOKEN }]) {
    const chain = new ChainBackend(
      registryLinks(
        { scheme: 'http', host: reg.host, repo: REPO, dockerConfig: '/nonexistent', ...creds },
        [{ scheme: 'http', host: mirror.host }],
        { retries: 0 }
      )
    )
    if (creds.auth !== undefined) t.true((await chain.read(reg.id, 100, 100)).equals(data.subarray(100, 200)), 'the origin serves')
    else await chain.read(reg.id, 0, 10).catch(() => {}) // htpasswd refuses the bearer token; only where it went matters
    await chain.close()
  }
  t.true(mirror.seen.length >= 2, 'the mirror was asked')
  t.deepEqual(leaked(mirror, SECRET, b64(`puller:${SECRET}`), TOKEN), [])
  const through = new ChainBackend(
    registryLinks(
      { scheme: 'http', host: reg.host, repo: REPO, auth: b64(`puller:${SECRET}`) },
      [{ scheme: 'http', host: mirror.host, authThrough: true }],
      { retries: 0 }
    )
  )
  t.true((await through.read(reg.id, 0, 10)).equals(data.subarray(0, 10)))
  t.is(leaked(mirror, b64(`puller:${SECRET}`)).length, 1, 'auth_through sends them, as asked')
  await through.close()
})

test("a mirror's Bearer challenge naming a foreign token realm gets no credential of the origin's", async t => {
  const reg = await origin(t)
  const realm = await logging(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"token":"evil"}')
  })
  const mirror = await logging(t, (req, res) => {
    if (req.headers.authorization === undefined)
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${realm.host}/token",service="evil"` }).end()
    else res.writeHead(404).end()
  })
  const dir = await tempDir(t)
  // docker's config holds the origin's credentials only.
  await writeFile(join(dir, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: b64(`puller:${SECRET}`) } } }))
  const chain = new ChainBackend(
    registryLinks(
      { scheme: 'http', host: reg.host, repo: REPO, dockerConfig: join(dir, 'config.json') },
      [{ scheme: 'http', host: mirror.host }],
      { retries: 0 }
    )
  )
  t.true((await chain.read(reg.id, 0, 64)).equals(data.subarray(0, 64)), "the origin serves with its credentials from docker's config")
  await chain.close()
  t.true(realm.seen.length >= 1, 'the foreign realm was asked, anonymously')
  t.deepEqual(leaked(realm, b64(`puller:${SECRET}`)), [])
  t.deepEqual(leaked(mirror, b64(`puller:${SECRET}`)), [])
})

test('docker config credentials are per host: two registries each get their own', async t => {
  const a = await origin(t)
  const other = await startRegistry(t, { auth: { type: 'htpasswd', users: { bob: 'bob-Pw-2' } } })
  const otherId = (await pushBlob(other, REPO, data, `Basic ${b64('bob:bob-Pw-2')}`)).slice(7)
  const front = await logging(t, (req, res) => {
    // A logging hop in front of the second registry, so what it was sent can be checked.
    const [host, port] = other.host.split(':')
    const out = request({ host, port, method: req.method, path: req.url, headers: req.headers }, up => {
      res.writeHead(up.statusCode ?? 502, up.headers)
      up.pipe(res)
    })
    out.on('error', () => res.destroy())
    req.pipe(out)
  })
  const dir = await tempDir(t)
  await writeFile(
    join(dir, 'config.json'),
    JSON.stringify({ auths: { [`http://${a.host}`]: { auth: b64(`puller:${SECRET}`) }, [front.host]: { auth: b64('bob:bob-Pw-2') } } })
  )
  const cfg = join(dir, 'config.json')
  const first = new RegistryBackend({ scheme: 'http', host: a.host, repo: REPO, dockerConfig: cfg })
  t.true((await first.read(a.id, 0, 10)).equals(data.subarray(0, 10)))
  const second = new RegistryBackend({ scheme: 'http', host: front.host, repo: REPO, dockerConfig: cfg })
  t.true((await second.read(otherId, 0, 10)).equals(data.subarray(0, 10)))
  t.deepEqual(leaked(front, b64(`puller:${SECRET}`)), [])
  t.true(front.seen.some(s => s.authorization === `Basic ${b64('bob:bob-Pw-2')}`))
  await Promise.all([first.close(), second.close()])
})

test('credHelpers: docker-credential-NAME get answers for its host; a helper that fails falls back to auths', async t => {
  const reg = await origin(t)
  const dir = await tempDir(t)
  const bin = join(dir, 'bin')
  await mkdir(bin)
  const helper = join(bin, 'docker-credential-nydustest')
  await writeFile(
    helper,
    `#!/bin/sh\nread host\necho "$host" >> ${join(dir, 'asked')}\n[ "$host" = "${reg.host}" ] || { echo "credentials not found in native keychain"; exit 1; }\nprintf '{"ServerURL":"%s","Username":"puller","Secret":"${SECRET}"}' "$host"\n`
  )
  await chmod(helper, 0o755)
  const path = process.env.PATH
  process.env.PATH = `${bin}:${path ?? ''}`
  t.teardown(() => {
    process.env.PATH = path
  })
  await writeFile(join(dir, 'config.json'), JSON.stringify({ credHelpers: { [reg.host]: 'nydustest' } }))
  const b = new RegistryBackend({ scheme: 'http', host: reg.host, repo: REPO, dockerConfig: join(dir, 'config.json') })
  t.true((await b.read(reg.id, 7, 7)).equals(data.subarray(7, 14)))
  await b.close()
  // credsStore for every host, its miss falling back to auths.
  await writeFile(
    join(dir, 'config.json'),
    JSON.stringify({ credsStore: 'nydustest', auths: { 'other.example:5000': { auth: b64('x:y') } } })
  )
  const s = new RegistryBackend({ scheme: 'http', host: reg.host, repo: REPO, dockerConfig: join(dir, 'config.json') })
  t.true((await s.read(reg.id, 0, 7)).equals(data.subarray(0, 7)))
  await s.close()
})
