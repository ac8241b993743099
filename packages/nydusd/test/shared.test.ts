import test from 'ava'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { abortFuseConnection, isMounted, nydusImage, startBlobServer, startSharedNydusd, tempDir } from '@nydusjs/testkit'

const IMAGES = 30
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

interface Built {
  mnt: string
  boot: string
  blobs: string
  cache: string
  /** Path in the image to its bytes' sha256. */
  files: Map<string, string>
}

/** Image `i`: its own files (two of 1.5 MiB, several small ones), converted with the real CLI. */
async function build(root: string, i: number): Promise<Built> {
  const dir = join(root, `img${i}`)
  const src = join(dir, 'src')
  await mkdir(join(src, 'data'), { recursive: true })
  const files = new Map<string, string>()
  const put = async (path: string, data: Buffer): Promise<void> => {
    await writeFile(join(src, path), data)
    files.set(path, sha(data))
  }
  await put('data/first.bin', randomBytes(1536 * 1024))
  await put('data/second.bin', randomBytes(1536 * 1024))
  for (let k = 0; k < 5; k++) await put(`data/small-${k}.txt`, Buffer.from(`image ${i} file ${k}\n`.repeat(100 + k)))
  const b = { mnt: join(dir, 'mnt'), boot: join(dir, 'image.boot'), blobs: join(dir, 'blobs'), cache: join(dir, 'cache'), files }
  await mkdir(b.mnt)
  const r = await nydusImage(['create', src, '--bootstrap', b.boot, '--blob-dir', b.blobs])
  if (r.code !== 0) throw new Error(`nydus-image create: ${r.stderr}`)
  return b
}

const localfs = (b: Built): Record<string, unknown> => ({
  device: { backend: { type: 'localfs', config: { dir: b.blobs } }, cache: { type: 'blobcache', config: { work_dir: b.cache } } }
})

/** Every file of the image read through its mount: the paths whose bytes were wrong, or the error. */
async function readAll(b: Built, only?: string[]): Promise<string[]> {
  const bad: string[] = []
  for (const [path, want] of b.files) {
    if (only !== undefined && !only.includes(path)) continue
    const got = await readFile(join(b.mnt, path)).then(sha, (err: NodeJS.ErrnoException) => err.code ?? 'error')
    if (got !== want) bad.push(`${path}: ${got === want ? '' : got.length === 64 ? 'wrong bytes' : got}`)
  }
  return bad
}

