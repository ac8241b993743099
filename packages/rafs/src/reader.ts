import {
  BLOB_RECORD_SIZE,
  CHUNK_SIZE_RECORD,
  COMPRESSORS,
  DIGESTERS,
  DIGEST_SIZE,
  INODE_FLAG_XATTR,
  INODE_SIZE,
  MAX_NAME,
  VALID_TYPES,
  S_IFMT,
  isDir,
  isLnk,
  isReg
} from './constants.js'
import { RafsError, fail } from './errors.js'
import { readI64, readU64, type EntryFields } from './merkle.js'
import { bootstrapChecksum, decodeSuperblock, TABLES, type Superblock, type TableName } from './superblock.js'
import { MemoryTable, PageCache, PagedTable, type ReadAt, type TableBytes } from './table-bytes.js'
import type { BlobInfo, ChunkRef } from './tree.js'

/** One decoded inode record; `index` is its position in the inode table. */
export interface InodeRecord extends Omit<EntryFields, 'xattrs'> {
  index: number
  ino: number
  parent: number
  flags: number
  /** Directory: first child record; regular file: first chunk index entry; symlink: target offset. */
  first: number
  /** Directory: child count; regular file: chunk count; symlink: target length. */
  count: number
  xattrOffset: number
  xattrSize: number
}

export interface OpenOptions {
  /** Skip the whole-file checksum (for `check`, which reports every problem, and for fuzzing the decoder). */
  skipChecksum?: boolean
}

/**
 * Random access to an untrusted bootstrap held in memory. Every accessor
 * checks the references it follows; `validate()` (validate.ts) checks the rest.
 */
export class BootstrapReader {
  readonly sb: Superblock
  private t: Record<TableName, TableBytes>
  /** Checked blob records (every chunk lookup checks its blob). */
  private readonly blobInfos: BlobInfo[] = []
  private held: Buffer | undefined
  private pages?: PageCache
  private closeSource?: () => void

  private constructor(buf: Buffer, sb: Superblock) {
    this.sb = sb
    this.held = buf
    this.t = tables(n => new MemoryTable(this.table(n)))
  }

  /** The whole bootstrap; not available once `pageOut` dropped it. */
  get buf(): Buffer {
    if (this.held === undefined) fail('ERR_RAFS_UNSUPPORTED', 'this bootstrap reader reads its tables from the file (paged out)')
    return this.held
  }

  /**
   * Drops the bootstrap from memory: from now on its tables are read back
   * through `read` a page at a time (at most `maxPages` kept), each page
   * checked against the sha256 taken now. For a daemon serving many images,
   * whose bootstraps would otherwise stay resident whole (1.5 MB for a Debian
   * root filesystem). The file must be the one opened (keep its descriptor).
   */
  pageOut(read: ReadAt, opts: { maxPages?: number; close?: () => void } = {}): void {
    const cache = new PageCache(read, opts.maxPages ?? 32)
    this.closeSource = opts.close
    this.t = tables(n => new PagedTable(n, this.sb.tables[n].offset, this.table(n), cache))
    this.pages = cache
    this.held = undefined
  }

  /** Lets the file go (`pageOut`'s `close`, once); a paged-out reader cannot read after this. */
  close(): void {
    const c = this.closeSource
    this.closeSource = undefined
    c?.()
  }

  /** Forgets the pages read back (the idle release of a paged-out reader). */
  dropPages(): void {
    this.pages?.clear()
  }

  private table(n: TableName): Buffer {
    const { offset, size } = this.sb.tables[n]
    return this.buf.subarray(offset, offset + size)
  }

  static open(buf: Buffer, opts: OpenOptions = {}): BootstrapReader {
    const sb = decodeSuperblock(buf)
    if (opts.skipChecksum !== true) {
      const actual = bootstrapChecksum(buf)
      if (!actual.equals(sb.checksum))
        fail('ERR_RAFS_CHECKSUM', `bootstrap checksum mismatch: stored ${sb.checksum.toString('hex')}, computed ${actual.toString('hex')}`)
    }
    const r = new BootstrapReader(buf, sb)
    r.root()
    return r
  }

  get inodeCount(): number {
    return this.sb.inodeCount
  }

  root(): InodeRecord {
    const r = this.inode(0)
    if (!isDir(r.mode)) fail('ERR_RAFS_BAD_TREE', 'the root inode is not a directory')
    if (r.name.length !== 0) fail('ERR_RAFS_BAD_TREE', 'the root inode has a name')
    return r
  }

