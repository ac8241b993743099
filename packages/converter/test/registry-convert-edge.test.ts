import test, { type ExecutionContext } from 'ava'
import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  diffTrees,
  extractRegistryImage,
  fixture,
  mountImage,
  nonUtf8,
  nydusImage,
  nydusImageBin,
  pushBlob,
  run,
  skopeoPush,
  snapshotTree,
  startFaultProxy,
  startRegistry,
  startS3,
  tempDir,
  umociImage,
  type TestRegistry,
  convertImage
} from '@nydusjs/testkit'

interface Report {
  target: { digest: string }
  pushed_bytes: number
  dict_saved_bytes: number
  images: Array<{ blobs: string[]; prefetch_files: number; prefetch_unmatched: string[] }>
}

async function convert(src: string, dst: string, extra: string[] = []): Promise<Report> {
  return (await convertImage<Report>(src, dst, extra)).report
}

/** A failed conversion: one error line naming what went wrong, a non-zero exit, and no target tag. */
async function fails(t: ExecutionContext, reg: TestRegistry, args: string[], pattern: RegExp, env?: NodeJS.ProcessEnv): Promise<void> {
  const r = await run(process.execPath, [nydusImageBin, 'convert', ...args], { env: { ...process.env, ...env } })
  t.not(r.code, 0)
  t.regex(r.stderr, /^nydus-image convert: error: [^\n]+\[ERR_[A-Z_]+\]\n$/)
  t.regex(r.stderr, pattern)
  const dst = args[args.indexOf('--target') + 1]
  const tag = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${dst}`])
  t.not(tag.code, 0, `the target tag ${dst} exists after a failed conversion`)
  void reg
}

test('--chunk-dict REF: a second image sharing a base pushes fewer bytes and still equals its source', async t => {
  const reg = await startRegistry(t)
  const dir = await tempDir(t)
  const oci = join(dir, 'oci')
  await skopeoPush(await umociImage(oci, 'base', [fixture('layers', 'ml-1.tar'), fixture('layers', 'ml-2.tar')]), `${reg.host}/src/base:1`)
  await skopeoPush(
    await umociImage(oci, 'app', [fixture('layers', 'ml-1.tar'), fixture('layers', 'ml-2.tar'), fixture('layers', 'pax.tar')]),
    `${reg.host}/src/app:1`
  )
  await convert(`${reg.host}/src/base:1`, `${reg.host}/dst/base:1`)
  const plain = await convert(`${reg.host}/src/app:1`, `${reg.host}/dst/app-plain:1`)
  const withDict = await convert(`${reg.host}/src/app:1`, `${reg.host}/dst/app:1`, ['--chunk-dict', `${reg.host}/dst/base:1`])
  t.true(withDict.pushed_bytes < plain.pushed_bytes, `${withDict.pushed_bytes} >= ${plain.pushed_bytes}`)
  t.true(withDict.dict_saved_bytes > 0)
  const c = await nydusImage([
    'check',
    '--target',
    `${reg.host}/dst/app:1`,
    '--source',
    `${reg.host}/src/app:1`,
    '--target-insecure',
    '--source-insecure'
  ])
  t.is(c.code, 0, c.stdout + c.stderr)
})

test('--prefetch-patterns: paths and globs go into the prefetch table; unmatched ones are reported', async t => {
  const reg = await startRegistry(t)
  const dir = await tempDir(t)
  await skopeoPush(
    await umociImage(
      join(dir, 'oci'),
      'v1',
      ['ml-1.tar', 'ml-2.tar', 'ml-3.tar'].map(l => fixture('layers', l))
    ),
    `${reg.host}/src/m:1`
  )
  const list = join(dir, 'prefetch.txt')
  await writeFile(list, '# hot files\n/etc/*.conf\n/opaque\n/not/there\n')
  const r = await convert(`${reg.host}/src/m:1`, `${reg.host}/dst/m:1`, ['--prefetch-patterns', list])
  t.is(r.images[0].prefetch_files, 3)
  t.deepEqual(r.images[0].prefetch_unmatched, ['not/there'])
})

test('token auth: pull scope on the source and push scope on the target; a push denied names the repository', async t => {
  const reg = await startRegistry(t, {
    auth: {
      type: 'token',
      users: {
        admin: { password: 'pw', actions: ['pull', 'push'] },
        ci: { password: 'ci-pw', actions: { 'src/app': ['pull'], 'dst/app': ['pull', 'push'] } },
        reader: { password: 'r-pw', actions: { 'src/app': ['pull'], 'dst/app': ['pull'] } }
      }
    },
    tls: true
  })
  const dir = await tempDir(t)
  const certs = join(dir, 'certs')
  await mkdir(certs)
  await writeFile(join(certs, 'ca.crt'), reg.ca!.caPem)
  const ref = await umociImage(join(dir, 'oci'), 'v1', [fixture('layers', 'ml-1.tar')])
  await run('skopeo', [
    'copy',
    '--quiet',
    '--dest-cert-dir',
    certs,
    '--dest-creds',
    'admin:pw',
    `oci:${ref}`,
    `docker://${reg.host}/src/app:1`
  ]).then(r => t.is(r.code, 0, r.stderr))
  const dockerConfig = async (user: string, pw: string): Promise<string> => {
    const d = join(dir, `docker-${user}`)
    await mkdir(d)
    await writeFile(
      join(d, 'config.json'),
      JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${user}:${pw}`).toString('base64') } } })
    )
    return d
  }
  const env = { NODE_EXTRA_CA_CERTS: reg.ca!.caFile }
  const ok = await run(
    process.execPath,
    [nydusImageBin, 'convert', '--source', `${reg.host}/src/app:1`, '--target', `${reg.host}/dst/app:1`],
    { env: { ...process.env, ...env, DOCKER_CONFIG: await dockerConfig('ci', 'ci-pw') } }
  )
  t.is(ok.code, 0, ok.stderr)
  const denied = { ...env, DOCKER_CONFIG: await dockerConfig('reader', 'r-pw') }
  const r = await run(
    process.execPath,
    [nydusImageBin, 'convert', '--source', `${reg.host}/src/app:1`, '--target', `${reg.host}/dst/app:2`],
    { env: { ...process.env, ...denied } }
  )
  t.not(r.code, 0)
  t.regex(
    r.stderr,
    /^nydus-image convert: error: registry [^ ]+\/dst\/app: .*denied.*lack push access to [^ ]+\/dst\/app \[ERR_BACKEND_AUTH\]\n$/
  )
  t.notRegex(r.stderr, /r-pw|cmVhZGVy/)
})

test('bad input: a missing source, an unknown media type, a corrupt layer, a registry going away: one line, no target tag', async t => {
  const reg = await startRegistry(t)
  const dir = await tempDir(t)
  await skopeoPush(
    await umociImage(join(dir, 'oci'), 'v1', [fixture('layers', 'ml-1.tar'), fixture('layers', 'ml-2.tar')]),
    `${reg.host}/src/ok:1`
  )
  await fails(
    t,
    reg,
    ['--source', `${reg.host}/src/nope:1`, '--target', `${reg.host}/dst/nope:1`, '--source-insecure', '--target-insecure'],
    /src\/nope: manifest src\/nope:1: not found/
  )

  // A manifest whose layer has a media type no converter knows.
  const config = await pushBlob(
    reg,
    'src/odd',
    Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
  )
  const layer = await pushBlob(reg, 'src/odd', Buffer.from('not a layer'))
  const m = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: 79 },
    layers: [{ mediaType: 'application/vnd.example.mystery.v1', digest: layer, size: 11 }]
  })
  const { request } = await import('undici')
  const put = await request(`${reg.url}/v2/src/odd/manifests/1`, {
    method: 'PUT',
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    body: m
  })
  t.is(put.statusCode, 201, await put.body.text())
  await fails(
    t,
    reg,
    ['--source', `${reg.host}/src/odd:1`, '--target', `${reg.host}/dst/odd:1`, '--source-insecure', '--target-insecure'],
    /layer 1\/1 \(sha256:[0-9a-f]{64}\): unsupported layer media type "application\/vnd.example.mystery.v1"/
  )

  // The source served through a proxy that flips a byte of the second layer.
  const proxy = await startFaultProxy(t, reg.url)
  proxy.next('pass', 2)
  proxy.set('corrupt')
  await fails(
    t,
    reg,
    ['--source', `${proxy.host}/src/ok:1`, '--target', `${reg.host}/dst/corrupt:1`, '--source-insecure', '--target-insecure'],
    /layer 2\/2 \(sha256:[0-9a-f]{64}\)/
  )

  // The source stops in the middle of a layer.
  proxy.next('pass', 1)
  proxy.set('truncate')
  await fails(
    t,
    reg,
    ['--source', `${proxy.host}/src/ok:1`, '--target', `${reg.host}/dst/cut:1`, '--source-insecure', '--target-insecure'],
    /(layer 1\/2|src\/ok: blob sha256:[0-9a-f]{64})/
  )

  // The target goes away: every blob request is reset.
  proxy.set('reset')
  await fails(
    t,
    reg,
    ['--source', `${reg.host}/src/ok:1`, '--target', `${proxy.host}/dst/gone:1`, '--source-insecure', '--target-insecure'],
    /registry 127\.0\.0\.1:\d+\/dst\/gone: /
  )
  const tag = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/dst/gone:1`])
  t.not(tag.code, 0)
})