test('one daemon serves 30 images: every file right, a dead backend fails only its image, an unmount only its own, bad requests change nothing', async t => {
  const root = await tempDir(t, 'shared-')
  const images: Built[] = []
  for (let i = 0; i < IMAGES; i += 5) images.push(...(await Promise.all([0, 1, 2, 3, 4].map(async k => await build(root, i + k)))))
  const d = await startSharedNydusd(t, { apisock: join(root, 'api.sock') })
  const t0 = await d.get('/api/v1/daemon')
  t.is(t0.mode, 'shared')
  t.deepEqual(t0.mounts, [])

  // Image 0 is read from an HTTP server this test kills; the others from their blob directories.
  const server = await startBlobServer(t, images[0].blobs)
  const config = (i: number): Record<string, unknown> =>
    i === 0
      ? {
          device: {
            backend: { type: 'http', config: { url: server.url, timeout: 2 }, retry_limit: 1 },
            cache: { type: 'blobcache', config: { work_dir: images[0].cache } }
          }
        }
      : localfs(images[i])
  // Mount requests arrive together; nydus's body, the config as a JSON string for half of them.
  const answers = await Promise.all(
    images.map(
      async (b, i) => await d.mount(b.mnt, { source: b.boot, fs_type: 'rafs', config: i % 2 === 0 ? JSON.stringify(config(i)) : config(i) })
    )
  )
  t.deepEqual(
    answers.map(a => a.status),
    images.map(() => 200),
    answers.map(a => a.body).join('\n')
  )
  t.is((await d.get('/api/v1/mount')).length, IMAGES)

  // Image 0: its first file read while the server is up; then the server dies, and its second file
  // (never fetched) fails with EIO while every other image is read at the same time, all right.
  t.deepEqual(await readAll(images[0], ['data/first.bin']), [])
  await server.close()
  const [dead, ...rest] = await Promise.all([readAll(images[0], ['data/second.bin']), ...images.slice(1).map(async b => await readAll(b))])
  t.deepEqual(dead, ['data/second.bin: EIO'])
  t.deepEqual(rest.flat(), [])

  // The metrics name each mount.
  const metrics = (await d.get('/api/v1/metrics')) as string
  for (const b of [images[1], images[29]])
    t.regex(metrics, new RegExp(`^nydusd_read_bytes_total\\{mountpoint="${b.mnt}"\\} [1-9]\\d*$`, 'm'))

  // Bad requests: each a 4xx naming the problem, and the mounts are as they were.
  const spare = join(root, 'spare')
  await mkdir(spare)
  const junk = join(root, 'junk.boot')
  await writeFile(junk, randomBytes(4096))
  const bad: Array<[string, unknown, number, RegExp]> = [
    [spare, { source: join(root, 'none.boot'), config: localfs(images[1]) }, 404, /bootstrap .*none\.boot: no such file/],
    [spare, { source: junk, config: localfs(images[1]) }, 422, /bootstrap .*junk\.boot/],
    [spare, { source: images[1].boot, fs_type: 'overlay', config: localfs(images[1]) }, 400, /fs_type "overlay"/],
    [spare, { source: images[1].boot, config: '{not json' }, 400, /invalid JSON/],
    [spare, { source: images[1].boot, config: { device: { backend: { type: 'ftp' } } } }, 400, /device\.backend/],
    [spare, { config: localfs(images[1]) }, 400, /"source"/],
    [images[2].mnt, { source: images[2].boot, config: localfs(images[2]) }, 409, /busy/],
    [join(root, 'no-such-dir'), { source: images[1].boot, config: localfs(images[1]) }, 409, /does not exist/],
    ['relative/mnt', { source: images[1].boot, config: localfs(images[1]) }, 400, /absolute path/]
  ]
  for (const [mnt, body, status, message] of bad) {
    const r = await d.mount(mnt, body)
    t.is(r.status, status, `${mnt} ${JSON.stringify(body)}: ${r.body}`)
    t.regex(JSON.parse(r.body).message, message)
  }
  t.false(await isMounted(spare))
  t.is((await d.get('/api/v1/mount')).length, IMAGES)

  // One unmounted: gone from the table and the daemon; the rest go on serving.
  t.is((await d.umount(images[5].mnt)).status, 204)
  t.false(await isMounted(images[5].mnt))
  t.is((await d.umount(images[5].mnt)).status, 404)
  t.is((await d.get('/api/v1/mount')).length, IMAGES - 1)
  t.deepEqual((await Promise.all([images[4], images[6]].map(async b => await readAll(b)))).flat(), [])
  // Its mountpoint takes a mount again.
  t.is((await d.mount(images[5].mnt, { source: images[5].boot, config: localfs(images[5]) })).status, 200)
  t.deepEqual(await readAll(images[5]), [])

  // An aborted FUSE connection ends that mount only.
  await abortFuseConnection(images[7].mnt)
  for (let i = 0; i < 100 && (await d.get('/api/v1/mount')).length === IMAGES; i++) await new Promise(r => setTimeout(r, 50))
  t.is((await d.get('/api/v1/mount')).length, IMAGES - 1)
  t.false(await isMounted(images[7].mnt), 'the aborted mount was detached')
  t.deepEqual((await Promise.all([images[8], images[29]].map(async b => await readAll(b)))).flat(), [])
  t.is(d.proc.exitCode, null)
  t.is(await d.stop(), 0, d.logs())
  for (const b of images) t.false(await isMounted(b.mnt), b.mnt)
})
