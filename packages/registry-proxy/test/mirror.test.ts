import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import test from 'ava'
import {
  adminToken,
  busyboxFixture,
  criClient,
  pushBlob,
  pushPauseImage,
  removePod,
  run,
  runPod,
  startContainerd,
  startRegistry,
  tempDir
} from '@nydusjs/testkit'
import { pushTestImages, skopeoBlobs, snMetric, startMirror } from './helpers.js'

test('skopeo through the mirror gets the manifests and blobs it gets from the registry (OCI, schema 2, a multi-arch index); blobs come through P2P', async t => {
  const reg = await startRegistry(t)
  await pushTestImages(t, reg)
  const m = await startMirror(t, { registry: reg.url })
  for (const ref of ['lib/bb:1', 'lib/bb-v2s2:1', 'lib/multi:1']) {
    const raw = async (host: string): Promise<string> =>
      (await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${host}/${ref}`])).stdout
    t.is(await raw(m.addr), await raw(reg.host), `${ref}: manifest`)
    const all = ref === 'lib/multi:1' ? ['--all'] : []
    const direct = await skopeoBlobs(`${reg.host}/${ref}`, await tempDir(t), all)
    const mirrored = await skopeoBlobs(`${m.addr}/${ref}`, await tempDir(t), all)
    t.is(mirrored.code, 0, mirrored.stderr)
    t.true(direct.blobs.length >= 3)
    t.deepEqual(mirrored.blobs, direct.blobs, `${ref}: blobs`)
  }
  // Layers and configs went through the swarm: the supernode copied them from the registry.
  t.true((await snMetric(m.sn, 'dragonfly_supernode_origin_bytes_total')) > 0, 'no blob went through P2P')
  t.true((await snMetric(m.sn, 'dragonfly_supernode_tasks')) >= 3)
})

test('containerd pulls through the mirror named in hosts.toml (ctr --hosts-dir), and the image runs with runc', async t => {
  const reg = await startRegistry(t)
  await pushTestImages(t, reg)
  const m = await startMirror(t, { registry: reg.url })
  const hosts = await tempDir(t)
  await mkdir(join(hosts, reg.host))
  await writeFile(
    join(hosts, reg.host, 'hosts.toml'),
    `server = "${reg.url}"\n\n[host."http://${m.addr}"]\n  capabilities = ["pull", "resolve"]\n`
  )
  const cd = await startContainerd(t)
  const ref = `${reg.host}/lib/bb:1`
  const pull = await cd.ctr(['images', 'pull', '--hosts-dir', hosts, ref])
  t.is(pull.code, 0, pull.stderr)
  t.true((await snMetric(m.sn, 'dragonfly_supernode_origin_bytes_total')) > 0, 'the layers did not come through P2P')
  const logs = m.d.stderr()
  t.true(logs.includes('dfdaemon listening'))
  const r = await cd.ctr(['run', '--rm', ref, `mirror-${process.pid}`, '/bin/echo', 'hello from the mirror'])
  t.is(r.code, 0, r.stderr)
  t.is(r.stdout.trim(), 'hello from the mirror')
})

test('a private registry with token auth: a client with credentials pulls through the mirror; one without gets the registry 401, also once the swarm holds the blobs', async t => {
  const reg = await startRegistry(t, {
    auth: { type: 'token', users: { puller: { password: 'Pull-secret-9', actions: ['pull', 'push'] } } }
  })
  const bearer = await adminToken(reg, 'lib/bb', 'puller', 'Pull-secret-9')
  const data = Buffer.from(`private layer ${Math.random()}`.repeat(100_000))
  const digest = await pushBlob(reg, 'lib/bb', data, bearer)
  const m = await startMirror(t, { registry: reg.url })
  const path = `/v2/lib/bb/blobs/${digest}`
  const anon = await fetch(`http://${m.addr}${path}`)
  t.is(anon.status, 401)
  t.regex(anon.headers.get('www-authenticate') ?? '', /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/token"/, 'the challenge passes unchanged')
  const ok = await fetch(`http://${m.addr}${path}`, { headers: { authorization: bearer } })
  t.is(ok.status, 200)
  t.true(Buffer.from(await ok.arrayBuffer()).equals(data))
  const again = await fetch(`http://${m.addr}${path}`)
  t.is(again.status, 401, 'the swarm holds the blob, still no credentials, still 401')
  const token = bearer.split(' ')[1]
  for (const log of [m.d.stderr(), m.sn.stderr(), await m.sn.get('/metrics')]) t.false(log.includes(token), 'a credential leaked')
})

test.serial(
  "the CRI path: containerd's CRI with registry config_path (hosts.toml naming the mirror) pulls through it, and the pod's container runs with runc",
  async t => {
    const reg = await startRegistry(t)
    await pushTestImages(t, reg)
    const { oci } = await busyboxFixture()
    const work = await tempDir(t, 'cri-')
    await pushPauseImage(work, oci, reg, 'lib/pause:1')
    const m = await startMirror(t, { registry: reg.url })
    const hosts = join(work, 'certs.d')
    await mkdir(join(hosts, reg.host), { recursive: true })
    await writeFile(
      join(hosts, reg.host, 'hosts.toml'),
      `server = "${reg.url}"\n\n[host."http://${m.addr}"]\n  capabilities = ["pull", "resolve"]\n`
    )
    const cd = await startContainerd(t, {
      cri: { sandboxImage: `${reg.host}/lib/pause:1`, snapshotter: 'overlayfs', plainHttp: [], configPath: hosts }
    })
    const cri = criClient(cd.address)
    t.teardown(() => cri.close())
    const pod = await runPod(cri, {
      image: `${reg.host}/lib/bb:1`,
      command: ['/bin/sh', '-c', 'echo pulled through the mirror'],
      logDir: join(work, 'logs'),
      cgroupParent: `/${cd.namespace}`,
      name: 'mirrored'
    })
    t.is(pod.exitCode, 0)
    t.is(pod.output, 'pulled through the mirror\n')
    t.true((await snMetric(m.sn, 'dragonfly_supernode_origin_bytes_total')) > 0, 'the layers did not come through P2P')
    await removePod(cri, pod)
  }
)
