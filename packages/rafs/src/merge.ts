import { isDir, isReg } from './constants.js'
import { RafsError } from './errors.js'
import { nameKey, newInode, walkTree, type BlobInfo, type Dentry, type Inode, type RafsTree } from './tree.js'

export const WHITEOUT_PREFIX = '.wh.'
export const OPAQUE_WHITEOUT = '.wh..wh..opq'

/**
 * Stacks layer trees, lowest first, the way overlayfs and containerd apply OCI
 * layers. The layers are consumed (their inodes are reused, not copied).
 */
export function mergeLayers(layers: RafsTree[]): RafsTree {
  if (layers.length === 0) throw new RafsError('ERR_RAFS_UNSUPPORTED', 'merge needs at least one layer')
  const top = layers[layers.length - 1]
  const blobs: BlobInfo[] = []
  const blobIndex = new Map<string, number>()
  for (const [i, layer] of layers.entries()) {
    if (layer.chunkSize !== layers[0].chunkSize)
      throw new RafsError(
        'ERR_RAFS_UNSUPPORTED',
        `layer ${i} has chunk size 0x${layer.chunkSize.toString(16)}, layer 0 has 0x${layers[0].chunkSize.toString(16)}`
      )
    if (layer.digester !== layers[0].digester)
      throw new RafsError('ERR_RAFS_UNSUPPORTED', `layer ${i} uses digester ${layer.digester}, layer 0 uses ${layers[0].digester}`)
    remapBlobs(layer, blobs, blobIndex)
  }
  const root = newInode(top.root.mode, { ...top.root, children: new Map() })
  const prefetch: Buffer[] = []
  for (const layer of layers) {
    applyDir(root, layer.root)
    prefetch.push(...layer.prefetch)
  }
  return { root, blobs, chunkSize: top.chunkSize, compressor: top.compressor, digester: top.digester, layer: false, prefetch }
}

function remapBlobs(layer: RafsTree, blobs: BlobInfo[], index: Map<string, number>): void {
  const map = layer.blobs.map(b => {
    let i = index.get(b.id)
    if (i === undefined) {
      i = blobs.length
      blobs.push(b)
      index.set(b.id, i)
    }
    return i
  })
  const done = new Set<Inode>()
  for (const {
    dentry: { inode }
  } of walkTree(layer.root)) {
    if (!isReg(inode.mode) || done.has(inode)) continue
    done.add(inode)
    inode.chunks = inode.chunks.map(c => ({ ...c, blobIndex: map[c.blobIndex] }))
  }
}

const isWhiteout = (d: Dentry): boolean => nameKey(d.name).startsWith(WHITEOUT_PREFIX)

/** Whiteouts act on lower layers only, so they go first, then the layer's own entries. */
function applyDir(lower: Inode, upper: Inode): void {
  const kids = lower.children!
  const entries = [...upper.children!.values()]
  for (const d of entries) {
    const key = nameKey(d.name)
    if (key === OPAQUE_WHITEOUT) kids.clear()
    else if (key.startsWith(WHITEOUT_PREFIX)) kids.delete(key.slice(WHITEOUT_PREFIX.length))
  }
  for (const d of entries) {
    if (isWhiteout(d)) continue
    const key = nameKey(d.name)
    const below = kids.get(key)
    if (below !== undefined && isDir(below.inode.mode) && isDir(d.inode.mode)) {
      const merged = newInode(d.inode.mode, { ...d.inode, children: below.inode.children })
      kids.set(key, { name: d.name, inode: merged })
      applyDir(merged, d.inode)
    } else {
      if (isDir(d.inode.mode)) stripWhiteouts(d.inode)
      kids.set(key, d)
    }
  }
}

/** A directory new in this layer has nothing below it to hide. */
function stripWhiteouts(dir: Inode): void {
  for (const [key, d] of dir.children!) {
    if (isWhiteout(d)) dir.children!.delete(key)
    else if (isDir(d.inode.mode)) stripWhiteouts(d.inode)
  }
}
