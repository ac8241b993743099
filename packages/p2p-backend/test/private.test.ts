import { randomBytes } from 'node:crypto'
import test from 'ava'
import { adminToken, pushBlob, startDfdaemon, startRegistry, startSupernode, tempDir } from '@nydusjs/testkit'

const MiB = 1024 * 1024

/** A token for `scope` from the registry's realm, with `user:password` (or anonymously). */
async function token(realm: string, scope: string, basic?: string): Promise<string | undefined> {
  const u = new URL(realm)
  u.searchParams.set('service', 'nydusjs-registry')
  u.searchParams.set('scope', scope)
  const res = await fetch(u, { headers: basic === undefined ? {} : { authorization: `Basic ${Buffer.from(basic).toString('base64')}` } })
  if (res.status !== 200) return undefined
  return `Bearer ${((await res.json()) as { token: string }).token}`
}

test('a private blob the swarm holds is served only to callers whose own credentials the registry accepts; no credential reaches a log or a metric', async t => {
  const reg = await startRegistry(t, {
    auth: {
      type: 'token',
      users: { alice: { password: 'a-secret', actions: ['pull', 'push'] }, mallory: { password: 'm-secret', actions: { other: ['pull'] } } }
    }
  })
  const repo = 'team/private'
  const data = randomBytes(6 * MiB)
  const digest = await pushBlob(reg, repo, data, await adminToken(reg, repo, 'alice', 'a-secret'))
  const sn = await startSupernode(t, { home: await tempDir(t) })
  const a = await startDfdaemon(t, { home: await tempDir(t), nodes: [sn.addr] })
  const b = await startDfdaemon(t, { home: await tempDir(t), nodes: [sn.addr] })
  const path = `/v2/${repo}/blobs/${digest}`
  const get = async (node: string, authorization?: string, range?: string): Promise<Response> =>
    await fetch(`http://${node}${path}`, {
      headers: {
        'x-dragonfly-registry': reg.url,
        ...(authorization === undefined ? {} : { authorization }),
        ...(range === undefined ? {} : { range })
      }
    })

  // Without credentials: the registry's 401 and challenge, through the daemon, so a client's token dance works.
  const anon = await get(a.addr)
  t.is(anon.status, 401)
  const challenge = anon.headers.get('www-authenticate') ?? ''
  t.regex(challenge, /^Bearer realm="[^"]+",service="nydusjs-registry"/)
  const realm = /realm="([^"]+)"/.exec(challenge)![1]
  const alice = await token(realm, `repository:${repo}:pull`, 'alice:a-secret')
  const ok = await get(a.addr, alice)
  t.is(ok.status, 200)
  t.true(Buffer.from(await ok.arrayBuffer()).equals(data))

  // The swarm now holds it: still nobody without credentials the registry accepts.
  t.is((await get(b.addr)).status, 401)
  t.is((await get(b.addr, 'Bearer forged.token.value', 'bytes=0-99')).status, 401)
  const mallory = await token(realm, `repository:${repo}:pull`, 'mallory:m-secret')
  t.is((await get(b.addr, mallory, 'bytes=0-99')).status, 401, 'a token without pull on this repository')
  const ranged = await get(b.addr, alice, 'bytes=100-199')
  t.is(ranged.status, 206)
  t.true(Buffer.from(await ranged.arrayBuffer()).equals(data.subarray(100, 200)))

  const secrets = [alice!.slice(7), mallory!.slice(7), 'a-secret', 'm-secret', 'forged.token.value']
  const said = [sn.stderr(), a.stderr(), b.stderr(), await sn.get('/metrics')].join('\n')
  for (const s of secrets) t.false(said.includes(s), 'a credential reached a log or a metric')
})
