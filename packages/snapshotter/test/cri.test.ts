import test from 'ava'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { BIN, nydusdPids } from './setup.js'
import {
  busyboxFixture,
  convertImage,
  criClient,
  mustRun,
  pushPauseImage,
  removePod,
  run,
  runPod,
  skopeoPush,
  startContainerd,
  startRegistry,
  startSnapshotter,
  tempDir
} from '@nydusjs/testkit'

test.serial('the CRI path: a kubelet-style pull, sandbox and container of a converted image run from a lazily mounted nydusd', async t => {
  const { oci } = await busyboxFixture()
  const reg = await startRegistry(t)
  const work = await tempDir(t, 'cri-')
  // The sandbox ("pause") image: busybox that sleeps, a plain OCI image through the same snapshotter.
  await pushPauseImage(work, oci, reg, 'library/pause:1')
  await skopeoPush(`${oci}:latest`, `${reg.host}/library/busybox:1`)
  const ref = `${reg.host}/library/busybox:1-nydus`
  const { report } = await convertImage<{ images: Array<{ blobs: string[] }> }>(`${reg.host}/library/busybox:1`, ref)
  const sn = await startSnapshotter(t, BIN)
  const cd = await startContainerd(t, {
    proxyPlugins: { nydus: sn.address },
    cri: { sandboxImage: `${reg.host}/library/pause:1`, snapshotter: 'nydus', plainHttp: [reg.host] }
  })
  const cri = criClient(cd.address)
  t.teardown(() => cri.close())
  const pod = await runPod(cri, {
    image: ref,
    command: ['/bin/sh', '-c', 'head -1 /etc/passwd; md5sum /bin/busybox | cut -c1-32'],
    logDir: join(work, 'logs'),
    cgroupParent: `/${cd.namespace}`,
    name: 'lazy'
  })
  t.is(pod.exitCode, 0, sn.logs())
  const want = (await mustRun('md5sum', ['/bin/busybox'])).slice(0, 32)
  t.is(pod.output, `root:x:0:0:root:/root:/bin/sh\n${want}\n`)
  // CRI's labels reached the snapshotter, and the image was served by a nydusd started from them.
  t.regex(sn.logs(), /containerd\.io\/snapshot\/cri\.image-ref/)
  t.regex(sn.logs(), /"msg":"nydusd started"/)
  const content = await run('ctr', ['--address', cd.address, '--namespace', 'k8s.io', 'content', 'ls', '-q'])
  t.false(content.stdout.includes(report.images[0].blobs[0].replace(/^sha256:/, '')), 'the nydus blob never entered the content store')
  // The pod goes, then the image: containerd's GC removes the snapshots, and with them the daemon and its mount.
  await removePod(cri, pod)
  await cri.call('image', 'RemoveImage', { image: { image: ref } })
  let left = ''
  for (let i = 0; i < 100; i++) {
    left = (await nydusdPids(sn.root)).join(' ')
    if (left === '') break
    await sleep(100)
  }
  t.is(left, '', 'no nydusd left after the image is removed')
  t.false((await readFile('/proc/mounts', 'utf8')).includes(join(sn.root, 'mnt')), 'no mount left')
})
