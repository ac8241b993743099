import { RegistryError } from './errors.js'
import type { RegistryClient } from './registry-client.js'

export interface Platform {
  os: string
  architecture: string
  variant?: string
  'os.features'?: string[]
}

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  annotations?: Record<string, string>
  platform?: Platform
}

export interface ImageManifest {
  schemaVersion: 2
  mediaType?: string
  config: Descriptor
  layers: Descriptor[]
  annotations?: Record<string, string>
}

export interface ImageIndex {
  schemaVersion: 2
  mediaType?: string
  manifests: Descriptor[]
  annotations?: Record<string, string>
}

export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
export const INDEX_TYPES = new Set([OCI_INDEX, 'application/vnd.docker.distribution.manifest.list.v2+json'])
export const IMAGE_TYPES = new Set([OCI_MANIFEST, 'application/vnd.docker.distribution.manifest.v2+json'])

/** `REGISTRY/REPO[:TAG][@sha256:…]`; a registry host is required (there is no default registry). */
export interface ImageRef {
  host: string
  repo: string
  tag?: string
  digest?: string
  ref: string
  text: string
}

export function parseImageRef(text: string): ImageRef {
  const bad = (why: string): never => {
    throw new RegistryError('ERR_REGISTRY_REFERENCE', `image reference ${JSON.stringify(text)}: ${why}`)
  }
  const at = text.indexOf('@')
  const digest = at === -1 ? undefined : text.slice(at + 1)
  let rest = at === -1 ? text : text.slice(0, at)
  if (digest !== undefined && !/^sha256:[0-9a-f]{64}$/.test(digest)) bad('the digest must be sha256:<64 hex digits>')
  const slash = rest.indexOf('/')
  if (slash <= 0) bad('expected REGISTRY/REPO[:TAG]')
  const host = rest.slice(0, slash)
  if (!/^[A-Za-z0-9.-]+(:\d+)?$/.test(host) || !(host.includes('.') || host.includes(':') || host === 'localhost'))
    bad(`${JSON.stringify(host)} is not a registry host (name it, e.g. localhost:5000/app:1)`)
  rest = rest.slice(slash + 1)
  const colon = rest.lastIndexOf(':')
  const tag = colon === -1 ? undefined : rest.slice(colon + 1)
  const repo = colon === -1 ? rest : rest.slice(0, colon)
  if (!/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/.test(repo))
    bad(`${JSON.stringify(repo)} is not a valid repository name`)
  if (tag !== undefined && !/^\w[\w.-]{0,127}$/.test(tag)) bad(`${JSON.stringify(tag)} is not a valid tag`)
  return { host, repo, tag, digest, ref: digest ?? tag ?? 'latest', text }
}

/** `linux/amd64` for this machine. */
export function hostPlatform(): string {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' }
  return `linux/${arch[process.arch] ?? process.arch}`
}

export function platformString(p: Platform | undefined): string {
  return p === undefined ? 'unknown' : [p.os, p.architecture, p.variant].filter(Boolean).join('/')
}

export function matchesPlatform(p: Platform | undefined, want: string): boolean {
  const [os, arch, variant] = want.split('/')
  return p?.os === os && p.architecture === arch && (variant === undefined || p.variant === variant)
}

/** A manifest or index body, with every descriptor's fields checked (they come from the network). */
export function parseManifest(body: Buffer, mediaType: string, where: string): { index: ImageIndex } | { manifest: ImageManifest } {
  const bad = (why: string): never => {
    throw new RegistryError('ERR_REGISTRY_RESPONSE', `${where}: ${why}`)
  }
  let v: Record<string, unknown>
  try {
    v = JSON.parse(body.toString('utf8')) as Record<string, unknown>
  } catch {
    return bad('not valid JSON')
  }
  if (v === null || typeof v !== 'object' || v.schemaVersion !== 2)
    bad(
      `unsupported manifest (media type ${JSON.stringify(mediaType)}, schemaVersion ${JSON.stringify(v?.schemaVersion)}); Docker schema 2 and OCI manifests and indexes are supported`
    )
  if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(v.manifests)) bad('index without manifests')
    return {
      index: { ...v, manifests: (v.manifests as unknown[]).map((d, i) => checkDescriptor(d, `${where}: manifests[${i}]`)) } as ImageIndex
    }
  }
  if (!IMAGE_TYPES.has(mediaType)) bad(`unsupported manifest media type ${JSON.stringify(mediaType)}`)
  if (!Array.isArray(v.layers)) bad('manifest without layers')
  return {
    manifest: {
      ...v,
      config: checkDescriptor(v.config, `${where}: config`),
      layers: (v.layers as unknown[]).map((d, i) => checkDescriptor(d, `${where}: layers[${i}]`))
    } as ImageManifest
  }
}

function checkDescriptor(d: unknown, where: string): Descriptor {
  const o = d as Descriptor
  if (o === null || typeof o !== 'object') throw new RegistryError('ERR_REGISTRY_RESPONSE', `${where}: not a descriptor`)
  if (typeof o.mediaType !== 'string') throw new RegistryError('ERR_REGISTRY_RESPONSE', `${where}: mediaType missing`)
  if (typeof o.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(o.digest))
    throw new RegistryError('ERR_REGISTRY_RESPONSE', `${where}: digest ${JSON.stringify(o.digest)} is not sha256:<64 hex digits>`)
  if (!Number.isSafeInteger(o.size) || o.size < 0)
    throw new RegistryError('ERR_REGISTRY_RESPONSE', `${where}: size ${JSON.stringify(o.size)} is not a byte count`)
  return o
}

export const isNydusEntry = (d: Descriptor): boolean => d.platform?.['os.features']?.includes('nydus.remoteimage.v1') === true

/**
 * One image of `ref` for `platform`: in an index, the converted entry when
 * `nydus` is set, else the plain one (a plain manifest is taken as is).
 */
export async function resolveImage(
  client: RegistryClient,
  repo: string,
  ref: string,
  platform: string,
  nydus: boolean
): Promise<{ digest: string; mediaType: string; manifest: ImageManifest }> {
  const where = `${client.host}/${repo}:${ref}`
  const top = await client.getManifest(repo, ref)
  const parsed = parseManifest(top.body, top.mediaType, where)
  if ('manifest' in parsed) return { digest: top.digest, mediaType: top.mediaType, manifest: parsed.manifest }
  const all = parsed.index.manifests.filter(d => matchesPlatform(d.platform, platform))
  const hit = all.find(d => isNydusEntry(d) === nydus) ?? all[0]
  if (hit === undefined)
    throw new RegistryError(
      'ERR_MANIFEST_NOT_FOUND',
      `${where}: no image for platform ${platform} (have: ${parsed.index.manifests.map(d => platformString(d.platform)).join(', ')})`
    )
  const m = await client.getManifest(repo, hit.digest)
  const inner = parseManifest(m.body, m.mediaType, `${where}@${hit.digest}`)
  if (!('manifest' in inner)) throw new RegistryError('ERR_REGISTRY_RESPONSE', `${where}: the index entry ${hit.digest} is itself an index`)
  return { digest: m.digest, mediaType: m.mediaType, manifest: inner.manifest }
}
