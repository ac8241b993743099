import { isDir, isReg, isLnk } from './constants.js'
import { loadDigester, type Digester } from './digest.js'
import { fail } from './errors.js'
import { encodeEntry } from './merkle.js'
import { BootstrapReader, type InodeRecord } from './reader.js'
import type { ChunkRef } from './tree.js'

/**
 * Checks that the child ranges tile [1, n) in record order with correct parent
 * links, so the records form one tree: no cycle, no shared or orphan record.
 */
export function checkStructure(r: BootstrapReader, recs: InodeRecord[] = decodeAll(r)): void {
  let expected = 1
  const n = r.inodeCount
  for (let i = 0; i < n; i++) {
    const rec = recs[i]
    if (i === 0 && rec.parent !== 0) fail('ERR_RAFS_BAD_TREE', 'the root inode has a parent')
    if (!isDir(rec.mode) || rec.count === 0) continue
    if (rec.first !== expected) fail('ERR_RAFS_BAD_TREE', `children of inode ${i} start at ${rec.first}, expected ${expected}`)
    const [from, to] = r.childRange(rec)
    let prev: Buffer | undefined
    for (let c = from; c < to; c++) {
      const child = recs[c]
      if (child.parent !== i) fail('ERR_RAFS_BAD_TREE', `inode ${c} names parent ${child.parent}, but lies in the children of ${i}`)
      if (prev !== undefined && Buffer.compare(prev, child.name) >= 0)
        fail('ERR_RAFS_BAD_TREE', `children of inode ${i} are not sorted by name or repeat one`)
      prev = child.name
    }
    expected = to
  }
  if (expected !== n) fail('ERR_RAFS_BAD_TREE', `${n - expected} inode records belong to no directory`)
}

/**
 * Everything `checkStructure` does, plus links, chunks, prefetch and the
 * merkle tree. Each record is decoded once, for all the checks: this runs at
 * every mount.
 */
export function validateBootstrap(r: BootstrapReader, digester: Digester): void {
  if (digester.name !== r.sb.digester) fail('ERR_RAFS_UNSUPPORTED', `bootstrap uses ${r.sb.digester}, not ${digester.name}`)
  const recs = decodeAll(r)
  checkStructure(r, recs)
  checkLinks(recs)
  const chunks = checkChunks(r, recs)
  r.prefetch()
  for (const b of r.blobs())
    if (b.digester !== r.sb.digester) fail('ERR_RAFS_BAD_BLOB', `blob ${b.id} uses digester ${b.digester}, the bootstrap ${r.sb.digester}`)
  checkMerkle(r, recs, chunks, digester)
}

function decodeAll(r: BootstrapReader): InodeRecord[] {
  const recs = new Array<InodeRecord>(r.inodeCount)
  for (let i = 0; i < recs.length; i++) recs[i] = r.inode(i)
  return recs
}

function checkLinks(recs: InodeRecord[]): void {
  const byIno = new Map<number, { rec: InodeRecord; seen: number }>()
  const subdirs = new Map<number, number>()
  for (let i = 0; i < recs.length; i++) {
    const rec = recs[i]
    if (i > 0 && isDir(rec.mode)) subdirs.set(rec.parent, (subdirs.get(rec.parent) ?? 0) + 1)
    const prev = byIno.get(rec.ino)
    if (prev === undefined) {
      byIno.set(rec.ino, { rec, seen: 1 })
      continue
    }
    if (isDir(rec.mode) || isDir(prev.rec.mode)) fail('ERR_RAFS_BAD_TREE', `directory inode ${i} shares inode number ${rec.ino}`)
    if (!sameInode(prev.rec, rec)) fail('ERR_RAFS_BAD_TREE', `hard links ${prev.rec.index} and ${i} (ino ${rec.ino}) disagree`)
    prev.seen++
  }
  for (const { rec, seen } of byIno.values()) {
    const want = isDir(rec.mode) ? 2 + (subdirs.get(rec.index) ?? 0) : seen
    if (rec.nlink !== want) fail('ERR_RAFS_BAD_INODE', `inode ${rec.index} says nlink ${rec.nlink}, the tree has ${want}`)
  }
}

