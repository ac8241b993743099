import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { INDEX_TYPES, IMAGE_TYPES, matchesPlatform, type Descriptor, type Platform } from '@nydusjs/registry'
import { ConverterError } from './errors.js'
import type { SourceType } from './sources/open.js'

export type { Descriptor } from '@nydusjs/registry'

export const LAYER_TYPES: Record<string, SourceType> = {
  'application/vnd.oci.image.layer.v1.tar': 'tar',
  'application/vnd.oci.image.layer.v1.tar+gzip': 'targz',
  'application/vnd.oci.image.layer.v1.tar+zstd': 'tarzst',
  'application/vnd.oci.image.layer.nondistributable.v1.tar': 'tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip': 'targz',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd': 'tarzst',
  'application/vnd.docker.image.rootfs.diff.tar': 'tar',
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'targz'
}
const MAX_JSON = 4 * 1024 * 1024

/** `DIR` or `DIR:REF`; a colon followed by a path separator belongs to the directory. */
export function parseOciRef(arg: string): { dir: string; ref?: string } {
  const i = arg.lastIndexOf(':')
  if (i <= 0 || arg.slice(i + 1).includes('/')) return { dir: arg }
  return { dir: arg.slice(0, i), ref: arg.slice(i + 1) }
}

/** An OCI image layout on disk (as skopeo and umoci write it); every blob read is checked against its digest. */
export class OciLayout {
  constructor(readonly dir: string) {}

  blobPath(d: Descriptor): string {
    const m = /^sha256:([0-9a-f]{64})$/.exec(d.digest)
    if (m === null) throw new ConverterError('ERR_OCI_LAYOUT', `${this.dir}: unsupported or malformed digest ${JSON.stringify(d.digest)}`)
    return join(this.dir, 'blobs', 'sha256', m[1])
  }

  async readJson<T>(d: Descriptor): Promise<T> {
    if (!Number.isSafeInteger(d.size) || d.size > MAX_JSON)
      throw new ConverterError('ERR_OCI_LAYOUT', `${this.dir}: ${d.digest} claims ${d.size} bytes, too large for a manifest`)
    const buf = await readFile(this.blobPath(d)).catch(() => {
      throw new ConverterError('ERR_OCI_LAYOUT', `${this.dir}: blob ${d.digest} is missing`)
    })
    const got = 'sha256:' + createHash('sha256').update(buf).digest('hex')
    if (got !== d.digest || buf.length !== d.size)
      throw new ConverterError('ERR_OCI_DIGEST', `${this.dir}: blob ${d.digest} has digest ${got} and ${buf.length} bytes`)
    return parseJson<T>(buf, `${this.dir}: ${d.digest}`)
  }

  /** Streams the blob once to check its size and digest before it is converted. */
  async verifyBlob(d: Descriptor): Promise<void> {
    const path = this.blobPath(d)
    const st = await stat(path).catch(() => {
      throw new ConverterError('ERR_OCI_LAYOUT', `${this.dir}: layer ${d.digest} is missing`)
    })
    if (st.size !== d.size)
      throw new ConverterError('ERR_OCI_DIGEST', `${this.dir}: layer ${d.digest} is ${st.size} bytes, the manifest says ${d.size}`)
    const h = createHash('sha256')
    for await (const b of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(b as Buffer)
    const got = 'sha256:' + h.digest('hex')
    if (got !== d.digest) throw new ConverterError('ERR_OCI_DIGEST', `${this.dir}: layer ${d.digest} has digest ${got}`)
  }

  /** The manifest named by `ref` (or the only one), resolving an index by platform. */
  async manifest(
    ref: string | undefined,
    platform: string
  ): Promise<{ manifest: Descriptor; layers: Array<Descriptor & { type: SourceType }> }> {
    const layout = await readFile(join(this.dir, 'oci-layout')).catch(() => undefined)
    if (layout === undefined) throw new ConverterError('ERR_OCI_LAYOUT', `${this.dir} is not an OCI image layout (no oci-layout file)`)
    const index = parseJson<{ manifests?: Descriptor[] }>(
      await readFile(join(this.dir, 'index.json')).catch(() => {
        throw new ConverterError('ERR_OCI_LAYOUT', `${this.dir}: index.json is missing`)
      }),
      `${this.dir}/index.json`
    )
    const all = index.manifests ?? []
    let d: Descriptor | undefined
    if (ref !== undefined) {
      d = all.find(m => m.annotations?.['org.opencontainers.image.ref.name'] === ref)
      if (d === undefined)
        throw new ConverterError('ERR_OCI_LAYOUT', `${this.dir}: no image named ${JSON.stringify(ref)} (have: ${refNames(all)})`)
    } else {
      if (all.length !== 1)
        throw new ConverterError(
          'ERR_OCI_LAYOUT',
          `${this.dir} holds ${all.length} images; name one as ${this.dir}:REF (have: ${refNames(all)})`
        )
      d = all[0]
    }
    for (let depth = 0; INDEX_TYPES.has(d.mediaType); depth++) {
      if (depth > 4) throw new ConverterError('ERR_OCI_LAYOUT', `${this.dir}: image indexes nest too deeply`)
      const idx: { manifests?: Descriptor[] } = await this.readJson<{ manifests?: Descriptor[] }>(d)
      const hit: Descriptor | undefined = (idx.manifests ?? []).find((m: Descriptor) =>
        matchesPlatform(m.platform as Platform | undefined, platform)
      )
      if (hit === undefined)
        throw new ConverterError('ERR_OCI_LAYOUT', `${this.dir}: the index ${d.digest} has no image for platform ${platform}`)
      d = hit
    }
    if (!IMAGE_TYPES.has(d.mediaType))
      throw new ConverterError('ERR_OCI_LAYOUT', `${this.dir}: unsupported manifest media type ${JSON.stringify(d.mediaType)}`)
    const m = await this.readJson<{ layers?: Descriptor[] }>(d)
    if (!Array.isArray(m.layers)) throw new ConverterError('ERR_OCI_LAYOUT', `${this.dir}: manifest ${d.digest} has no layers`)
    const layers = m.layers.map(l => {
      const type = LAYER_TYPES[l.mediaType]
      if (type === undefined)
        throw new ConverterError(
          'ERR_OCI_LAYOUT',
          `${this.dir}: layer ${l.digest} has unsupported media type ${JSON.stringify(l.mediaType)}`
        )
      return { ...l, type }
    })
    return { manifest: d, layers }
  }
}

function refNames(all: Descriptor[]): string {
  const names = all.map(m => m.annotations?.['org.opencontainers.image.ref.name']).filter((n): n is string => n !== undefined)
  return names.length === 0 ? 'none named' : names.join(', ')
}

function parseJson<T>(buf: Buffer, where: string): T {
  try {
    const v = JSON.parse(buf.toString('utf8')) as unknown
    if (v === null || typeof v !== 'object') throw new Error('not an object')
    return v as T
  } catch (err) {
    throw new ConverterError('ERR_OCI_LAYOUT', `${where}: invalid JSON (${(err as Error).message})`)
  }
}
