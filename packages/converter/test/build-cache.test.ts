import { exitCodeOf } from '@nydusjs/errors'
import test from 'ava'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  fixture,
  nydusImage,
  pushBlob,
  putManifest,
  run,
  skopeoPush,
  startFaultProxy,
  startRegistry,
  startS3,
  tempDir,
  umociImage,
  type TestRegistry,
  convertImage
} from '@nydusjs/testkit'

interface CacheReport {
  hits: number
  misses: number
  records: number
  exported: boolean
  warnings: string[]
}
interface Report {
  target: { digest: string }
  pushed_bytes: number
  build_cache?: CacheReport
  images: Array<{ blobs: string[]; layers: Array<{ source_digest: string; push: string; build_cache?: string; files: number }> }>
}

async function convert(src: string, dst: string, extra: string[] = []): Promise<Report & { stderr: string }> {
  const { report, stderr } = await convertImage<Report>(src, dst, extra)
  return { ...report, stderr }
}

async function manifest(ref: string): Promise<any> {
  const r = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`])
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout)
}

async function check(reg: TestRegistry, dst: string, src: string, extra: string[] = []): Promise<void> {
  const c = await nydusImage([
    'check',
    '--target',
    `${reg.host}/${dst}`,
    '--source',
    `${reg.host}/${src}`,
    '--target-insecure',
    '--source-insecure',
    ...extra
  ])
  if (c.code !== 0) throw new Error(c.stdout + c.stderr)
}

/** Two source images: `base` (two layers) and `app` (the same two plus one). */
async function images(reg: TestRegistry, dir: string): Promise<{ base: string[]; app: string[] }> {
  const oci = join(dir, 'oci')
  const lower = [fixture('layers', 'ml-1.tar'), fixture('layers', 'ml-2.tar')]
  await skopeoPush(await umociImage(oci, 'base', lower), `${reg.host}/src/base:1`)
  await skopeoPush(await umociImage(oci, 'app', [...lower, fixture('layers', 'ml-3.tar')]), `${reg.host}/src/app:1`)
  const base = (await manifest(`${reg.host}/src/base:1`)).layers.map((l: { digest: string }) => l.digest)
  const app = (await manifest(`${reg.host}/src/app:1`)).layers.map((l: { digest: string }) => l.digest)
  return { base, app }
}

test('--build-cache: an image sharing lower layers pulls and converts only its new layer, and equals a conversion without the cache', async t => {
  const reg = await startRegistry(t)
  const dir = await tempDir(t)
  const layers = await images(reg, dir)
  t.deepEqual(layers.app.slice(0, 2), layers.base, 'the fixtures share their two lower layers')
  const cache = ['--build-cache', `${reg.host}/cache/c:1`]
  const base = await convert(`${reg.host}/src/base:1`, `${reg.host}/dst/base:1`, cache)
  t.like(base.build_cache, { hits: 0, misses: 2, records: 2, exported: true, warnings: [] })
  const cm = await manifest(`${reg.host}/cache/c:1`)
  t.is(cm.annotations['containerd.io/snapshot/nydus-cache'], 'nydusjs.v1')
  t.deepEqual(
    cm.layers.map((l: any) => l.mediaType),
    Array(2).fill(['application/vnd.oci.image.layer.v1.tar+gzip', 'application/vnd.oci.image.layer.nydus.blob.v1']).flat()
  )

  // The source through a proxy that logs which blobs are read.
  const proxy = await startFaultProxy(t, reg.url)
  const app = await convert(`${proxy.host}/src/app:1`, `${reg.host}/dst/app:1`, cache)
  t.like(app.build_cache, { hits: 2, misses: 1, records: 3, exported: true, warnings: [] })
  t.deepEqual(
    app.images[0].layers.map(l => l.build_cache),
    ['hit', 'hit', 'miss']
  )
  t.deepEqual(
    app.images[0].layers.map(l => l.push),
    ['mounted', 'mounted', 'pushed'],
    'cached blobs are mounted from the cache repository'
  )
  t.true(app.images[0].layers[0].files > 0)
  const pulled = proxy
    .requests()
    .filter(q => q.method === 'GET')
    .map(q => q.path.split('/').pop() ?? '')
  t.deepEqual(
    pulled.filter(d => layers.app.includes(d)),
    [layers.app[2]],
    'only the new layer is pulled'
  )

  const plain = await convert(`${reg.host}/src/app:1`, `${reg.host}/dst/app-plain:1`)
  t.is(app.target.digest, plain.target.digest, 'byte-identical to a conversion without the cache')
  await check(reg, 'dst/app:1', 'src/app:1')
  t.is((await manifest(`${reg.host}/cache/c:1`)).layers.length, 6)

  const again = await convert(`${reg.host}/src/app:1`, `${reg.host}/dst/app:2`, cache)
  t.like(again.build_cache, { hits: 3, misses: 0, exported: false })
  t.is(again.target.digest, plain.target.digest)
})

test('--build-cache never changes the image: a broken record is a warning, other options miss, a tag that is not a cache is refused', async t => {
  const reg = await startRegistry(t)
  const dir = await tempDir(t)
  await images(reg, dir)
  const cache = ['--build-cache', `${reg.host}/cache/c:1`]
  const first = await convert(`${reg.host}/src/base:1`, `${reg.host}/dst/base:1`, cache)

  // The first record's layer bootstrap replaced by bytes that are not one.
  const cm = await manifest(`${reg.host}/cache/c:1`)
  const junk = randomBytes(4096)
  cm.layers[0] = { ...cm.layers[0], digest: await pushBlob(reg, 'cache/c', junk), size: junk.length }
  await putManifest(reg, 'cache/c', '1', cm)
  const broken = await convert(`${reg.host}/src/base:1`, `${reg.host}/dst/base:2`, cache)
  t.is(broken.target.digest, first.target.digest)
  t.like(broken.build_cache, { hits: 1, misses: 1 })
  t.deepEqual(
    broken.images[0].layers.map(l => l.build_cache),
    ['miss', 'hit']
  )
  t.regex(
    broken.stderr,
    /^nydus-image convert: warning: --build-cache 127\.0\.0\.1:\d+\/cache\/c:1: the record for source \S+ layer 1\/2 \(sha256:[0-9a-f]{64}\) is not usable \(.*not a valid gzip stream.*\); converting the layer$/m
  )

  // Another chunk size: nothing in the cache applies.
  const other = await convert(`${reg.host}/src/base:1`, `${reg.host}/dst/base-4k:1`, [...cache, '--chunk-size', '0x4000'])
  t.like(other.build_cache, { hits: 0, misses: 2 })
  await check(reg, 'dst/base-4k:1', 'src/base:1')

  // The same layer over other lower layers is another key: its blob depends on what it deduplicates against.
  await skopeoPush(await umociImage(join(dir, 'oci'), 'alone', [fixture('layers', 'ml-2.tar')]), `${reg.host}/src/alone:1`)
  const alone = await convert(`${reg.host}/src/alone:1`, `${reg.host}/dst/alone:1`, cache)
  t.like(alone.build_cache, { hits: 0, misses: 1, warnings: [] })

  // --build-cache-max-records 1 keeps one record.
  await convert(`${reg.host}/src/app:1`, `${reg.host}/dst/app:1`, [...cache, '--build-cache-max-records', '1'])
  t.is((await manifest(`${reg.host}/cache/c:1`)).layers.length, 2)

  // A tag that holds an image, not a cache: refused before anything is written.
  const r = await nydusImage([
    'convert',
    '--source',
    `${reg.host}/src/app:1`,
    '--target',
    `${reg.host}/dst/refused:1`,
    '--source-insecure',
    '--target-insecure',
    '--build-cache',
    `${reg.host}/src/base:1`
  ])
  t.is(r.code, exitCodeOf('ERR_BAD_ARGUMENT'))
  t.regex(
    r.stderr,
    /^nydus-image convert: error: --build-cache 127\.0\.0\.1:\d+\/src\/base:1: names an image that is not a build cache \(no containerd\.io\/snapshot\/nydus-cache annotation\); name a tag of its own \[ERR_BAD_ARGUMENT\]\n$/
  )
  t.not((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/dst/refused:1`])).code, 0, 'no target tag')
  const same = await nydusImage([
    'convert',
    '--source',
    `${reg.host}/src/app:1`,
    '--target',
    `${reg.host}/dst/same:1`,
    '--source-insecure',
    '--target-insecure',
    '--build-cache',
    `${reg.host}/dst/same:1`
  ])
  t.is(same.code, exitCodeOf('ERR_BAD_ARGUMENT'))
  t.regex(
    same.stderr,
    /^nydus-image convert: error: --build-cache 127\.0\.0\.1:\d+\/dst\/same:1 is the --target; give the cache a tag of its own \[ERR_BAD_ARGUMENT\]\n$/
  )
})

