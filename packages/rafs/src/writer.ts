import { createHash } from 'node:crypto'
import {
  BLOB_RECORD_SIZE,
  BOOTSTRAP_MAGIC,
  CHUNK_SIZE_RECORD,
  COMPRESSORS,
  DIGESTERS,
  FORMAT_VERSION,
  INODE_FLAG_XATTR,
  INODE_SIZE,
  MAX_NAME,
  SB_FLAG_LAYER,
  SUPERBLOCK_SIZE,
  isDir,
  isLnk,
  isReg
} from './constants.js'
import type { Digester } from './digest.js'
import { RafsError } from './errors.js'
import { encodeEntry, writeI64, writeU64 } from './merkle.js'
import { nameKey, sortedChildren, splitPath, type ChunkRef, type Inode, type RafsTree } from './tree.js'

interface Rec {
  name: Buffer
  inode: Inode
  parent: number
  first: number
  count: number
}

export interface EncodeResult {
  bootstrap: Buffer
  rootDigest: Buffer
}

/** Lays the tree out breadth-first, computes the merkle tree and encodes every table. */
export function encodeBootstrap(tree: RafsTree, digester: Digester): EncodeResult {
  if (digester.name !== tree.digester)
    throw new RafsError('ERR_RAFS_UNSUPPORTED', `digester ${digester.name} does not match the tree's ${tree.digester}`)
  const recs = layout(tree.root)
  const nlink = countLinks(recs)
  const ino = new Map<Inode, number>()
  for (const r of recs) if (!ino.has(r.inode)) ino.set(r.inode, ino.size + 1)

  const strings = new TableBuilder()
  const xattrs = new TableBuilder()
  const chunkIndex: number[] = []
  const chunkTable: ChunkRef[] = []
  const chunkByDigest = new Map<string, number>()
  const fileChunks = new Map<Inode, number>()
  const digests = computeDigests(recs, nlink, digester)

  const inodes = Buffer.alloc(recs.length * INODE_SIZE)
  recs.forEach((r, i) => {
    const o = i * INODE_SIZE
    const n = r.inode
    digests[i].copy(inodes, o)
    inodes.writeUInt32LE(ino.get(n)!, o + 32)
    inodes.writeUInt32LE(r.parent, o + 36)
    inodes.writeUInt32LE(n.mode >>> 0, o + 40)
    inodes.writeUInt32LE(n.uid >>> 0, o + 44)
    inodes.writeUInt32LE(n.gid >>> 0, o + 48)
    inodes.writeUInt32LE(nlink.get(n)!, o + 52)
    writeU64(inodes, inodeSize(n), o + 56)
    writeI64(inodes, n.mtimeSec, o + 64)
    inodes.writeUInt32LE(n.mtimeNsec >>> 0, o + 72)
    inodes.writeUInt32LE(n.rdevMajor >>> 0, o + 76)
    inodes.writeUInt32LE(n.rdevMinor >>> 0, o + 80)
    inodes.writeUInt32LE(strings.add(r.name), o + 84)
    inodes.writeUInt16LE(r.name.length, o + 88)
    if (n.xattrs.size > 0) {
      inodes.writeUInt16LE(INODE_FLAG_XATTR, o + 90)
      const enc = encodeXattrs(n.xattrs)
      inodes.writeUInt32LE(xattrs.add(enc), o + 100)
      inodes.writeUInt32LE(enc.length, o + 104)
    }
    if (isDir(n.mode)) {
      inodes.writeUInt32LE(r.first, o + 92)
      inodes.writeUInt32LE(r.count, o + 96)
    } else if (isReg(n.mode)) {
      let first = fileChunks.get(n)
      if (first === undefined) {
        first = chunkIndex.length
        fileChunks.set(n, first)
        for (const c of n.chunks) chunkIndex.push(internChunk(c, chunkTable, chunkByDigest))
      }
      inodes.writeUInt32LE(first, o + 92)
      inodes.writeUInt32LE(n.chunks.length, o + 96)
    } else if (isLnk(n.mode)) {
      const target = n.target ?? Buffer.alloc(0)
      inodes.writeUInt32LE(strings.add(target), o + 92)
      inodes.writeUInt32LE(target.length, o + 96)
    }
  })

  const prefetch = resolvePrefetch(tree, recs)
  const tables = [
    inodes,
    strings.build(),
    xattrs.build(),
    encodeChunks(chunkTable),
    encodeU32s(chunkIndex),
    encodeBlobs(tree),
    encodeU32s(prefetch)
  ]
  const total = SUPERBLOCK_SIZE + tables.reduce((s, t) => s + t.length, 0)
  if (total > 0xffffffff) throw new RafsError('ERR_RAFS_UNSUPPORTED', `bootstrap would be ${total} bytes, over the 4 GiB limit`)
  const sb = Buffer.alloc(SUPERBLOCK_SIZE)
  BOOTSTRAP_MAGIC.copy(sb, 0)
  sb.writeUInt32LE(FORMAT_VERSION, 8)
  sb.writeUInt32LE(tree.layer ? SB_FLAG_LAYER : 0, 12)
  sb.writeUInt32LE(tree.chunkSize, 16)
  sb.writeUInt8(COMPRESSORS.indexOf(tree.compressor), 20)
  sb.writeUInt8(DIGESTERS.indexOf(tree.digester), 21)
  const counts = [recs.length, chunkTable.length, chunkIndex.length, tree.blobs.length, prefetch.length]
  for (const [i, c] of counts.entries()) sb.writeUInt32LE(c, 24 + i * 4)
  let off = SUPERBLOCK_SIZE
  tables.forEach((t, i) => {
    sb.writeUInt32LE(off, 48 + i * 8)
    sb.writeUInt32LE(t.length, 52 + i * 8)
    off += t.length
  })
  sb.writeUInt32LE(total, 104)
  const rootDigest = digester.digest(rootEntry(recs[0].inode, nlink, digests[0]))
  rootDigest.copy(sb, 128)
  const bootstrap = Buffer.concat([sb, ...tables], total)
  createHash('sha256').update(bootstrap).digest().copy(bootstrap, 160)
  return { bootstrap, rootDigest }
}

