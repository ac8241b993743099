import { SnapshotterError } from './errors.js'

/** The labels containerd's remote snapshotter protocol and nydus's converter put on layers. */
export const LABEL_REF = 'containerd.io/snapshot.ref'
export const LABEL_NYDUS_BLOB = 'containerd.io/snapshot/nydus-blob'
export const LABEL_IMAGE_REF = 'containerd.io/snapshot/remote/stargz.reference'
/** What CRI puts on every layer's Prepare when disable_snapshot_annotations = false. */
export const LABEL_CRI_IMAGE_REF = 'containerd.io/snapshot/cri.image-ref'
export const LABEL_NYDUS_BOOTSTRAP = 'containerd.io/snapshot/nydus-bootstrap'

/** Label bytes allowed per key/value pair, as containerd checks them. */
const MAX_LABEL_BYTES = 4096

/** A snapshot key or name as containerd allows it. */
export function checkKey(key: string): void {
  if (key === '' || key.length > 4096 || key.includes('\0'))
    throw new SnapshotterError('ERR_BAD_ARGUMENT', `snapshot key ${JSON.stringify(key.slice(0, 80))} is empty, too long or has a NUL byte`)
}

export function checkLabels(labels: Record<string, string>): void {
  for (const [k, v] of Object.entries(labels)) {
    if (Buffer.byteLength(k) + Buffer.byteLength(v) > MAX_LABEL_BYTES)
      throw new SnapshotterError(
        'ERR_BAD_ARGUMENT',
        `label ${JSON.stringify(k.slice(0, 80))}: key and value exceed ${MAX_LABEL_BYTES} bytes`
      )
  }
}
