import test, { type ExecutionContext } from 'ava'
import { createHash } from 'node:crypto'
import { gunzipSync, gzipSync } from 'node:zlib'
import { findTarFile } from '@nydusjs/tar'
import { readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { BIN, convertedBusybox, nydusdPids } from './setup.js'
import {
  apiGet,
  pushBlob,
  putManifest,
  busyboxFixture,
  fixture,
  mustRun,
  repoRoot,
  skopeoPush,
  startContainerd,
  startRegistry,
  startSnapshotter,
  tempDir
} from '@nydusjs/testkit'

const nydusds = async (root: string): Promise<string[]> => await nydusdPids(root)
const mountsUnder = async (root: string): Promise<string[]> =>
  (await readFile('/proc/mounts', 'utf8')).split('\n').filter(l => l.includes(root))

/** busybox converted, with its bootstrap layer's digest; not pulled yet. */
async function converted(t: ExecutionContext, convertArgs: string[] = []) {
  const img = await convertedBusybox(t, { convertArgs })
  const manifest = JSON.parse(await mustRun('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${img.ref}`])) as {
    layers: Array<{ digest: string }>
  }
  return { ...img, bootstrapLayer: manifest.layers.at(-1)!.digest }
}

/** The file docker-registry keeps a blob's bytes in. */
const blobFile = (regDir: string, digest: string): string =>
  join(regDir, 'data/docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data')

test.serial('a blob missing from the registry: the container start fails naming the blob, and nothing stays mounted', async t => {
  const { reg, ref, blob, sn, cd } = await converted(t)
  t.is((await cd.rpull(ref)).code, 0)
  await mustRun('rm', [blobFile(reg.dir, blob)])
  const r = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', ref, 'gone', '/bin/true'])
  t.not(r.code, 0)
  t.regex(r.stderr, new RegExp(`did not mount: .*blob ${blob}: .*\\[ERR_BLOB_NOT_FOUND\\]`), r.stderr + sn.logs())
  t.deepEqual(await nydusds(sn.root), [], 'no daemon left')
  t.deepEqual(await mountsUnder(sn.root), [], 'nothing mounted')
})

test.serial("a bootstrap layer whose bytes do not match its digest: containerd's pull fails, nothing is mounted or started", async t => {
  const { reg, ref, bootstrapLayer, sn, cd } = await converted(t)
  const file = blobFile(reg.dir, bootstrapLayer)
  const buf = await readFile(file)
  buf[buf.length >> 1] ^= 0xff
  await writeFile(file, buf)
  const r = await cd.rpull(ref)
  t.not(r.code, 0)
  t.regex(r.stderr, /digest/i, r.stderr)
  t.deepEqual(await nydusds(sn.root), [])
  t.deepEqual(await mountsUnder(sn.root), [])
})

test.serial('images sharing layers share snapshots; removing one keeps the other runnable; removing both leaves nothing', async t => {
  const { oci, tar } = await busyboxFixture()
  const reg = await startRegistry(t)
  const work = await tempDir(t, 'shared-')
  // A second image: busybox's layer plus one of its own.
  await mustRun('bash', [
    join(repoRoot, 'fixtures/scripts/make-oci-layout.sh'),
    join(work, 'oci'),
    'latest',
    tar,
    fixture('layers', 'pax.tar')
  ])
  await skopeoPush(`${oci}:latest`, `${reg.host}/library/busybox:1`)
  await skopeoPush(`${join(work, 'oci')}:latest`, `${reg.host}/library/derived:1`)
  const refs = [`${reg.host}/library/busybox:1`, `${reg.host}/library/derived:1`]
  const sn = await startSnapshotter(t, BIN)
  const cd = await startContainerd(t, { proxyPlugins: { nydus: sn.address } })
  for (const ref of refs) t.is((await cd.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'nydus', ref])).code, 0)
  const committed = async (): Promise<number> =>
    (await cd.ctr(['snapshots', '--snapshotter', 'nydus', 'ls'])).stdout.split('\n').filter(l => /\sCommitted$/.test(l.trim())).length
  t.is(await committed(), 2, 'the shared base layer is one snapshot')
  t.is((await cd.ctr(['images', 'rm', '--sync', refs[0]])).code, 0)
  t.is(await committed(), 2, 'still used by the second image')
  const r = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', refs[1], 'd1', '/bin/sh', '-c', 'head -1 /etc/passwd'])
  t.is(r.stdout, 'root:x:0:0:root:/root:/bin/sh\n', r.stderr)
  t.is((await cd.ctr(['images', 'rm', '--sync', refs[1]])).code, 0)
  t.is(await committed(), 0)
  t.deepEqual(await mountsUnder(sn.root), [])
})