test('a streamed push that fails falls back to pushing the blob from its file; the image is whole', async t => {
  const reg = await startRegistry(t)
  const dir = await tempDir(t)
  await skopeoPush(await umociImage(join(dir, 'oci'), 'v1', [fixture('layers', 'gnu.tar')]), `${reg.host}/src/fb:1`)
  const proxy = await startFaultProxy(t, reg.url)
  proxy.next('pass', 2) // the streamed upload's HEAD and POST
  proxy.next('reset') // its closing PUT
  const r = await nydusImage([
    'convert',
    '--source',
    `${reg.host}/src/fb:1`,
    '--target',
    `${proxy.host}/dst/fb:1`,
    '--source-insecure',
    '--target-insecure',
    '--output-json',
    '-'
  ])
  t.is(r.code, 0, r.stderr)
  const layer = (
    JSON.parse(r.stdout) as { images: Array<{ layers: Array<{ push: string; streamed: boolean; stream_fallback?: string }> }> }
  ).images[0].layers[0]
  t.is(layer.push, 'pushed')
  t.false(layer.streamed)
  t.regex(layer.stream_fallback ?? '', /registry 127\.0\.0\.1:\d+\/dst\/fb: upload of sha256:[0-9a-f]{64}/)
  t.is(
    proxy
      .requests()
      .slice(0, 7)
      .map(q => q.method)
      .join(' '),
    'HEAD POST PUT DELETE HEAD POST PUT',
    'the session is dropped, then an ordinary push'
  )
  const c = await nydusImage([
    'check',
    '--target',
    `${reg.host}/dst/fb:1`,
    '--source',
    `${reg.host}/src/fb:1`,
    '--target-insecure',
    '--source-insecure'
  ])
  t.is(c.code, 0, c.stdout + c.stderr)
})

