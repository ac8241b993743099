import test, { type ExecutionContext } from 'ava'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import {
  diffTrees,
  extractRegistryImage,
  fixture,
  mountImage,
  nydusImage,
  ociIndex,
  run,
  skopeoPush,
  snapshotTree,
  startRegistry,
  tempDir,
  umociImage,
  uncompressedCopy,
  pushLayoutAsIs,
  nonUtf8,
  type TestRegistry,
  convertImage
} from '@nydusjs/testkit'

interface Report {
  target: { digest: string; media_type: string }
  pushed_bytes: number
  dict_saved_bytes: number
  images: Array<{
    platform: string
    target_digest: string
    blobs: string[]
    prefetch_files: number
    layers: Array<{ push: string; streamed: boolean }>
  }>
}

async function convert(reg: TestRegistry, src: string, dst: string, extra: string[] = []): Promise<Report> {
  return (await convertImage<Report>(`${reg.host}/${src}`, `${reg.host}/${dst}`, extra)).report
}

async function check(
  reg: TestRegistry,
  dst: string,
  src: string,
  extra: string[] = []
): Promise<{ code: number; stdout: string; stderr: string }> {
  return await nydusImage([
    'check',
    '--target',
    `${reg.host}/${dst}`,
    '--source',
    `${reg.host}/${src}`,
    '--target-insecure',
    '--source-insecure',
    ...extra
  ])
}

async function manifest(reg: TestRegistry, ref: string): Promise<any> {
  const r = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/${ref}`])
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout)
}

/** The converted image mounted by `nydusd --image` equals skopeo copy + umoci unpack of the source, file by file. */
async function mountEqualsSource(
  t: ExecutionContext,
  reg: TestRegistry,
  dir: string,
  src: string,
  dst: string,
  args: string[] = []
): Promise<void> {
  const rootfs = await extractRegistryImage(`${reg.host}/${src}`, join(dir, 'extract'))
  const mnt = join(dir, 'mnt')
  await mkdir(mnt, { recursive: true })
  const m = await mountImage(t, { dir, image: `${reg.host}/${dst}`, mnt, args: ['--insecure', ...args] })
  const diffs = diffTrees(await snapshotTree(rootfs), await snapshotTree(mnt), { mtimePrecisionNs: 1e6, skip: nonUtf8 })
  t.deepEqual(diffs, [])
  t.is(await m.stop(), 0)
}

test('a single-layer image converts; check --source passes; the mount equals the source; converting again pushes nothing', async t => {
  const reg = await startRegistry(t)
  const dir = await tempDir(t)
  await skopeoPush(await umociImage(join(dir, 'oci'), 'v1', [fixture('layers', 'gnu.tar')]), `${reg.host}/src/one:v1`)
  const first = await convert(reg, 'src/one:v1', 'dst/one:v1')
  t.true(first.pushed_bytes > 0)
  t.deepEqual(
    first.images[0].layers.map(l => l.streamed),
    [true],
    'a new target gets its blob by the streamed upload'
  )
  const m = await manifest(reg, 'dst/one:v1')
  t.is(m.mediaType, 'application/vnd.oci.image.manifest.v1+json')
  t.deepEqual(
    m.layers.map((l: any) => l.mediaType),
    ['application/vnd.oci.image.layer.nydus.blob.v1', 'application/vnd.oci.image.layer.v1.tar+gzip']
  )
  t.is(m.layers[0].annotations['containerd.io/snapshot/nydus-blob'], 'true')
  t.is(m.layers[1].annotations['containerd.io/snapshot/nydus-bootstrap'], 'true')
  t.regex(m.layers[1].annotations['io.nydusjs.rafs.root-digest'], /^[0-9a-f]{64}$/)
  const c = await check(reg, 'dst/one:v1', 'src/one:v1')
  t.is(c.code, 0, c.stdout + c.stderr)
  await mountEqualsSource(t, reg, dir, 'src/one:v1', 'dst/one:v1')
  const again = await convert(reg, 'src/one:v1', 'dst/one:v1')
  t.is(again.target.digest, first.target.digest)
  t.deepEqual(again.images[0].blobs, first.images[0].blobs)
  t.is(again.pushed_bytes, 0)
  t.deepEqual(
    again.images[0].layers.map(l => l.push),
    ['exists']
  )
  t.deepEqual(
    again.images[0].layers.map(l => l.streamed),
    [false],
    'an existing tag: HEAD first, nothing streamed'
  )
})

test('a multi-layer image with whiteouts and opaque dirs converts and mounts like the source', async t => {
  const reg = await startRegistry(t)
  const dir = await tempDir(t)
  const layers = ['ml-1.tar', 'ml-2.tar', 'ml-3.tar'].map(l => fixture('layers', l))
  await skopeoPush(await umociImage(join(dir, 'oci'), 'v1', layers), `${reg.host}/src/multi:v1`)
  const r = await convert(reg, 'src/multi:v1', 'dst/multi:v1')
  t.is(r.images[0].layers.length, 3)
  const c = await check(reg, 'dst/multi:v1', 'src/multi:v1')
  t.is(c.code, 0, c.stdout + c.stderr)
  await mountEqualsSource(t, reg, dir, 'src/multi:v1', 'dst/multi:v1')
})

test('check --source lists the differences when the converted image is not the source', async t => {
  const reg = await startRegistry(t)
  const dir = await tempDir(t)
  await skopeoPush(
    await umociImage(join(dir, 'oci'), 'a', [fixture('layers', 'ml-1.tar'), fixture('layers', 'ml-2.tar')]),
    `${reg.host}/src/a:1`
  )
  await skopeoPush(await umociImage(join(dir, 'oci'), 'b', [fixture('layers', 'ml-1.tar')]), `${reg.host}/src/b:1`)
  await convert(reg, 'src/a:1', 'dst/a:1')
  const c = await check(reg, 'dst/a:1', 'src/b:1')
  t.not(c.code, 0)
  t.regex(c.stderr, /check: error: .*dst\/a:1: 0 problem\(s\), \d+ difference\(s\) from the source \[ERR_CHECK_FAILED\]\n$/)
  t.true(c.stdout.split('\n').filter(Boolean).length > 0)
  t.regex(c.stdout, /^\/\S+: /m)
})

test('a two-platform index: one platform, all platforms, and --merge-platform keeping the OCI images', async t => {
  const reg = await startRegistry(t)
  const dir = await tempDir(t)
  const oci = join(dir, 'oci')
  await umociImage(oci, 'amd', [fixture('layers', 'ml-1.tar')], { arch: 'amd64' })
  await umociImage(oci, 'arm', [fixture('layers', 'pax.tar')], { arch: 'arm64' })
  const idx = await ociIndex(oci, 'multi', [
    { tag: 'amd', platform: { os: 'linux', architecture: 'amd64' } },
    { tag: 'arm', platform: { os: 'linux', architecture: 'arm64' } }
  ])
  await skopeoPush(idx, `${reg.host}/src/plat:1`, ['--all'])

  const arm = await convert(reg, 'src/plat:1', 'dst/plat:arm', ['--platform', 'linux/arm64'])
  t.deepEqual(
    arm.images.map(i => i.platform),
    ['linux/arm64']
  )
  t.is(arm.target.media_type, 'application/vnd.oci.image.manifest.v1+json')
  const c = await check(reg, 'dst/plat:arm', 'src/plat:1', ['--platform', 'linux/arm64'])
  t.is(c.code, 0, c.stdout + c.stderr)

  const all = await convert(reg, 'src/plat:1', 'dst/plat:all', ['--all-platforms'])
  t.deepEqual(all.images.map(i => i.platform).sort(), ['linux/amd64', 'linux/arm64'])
  const idxAll = await manifest(reg, 'dst/plat:all')
  t.is(idxAll.mediaType, 'application/vnd.oci.image.index.v1+json')
  t.true(idxAll.manifests.every((m: any) => m.platform['os.features'].includes('nydus.remoteimage.v1')))

  const merged = await convert(reg, 'src/plat:1', 'dst/plat:merged', ['--all-platforms', '--merge-platform'])
  const src = await manifest(reg, 'src/plat:1')
  const idxMerged = await manifest(reg, 'dst/plat:merged')
  t.is(idxMerged.manifests.length, 4)
  const plain = idxMerged.manifests
    .filter((m: any) => m.platform['os.features'] === undefined)
    .map((m: any) => m.digest)
    .sort()
  t.deepEqual(plain, src.manifests.map((m: any) => m.digest).sort())
  t.deepEqual(
    idxMerged.manifests
      .filter((m: any) => m.platform['os.features'] !== undefined)
      .map((m: any) => m.digest)
      .sort(),
    merged.images.map(i => i.target_digest).sort()
  )
  // A plain runtime still pulls the OCI image from the merged tag.
  const pulled = await run('skopeo', [
    'copy',
    '--quiet',
    '--src-tls-verify=false',
    '--override-arch',
    'arm64',
    `docker://${reg.host}/dst/plat:merged`,
    `oci:${join(dir, 'pulled')}:x`
  ])
  t.is(pulled.code, 0, pulled.stderr)
  await mountEqualsSource(t, reg, dir, 'src/plat:1', 'dst/plat:merged')
})

