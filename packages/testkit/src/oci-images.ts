import { createHash } from 'node:crypto'
import { access, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { pushBlob, type TestRegistry } from './registry.js'
import { mustRun } from './run.js'

/**
 * An image in an OCI layout built by umoci (Debian's package): `umoci new`,
 * an architecture set with `umoci config`, then each tar appended verbatim
 * with `umoci raw add-layer` (gzip layers). Returns `layout:tag`.
 */
export async function umociImage(layout: string, tag: string, layers: string[], o: { arch?: string } = {}): Promise<string> {
  if (
    !(await access(join(layout, 'oci-layout')).then(
      () => true,
      () => false
    ))
  )
    await mustRun('umoci', ['init', '--layout', layout])
  const ref = `${layout}:${tag}`
  await mustRun('umoci', ['new', '--image', ref])
  await mustRun('umoci', ['config', '--image', ref, '--architecture', o.arch ?? 'amd64', '--os', 'linux', '--config.cmd', '/bin/sh'])
  for (const l of layers) await mustRun('umoci', ['raw', 'add-layer', '--image', ref, l])
  return ref
}

/** Adds an image index named `tag` to the layout over images already in it, one per platform. */
export async function ociIndex(
  layout: string,
  tag: string,
  entries: Array<{ tag: string; platform: { os: string; architecture: string } }>
): Promise<string> {
  const idx = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<Record<string, any>> }
  const manifests = entries.map(e => {
    const d = idx.manifests.find(m => m.annotations?.['org.opencontainers.image.ref.name'] === e.tag)
    if (d === undefined) throw new Error(`no image ${e.tag} in ${layout}`)
    return { mediaType: d.mediaType, digest: d.digest, size: d.size, platform: e.platform }
  })
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }))
  const hex = createHash('sha256').update(body).digest('hex')
  await writeFile(join(layout, 'blobs', 'sha256', hex), body)
  idx.manifests.push({
    mediaType: 'application/vnd.oci.image.index.v1+json',
    digest: `sha256:${hex}`,
    size: body.length,
    annotations: { 'org.opencontainers.image.ref.name': tag }
  })
  await writeFile(join(layout, 'index.json'), JSON.stringify(idx))
  return `${layout}:${tag}`
}

/** `skopeo copy` from a layout to a plain-HTTP registry on loopback (extra args: --all, --dest-decompress, --dest-compress-format zstd). */
export async function skopeoPush(from: string, to: string, extra: string[] = []): Promise<void> {
  await mustRun('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', ...extra, `oci:${from}`, `docker://${to}`])
}

/** The reference extraction of a registry image: skopeo copy to an OCI layout, then umoci unpack; returns the rootfs. */
export async function extractRegistryImage(ref: string, dir: string): Promise<string> {
  await mkdir(dir, { recursive: true })
  await mustRun('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${ref}`, `oci:${join(dir, 'layout')}:x`])
  await mustRun('umoci', ['unpack', '--image', `${join(dir, 'layout')}:x`, join(dir, 'bundle')])
  return join(dir, 'bundle', 'rootfs')
}

/** A copy of image `tag` in the layout with every gzip layer stored uncompressed (media type `…layer.v1.tar`), tagged `newTag`. */
export async function uncompressedCopy(layout: string, tag: string, newTag: string): Promise<string> {
  const blob = (d: string): string => join(layout, 'blobs', 'sha256', d.slice('sha256:'.length))
  const put = async (b: Buffer): Promise<{ digest: string; size: number }> => {
    const digest = 'sha256:' + createHash('sha256').update(b).digest('hex')
    await writeFile(blob(digest), b)
    return { digest, size: b.length }
  }
  const idx = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<Record<string, any>> }
  const d = idx.manifests.find(m => m.annotations?.['org.opencontainers.image.ref.name'] === tag)
  if (d === undefined) throw new Error(`no image ${tag} in ${layout}`)
  const m = JSON.parse(await readFile(blob(d.digest), 'utf8')) as { layers: Array<Record<string, any>> }
  for (const l of m.layers)
    Object.assign(l, { mediaType: 'application/vnd.oci.image.layer.v1.tar' }, await put(gunzipSync(await readFile(blob(l.digest)))))
  idx.manifests.push({
    mediaType: d.mediaType,
    ...(await put(Buffer.from(JSON.stringify(m)))),
    annotations: { 'org.opencontainers.image.ref.name': newTag }
  })
  await writeFile(join(layout, 'index.json'), JSON.stringify(idx))
  return `${layout}:${newTag}`
}

/** Pushes image `tag` of a layout as it is, blobs and manifest, with the distribution API (skopeo would compress uncompressed layers). */
export async function pushLayoutAsIs(layout: string, tag: string, reg: TestRegistry, repoTag: string): Promise<void> {
  const [repo, ref] = repoTag.split(':')
  const idx = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<Record<string, any>> }
  const d = idx.manifests.find(m => m.annotations?.['org.opencontainers.image.ref.name'] === tag)
  if (d === undefined) throw new Error(`no image ${tag} in ${layout}`)
  const blob = async (digest: string): Promise<Buffer> => await readFile(join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length)))
  const body = await blob(d.digest)
  const m = JSON.parse(body.toString()) as { config: { digest: string }; layers: Array<{ digest: string }> }
  for (const x of [m.config, ...m.layers]) await pushBlob(reg, repo, await blob(x.digest))
  const { request } = await import('undici')
  const res = await request(`${reg.url}/v2/${repo}/manifests/${ref}`, { method: 'PUT', headers: { 'content-type': d.mediaType }, body })
  await res.body.dump()
  if (res.statusCode !== 201) throw new Error(`manifest put: ${res.statusCode}`)
}

/** A sandbox ("pause") image in `reg` at `repoTag`: the busybox layout configured to sleep, as a plain OCI image. */
export async function pushPauseImage(work: string, busyboxOci: string, reg: TestRegistry, repoTag: string): Promise<void> {
  const layout = join(work, 'pause-oci')
  await mustRun('cp', ['-a', busyboxOci, layout])
  await mustRun('umoci', ['config', '--image', `${layout}:latest`, '--tag', 'pause', '--config.cmd', '/bin/sleep', '--config.cmd', '3600'])
  await skopeoPush(`${layout}:pause`, `${reg.host}/${repoTag}`)
}
