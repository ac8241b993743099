import type { ExecutionContext } from 'ava'
import { join } from 'node:path'
import { busyboxFixture, convertImage, repoRoot, run, skopeoPush, startContainerd, startRegistry, startSnapshotter } from '@nydusjs/testkit'

export const BIN = join(repoRoot, 'packages/snapshotter/bin/containerd-nydus-grpc.cjs')

/**
 * busybox converted in a fresh registry, our snapshotter (with `args`) and a
 * containerd using it (with `path` first on its PATH); the image not pulled.
 * `blob` is the data blob's digest.
 */
export async function convertedBusybox(t: ExecutionContext, o: { args?: string[]; path?: string[]; convertArgs?: string[] } = {}) {
  const { oci } = await busyboxFixture()
  const reg = await startRegistry(t)
  await skopeoPush(`${oci}:latest`, `${reg.host}/library/busybox:1`)
  const ref = `${reg.host}/library/busybox:1-nydus`
  const { report } = await convertImage<{ images: Array<{ blobs: string[] }> }>(`${reg.host}/library/busybox:1`, ref, o.convertArgs)
  const sn = await startSnapshotter(t, BIN, { args: o.args })
  const cd = await startContainerd(t, { proxyPlugins: { nydus: sn.address }, path: o.path })
  // The report names blobs by bare hex; registries and errors by digest.
  return { reg, ref, blob: `sha256:${report.images[0].blobs[0].replace(/^sha256:/, '')}`, sn, cd }
}

/** busybox as a plain OCI image (tag `tag`), our snapshotter and a containerd using it; not pulled yet. */
export async function plainBusybox(t: ExecutionContext, tag: string) {
  const { oci } = await busyboxFixture()
  const reg = await startRegistry(t)
  await skopeoPush(`${oci}:latest`, `${reg.host}/library/busybox:${tag}`)
  const sn = await startSnapshotter(t, BIN)
  const cd = await startContainerd(t, { proxyPlugins: { nydus: sn.address } })
  return { ref: `${reg.host}/library/busybox:${tag}`, sn, cd }
}

/** The pids of the nydusd daemons a snapshotter with this root started (not their keepers, which are sh). */
export async function nydusdPids(root: string): Promise<string[]> {
  return (await run('pgrep', ['-f', `^${process.execPath} .*nydusd.cjs .*${root}`])).stdout.trim().split('\n').filter(Boolean)
}
