import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ExecutionContext } from 'ava'
import {
  busyboxFixture,
  ociIndex,
  type P2pDaemon,
  run,
  skopeoPush,
  startDfdaemon,
  startSupernode,
  type TestRegistry,
  tempDir,
  umociImage
} from '@nydusjs/testkit'

export interface Mirror {
  sn: P2pDaemon
  d: P2pDaemon
  /** host:port of the mirror (dfdaemon). */
  addr: string
}

/** A supernode and one dfdaemon whose mirror's upstream is `registry` (or none), with a dfdaemon.yml of `yaml`. */
export async function startMirror(
  t: ExecutionContext,
  o: { registry?: string; yaml?: string; supernodeArgs?: string[]; nodes?: string[] } = {}
): Promise<Mirror> {
  const dir = await tempDir(t)
  const sn = await startSupernode(t, { home: await tempDir(t), args: o.supernodeArgs })
  const args: string[] = []
  if (o.registry !== undefined) args.push('--registry', o.registry)
  if (o.yaml !== undefined) {
    await writeFile(join(dir, 'dfdaemon.yml'), o.yaml)
    args.push('--config', join(dir, 'dfdaemon.yml'))
  }
  const d = await startDfdaemon(t, { home: await tempDir(t), nodes: o.nodes ?? [sn.addr], args })
  return { sn, d, addr: d.addr }
}

/** Images in `reg`: lib/bb:1 (OCI), lib/bb-v2s2:1 (a Docker schema-2 manifest), lib/multi:1 (an index of amd64 and arm64). */
export async function pushTestImages(t: ExecutionContext, reg: TestRegistry): Promise<void> {
  const { tar } = await busyboxFixture()
  const layout = join(await tempDir(t), 'layout')
  await umociImage(layout, 'amd64', [tar])
  await umociImage(layout, 'arm64', [tar], { arch: 'arm64' })
  await ociIndex(layout, 'multi', [
    { tag: 'amd64', platform: { os: 'linux', architecture: 'amd64' } },
    { tag: 'arm64', platform: { os: 'linux', architecture: 'arm64' } }
  ])
  await skopeoPush(`${layout}:amd64`, `${reg.host}/lib/bb:1`)
  await skopeoPush(`${layout}:amd64`, `${reg.host}/lib/bb-v2s2:1`, ['--format', 'v2s2'])
  await skopeoPush(`${layout}:multi`, `${reg.host}/lib/multi:1`, ['--all'])
}

/** `skopeo copy` of `ref` into an OCI layout; the digests of every blob it holds (manifests, configs, layers). */
export async function skopeoBlobs(
  ref: string,
  dir: string,
  extra: string[] = []
): Promise<{ code: number; stderr: string; blobs: string[] }> {
  const r = await run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', ...extra, `docker://${ref}`, `oci:${dir}:x`], {
    timeoutMs: 300_000
  })
  if (r.code !== 0) return { code: r.code, stderr: r.stderr, blobs: [] }
  const ls = await run('ls', [join(dir, 'blobs', 'sha256')])
  return { code: 0, stderr: r.stderr, blobs: ls.stdout.split('\n').filter(Boolean).sort() }
}

/** A counter of the supernode's metrics, summed over its label sets (0 when absent). */
export async function snMetric(sn: P2pDaemon, name: string): Promise<number> {
  const text = await sn.get('/metrics')
  let sum = 0
  // `name` may carry labels to match: dragonfly_supernode_pieces_scheduled_total{source="peer"}.
  const [base, labels] = name.split('{')
  for (const line of text.split('\n'))
    if (line.startsWith(base) && /^[a-z_]+(\{[^}]*\})? /.test(line) && (labels === undefined || line.includes(labels.replace('}', ''))))
      sum += Number(line.split(' ').pop())
  return sum
}
