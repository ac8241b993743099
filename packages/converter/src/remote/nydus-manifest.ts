import { createHash } from 'node:crypto'
import {
  ANNOTATION_NYDUS_BLOB,
  ANNOTATION_NYDUS_BLOB_IDS,
  ANNOTATION_NYDUS_BOOTSTRAP,
  ANNOTATION_RAFS_ROOT_DIGEST,
  ANNOTATION_RAFS_VERSION,
  ANNOTATION_SOURCE_DIGEST,
  BOOTSTRAP_LAYER_MEDIA_TYPE,
  FORMAT_VERSION,
  NYDUS_BLOB_MEDIA_TYPE,
  NYDUS_OS_FEATURE,
  type BlobInfo
} from '@nydusjs/rafs'
import { OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, type Descriptor, type Platform } from '@nydusjs/registry'

export interface Blob {
  body: Buffer
  desc: Descriptor
}

export const describe = (body: Buffer, mediaType: string, extra: Partial<Descriptor> = {}): Blob => ({
  body,
  desc: { mediaType, digest: 'sha256:' + createHash('sha256').update(body).digest('hex'), size: body.length, ...extra }
})

/** Data layers as the original Nydus writes them: the blob as is, its id as its digest. */
export function dataLayers(blobs: readonly BlobInfo[]): Descriptor[] {
  return blobs.map(b => ({
    mediaType: NYDUS_BLOB_MEDIA_TYPE,
    digest: `sha256:${b.id}`,
    size: b.compressedSize,
    annotations: { [ANNOTATION_NYDUS_BLOB]: 'true' }
  }))
}

export function bootstrapLayer(layer: { digest: string; layer: Buffer }, rootDigest: string, blobIds?: string[]): Descriptor {
  const annotations: Record<string, string> = {
    [ANNOTATION_NYDUS_BOOTSTRAP]: 'true',
    [ANNOTATION_RAFS_VERSION]: String(FORMAT_VERSION),
    [ANNOTATION_RAFS_ROOT_DIGEST]: rootDigest
  }
  // With blobs outside the registry (S3) the manifest lists only the bootstrap; the ids say which blobs it needs.
  if (blobIds !== undefined) annotations[ANNOTATION_NYDUS_BLOB_IDS] = JSON.stringify(blobIds)
  return { mediaType: BOOTSTRAP_LAYER_MEDIA_TYPE, digest: layer.digest, size: layer.layer.length, annotations }
}

/**
 * The source config with `rootfs.diff_ids` naming the new layers (a blob's
 * diff id is its digest: it is not compressed) and history to match: the
 * source's steps kept as empty layers, one step per new layer appended.
 */
export function nydusConfig(source: Record<string, unknown>, layers: Descriptor[], bootstrapDiffId: string): Blob {
  const diffIds = layers.map(l => (l.annotations?.[ANNOTATION_NYDUS_BOOTSTRAP] === 'true' ? bootstrapDiffId : l.digest))
  const created = typeof source.created === 'string' ? { created: source.created } : {}
  const history: Array<Record<string, unknown>> = (
    Array.isArray(source.history) ? (source.history as Array<Record<string, unknown>>) : []
  ).map(h => ({ ...h, empty_layer: true }))
  for (const l of layers) {
    const boot = l.annotations?.[ANNOTATION_NYDUS_BOOTSTRAP] === 'true'
    history.push({
      ...created,
      created_by: boot ? 'nydus-image convert: bootstrap' : `nydus-image convert: data blob ${l.digest}`,
      comment: 'nydus-image'
    })
  }
  const config = { ...source, rootfs: { type: 'layers', diff_ids: diffIds }, history }
  return describe(Buffer.from(JSON.stringify(config)), OCI_CONFIG)
}

export function nydusManifest(config: Descriptor, layers: Descriptor[], sourceDigest: string): Blob {
  const m = { schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers, annotations: { [ANNOTATION_SOURCE_DIGEST]: sourceDigest } }
  return describe(Buffer.from(JSON.stringify(m)), OCI_MANIFEST)
}

export interface IndexEntry {
  platform: Platform
  source?: Descriptor
  converted: Descriptor
}

/** An index of converted images; with `--merge-platform` each source manifest sits beside its conversion. */
export function nydusIndex(entries: IndexEntry[]): Blob {
  const manifests: Descriptor[] = []
  for (const e of entries) {
    if (e.source !== undefined)
      manifests.push({ mediaType: e.source.mediaType, digest: e.source.digest, size: e.source.size, platform: e.platform })
    const features = [...(e.platform['os.features'] ?? []), NYDUS_OS_FEATURE]
    manifests.push({ ...e.converted, platform: { ...e.platform, 'os.features': features } })
  }
  return describe(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests })), OCI_INDEX)
}
