import { createHash } from 'node:crypto'
import {
  BLOB_FOOTER_SIZE,
  BLOB_MAGIC,
  COMPRESSORS,
  DIGESTERS,
  FORMAT_VERSION,
  TOC_ENTRY_SIZE,
  type CompressorName,
  type DigesterName
} from './constants.js'
import { RafsError } from './errors.js'
import { readU64, writeU64 } from './merkle.js'

/** One chunk as the blob's own table of contents records it. */
export interface TocEntry {
  digest: Buffer
  flags: number
  compressedOffset: number
  compressedSize: number
  uncompressedOffset: number
  uncompressedSize: number
}

export interface BlobFooter {
  compressor: CompressorName
  digester: DigesterName
  chunkCount: number
  tocOffset: number
  tocSize: number
  tocDigest: Buffer
}

/** The bytes that follow the last chunk: the TOC, then the fixed-size footer. */
export function encodeBlobTrailer(toc: readonly TocEntry[], tocOffset: number, compressor: CompressorName, digester: DigesterName): Buffer {
  const out = Buffer.alloc(toc.length * TOC_ENTRY_SIZE + BLOB_FOOTER_SIZE)
  toc.forEach((e, i) => {
    const o = i * TOC_ENTRY_SIZE
    e.digest.copy(out, o)
    out.writeUInt32LE(e.flags, o + 32)
    out.writeUInt32LE(e.compressedSize, o + 36)
    writeU64(out, e.compressedOffset, o + 40)
    writeU64(out, e.uncompressedOffset, o + 48)
    out.writeUInt32LE(e.uncompressedSize, o + 56)
  })
  const tocSize = toc.length * TOC_ENTRY_SIZE
  const f = out.subarray(tocSize)
  BLOB_MAGIC.copy(f, 0)
  f.writeUInt32LE(FORMAT_VERSION, 8)
  f.writeUInt8(COMPRESSORS.indexOf(compressor), 12)
  f.writeUInt8(DIGESTERS.indexOf(digester), 13)
  f.writeUInt32LE(toc.length, 16)
  writeU64(f, tocOffset, 24)
  writeU64(f, tocSize, 32)
  createHash('sha256').update(out.subarray(0, tocSize)).digest().copy(f, 40)
  return out
}

/** Parses the last BLOB_FOOTER_SIZE bytes of a blob of `blobSize` bytes. */
export function decodeBlobFooter(f: Buffer, blobSize: number): BlobFooter {
  if (f.length !== BLOB_FOOTER_SIZE || blobSize < BLOB_FOOTER_SIZE)
    throw new RafsError('ERR_RAFS_BAD_BLOB', `blob of ${blobSize} bytes is too small for a footer`)
  if (!f.subarray(0, 8).equals(BLOB_MAGIC)) throw new RafsError('ERR_RAFS_BAD_BLOB', 'blob footer has a bad magic')
  const version = f.readUInt32LE(8)
  if (version !== FORMAT_VERSION) throw new RafsError('ERR_RAFS_UNSUPPORTED_VERSION', `blob format version ${version} is not supported`)
  const compressor = COMPRESSORS[f[12]]
  const digester = DIGESTERS[f[13]]
  if (compressor === undefined || digester === undefined)
    throw new RafsError('ERR_RAFS_BAD_BLOB', `blob footer names unknown compressor ${f[12]} or digester ${f[13]}`)
  const chunkCount = f.readUInt32LE(16)
  const tocOffset = readU64(f, 24)
  const tocSize = readU64(f, 32)
  if (tocSize !== chunkCount * TOC_ENTRY_SIZE || tocOffset + tocSize + BLOB_FOOTER_SIZE !== blobSize) {
    throw new RafsError(
      'ERR_RAFS_BAD_BLOB',
      `blob TOC (offset ${tocOffset}, ${tocSize} bytes, ${chunkCount} chunks) does not fit a ${blobSize}-byte blob`
    )
  }
  return { compressor, digester, chunkCount, tocOffset, tocSize, tocDigest: Buffer.from(f.subarray(40, 72)) }
}

/** Checks the TOC's digest and that every chunk lies inside the data area. */
export function decodeBlobToc(toc: Buffer, footer: BlobFooter): TocEntry[] {
  if (toc.length !== footer.tocSize) throw new RafsError('ERR_RAFS_BAD_BLOB', `blob TOC is ${toc.length} bytes, expected ${footer.tocSize}`)
  if (!createHash('sha256').update(toc).digest().equals(footer.tocDigest))
    throw new RafsError('ERR_RAFS_CHECKSUM', 'blob TOC digest does not match its footer')
  const out: TocEntry[] = []
  for (let i = 0; i < footer.chunkCount; i++) {
    const o = i * TOC_ENTRY_SIZE
    const e: TocEntry = {
      digest: Buffer.from(toc.subarray(o, o + 32)),
      flags: toc.readUInt32LE(o + 32),
      compressedSize: toc.readUInt32LE(o + 36),
      compressedOffset: readU64(toc, o + 40),
      uncompressedOffset: readU64(toc, o + 48),
      uncompressedSize: toc.readUInt32LE(o + 56)
    }
    if (!(e.compressedOffset + e.compressedSize <= footer.tocOffset)) {
      throw new RafsError('ERR_RAFS_BAD_BLOB', `blob TOC entry ${i} lies outside the data area`)
    }
    out.push(e)
  }
  return out
}
