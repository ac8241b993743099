import { S_IFMT, isDir, isLnk, isReg, type BootstrapReader, type InodeRecord } from '@nydusjs/rafs'
import { ConverterError } from './errors.js'

export interface BootstrapStats {
  bootstrap: string
  bootstrapSize: number
  inodes: number
  files: number
  dirs: number
  symlinks: number
  others: number
  fileBytes: number
  chunkRefs: number
  uniqueChunks: number
  uniqueBytes: number
  compressedBytes: number
  blobs: number
}

export interface StatReport {
  images: BootstrapStats[]
  total: {
    fileBytes: number
    uniqueChunks: number
    uniqueBytes: number
    compressedBytes: number
    dedupRatio: number
    compressionRatio: number
  }
}

/** Sizes and ratios of a set of bootstraps; chunks are counted once across the whole set. */
export function statBootstraps(readers: Array<{ path: string; r: BootstrapReader }>): StatReport {
  const all = new Map<string, { u: number; c: number }>()
  let fileBytes = 0
  const images = readers.map(({ path, r }) => {
    const s: BootstrapStats = {
      bootstrap: path,
      bootstrapSize: r.buf.length,
      inodes: r.inodeCount,
      files: 0,
      dirs: 0,
      symlinks: 0,
      others: 0,
      fileBytes: 0,
      chunkRefs: r.sb.chunkIndexCount,
      uniqueChunks: r.sb.chunkCount,
      uniqueBytes: 0,
      compressedBytes: 0,
      blobs: r.sb.blobCount
    }
    const seen = new Set<number>()
    for (let i = 0; i < r.inodeCount; i++) {
      const rec = r.inode(i)
      if (isDir(rec.mode)) s.dirs++
      else if (isLnk(rec.mode)) s.symlinks++
      else if (!isReg(rec.mode)) s.others++
      else if (!seen.has(rec.ino)) {
        seen.add(rec.ino)
        s.files++
        s.fileBytes += rec.size
      }
    }
    for (let i = 0; i < r.sb.chunkCount; i++) {
      const c = r.chunk(i)
      s.uniqueBytes += c.uncompressedSize
      s.compressedBytes += c.compressedSize
      all.set(c.digest.toString('latin1'), { u: c.uncompressedSize, c: c.compressedSize })
    }
    fileBytes += s.fileBytes
    return s
  })
  let uniqueBytes = 0
  let compressedBytes = 0
  for (const v of all.values()) {
    uniqueBytes += v.u
    compressedBytes += v.c
  }
  return {
    images,
    total: {
      fileBytes,
      uniqueChunks: all.size,
      uniqueBytes,
      compressedBytes,
      dedupRatio: ratio(fileBytes, uniqueBytes),
      compressionRatio: ratio(uniqueBytes, compressedBytes)
    }
  }
}

const ratio = (a: number, b: number): number => (b === 0 ? 1 : Math.round((a / b) * 1000) / 1000)

export function superblockInfo(r: BootstrapReader): Record<string, unknown> {
  const sb = r.sb
  return {
    version: sb.version,
    layer: sb.layer,
    chunk_size: `0x${sb.chunkSize.toString(16)}`,
    compressor: sb.compressor,
    digester: sb.digester,
    inodes: sb.inodeCount,
    chunks: sb.chunkCount,
    chunk_refs: sb.chunkIndexCount,
    blobs: r.blobs().map(b => ({
      id: b.id,
      compressed_size: b.compressedSize,
      uncompressed_size: b.uncompressedSize,
      chunk_count: b.chunkCount,
      compressor: b.compressor
    })),
    prefetch: r.prefetch().map(i => '/' + r.pathOf(r.inode(i)).toString()),
    root_digest: sb.rootDigest.toString('hex'),
    size: sb.totalSize
  }
}

const TYPE_CHARS: Record<number, string> = {
  0o140000: 's',
  0o120000: 'l',
  0o100000: '-',
  0o060000: 'b',
  0o040000: 'd',
  0o020000: 'c',
  0o010000: 'p'
}

export function inodeInfo(r: BootstrapReader, rec: InodeRecord): Record<string, unknown> {
  const info: Record<string, unknown> = {
    path: '/' + r.pathOf(rec).toString(),
    ino: rec.ino,
    mode: `0${(rec.mode).toString(8)}`,
    type: TYPE_CHARS[rec.mode & S_IFMT],
    uid: rec.uid,
    gid: rec.gid,
    nlink: rec.nlink,
    size: rec.size,
    mtime: rec.mtimeNsec === 0 ? rec.mtimeSec : `${rec.mtimeSec}.${String(rec.mtimeNsec).padStart(9, '0')}`,
    digest: rec.digest.toString('hex')
  }
  if (rec.rdevMajor !== 0 || rec.rdevMinor !== 0) info.rdev = `${rec.rdevMajor}:${rec.rdevMinor}`
  const x = r.xattrs(rec)
  if (x.length > 0) info.xattrs = Object.fromEntries(x.map(([k, v]) => [k.toString(), v.toString('base64')]))
  if (isLnk(rec.mode)) info.target = r.readlink(rec).toString()
  if (isReg(rec.mode)) {
    info.chunks = r.fileChunks(rec).map(c => ({
      digest: c.digest.toString('hex'),
      blob: r.blob(c.blobIndex).id,
      compressed_offset: c.compressedOffset,
      compressed_size: c.compressedSize,
      uncompressed_size: c.uncompressedSize,
      compressed: (c.flags & 1) !== 0
    }))
  }
  if (isDir(rec.mode)) info.children = [...r.children(rec)].map(c => c.name.toString())
  return info
}

export function lookupOrFail(r: BootstrapReader, path: string): InodeRecord {
  const rec = r.lookup(path)
  if (rec === undefined) throw new ConverterError('ERR_BAD_ARGUMENT', `no such path in the image: ${path}`)
  return rec
}

/** `ls -l`-style lines for a directory listing. */
export function listing(r: BootstrapReader, dir: InodeRecord): string[] {
  return [...r.children(dir)].map(c => {
    const t = TYPE_CHARS[c.mode & S_IFMT] ?? '?'
    const perm = (c.mode & 0o7777).toString(8).padStart(4, '0')
    const tail = isLnk(c.mode) ? ` -> ${r.readlink(c).toString()}` : ''
    return `${t}${perm} ${String(c.uid).padStart(5)} ${String(c.gid).padStart(5)} ${String(c.size).padStart(12)} ${c.name.toString()}${isDir(c.mode) ? '/' : ''}${tail}`
  })
}