test('--build-cache with --backend-type s3: records name their blobs in S3; a second conversion pushes nothing to S3', async t => {
  const reg = await startRegistry(t)
  const s3 = await startS3(t)
  const dir = await tempDir(t)
  await images(reg, dir)
  const cfgFile = join(dir, 's3.json')
  await writeFile(
    cfgFile,
    JSON.stringify({
      endpoint: s3.endpoint,
      scheme: 'http',
      bucket_name: s3.bucket,
      region: 'us-east-1',
      access_key_id: s3.accessKeyId,
      access_key_secret: s3.secretAccessKey
    })
  )
  const args = ['--backend-type', 's3', '--backend-config', cfgFile, '--build-cache', `${reg.host}/cache/s3:1`]
  const first = await convert(`${reg.host}/src/app:1`, `${reg.host}/dst/s3:1`, args)
  const cm = await manifest(`${reg.host}/cache/s3:1`)
  t.is(cm.layers.length, 3, 'bootstrap layers only')
  t.deepEqual(
    cm.layers.map((l: any) => l.annotations['containerd.io/snapshot/nydus-blob-digest']),
    first.images[0].blobs.map(b => `sha256:${b}`)
  )
  const second = await convert(`${reg.host}/src/app:1`, `${reg.host}/dst/s3:2`, args)
  t.like(second.build_cache, { hits: 3, misses: 0 })
  t.deepEqual(
    second.images[0].layers.map(l => l.push),
    ['exists', 'exists', 'exists']
  )
  t.is(second.target.digest, first.target.digest)
  await check(reg, 'dst/s3:2', 'src/app:1', ['--backend-config', cfgFile])
})