test.serial('two references to one converted image share one nydusd; removing both stops it', async t => {
  const { reg, ref, sn, cd } = await converted(t)
  t.is((await cd.rpull(ref)).code, 0)
  const other = `${reg.host}/library/busybox:other-nydus`
  await mustRun('skopeo', ['copy', '--quiet', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${ref}`, `docker://${other}`])
  const pull2 = await cd.rpull(other)
  t.is(pull2.code, 0, pull2.stderr)
  for (const [i, r] of [ref, other].entries()) {
    const out = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', r, `s${i}`, '/bin/sh', '-c', 'head -1 /etc/passwd'])
    t.is(out.stdout, 'root:x:0:0:root:/root:/bin/sh\n', out.stderr + sn.logs())
  }
  t.is((await nydusds(sn.root)).length, 1, 'one daemon for the one image')
  t.is((await cd.ctr(['images', 'rm', '--sync', ref])).code, 0)
  t.is((await nydusds(sn.root)).length, 1, 'the other reference still holds it')
  t.is((await cd.ctr(['images', 'rm', '--sync', other])).code, 0)
  t.deepEqual(await nydusds(sn.root), [])
  t.deepEqual(await mountsUnder(sn.root), [])
})

test.serial("the bootstrap's prefetch table is fetched in the background once the image is mounted", async t => {
  const dir = await tempDir(t, 'prefetch-')
  await writeFile(join(dir, 'patterns'), '/bin/busybox\n')
  const { ref, sn, cd } = await converted(t, ['--prefetch-patterns', join(dir, 'patterns')])
  t.is((await cd.rpull(ref)).code, 0)
  const run = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', ref, 'p1', '/bin/true'])
  t.is(run.code, 0, run.stderr + sn.logs())
  const [daemon] = JSON.parse((await apiGet(join(dirname(sn.address), 'system.sock'), '/api/v1/daemons')).body) as Array<{
    apisock: string
  }>
  let status: { state: string; totalChunks: number; doneChunks: number } = { state: '', totalChunks: 0, doneChunks: 0 }
  for (let i = 0; i < 100 && status.state !== 'done'; i++) {
    status = JSON.parse((await apiGet(daemon.apisock, '/api/v1/daemon/prefetch')).body)
    await sleep(100)
  }
  t.is(status.state, 'done', JSON.stringify(status))
  t.true(status.totalChunks > 0 && status.doneChunks === status.totalChunks, JSON.stringify(status))
})

test.serial(
  "a lazy mount that fails for a reason not the image's own (no FUSE): the image is copied natively and the container runs",
  async t => {
    const dir = await tempDir(t, 'nofuse-')
    // A nydusd that cannot mount, as on a node without /dev/fuse.
    const fake = join(dir, 'nydusd-no-fuse.cjs')
    await writeFile(fake, "process.stderr.write('nydusd: error: /dev/fuse: no such device [ERR_FUSE_MISSING]\\n')\nprocess.exit(69)\n")
    const { ref, sn, cd } = await convertedBusybox(t, { args: ['--nydusd-path', fake] })
    t.is((await cd.rpull(ref)).code, 0)
    const r = await cd.ctr([
      'run',
      '--rm',
      '--snapshotter',
      'nydus',
      ref,
      'nat',
      '/bin/sh',
      '-c',
      'head -1 /etc/passwd; md5sum /bin/busybox | cut -c1-32'
    ])
    t.is(r.code, 0, r.stderr + sn.logs())
    t.is(r.stdout, `root:x:0:0:root:/root:/bin/sh\n${(await mustRun('md5sum', ['/bin/busybox'])).slice(0, 32)}\n`)
    t.regex(sn.logs(), /lazy mount failed: copying the image natively/)
    t.regex(sn.logs(), /image copied natively/)
    t.deepEqual(await mountsUnder(join(sn.root, 'mnt')), [], 'no FUSE mount')
    t.is((await cd.ctr(['images', 'rm', '--sync', ref])).code, 0)
    t.is((await cd.ctr(['snapshots', '--snapshotter', 'nydus', 'ls'])).stdout.trim().split('\n').length, 1, 'no snapshot left')
    t.deepEqual(await mountsUnder(sn.root), [])
  }
)

test.serial(
  "a bootstrap layer with a right digest but a corrupt bootstrap: the start fails with nydusd's reason, nothing stays mounted",
  async t => {
    const { reg, sn, cd } = await converted(t)
    // The image as a careless or hostile builder would push it: every digest consistent, the bootstrap inside bad.
    const repo = 'library/busybox'
    const get = async (path: string, accept = '*/*'): Promise<Buffer> =>
      Buffer.from(await (await fetch(`${reg.url}/v2/${repo}/${path}`, { headers: { accept } })).arrayBuffer())
    const manifest = JSON.parse((await get('manifests/1-nydus', 'application/vnd.oci.image.manifest.v1+json')).toString())
    const tar = gunzipSync(await get(`blobs/${manifest.layers.at(-1).digest}`))
    const boot = findTarFile(tar, 'image/image.boot', 'bootstrap layer')!
    boot[boot.length - 10] ^= 0xff
    const layer = gzipSync(tar)
    const config = JSON.parse((await get(`blobs/${manifest.config.digest}`)).toString())
    config.rootfs.diff_ids[config.rootfs.diff_ids.length - 1] = `sha256:${createHash('sha256').update(tar).digest('hex')}`
    const configBytes = Buffer.from(JSON.stringify(config))
    manifest.config = { ...manifest.config, digest: await pushBlob(reg, repo, configBytes), size: configBytes.length }
    manifest.layers[manifest.layers.length - 1] = {
      ...manifest.layers.at(-1),
      digest: await pushBlob(reg, repo, layer),
      size: layer.length
    }
    await putManifest(reg, repo, 'bad-nydus', manifest)
    const bad = `${reg.host}/${repo}:bad-nydus`
    t.is((await cd.rpull(bad)).code, 0, 'the pull checks digests, which are right')
    const r = await cd.ctr(['run', '--rm', '--snapshotter', 'nydus', bad, 'bad', '/bin/true'])
    t.not(r.code, 0)
    t.regex(r.stderr, /nydusd for .* did not mount: .*checksum mismatch.*\[ERR_RAFS_CHECKSUM\]/, r.stderr + sn.logs())
    t.deepEqual(await nydusds(sn.root), [])
    t.deepEqual(await mountsUnder(sn.root), [])
  }
)
