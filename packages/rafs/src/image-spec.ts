import { createHash } from 'node:crypto'
import { gunzipSync, gzipSync } from 'node:zlib'
import { END_OF_ARCHIVE, encodeHeader, findTarFile, padding } from '@nydusjs/tar'
import { fail } from './errors.js'

/** Media types and annotations of a converted image, as the original Nydus tooling writes them. */
export const NYDUS_BLOB_MEDIA_TYPE = 'application/vnd.oci.image.layer.nydus.blob.v1'
export const BOOTSTRAP_LAYER_MEDIA_TYPE = 'application/vnd.oci.image.layer.v1.tar+gzip'
export const ANNOTATION_NYDUS_BLOB = 'containerd.io/snapshot/nydus-blob'
export const ANNOTATION_NYDUS_BOOTSTRAP = 'containerd.io/snapshot/nydus-bootstrap'
export const ANNOTATION_NYDUS_BLOB_IDS = 'containerd.io/snapshot/nydus-blob-ids'
export const ANNOTATION_SOURCE_DIGEST = 'io.nydusjs.source.digest'
/** Ours: this is RAFS-TS, not the original's RAFS v5/v6, so `nydus-fs-version` is not claimed. */
export const ANNOTATION_RAFS_VERSION = 'io.nydusjs.rafs.version'
export const ANNOTATION_RAFS_ROOT_DIGEST = 'io.nydusjs.rafs.root-digest'
/** `platform.os.features` of the converted entry in a `--merge-platform` index. */
export const NYDUS_OS_FEATURE = 'nydus.remoteimage.v1'
export const BOOTSTRAP_LAYER_PATH = 'image/image.boot'

const MAX_BOOTSTRAP = 1024 * 1024 * 1024

/**
 * The bootstrap layer: a gzip tar holding only `image/image.boot`, with fixed
 * owner, mode and time so the same bootstrap always gives the same digest.
 */
export function encodeBootstrapLayer(bootstrap: Buffer): { layer: Buffer; diffId: string; digest: string } {
  const header = encodeHeader({
    path: Buffer.from(BOOTSTRAP_LAYER_PATH),
    type: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: bootstrap.length,
    mtimeSec: 0,
    mtimeNsec: 0
  })
  const tar = Buffer.concat([header, bootstrap, padding(bootstrap.length), END_OF_ARCHIVE])
  const layer = gzipSync(tar, { level: 6 })
  return { layer, diffId: sha256(tar), digest: sha256(layer) }
}

/** `image/image.boot` out of a bootstrap layer; any malformation is an error naming it (its tar code kept). */
export function decodeBootstrapLayer(layer: Buffer, where = 'bootstrap layer'): Buffer {
  let tar: Buffer
  try {
    tar = gunzipSync(layer, { maxOutputLength: MAX_BOOTSTRAP })
  } catch (err) {
    fail('ERR_RAFS_BAD_BLOB', `${where}: not a valid gzip stream (${(err as Error).message})`)
  }
  const boot = findTarFile(tar, BOOTSTRAP_LAYER_PATH, where)
  if (boot === undefined) fail('ERR_RAFS_NOT_FOUND', `${where}: no ${BOOTSTRAP_LAYER_PATH} in the layer`)
  return boot
}

const sha256 = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex')
