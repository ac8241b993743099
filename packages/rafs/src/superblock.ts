import { createHash } from 'node:crypto'
import {
  BOOTSTRAP_MAGIC,
  BLOB_RECORD_SIZE,
  CHUNK_SIZE_RECORD,
  COMPRESSORS,
  DIGESTERS,
  FORMAT_VERSION,
  INODE_SIZE,
  SB_FLAG_LAYER,
  SUPERBLOCK_SIZE,
  isValidChunkSize,
  type CompressorName,
  type DigesterName
} from './constants.js'
import { fail } from './errors.js'

export interface TableRange {
  offset: number
  size: number
}

export interface Superblock {
  version: number
  flags: number
  layer: boolean
  chunkSize: number
  compressor: CompressorName
  digester: DigesterName
  inodeCount: number
  chunkCount: number
  chunkIndexCount: number
  blobCount: number
  prefetchCount: number
  tables: Record<TableName, TableRange>
  totalSize: number
  rootDigest: Buffer
  checksum: Buffer
}

export const TABLES = ['inode', 'string', 'xattr', 'chunk', 'chunkIndex', 'blob', 'prefetch'] as const
export type TableName = (typeof TABLES)[number]

export function bootstrapChecksum(buf: Buffer): Buffer {
  const h = createHash('sha256')
  h.update(buf.subarray(0, 160))
  h.update(Buffer.alloc(32))
  h.update(buf.subarray(192))
  return h.digest()
}

const RECORD_SIZES: Record<TableName, number> = {
  inode: INODE_SIZE,
  string: 1,
  xattr: 1,
  chunk: CHUNK_SIZE_RECORD,
  chunkIndex: 4,
  blob: BLOB_RECORD_SIZE,
  prefetch: 4
}

export function decodeSuperblock(buf: Buffer): Superblock {
  if (buf.length < SUPERBLOCK_SIZE)
    fail('ERR_RAFS_TRUNCATED', `bootstrap is ${buf.length} bytes, shorter than its ${SUPERBLOCK_SIZE}-byte superblock`)
  if (!buf.subarray(0, 8).equals(BOOTSTRAP_MAGIC)) fail('ERR_RAFS_BAD_MAGIC', 'not a RAFS-TS bootstrap (bad magic)')
  const version = buf.readUInt32LE(8)
  if (version !== FORMAT_VERSION)
    fail('ERR_RAFS_UNSUPPORTED_VERSION', `bootstrap version ${version} is not supported (this build reads ${FORMAT_VERSION})`)
  const flags = buf.readUInt32LE(12)
  if ((flags & ~SB_FLAG_LAYER) !== 0) fail('ERR_RAFS_BAD_SUPERBLOCK', `unknown superblock flags 0x${flags.toString(16)}`)
  const chunkSize = buf.readUInt32LE(16)
  if (!isValidChunkSize(chunkSize))
    fail('ERR_RAFS_BAD_SUPERBLOCK', `chunk size 0x${chunkSize.toString(16)} is not a power of two from 4 KiB to 16 MiB`)
  const compressor = COMPRESSORS[buf[20]]
  const digester = DIGESTERS[buf[21]]
  if (compressor === undefined) fail('ERR_RAFS_BAD_SUPERBLOCK', `unknown compressor ${buf[20]}`)
  if (digester === undefined) fail('ERR_RAFS_BAD_SUPERBLOCK', `unknown digester ${buf[21]}`)
  const totalSize = buf.readUInt32LE(104)
  if (totalSize !== buf.length) fail('ERR_RAFS_TRUNCATED', `bootstrap is ${buf.length} bytes, its superblock says ${totalSize}`)
  const counts = [0, 1, 2, 3, 4].map(i => buf.readUInt32LE(24 + i * 4))
  const tables = {} as Record<TableName, TableRange>
  let expected = SUPERBLOCK_SIZE
  TABLES.forEach((name, i) => {
    const offset = buf.readUInt32LE(48 + i * 8)
    const size = buf.readUInt32LE(52 + i * 8)
    if (offset !== expected || offset + size > buf.length)
      fail('ERR_RAFS_BAD_SUPERBLOCK', `${name} table [${offset}, +${size}) is out of place`)
    if (size % RECORD_SIZES[name] !== 0) fail('ERR_RAFS_BAD_SUPERBLOCK', `${name} table size ${size} is not a whole number of records`)
    tables[name] = { offset, size }
    expected = offset + size
  })
  if (expected !== buf.length) fail('ERR_RAFS_BAD_SUPERBLOCK', `tables end at ${expected}, the bootstrap at ${buf.length}`)
  const [inodeCount, chunkCount, chunkIndexCount, blobCount, prefetchCount] = counts
  const want: Array<[TableName, number]> = [
    ['inode', inodeCount],
    ['chunk', chunkCount],
    ['chunkIndex', chunkIndexCount],
    ['blob', blobCount],
    ['prefetch', prefetchCount]
  ]
  for (const [name, n] of want) {
    if (tables[name].size !== n * RECORD_SIZES[name])
      fail('ERR_RAFS_BAD_SUPERBLOCK', `${name} table holds ${tables[name].size / RECORD_SIZES[name]} records, the count says ${n}`)
  }
  if (inodeCount === 0) fail('ERR_RAFS_BAD_SUPERBLOCK', 'bootstrap has no root inode')
  return {
    version,
    flags,
    layer: (flags & SB_FLAG_LAYER) !== 0,
    chunkSize,
    compressor,
    digester,
    inodeCount,
    chunkCount,
    chunkIndexCount,
    blobCount,
    prefetchCount,
    tables,
    totalSize,
    rootDigest: Buffer.from(buf.subarray(128, 160)),
    checksum: Buffer.from(buf.subarray(160, 192))
  }
}