  inode(index: number): InodeRecord {
    if (!Number.isInteger(index) || index < 0 || index >= this.sb.inodeCount)
      fail('ERR_RAFS_BAD_REFERENCE', `inode ${index} is out of range (0..${this.sb.inodeCount - 1})`)
    const [b, o] = this.t.inode.at(index * INODE_SIZE, INODE_SIZE)
    const mode = b.readUInt32LE(o + 40)
    const nameOff = b.readUInt32LE(o + 84)
    const nameLen = b.readUInt16LE(o + 88)
    const rec: InodeRecord = {
      index,
      digest: b.subarray(o, o + DIGEST_SIZE),
      ino: b.readUInt32LE(o + 32),
      parent: b.readUInt32LE(o + 36),
      mode,
      uid: b.readUInt32LE(o + 44),
      gid: b.readUInt32LE(o + 48),
      nlink: b.readUInt32LE(o + 52),
      size: readU64(b, o + 56),
      mtimeSec: readI64(b, o + 64),
      mtimeNsec: b.readUInt32LE(o + 72),
      rdevMajor: b.readUInt32LE(o + 76),
      rdevMinor: b.readUInt32LE(o + 80),
      name: this.slice('string', nameOff, nameLen, `name of inode ${index}`),
      flags: b.readUInt16LE(o + 90),
      first: b.readUInt32LE(o + 92),
      count: b.readUInt32LE(o + 96),
      xattrOffset: b.readUInt32LE(o + 100),
      xattrSize: b.readUInt32LE(o + 104)
    }
    checkRecord(rec, this.sb)
    return rec
  }

  /** Children as a record range; checked to lie after the parent and inside the table. */
  childRange(dir: InodeRecord): [number, number] {
    if (!isDir(dir.mode)) fail('ERR_RAFS_BAD_TREE', `inode ${dir.index} is not a directory`)
    if (dir.count === 0) return [0, 0]
    if (dir.first <= dir.index || dir.first + dir.count > this.sb.inodeCount) {
      fail('ERR_RAFS_BAD_REFERENCE', `children [${dir.first}, +${dir.count}) of inode ${dir.index} are out of range`)
    }
    return [dir.first, dir.first + dir.count]
  }

  *children(dir: InodeRecord): Generator<InodeRecord> {
    const [from, to] = this.childRange(dir)
    for (let i = from; i < to; i++) yield this.inode(i)
  }

  /** Binary search per component: O(depth x log n) name comparisons. */
  lookup(path: string | Buffer): InodeRecord | undefined {
    const p = typeof path === 'string' ? Buffer.from(path) : path
    let cur = this.root()
    for (const part of p.toString('latin1').split('/')) {
      if (part === '' || part === '.') continue
      const next = this.child(cur, Buffer.from(part, 'latin1'))
      if (next === undefined) return undefined
      cur = next
    }
    return cur
  }

