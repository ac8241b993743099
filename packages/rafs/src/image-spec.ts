import { createHash } from 'node:crypto'
import { gunzipSync, gzipSync } from 'node:zlib'
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

const BLOCK = 512
const MAX_BOOTSTRAP = 1024 * 1024 * 1024

/**
 * The bootstrap layer: a gzip tar holding only `image/image.boot`, with fixed
 * owner, mode and time so the same bootstrap always gives the same digest.
 */
export function encodeBootstrapLayer (bootstrap: Buffer): { layer: Buffer, diffId: string, digest: string } {
  const header = Buffer.alloc(BLOCK)
  header.write(BOOTSTRAP_LAYER_PATH, 0, 'latin1')
  octal(header, 100, 8, 0o644)
  octal(header, 108, 8, 0)
  octal(header, 116, 8, 0)
  octal(header, 124, 12, bootstrap.length)
  octal(header, 136, 12, 0)
  header.write('        ', 148, 'latin1')
  header[156] = 0x30
  header.write('ustar\x0000', 257, 'latin1')
  let sum = 0
  for (const b of header) sum += b
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1')
  const pad = Buffer.alloc((BLOCK - (bootstrap.length % BLOCK)) % BLOCK)
  const tar = Buffer.concat([header, bootstrap, pad, Buffer.alloc(2 * BLOCK)])
  const layer = gzipSync(tar, { level: 6 })
  return { layer, diffId: sha256(tar), digest: sha256(layer) }
}

/** `image/image.boot` out of a bootstrap layer; any malformation is a RafsError naming it. */
export function decodeBootstrapLayer (layer: Buffer, where = 'bootstrap layer'): Buffer {
  let tar: Buffer
  try {
    tar = gunzipSync(layer, { maxOutputLength: MAX_BOOTSTRAP })
  } catch (err) {
    fail('ERR_RAFS_BAD_BLOB', `${where}: not a valid gzip stream (${(err as Error).message})`)
  }
  for (let at = 0; at + BLOCK <= tar.length;) {
    const h = tar.subarray(at, at + BLOCK)
    if (h.every(b => b === 0)) break
    if (checksum(h) !== parseOctal(h, 148, 8, where, at)) fail('ERR_RAFS_BAD_BLOB', `${where}: tar header checksum mismatch at byte ${at}`)
    const size = parseOctal(h, 124, 12, where, at)
    const body = at + BLOCK
    if (body + size > tar.length) fail('ERR_RAFS_TRUNCATED', `${where}: tar entry at byte ${at} claims ${size} bytes past the end`)
    const prefix = cstr(h.subarray(345, 500))
    const name = (prefix === '' ? '' : prefix + '/') + cstr(h.subarray(0, 100))
    const type = h[156]
    if ((type === 0x30 || type === 0) && name.replace(/^\.?\//, '') === BOOTSTRAP_LAYER_PATH) return tar.subarray(body, body + size)
    at = body + Math.ceil(size / BLOCK) * BLOCK
  }
  fail('ERR_RAFS_NOT_FOUND', `${where}: no ${BOOTSTRAP_LAYER_PATH} in the layer`)
}

function octal (b: Buffer, off: number, len: number, v: number): void {
  b.write(v.toString(8).padStart(len - 1, '0') + '\0', off, 'latin1')
}

function parseOctal (h: Buffer, off: number, len: number, where: string, at: number): number {
  const s = cstr(h.subarray(off, off + len)).trim()
  if (!/^[0-7]+$/.test(s)) fail('ERR_RAFS_BAD_BLOB', `${where}: malformed tar header field at byte ${at + off}`)
  return parseInt(s, 8)
}

function checksum (h: Buffer): number {
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]
  return sum
}

function cstr (b: Buffer): string {
  const z = b.indexOf(0)
  return b.subarray(0, z === -1 ? b.length : z).toString('latin1')
}

const sha256 = (b: Buffer): string => 'sha256:' + createHash('sha256').update(b).digest('hex')
