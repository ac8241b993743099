import { createHash, randomBytes } from 'node:crypto'
import { readdir, readFile, readlink, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { SignJWT, importPKCS8 } from 'jose'
import { mustRun } from './run.js'
import { ownedDaemon } from './reaper.js'
import type { TestNetns } from './netns.js'
import { tempDir } from './paths.js'

interface Teardown {
  teardown: (fn: () => Promise<void> | void) => void
}

export interface TestCa {
  caPem: string
  caFile: string
  /** The CA's own key (a test can make it issue more, e.g. as a proxy's hijacking CA). */
  caKeyFile: string
  certFile: string
  keyFile: string
}

/** A throwaway CA and a certificate for 127.0.0.1/localhost signed by it (openssl). */
export async function makeTestCa(dir: string): Promise<TestCa> {
  const f = (n: string): string => join(dir, n)
  await mustRun('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=nydusjs test CA',
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.pem')
  ])
  await mustRun('openssl', [
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    f('server.key'),
    '-out',
    f('server.csr')
  ])
  await writeFile(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n')
  await mustRun('openssl', [
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    f('ext.cnf'),
    '-out',
    f('server.pem')
  ])
  return {
    caPem: await readFile(f('ca.pem'), 'utf8'),
    caFile: f('ca.pem'),
    caKeyFile: f('ca.key'),
    certFile: f('server.pem'),
    keyFile: f('server.key')
  }
}

export async function freePort(): Promise<number> {
  const s = createNetServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as AddressInfo
  await new Promise<void>(resolve => s.close(() => resolve()))
  return port
}

export interface TokenServer {
  realm: string
  /** Tokens issued so far. */
  issued: () => number
  /** Users and the actions each may take: on every repository, or per repository name. */
  users: Map<string, { password: string; actions: Actions }>
  /** Lifetime of new tokens in seconds. */
  ttl: number
}

export type RegistryAuth =
  | { type: 'none' }
  | { type: 'htpasswd'; users: Record<string, string> }
  | { type: 'token'; users: Record<string, { password: string; actions: Actions }>; anonymousActions?: string[]; ttl?: number }

/** Actions (`pull`, `push`) on every repository, or per repository name. */
export type Actions = string[] | Record<string, string[]>

export interface TestRegistry {
  host: string
  scheme: 'http' | 'https'
  url: string
  ca?: TestCa
  token?: TokenServer
  dir: string
  /** The docker-registry process. */
  pid?: number
  stop: () => Promise<void>
}

/**
 * Debian's docker-registry on a free loopback port, with htpasswd Basic auth,
 * token auth (a token server here signs JWTs with a test key) or none, and
 * optionally TLS from a test CA. Stopped when the test ends.
 */
export async function startRegistry(
  t: Teardown,
  o: {
    auth?: RegistryAuth
    tls?: boolean /** Serve from inside this namespace, on its address. */
    netns?: Pick<TestNetns, 'nsIp' | 'prefix'>
  } = {}
): Promise<TestRegistry> {
  const ip = o.netns?.nsIp ?? '127.0.0.1'
  const dir = await tempDir(t, 'registry-')
  const firstPort = await freePort()
  const auth = o.auth ?? { type: 'none' }
  const ca = o.tls === true || auth.type === 'token' ? await makeTestCa(dir) : undefined
  let authYaml = ''
  let token: TokenServer | undefined
  if (auth.type === 'htpasswd') {
    const lines = []
    for (const [u, p] of Object.entries(auth.users)) lines.push((await mustRun('htpasswd', ['-Bbn', u, p])).trim())
    await writeFile(join(dir, 'htpasswd'), lines.join('\n') + '\n')
    authYaml = `auth:\n  htpasswd:\n    realm: nydusjs-test\n    path: ${join(dir, 'htpasswd')}\n`
  } else if (auth.type === 'token') {
    token = await startTokenServer(t, ca!, auth)
    authYaml = `auth:\n  token:\n    realm: ${token.realm}\n    service: nydusjs-registry\n    issuer: nydusjs-test-issuer\n    rootcertbundle: ${ca!.certFile}\n`
  }
  const tlsYaml = o.tls === true ? `  tls:\n    certificate: ${ca!.certFile}\n    key: ${ca!.keyFile}\n` : ''
  const scheme = o.tls === true ? 'https' : 'http'
  // freePort's port can be taken by another test before docker-registry binds it: then it exits
  // ("address already in use") and a new port is tried; listening is checked on its own socket.
  for (let attempt = 0; ; attempt++) {
    const port = attempt === 0 ? firstPort : await freePort()
    await writeFile(
      join(dir, 'config.yml'),
      `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'data')}\n  delete:\n    enabled: true\nhttp:\n  addr: ${ip}:${port}\n${tlsYaml}${authYaml}`
    )
    const cmd = [...(o.netns?.prefix ?? []), 'docker-registry', 'serve', join(dir, 'config.yml')]
    const { proc, stderr, stop } = ownedDaemon(t, cmd[0], cmd.slice(1))
    for (let i = 0; proc.exitCode === null && !(await listensOn(proc.pid!, port)); i++) {
      if (i > 2400) throw new Error(`docker-registry did not listen on ${port}: ${stderr()}`)
      await sleep(25)
    }
    if (proc.exitCode === null)
      return { host: `${ip}:${port}`, scheme, url: `${scheme}://${ip}:${port}`, ca, token, dir, pid: proc.pid, stop }
    if (attempt >= 3 || !/address already in use/.test(stderr())) throw new Error(`docker-registry exited: ${stderr()}`)
  }
}

/** Whether process `pid` has a listening TCP socket on `port` (in its own network namespace). */
async function listensOn(pid: number, port: number): Promise<boolean> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0')
  const inodes = new Set<string>()
  for (const f of ['tcp', 'tcp6']) {
    const table = await readFile(`/proc/${pid}/net/${f}`, 'utf8').catch(() => '')
    for (const line of table.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/)
      if (cols[1]?.endsWith(`:${hex}`) && cols[3] === '0A') inodes.add(cols[9] ?? '')
    }
  }
  if (inodes.size === 0) return false
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])
  for (const fd of fds) {
    const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')
    if (inodes.has(/^socket:\[(\d+)\]$/.exec(link)?.[1] ?? '')) return true
  }
  return false
}

