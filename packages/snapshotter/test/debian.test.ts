import test from 'ava'
import { BIN } from './setup.js'
import {
  convertImage,
  debianFixture,
  run,
  skopeoPush,
  startContainerd,
  startFaultProxy,
  startRegistry,
  startSnapshotter
} from '@nydusjs/testkit'

test('the Debian/python3 image, converted: rpull and python3 run lazily, and the registry serves a small part of the blob', async t => {
  const { oci } = await debianFixture()
  const reg = await startRegistry(t)
  await skopeoPush(`${oci}:latest`, `${reg.host}/library/debian:py3`)
  const { report } = await convertImage<{ images: Array<{ blobs: string[] }> }>(
    `${reg.host}/library/debian:py3`,
    `${reg.host}/library/debian:py3-nydus`
  )
  const blob = `sha256:${report.images[0].blobs[0].replace(/^sha256:/, '')}`
  // containerd and nydusd both reach the registry through a proxy that counts the blob bytes it serves.
  const proxy = await startFaultProxy(t, reg.url)
  const ref = `${proxy.host}/library/debian:py3-nydus`
  const sn = await startSnapshotter(t, BIN)
  const cd = await startContainerd(t, { proxyPlugins: { nydus: sn.address } })
  const pull = await cd.rpull(ref)
  t.is(pull.code, 0, pull.stderr + sn.logs())
  const out = await cd.ctr([
    'run',
    '--rm',
    '--snapshotter',
    'nydus',
    ref,
    'py',
    '/usr/bin/python3',
    '-c',
    'import json, sqlite3; print(json.dumps({"sum": sum(range(10))}), sqlite3.sqlite_version_info[0])'
  ])
  t.is(out.code, 0, out.stderr + sn.logs())
  t.is(out.stdout, '{"sum": 45} 3\n')
  const blobSize = Number(
    (await run('sh', ['-c', `find ${reg.dir} -path '*${blob.replace('sha256:', '')}*/data' -exec stat -c %s {} +`])).stdout
  )
  const served = proxy.blobBytes().get(blob) ?? 0
  t.true(blobSize > 50e6, `the blob is ${blobSize} bytes`)
  t.true(served > 0, 'python was read through the registry')
  t.log(`the registry served ${served} of the blob's ${blobSize} bytes`)
  t.true(served < blobSize * 0.15, `the registry served ${served} of ${blobSize} bytes of the blob`)
  t.false((await cd.ctr(['content', 'ls', '-q'])).stdout.includes(blob.replace(/^sha256:/, '')), 'the blob never entered the content store')
})