  /**
   * The child of `dir` named `name` (children are sorted by name). Compares
   * names straight from the inode table and decodes only the match: a
   * metadata walk does one of these per FUSE lookup.
   */
  child(dir: InodeRecord, name: Buffer): InodeRecord | undefined {
    if (!isDir(dir.mode)) return undefined
    const [from, to] = this.childRange(dir)
    const names = this.t.string
    let lo = from
    let hi = to
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const [b, o] = this.t.inode.at(mid * INODE_SIZE, INODE_SIZE)
      const off = b.readUInt32LE(o + 84)
      const len = b.readUInt16LE(o + 88)
      if (off + len > names.length) return this.inode(mid) // decoding names the bad reference
      const [nb, no] = names.at(off, len)
      const c = nb.compare(name, 0, name.length, no, no + len)
      if (c === 0) return this.inode(mid)
      if (c > 0) hi = mid
      else lo = mid + 1
    }
    return undefined
  }

  /** The path of a record, from its parent links (bounded by the inode count, so a cycle cannot hang). */
  pathOf(rec: InodeRecord): Buffer {
    const parts: Buffer[] = []
    let cur = rec
    for (let steps = 0; cur.index !== 0; steps++) {
      if (steps >= this.sb.inodeCount) fail('ERR_RAFS_BAD_TREE', `parent links of inode ${rec.index} form a cycle`)
      parts.push(cur.name)
      cur = this.inode(cur.parent)
    }
    return Buffer.from(
      parts
        .reverse()
        .map(p => p.toString('latin1'))
        .join('/'),
      'latin1'
    )
  }

  readlink(rec: InodeRecord): Buffer {
    if (!isLnk(rec.mode)) fail('ERR_RAFS_BAD_INODE', `inode ${rec.index} is not a symlink`)
    return this.slice('string', rec.first, rec.count, `symlink target of inode ${rec.index}`)
  }

  xattrs(rec: InodeRecord): Array<[Buffer, Buffer]> {
    if ((rec.flags & INODE_FLAG_XATTR) === 0) return []
    const b = this.slice('xattr', rec.xattrOffset, rec.xattrSize, `xattrs of inode ${rec.index}`)
    const out: Array<[Buffer, Buffer]> = []
    let o = 0
    while (o < b.length) {
      if (o + 6 > b.length) fail('ERR_RAFS_BAD_INODE', `xattrs of inode ${rec.index} are truncated`)
      const nl = b.readUInt16LE(o)
      const vl = b.readUInt32LE(o + 2)
      if (nl === 0 || o + 6 + nl + vl > b.length) fail('ERR_RAFS_BAD_INODE', `xattr entry of inode ${rec.index} is malformed`)
      out.push([b.subarray(o + 6, o + 6 + nl), b.subarray(o + 6 + nl, o + 6 + nl + vl)])
      o += 6 + nl + vl
    }
    return out
  }

  /** A regular file's chunk-table indexes: one slice of the chunk index. */
  chunkIndexes(rec: InodeRecord): number[] {
    if (!isReg(rec.mode)) return []
    if (rec.first + rec.count > this.sb.chunkIndexCount) fail('ERR_RAFS_BAD_REFERENCE', `chunk list of inode ${rec.index} is out of range`)
    const out = new Array<number>(rec.count)
    const [b, o] = this.t.chunkIndex.at(rec.first * 4, rec.count * 4)
    for (let i = 0; i < rec.count; i++) out[i] = b.readUInt32LE(o + i * 4)
    return out
  }

  fileChunks(rec: InodeRecord): ChunkRef[] {
    return this.chunkIndexes(rec).map(i => this.chunk(i))
  }

  chunk(i: number): ChunkRef {
    if (!Number.isInteger(i) || i < 0 || i >= this.sb.chunkCount)
      fail('ERR_RAFS_BAD_REFERENCE', `chunk ${i} is out of range (${this.sb.chunkCount} chunks)`)
    const [b, o] = this.t.chunk.at(i * CHUNK_SIZE_RECORD, CHUNK_SIZE_RECORD)
    const c: ChunkRef = {
      digest: b.subarray(o, o + DIGEST_SIZE),
      blobIndex: b.readUInt32LE(o + 32),
      flags: b.readUInt32LE(o + 36),
      compressedOffset: readU64(b, o + 40),
      compressedSize: b.readUInt32LE(o + 48),
      uncompressedSize: b.readUInt32LE(o + 52),
      uncompressedOffset: readU64(b, o + 56)
    }
    if (c.blobIndex >= this.sb.blobCount)
      fail('ERR_RAFS_BAD_REFERENCE', `chunk ${i} names blob ${c.blobIndex}, but there are ${this.sb.blobCount}`)
    if ((c.flags & ~1) !== 0) fail('ERR_RAFS_BAD_CHUNK', `chunk ${i} has unknown flags ${c.flags}`)
    if (c.uncompressedSize === 0 || c.uncompressedSize > this.sb.chunkSize)
      fail('ERR_RAFS_BAD_CHUNK', `chunk ${i} has size ${c.uncompressedSize}, chunk size is ${this.sb.chunkSize}`)
    if (Number.isNaN(c.compressedOffset) || Number.isNaN(c.uncompressedOffset))
      fail('ERR_RAFS_BAD_CHUNK', `chunk ${i} has an offset over 2^53`)
    const blob = this.blob(c.blobIndex)
    if (c.compressedOffset + c.compressedSize > blob.compressedSize || c.uncompressedOffset + c.uncompressedSize > blob.uncompressedSize) {
      fail('ERR_RAFS_BAD_CHUNK', `chunk ${i} lies outside blob ${blob.id}`)
    }
    if ((c.flags & 1) === 0 && c.compressedSize !== c.uncompressedSize)
      fail('ERR_RAFS_BAD_CHUNK', `uncompressed chunk ${i} has two different sizes`)
    return c
  }

  blob(i: number): BlobInfo {
    if (!Number.isInteger(i) || i < 0 || i >= this.sb.blobCount)
      fail('ERR_RAFS_BAD_REFERENCE', `blob ${i} is out of range (${this.sb.blobCount} blobs)`)
    const known = this.blobInfos[i]
    if (known !== undefined) return known
    const [b, o] = this.t.blob.at(i * BLOB_RECORD_SIZE, BLOB_RECORD_SIZE)
    const compressor = COMPRESSORS[b[o + 52]]
    const digester = DIGESTERS[b[o + 53]]
    const info: BlobInfo = {
      id: b.subarray(o, o + 32).toString('hex'),
      compressedSize: readU64(b, o + 32),
      uncompressedSize: readU64(b, o + 40),
      chunkCount: b.readUInt32LE(o + 48),
      compressor,
      digester
    }
    if (compressor === undefined || digester === undefined) fail('ERR_RAFS_BAD_BLOB', `blob ${i} names an unknown compressor or digester`)
    if (Number.isNaN(info.compressedSize) || Number.isNaN(info.uncompressedSize))
      fail('ERR_RAFS_BAD_BLOB', `blob ${i} has a size over 2^53`)
    this.blobInfos[i] = Object.freeze(info)
    return info
  }

  blobs(): BlobInfo[] {
    return Array.from({ length: this.sb.blobCount }, (_, i) => this.blob(i))
  }

  prefetch(): number[] {
    const out: number[] = []
    for (let i = 0; i < this.sb.prefetchCount; i++) {
      const [b, o] = this.t.prefetch.at(i * 4, 4)
      const v = b.readUInt32LE(o)
      if (v >= this.sb.inodeCount) fail('ERR_RAFS_BAD_REFERENCE', `prefetch entry ${i} names inode ${v}, out of range`)
      out.push(v)
    }
    return out
  }

  private slice(table: 'string' | 'xattr', offset: number, len: number, what: string): Buffer {
    const t = this.t[table]
    if (offset + len > t.length)
      fail('ERR_RAFS_BAD_REFERENCE', `${what} [${offset}, +${len}) lies outside the ${table} table (${t.length} bytes)`)
    const [b, o] = t.at(offset, len)
    return b.subarray(o, o + len)
  }
}

