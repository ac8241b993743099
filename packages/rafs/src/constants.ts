export const BOOTSTRAP_MAGIC = Buffer.from('RAFS-TS\0', 'latin1')
export const BLOB_MAGIC = Buffer.from('RAFSBLOB', 'latin1')
export const FORMAT_VERSION = 1

export const SUPERBLOCK_SIZE = 256
export const INODE_SIZE = 128
export const CHUNK_SIZE_RECORD = 64
export const BLOB_RECORD_SIZE = 64
export const TOC_ENTRY_SIZE = 64
export const BLOB_FOOTER_SIZE = 96
export const DIGEST_SIZE = 32

export const DEFAULT_CHUNK_SIZE = 0x100000
export const MIN_CHUNK_SIZE = 0x1000
export const MAX_CHUNK_SIZE = 0x1000000
export const MAX_NAME = 255

export const SB_FLAG_LAYER = 1
export const INODE_FLAG_XATTR = 1
export const CHUNK_FLAG_COMPRESSED = 1

export type CompressorName = 'none' | 'zstd'
export type DigesterName = 'sha256' | 'blake3'
export const COMPRESSORS: readonly CompressorName[] = ['none', 'zstd']
export const DIGESTERS: readonly DigesterName[] = ['sha256', 'blake3']

export const S_IFMT = 0o170000
export const S_IFSOCK = 0o140000
export const S_IFLNK = 0o120000
export const S_IFREG = 0o100000
export const S_IFBLK = 0o060000
export const S_IFDIR = 0o040000
export const S_IFCHR = 0o020000
export const S_IFIFO = 0o010000

export const isDir = (mode: number): boolean => (mode & S_IFMT) === S_IFDIR
export const isReg = (mode: number): boolean => (mode & S_IFMT) === S_IFREG
export const isLnk = (mode: number): boolean => (mode & S_IFMT) === S_IFLNK
export const isDev = (mode: number): boolean => {
  const t = mode & S_IFMT
  return t === S_IFCHR || t === S_IFBLK
}
export const VALID_TYPES = new Set([S_IFSOCK, S_IFLNK, S_IFREG, S_IFBLK, S_IFDIR, S_IFCHR, S_IFIFO])

export function isValidChunkSize(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_CHUNK_SIZE && n <= MAX_CHUNK_SIZE && (n & (n - 1)) === 0
}
