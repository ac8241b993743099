import { S_IFDIR, isDir, type CompressorName, type DigesterName } from './constants.js'

/** Where one chunk lives; `blobIndex` points into the owning `RafsTree.blobs`. */
export interface ChunkRef {
  digest: Buffer
  blobIndex: number
  flags: number
  compressedOffset: number
  compressedSize: number
  uncompressedOffset: number
  uncompressedSize: number
}

export interface BlobInfo {
  id: string
  compressedSize: number
  uncompressedSize: number
  chunkCount: number
  compressor: CompressorName
  digester: DigesterName
}

/** One inode; hard links are several dentries sharing one `Inode` object. */
export interface Inode {
  mode: number
  uid: number
  gid: number
  mtimeSec: number
  mtimeNsec: number
  rdevMajor: number
  rdevMinor: number
  size: number
  xattrs: Map<string, Buffer>
  chunks: ChunkRef[]
  target?: Buffer
  /** Keyed by the name's bytes read as latin1, which maps bytes to strings one to one. */
  children?: Map<string, Dentry>
}

export interface Dentry {
  name: Buffer
  inode: Inode
}

export interface RafsTree {
  root: Inode
  blobs: BlobInfo[]
  chunkSize: number
  compressor: CompressorName
  digester: DigesterName
  /** A single layer that may still hold whiteouts. */
  layer: boolean
  /** Paths (bytes, no leading slash) to fetch first. */
  prefetch: Buffer[]
}

export function newInode(mode: number, fields: Partial<Inode> = {}): Inode {
  const inode: Inode = {
    mode,
    uid: 0,
    gid: 0,
    mtimeSec: 0,
    mtimeNsec: 0,
    rdevMajor: 0,
    rdevMinor: 0,
    size: 0,
    xattrs: new Map(),
    chunks: [],
    ...fields
  }
  if (isDir(mode) && inode.children === undefined) inode.children = new Map()
  return inode
}

export function newDir(mode = S_IFDIR | 0o755): Inode {
  return newInode(mode)
}

export const nameKey = (name: Buffer): string => name.toString('latin1')

/** Splits a normalised path ("a/b/c", bytes) into components. */
export function splitPath(path: Buffer): Buffer[] {
  const parts: Buffer[] = []
  let start = 0
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path[i] === 0x2f) {
      if (i > start) parts.push(path.subarray(start, i))
      start = i + 1
    }
  }
  return parts
}

/** Depth-first, parents before children, children in name order. */
export function* walkTree(root: Inode, prefix: Buffer = Buffer.alloc(0)): Generator<{ path: Buffer; dentry: Dentry }> {
  const stack: Array<{ path: Buffer; dentry: Dentry }> = []
  const push = (dir: Inode, base: Buffer): void => {
    const kids = sortedChildren(dir)
    for (let i = kids.length - 1; i >= 0; i--) {
      const d = kids[i]
      stack.push({ path: base.length === 0 ? d.name : Buffer.concat([base, Buffer.from('/'), d.name]), dentry: d })
    }
  }
  push(root, prefix)
  while (stack.length > 0) {
    const item = stack.pop()!
    yield item
    if (item.dentry.inode.children !== undefined) push(item.dentry.inode, item.path)
  }
}

export function sortedChildren(dir: Inode): Dentry[] {
  return [...(dir.children?.values() ?? [])].sort((a, b) => Buffer.compare(a.name, b.name))
}
