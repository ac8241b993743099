import test from 'ava'
import { createHash } from 'node:crypto'
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import {
  layerFixture,
  bytePath,
  listFiles,
  mountImage,
  pushBlob,
  startFaultProxy,
  startRegistry,
  startS3,
  tempDir,
  type Fault
} from '@nydusjs/testkit'
import { buildImage } from './helpers.js'

const REPO = 'nydusjs/image'
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

test.serial(
  'nydusd over [registry behind a faulty proxy, s3, localfs] reads every file right under every fault; all failing gives quick EIO; it recovers',
  async t => {
    const img = await buildImage(t, layerFixture('pax.tar'), ['--chunk-size', '0x4000'])
    const [blob] = await readdir(img.blobs)
    const reg = await startRegistry(t, { auth: { type: 'htpasswd', users: { puller: 'pull-Secret-42' } } })
    await pushBlob(reg, REPO, await readFile(join(img.blobs, blob)), `Basic ${Buffer.from('puller:pull-Secret-42').toString('base64')}`)
    const proxy = await startFaultProxy(t, reg.url)
    const s3 = await startS3(t)
    const local = await tempDir(t)
    const config = {
      device: {
        backend: {
          type: 'chain',
          config: {
            backends: [
              {
                type: 'registry',
                config: {
                  scheme: 'http',
                  host: proxy.host,
                  repo: REPO,
                  auth: Buffer.from('puller:pull-Secret-42').toString('base64'),
                  timeout: 1
                },
                retry_limit: 1,
                request_timeout: 1,
                breaker_threshold: 1000
              },
              {
                type: 's3',
                config: {
                  endpoint: s3.endpoint,
                  scheme: 'http',
                  bucket_name: s3.bucket,
                  object_prefix: 'nydus/',
                  access_key_id: s3.accessKeyId,
                  access_key_secret: s3.secretAccessKey
                },
                retry_limit: 0,
                request_timeout: 2
              },
              { type: 'localfs', config: { dir: local }, retry_limit: 0 }
            ]
          }
        }
      },
      fs_prefetch: { merging_size: 0 }
    }
    const ref = new Map<string, string>()
    const m = await mountImage(t, { dir: img.dir, bootstrap: img.boot, mnt: img.mnt, config })
    for (const f of await listFiles(m.mnt)) ref.set(f, sha(await readFile(bytePath(m.mnt, f))))
    t.true(ref.size > 5)
    await m.stop()

    // S3 (and a local copy behind it) become the fallbacks; every fault of the registry must still give the right bytes.
    await s3.put(`nydus/${blob}`, await readFile(join(img.blobs, blob)))
    await (await import('node:fs/promises')).copyFile(join(img.blobs, blob), join(local, blob))
    for (const fault of ['reset', 'stall', 'status500', 'status503', 'truncate', 'corrupt', 'unauthorized'] as Fault[]) {
      proxy.set(fault)
      const mm = await mountImage(t, { dir: img.dir, bootstrap: img.boot, mnt: img.mnt, config })
      for (const [f, want] of ref) t.is(sha(await readFile(bytePath(mm.mnt, f))), want, `${fault}: ${f}`)
      const metrics = (await mm.api('/api/v1/metrics', true)) as string
      t.regex(metrics, /nydusd_backend_failovers_total\{backend="registry",mountpoint="[^"]+"\} [1-9]/, fault)
      t.regex(metrics, /nydusd_backend_requests_total\{backend="s3",result="ok",mountpoint="[^"]+"\} [1-9]/, fault)
      if (fault === 'corrupt') t.regex(metrics, /nydusd_chunk_verify_failures_total\{backend="registry",mountpoint="[^"]+"\} [1-9]/)
      t.false(mm.logs().includes('pull-Secret-42'), 'the secret never reaches the logs')
      t.false(((await mm.api('/api/v1/daemon', true)) as string).includes('pull-Secret-42'))
      t.false(metrics.includes('pull-Secret-42') || metrics.includes(Buffer.from('puller:pull-Secret-42').toString('base64')))
      await mm.stop()
    }

    // Every source failing: EIO within the timeouts, the daemon stays up, and recovers.
    proxy.set('stall')
    await s3.put(`nydus/${blob}`, Buffer.from('not the blob'))
    await (await import('node:fs/promises')).rm(join(local, blob))
    const down = await mountImage(t, { dir: img.dir, bootstrap: img.boot, mnt: img.mnt, config })
    await t.throwsAsync(readFile(join(down.mnt, 'text.txt')), { code: 'EIO' })
    // The stalled registry was given up on by its enforced timeout, not waited on.
    t.regex(down.logs(), /registry: blob \w+ \d+\+\d+: no answer within 1000 ms/)
    t.is((await down.api('/api/v1/daemon')).state, 'RUNNING')
    proxy.set('pass')
    t.is(sha(await readFile(join(down.mnt, 'text.txt'))), ref.get('text.txt') ?? 'missing')
  }
)
