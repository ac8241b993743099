import { randomBytes } from 'node:crypto'
import test from 'ava'
import { makeTestCa, pushBlob, run, startRegistry, tempDir } from '@nydusjs/testkit'
import { snMetric, startMirror } from './helpers.js'

test('HTTPS through the proxy: a hijacked registry host gets a leaf from the mirror CA and its blobs go through P2P; another host is tunnelled as it is', async t => {
  const reg = await startRegistry(t, { tls: true })
  const data = randomBytes(3 << 20)
  const digest = await pushBlob(reg, 'lib/tls', data)
  const mirrorCa = await makeTestCa(await tempDir(t))
  const port = reg.host.split(':')[1]
  const m = await startMirror(t, {
    yaml: `hijack_https:
  cert: ${mirrorCa.caFile}
  key: ${mirrorCa.caKeyFile}
  hosts:
    - regx: '^127\\.0\\.0\\.1:${port}$'
      certs: [${reg.ca!.caFile}]
`,
    // The supernode copies the blob from the registry: it must trust the registry's CA too.
    supernodeArgs: ['--ca-file', reg.ca!.caFile]
  })
  const curl = async (args: string[]): Promise<{ code: number; out: string; err: string }> => {
    const r = await run('sh', ['-c', `curl -sS --fail --proxy http://${m.addr} ${args.join(' ')} | sha256sum`])
    return { code: r.code, out: r.stdout.slice(0, 64), err: r.stderr }
  }
  // The client trusts only the mirror's CA: it can only succeed through the hijacking leaf.
  const hijacked = await curl(['--cacert', mirrorCa.caFile, `https://127.0.0.1:${port}/v2/lib/tls/blobs/${digest}`])
  t.is(`sha256:${hijacked.out}`, digest, hijacked.err)
  t.true((await snMetric(m.sn, 'dragonfly_supernode_origin_bytes_total')) >= data.length, 'the blob did not go through P2P')
  const throughProxy = async (ca: string, url: string): Promise<{ code: number; stderr: string }> =>
    await run('curl', ['-sS', '--fail', '--proxy', `http://${m.addr}`, '--cacert', ca, url])
  const notThrough = await throughProxy(reg.ca!.caFile, `https://127.0.0.1:${port}/v2/`)
  t.not(notThrough.code, 0, "the registry's own certificate is not what a hijacked host presents")
  // localhost is not in hijack_https: tunnelled, the registry's own certificate reaches the client.
  const tunnel = await throughProxy(reg.ca!.caFile, `https://localhost:${port}/v2/`)
  t.is(tunnel.code, 0, tunnel.stderr)
  const refused = await run('curl', ['-sS', '--proxy', `http://${m.addr}`, '--cacert', mirrorCa.caFile, 'https://127.0.0.1:1/v2/'])
  t.not(refused.code, 0)
})

test('plain HTTP through the proxy: a blob GET the rules match goes through P2P; other requests pass as they are', async t => {
  const reg = await startRegistry(t)
  const data = randomBytes(2 << 20)
  const digest = await pushBlob(reg, 'lib/plain', data)
  const m = await startMirror(t)
  const blob = await run('sh', ['-c', `curl -sS --fail --proxy http://${m.addr} ${reg.url}/v2/lib/plain/blobs/${digest} | sha256sum`])
  t.is(`sha256:${blob.stdout.slice(0, 64)}`, digest, blob.stderr)
  t.true((await snMetric(m.sn, 'dragonfly_supernode_origin_bytes_total')) >= data.length, 'the blob did not go through P2P')
  const ping = await run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--proxy', `http://${m.addr}`, `${reg.url}/v2/`])
  t.is(ping.stdout, '200')
  const missing = await run('curl', [
    '-sS',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code}',
    '--proxy',
    `http://${m.addr}`,
    `${reg.url}/v2/lib/plain/manifests/none`
  ])
  t.is(missing.stdout, '404', "the registry's own answer")
})