function layout(root: Inode): Rec[] {
  const recs: Rec[] = [{ name: Buffer.alloc(0), inode: root, parent: 0, first: 0, count: 0 }]
  const dirs = new Set<Inode>([root])
  for (let i = 0; i < recs.length; i++) {
    const r = recs[i]
    if (!isDir(r.inode.mode)) continue
    const kids = sortedChildren(r.inode)
    r.first = recs.length
    r.count = kids.length
    for (const k of kids) {
      if (k.name.length === 0 || k.name.length > MAX_NAME)
        throw new RafsError('ERR_RAFS_BAD_INODE', `name of ${k.name.length} bytes is not allowed`)
      if (isDir(k.inode.mode)) {
        if (dirs.has(k.inode)) throw new RafsError('ERR_RAFS_BAD_TREE', 'a directory appears twice in the tree')
        dirs.add(k.inode)
      }
      recs.push({ name: k.name, inode: k.inode, parent: i, first: 0, count: 0 })
    }
  }
  return recs
}

function countLinks(recs: Rec[]): Map<Inode, number> {
  const n = new Map<Inode, number>()
  for (const r of recs) {
    if (isDir(r.inode.mode)) {
      let subdirs = 0
      for (const d of r.inode.children!.values()) if (isDir(d.inode.mode)) subdirs++
      n.set(r.inode, 2 + subdirs)
    } else {
      n.set(r.inode, (n.get(r.inode) ?? 0) + 1)
    }
  }
  return n
}

function inodeSize(n: Inode): number {
  if (isReg(n.mode)) return n.size
  if (isLnk(n.mode)) return n.target?.length ?? 0
  return 0
}

export function xattrPairs(x: Map<string, Buffer>): Array<[Buffer, Buffer]> {
  return [...x].map(([k, v]): [Buffer, Buffer] => [Buffer.from(k, 'utf8'), v]).sort((a, b) => Buffer.compare(a[0], b[0]))
}

const NO_XATTRS: Array<[Buffer, Buffer]> = []

/** Fields listed one by one: spreading an Inode is megamorphic and was the hot spot of encoding. */
function entryOf(name: Buffer, n: Inode, nlink: Map<Inode, number>, digest: Buffer): Buffer {
  return encodeEntry({
    name,
    mode: n.mode,
    uid: n.uid,
    gid: n.gid,
    nlink: nlink.get(n)!,
    size: inodeSize(n),
    mtimeSec: n.mtimeSec,
    mtimeNsec: n.mtimeNsec,
    rdevMajor: n.rdevMajor,
    rdevMinor: n.rdevMinor,
    xattrs: n.xattrs.size === 0 ? NO_XATTRS : xattrPairs(n.xattrs),
    digest
  })
}

function rootEntry(root: Inode, nlink: Map<Inode, number>, digest: Buffer): Buffer {
  return entryOf(Buffer.alloc(0), root, nlink, digest)
}