test('uncompressed and zstd source layers convert to the same image as gzip ones', async t => {
  const reg = await startRegistry(t)
  const dir = await tempDir(t)
  const ref = await umociImage(join(dir, 'oci'), 'v1', [fixture('layers', 'pax.tar'), fixture('layers', 'crafted.tar')])
  await uncompressedCopy(join(dir, 'oci'), 'v1', 'raw')
  await pushLayoutAsIs(join(dir, 'oci'), 'raw', reg, 'src/raw:1')
  // zstd first: skopeo would otherwise reuse the gzip blob it already pushed to this registry.
  await skopeoPush(ref, `${reg.host}/src/zst:1`, ['--dest-compress', '--dest-compress-format', 'zstd'])
  await skopeoPush(ref, `${reg.host}/src/gz:1`)
  t.is((await manifest(reg, 'src/raw:1')).layers[0].mediaType, 'application/vnd.oci.image.layer.v1.tar')
  t.is((await manifest(reg, 'src/zst:1')).layers[0].mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd')
  const roots = new Set<string>()
  for (const s of ['gz', 'raw', 'zst']) {
    const r = await convert(reg, `src/${s}:1`, `dst/${s}:1`)
    roots.add(r.images[0].blobs.join())
    const c = await check(reg, `dst/${s}:1`, `src/${s}:1`)
    t.is(c.code, 0, c.stdout + c.stderr)
  }
  t.is(roots.size, 1)
})