async function startTokenServer(t: Teardown, ca: TestCa, auth: Extract<RegistryAuth, { type: 'token' }>): Promise<TokenServer> {
  const key = await importPKCS8(await readFile(ca.keyFile, 'utf8'), 'RS256')
  const certDer = (await readFile(ca.certFile, 'utf8')).replace(/-----[^-]+-----|\s/g, '')
  const users = new Map(Object.entries(auth.users))
  let issued = 0
  const state: TokenServer = { realm: '', issued: () => issued, users, ttl: auth.ttl ?? 300 }
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '')
    let actions: Actions = auth.anonymousActions ?? []
    if (basic !== null) {
      const [u, ...rest] = Buffer.from(basic[1], 'base64').toString().split(':')
      const user = users.get(u)
      if (user === undefined || user.password !== rest.join(':')) {
        res.writeHead(401).end('{"details":"bad credentials"}')
        return
      }
      actions = user.actions
    }
    const access = url.searchParams.getAll('scope').map(s => {
      const [type, name, acts] = s.split(':')
      const allowed = Array.isArray(actions) ? actions : (actions[name] ?? [])
      return { type, name, actions: acts.split(',').filter(a => allowed.includes(a)) }
    })
    const now = Math.floor(Date.now() / 1000)
    new SignJWT({ access })
      .setProtectedHeader({ alg: 'RS256', x5c: [certDer] })
      .setIssuer('nydusjs-test-issuer')
      .setAudience(url.searchParams.get('service') ?? '')
      .setSubject(basic === null ? '' : 'user')
      .setIssuedAt(now)
      .setNotBefore(now - 5)
      .setExpirationTime(now + state.ttl)
      .setJti(randomBytes(8).toString('hex'))
      .sign(key)
      .then(
        tok => {
          issued++
          res
            .writeHead(200, { 'content-type': 'application/json' })
            .end(JSON.stringify({ token: tok, access_token: tok, expires_in: state.ttl, issued_at: new Date().toISOString() }))
        },
        (err: Error) => res.writeHead(500).end(err.message)
      )
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })
  state.realm = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`
  return state
}

/** Monolithic upload of one blob with the distribution API (admin credentials as a header). */
export async function pushBlob(reg: TestRegistry, repo: string, data: Buffer, authorization?: string): Promise<string> {
  const digest = 'sha256:' + createHash('sha256').update(data).digest('hex')
  const { request, Agent } = await import('undici')
  const dispatcher = new Agent({ connect: { ca: reg.ca?.caPem } })
  try {
    const headers: Record<string, string> = authorization === undefined ? {} : { authorization }
    const start = await request(`${reg.url}/v2/${repo}/blobs/uploads/`, { method: 'POST', headers, dispatcher })
    await start.body.dump()
    if (start.statusCode !== 202) throw new Error(`upload start: ${start.statusCode}`)
    const loc = new URL(String(start.headers.location), reg.url)
    loc.searchParams.set('digest', digest)
    const put = await request(loc, {
      method: 'PUT',
      headers: { ...headers, 'content-type': 'application/octet-stream', 'content-length': String(data.length) },
      body: data,
      dispatcher
    })
    await put.body.dump()
    if (put.statusCode !== 201) throw new Error(`upload: ${put.statusCode}`)
    return digest
  } finally {
    await dispatcher.close()
  }
}

/** Writes a manifest as is (a test that needs one the tools would not write); no auth. */
export async function putManifest(reg: TestRegistry, repo: string, ref: string, body: unknown): Promise<void> {
  const { request } = await import('undici')
  const json = JSON.stringify(body)
  const mediaType = (body as { mediaType?: string }).mediaType ?? 'application/vnd.oci.image.manifest.v1+json'
  const r = await request(`${reg.url}/v2/${repo}/manifests/${ref}`, { method: 'PUT', headers: { 'content-type': mediaType }, body: json })
  await r.body.dump()
  if (r.statusCode !== 201) throw new Error(`manifest put: ${r.statusCode}`)
}

/** A bearer token with push and pull on `repo`, from the registry's token server. */
export async function adminToken(reg: TestRegistry, repo: string, user: string, password: string): Promise<string> {
  const { request } = await import('undici')
  const u = new URL(reg.token!.realm)
  u.searchParams.set('service', 'nydusjs-registry')
  u.searchParams.set('scope', `repository:${repo}:pull,push`)
  const r = await request(u, { headers: { authorization: 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64') } })
  const body = (await r.body.json()) as { token: string }
  return `Bearer ${body.token}`
}
