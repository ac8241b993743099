import test from 'ava'
import { createHash } from 'node:crypto'
import { copyFile, readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { bytePath, layerFixture, listFiles, mountImage, pushBlob, startFaultProxy, startRegistry, tempDir } from '@nydusjs/testkit'
import { buildImage, localConfig } from './helpers.js'
import { startHangingFs } from './hanging-fs.js'

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

async function reference(t: Parameters<typeof buildImage>[0], img: Awaited<ReturnType<typeof buildImage>>): Promise<Map<string, string>> {
  const ref = new Map<string, string>()
  const m = await mountImage(t, { dir: img.dir, bootstrap: img.boot, mnt: img.mnt, config: localConfig(img) })
  for (const f of await listFiles(m.mnt)) ref.set(f, sha(await readFile(bytePath(m.mnt, f))))
  await m.stop()
  return ref
}

test.serial(
  'a plain registry backend (no chain configured) reads every file right while every other request is reset or answered 503',
  async t => {
    const img = await buildImage(t, layerFixture('pax.tar'), ['--chunk-size', '0x4000'])
    const ref = await reference(t, img)
    const [blob] = await readdir(img.blobs)
    const reg = await startRegistry(t)
    await pushBlob(reg, 'nydusjs/plain', await readFile(join(img.blobs, blob)))
    const proxy = await startFaultProxy(t, reg.url)
    proxy.firstTries(['reset', 'status503'])
    const config = {
      device: { backend: { type: 'registry', config: { scheme: 'http', host: proxy.host, repo: 'nydusjs/plain' } } },
      fs_prefetch: { merging_size: 0 }
    }
    const m = await mountImage(t, { dir: img.dir, bootstrap: img.boot, mnt: img.mnt, config })
    for (const [f, want] of ref) t.is(sha(await readFile(bytePath(m.mnt, f))), want, f)
    const c = proxy.counts()
    t.true(c.reset >= 2 && c.status503 >= 2, JSON.stringify(c))
    t.is(c.reset + c.status503, c.pass, 'every request failed once and its retry passed')
  }
)

test.serial(
  'a NAS link whose reads hang and a registry link that accepts and never answers are abandoned at request_timeout; the next link serves',
  async t => {
    const img = await buildImage(t, layerFixture('pax.tar'), ['--chunk-size', '0x4000'])
    const ref = await reference(t, img)
    const [blob] = await readdir(img.blobs)
    const size = (await readFile(join(img.blobs, blob))).length
    const hung = await startHangingFs(t, { [blob]: size })
    const reg = await startRegistry(t)
    await pushBlob(reg, 'nydusjs/hang', await readFile(join(img.blobs, blob)))
    const proxy = await startFaultProxy(t, reg.url)
    proxy.set('stall')
    const good = await tempDir(t)
    await copyFile(join(img.blobs, blob), join(good, blob))
    const config = {
      device: {
        backend: {
          type: 'chain',
          config: {
            backends: [
              { type: 'localfs', config: { dir: hung }, request_timeout: 0.3, retry_limit: 0, breaker_threshold: 1000 },
              {
                type: 'registry',
                config: { scheme: 'http', host: proxy.host, repo: 'nydusjs/hang' },
                request_timeout: 0.3,
                retry_limit: 0,
                breaker_threshold: 1000
              },
              { type: 'localfs', config: { dir: good } }
            ]
          }
        }
      },
      fs_prefetch: { merging_size: 0 }
    }
    const m = await mountImage(t, { dir: img.dir, bootstrap: img.boot, mnt: img.mnt, config })
    const some = [...ref].slice(0, 4)
    for (const [f, want] of some) t.is(sha(await readFile(bytePath(m.mnt, f))), want, f)
    const metrics = (await m.api('/api/v1/metrics', true)) as string
    t.regex(metrics, /nydusd_backend_failovers_total\{backend="localfs",mountpoint="[^"]+"\} [1-9]/)
    t.regex(metrics, /nydusd_backend_failovers_total\{backend="registry",mountpoint="[^"]+"\} [1-9]/)
    t.regex(m.logs(), /no answer within 300 ms/)
    t.true(proxy.counts().stall >= some.length, 'the stalled registry was asked')
    // Read again after the hung links' late answers could have landed: nothing they answer late is ever served.
    for (const [f, want] of some) t.is(sha(await readFile(bytePath(m.mnt, f))), want, `again: ${f}`)
  }
)