function tables(make: (n: TableName) => TableBytes): Record<TableName, TableBytes> {
  const out = {} as Record<TableName, TableBytes>
  for (const n of TABLES) out[n] = make(n)
  return out
}

function checkRecord(r: InodeRecord, sb: Superblock): void {
  const type = r.mode & S_IFMT
  const where = `inode ${r.index}`
  if (!VALID_TYPES.has(type)) fail('ERR_RAFS_BAD_INODE', `${where} has an unknown file type 0o${type.toString(8)}`)
  if ((r.mode & ~(S_IFMT | 0o7777)) !== 0) fail('ERR_RAFS_BAD_INODE', `${where} has unknown mode bits 0o${r.mode.toString(8)}`)
  if (Number.isNaN(r.size) || Number.isNaN(r.mtimeSec)) fail('ERR_RAFS_BAD_INODE', `${where} has a size or mtime out of range`)
  if (r.mtimeNsec >= 1e9) fail('ERR_RAFS_BAD_INODE', `${where} has mtime nanoseconds ${r.mtimeNsec}`)
  if (r.ino === 0 || r.ino > sb.inodeCount) fail('ERR_RAFS_BAD_INODE', `${where} has inode number ${r.ino}, out of range`)
  if (r.nlink === 0) fail('ERR_RAFS_BAD_INODE', `${where} has no links`)
  if ((r.flags & ~INODE_FLAG_XATTR) !== 0) fail('ERR_RAFS_BAD_INODE', `${where} has unknown flags ${r.flags}`)
  if (r.index !== 0) checkName(r.name, where)
  if (isLnk(r.mode) && r.size !== r.count)
    fail('ERR_RAFS_BAD_INODE', `${where}: symlink size ${r.size} differs from its target length ${r.count}`)
  if (!isReg(r.mode) && !isLnk(r.mode) && r.size !== 0) fail('ERR_RAFS_BAD_INODE', `${where} is not a file but has size ${r.size}`)
  if (isReg(r.mode) && r.count !== Math.ceil(r.size / sb.chunkSize))
    fail('ERR_RAFS_BAD_INODE', `${where}: ${r.count} chunks cannot hold ${r.size} bytes`)
}

export function checkName(name: Buffer, where: string): void {
  if (name.length === 0 || name.length > MAX_NAME) fail('ERR_RAFS_BAD_INODE', `${where} has a name of ${name.length} bytes`)
  if (name.includes(0x2f) || name.includes(0)) fail('ERR_RAFS_BAD_INODE', `${where} has a name containing '/' or NUL`)
  if ((name.length === 1 && name[0] === 0x2e) || (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e)) {
    fail('ERR_RAFS_BAD_INODE', `${where} is named '.' or '..'`)
  }
}

export { RafsError }