/** Children come after parents in breadth-first order, so one reverse pass is post-order. */
function computeDigests(recs: Rec[], nlink: Map<Inode, number>, d: Digester): Buffer[] {
  const out = new Array<Buffer>(recs.length)
  const fileDigest = new Map<Inode, Buffer>()
  for (let i = recs.length - 1; i >= 0; i--) {
    const n = recs[i].inode
    if (isDir(n.mode)) {
      const r = recs[i]
      const entries: Buffer[] = []
      for (let c = r.first; c < r.first + r.count; c++) entries.push(entryOf(recs[c].name, recs[c].inode, nlink, out[c]))
      out[i] = d.digestMany(entries)
    } else if (isReg(n.mode)) {
      let fd = fileDigest.get(n)
      if (fd === undefined) {
        fd = d.digestMany(n.chunks.map(c => c.digest))
        fileDigest.set(n, fd)
      }
      out[i] = fd
    } else if (isLnk(n.mode)) {
      out[i] = d.digest(n.target ?? Buffer.alloc(0))
    } else {
      out[i] = d.digest(Buffer.alloc(0))
    }
  }
  return out
}

function internChunk(c: ChunkRef, table: ChunkRef[], byDigest: Map<string, number>): number {
  const key = c.digest.toString('latin1')
  let idx = byDigest.get(key)
  if (idx === undefined) {
    idx = table.length
    table.push(c)
    byDigest.set(key, idx)
  }
  return idx
}

function encodeXattrs(x: Map<string, Buffer>): Buffer {
  const parts: Buffer[] = []
  for (const [n, v] of xattrPairs(x)) {
    const h = Buffer.alloc(6)
    h.writeUInt16LE(n.length, 0)
    h.writeUInt32LE(v.length, 2)
    parts.push(h, n, v)
  }
  return Buffer.concat(parts)
}

function encodeChunks(chunks: ChunkRef[]): Buffer {
  const b = Buffer.alloc(chunks.length * CHUNK_SIZE_RECORD)
  chunks.forEach((c, i) => {
    const o = i * CHUNK_SIZE_RECORD
    c.digest.copy(b, o)
    b.writeUInt32LE(c.blobIndex, o + 32)
    b.writeUInt32LE(c.flags, o + 36)
    writeU64(b, c.compressedOffset, o + 40)
    b.writeUInt32LE(c.compressedSize, o + 48)
    b.writeUInt32LE(c.uncompressedSize, o + 52)
    writeU64(b, c.uncompressedOffset, o + 56)
  })
  return b
}

function encodeBlobs(tree: RafsTree): Buffer {
  const b = Buffer.alloc(tree.blobs.length * BLOB_RECORD_SIZE)
  tree.blobs.forEach((blob, i) => {
    const o = i * BLOB_RECORD_SIZE
    const id = Buffer.from(blob.id, 'hex')
    if (id.length !== 32) throw new RafsError('ERR_RAFS_BAD_BLOB', `blob id ${blob.id} is not a sha256 hex digest`)
    id.copy(b, o)
    writeU64(b, blob.compressedSize, o + 32)
    writeU64(b, blob.uncompressedSize, o + 40)
    b.writeUInt32LE(blob.chunkCount, o + 48)
    b.writeUInt8(COMPRESSORS.indexOf(blob.compressor), o + 52)
    b.writeUInt8(DIGESTERS.indexOf(blob.digester), o + 53)
  })
  return b
}

function encodeU32s(v: number[]): Buffer {
  const b = Buffer.alloc(v.length * 4)
  for (const [i, x] of v.entries()) b.writeUInt32LE(x, i * 4)
  return b
}

function resolvePrefetch(tree: RafsTree, recs: Rec[]): number[] {
  const index = new Map<Inode, number>()
  recs.forEach((r, i) => {
    if (!index.has(r.inode)) index.set(r.inode, i)
  })
  const out: number[] = []
  const seen = new Set<number>()
  for (const p of tree.prefetch) {
    let cur: Inode | undefined = tree.root
    for (const part of splitPath(p)) cur = cur?.children?.get(nameKey(part))?.inode
    const i = cur === undefined ? undefined : index.get(cur)
    if (i !== undefined && !seen.has(i)) {
      seen.add(i)
      out.push(i)
    }
  }
  return out
}

/** Strings are deduplicated: hard links and repeated names share bytes. */
class TableBuilder {
  private readonly parts: Buffer[] = []
  private readonly seen = new Map<string, number>()
  private size = 0
  add(b: Buffer): number {
    if (b.length === 0) return 0
    const key = b.toString('latin1')
    const hit = this.seen.get(key)
    if (hit !== undefined) return hit
    const at = this.size
    this.parts.push(b)
    this.size += b.length
    this.seen.set(key, at)
    return at
  }

  build(): Buffer {
    return Buffer.concat(this.parts, this.size)
  }
}