test('a layer whose blob is larger than one upload chunk goes up in PATCHes while it converts; the registry takes its digest', async t => {
  const reg = await startRegistry(t)
  const dir = await tempDir(t)
  const src = join(dir, 'src')
  await mkdir(src)
  // Incompressible, so the blob is about as large as the file: three 8 MiB PATCHes, the rest in the PUT.
  await writeFile(join(src, 'random.bin'), randomBytes(28 * 1024 * 1024))
  await writeFile(join(src, 'small.txt'), 'small\n')
  const tar = join(dir, 'layer.tar')
  t.is((await run('tar', ['-C', src, '-cf', tar, '.'])).code, 0)
  await skopeoPush(await umociImage(join(dir, 'oci'), 'v1', [tar]), `${reg.host}/src/big:1`)
  const proxy = await startFaultProxy(t, reg.url)
  const r = await nydusImage([
    'convert',
    '--source',
    `${reg.host}/src/big:1`,
    '--target',
    `${proxy.host}/dst/big:1`,
    '--source-insecure',
    '--target-insecure',
    '--output-json',
    '-'
  ])
  t.is(r.code, 0, r.stderr)
  t.true((JSON.parse(r.stdout) as { images: Array<{ layers: Array<{ streamed: boolean }> }> }).images[0].layers[0].streamed)
  t.is(
    proxy
      .requests()
      .slice(0, 6)
      .map(q => q.method)
      .join(' '),
    'POST PATCH PATCH PATCH HEAD PUT'
  )
  const c = await nydusImage([
    'check',
    '--target',
    `${reg.host}/dst/big:1`,
    '--source',
    `${reg.host}/src/big:1`,
    '--target-insecure',
    '--source-insecure'
  ])
  t.is(c.code, 0, c.stdout + c.stderr)
})

test('--backend-type s3: data blobs go to S3, the registry gets the bootstrap; nydusd --image reads the blobs from S3', async t => {
  const reg = await startRegistry(t)
  const s3 = await startS3(t)
  const dir = await tempDir(t)
  await skopeoPush(
    await umociImage(join(dir, 'oci'), 'v1', [fixture('layers', 'ml-1.tar'), fixture('layers', 'ml-2.tar'), fixture('layers', 'ml-3.tar')]),
    `${reg.host}/src/s3:1`
  )
  const s3config = {
    endpoint: s3.endpoint,
    scheme: 'http',
    bucket_name: s3.bucket,
    region: 'us-east-1',
    object_prefix: 'nydus/',
    access_key_id: s3.accessKeyId,
    access_key_secret: s3.secretAccessKey
  }
  const cfgFile = join(dir, 's3.json')
  await writeFile(cfgFile, JSON.stringify(s3config))
  const r = await convert(`${reg.host}/src/s3:1`, `${reg.host}/dst/s3:1`, ['--backend-type', 's3', '--backend-config', cfgFile])
  const man = JSON.parse((await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/dst/s3:1`])).stdout)
  t.is(man.layers.length, 1)
  t.deepEqual(JSON.parse(man.layers[0].annotations['containerd.io/snapshot/nydus-blob-ids']), r.images[0].blobs)
  const c = await nydusImage([
    'check',
    '--target',
    `${reg.host}/dst/s3:1`,
    '--source',
    `${reg.host}/src/s3:1`,
    '--target-insecure',
    '--source-insecure',
    '--backend-config',
    cfgFile
  ])
  t.is(c.code, 0, c.stdout + c.stderr)
  const rootfs = await extractRegistryImage(`${reg.host}/src/s3:1`, join(dir, 'extract'))
  const mnt = join(dir, 'mnt')
  await mkdir(mnt)
  const m = await mountImage(t, {
    dir,
    image: `${reg.host}/dst/s3:1`,
    mnt,
    config: { device: { backend: { type: 's3', config: s3config } } },
    args: ['--insecure']
  })
  t.deepEqual(diffTrees(await snapshotTree(rootfs), await snapshotTree(mnt), { mtimePrecisionNs: 1e6, skip: nonUtf8 }), [])
  t.is(await m.stop(), 0)
})