function sameInode(a: InodeRecord, b: InodeRecord): boolean {
  return (
    a.digest.equals(b.digest) &&
    a.mode === b.mode &&
    a.uid === b.uid &&
    a.gid === b.gid &&
    a.nlink === b.nlink &&
    a.size === b.size &&
    a.mtimeSec === b.mtimeSec &&
    a.mtimeNsec === b.mtimeNsec &&
    a.rdevMajor === b.rdevMajor &&
    a.rdevMinor === b.rdevMinor &&
    a.first === b.first &&
    a.count === b.count &&
    a.flags === b.flags &&
    a.xattrOffset === b.xattrOffset &&
    a.xattrSize === b.xattrSize
  )
}

/** Each file's chunks, checked against its size; every chunk record is decoded (and so checked) once. */
function checkChunks(r: BootstrapReader, recs: InodeRecord[]): Map<number, ChunkRef[]> {
  const cs = r.sb.chunkSize
  const table = new Array<ChunkRef>(r.sb.chunkCount)
  for (let c = 0; c < table.length; c++) table[c] = r.chunk(c)
  const byInode = new Map<number, ChunkRef[]>()
  for (const rec of recs) {
    if (!isReg(rec.mode)) continue
    const chunks = r.chunkIndexes(rec).map(c => table[c] ?? r.chunk(c)) // r.chunk: the out-of-range error
    chunks.forEach((c, k) => {
      const want = k === chunks.length - 1 ? rec.size - k * cs : cs
      if (c.uncompressedSize !== want)
        fail('ERR_RAFS_BAD_CHUNK', `chunk ${k} of inode ${rec.index} holds ${c.uncompressedSize} bytes, expected ${want}`)
    })
    byInode.set(rec.index, chunks)
  }
  return byInode
}

/** Recomputes every digest bottom-up (children follow parents, so one reverse pass). */
function checkMerkle(r: BootstrapReader, recs: InodeRecord[], chunks: Map<number, ChunkRef[]>, d: Digester): void {
  const computed = new Array<Buffer>(recs.length)
  for (let i = recs.length - 1; i >= 0; i--) {
    const rec = recs[i]
    let digest: Buffer
    if (isDir(rec.mode)) {
      const entries: Buffer[] = []
      const [from, to] = r.childRange(rec)
      for (let c = from; c < to; c++) entries.push(entryOf(r, recs[c], computed[c]))
      digest = d.digestMany(entries)
    } else if (isReg(rec.mode)) {
      digest = d.digestMany(chunks.get(i)!.map(c => c.digest))
    } else if (isLnk(rec.mode)) {
      digest = d.digest(r.readlink(rec))
    } else {
      digest = d.digest(Buffer.alloc(0))
    }
    if (!digest.equals(rec.digest)) fail('ERR_RAFS_MERKLE', `digest of ${describe(r, rec)} does not match its content`)
    computed[i] = digest
  }
  const root = d.digest(entryOf(r, recs[0], computed[0]))
  if (!root.equals(r.sb.rootDigest)) fail('ERR_RAFS_MERKLE', 'root digest does not match the tree')
}

export function entryOf(r: BootstrapReader, rec: InodeRecord, digest: Buffer): Buffer {
  return encodeEntry({
    name: rec.name,
    mode: rec.mode,
    uid: rec.uid,
    gid: rec.gid,
    nlink: rec.nlink,
    size: rec.size,
    mtimeSec: rec.mtimeSec,
    mtimeNsec: rec.mtimeNsec,
    rdevMajor: rec.rdevMajor,
    rdevMinor: rec.rdevMinor,
    xattrs: r.xattrs(rec),
    digest
  })
}

function describe(r: BootstrapReader, rec: InodeRecord): string {
  try {
    return `/${r.pathOf(rec).toString()} (inode ${rec.index})`
  } catch {
    return `inode ${rec.index}`
  }
}

/** Opens and fully validates an untrusted bootstrap held in memory. */
export async function openValidated(buf: Buffer): Promise<BootstrapReader> {
  const r = BootstrapReader.open(buf)
  validateBootstrap(r, await loadDigester(r.sb.digester))
  return r
}
