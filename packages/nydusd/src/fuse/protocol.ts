/**
 * The kernel FUSE protocol (include/uapi/linux/fuse.h, major 7): the opcodes,
 * INIT flags and struct layouts a read-only filesystem needs. Little-endian,
 * as every Linux FUSE host here is.
 */

export const FUSE_KERNEL_VERSION = 7
/** The newest minor we speak: 7.40 (kernel 6.9: passthrough, resend). Older kernels are answered at their minor. */
export const FUSE_KERNEL_MINOR = 40
export const ROOT_ID = 1n

export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  DESTROY: 38,
  BATCH_FORGET: 42,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46
} as const

export const OP_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k.toLowerCase()]))

/** INIT flags (the low 32 bits) and flags2 (the high 32, with INIT_EXT). */
export const Init = {
  ASYNC_READ: 1 << 0,
  BIG_WRITES: 1 << 5,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  NO_OPENDIR_SUPPORT: 1 << 24,
  INIT_EXT: 1 << 30
} as const

/** flags2 bits (INIT flags above bit 31). */
export const Init2 = {
  /** FUSE_PASSTHROUGH (1 << 37): backing files the kernel reads itself (kernel 6.9+). */
  PASSTHROUGH: 1 << 5
} as const

/** fuse_open_out's open_flags. */
export const FOPEN_KEEP_CACHE = 1 << 1
export const FOPEN_PASSTHROUGH = 1 << 7

export const IN_HEADER = 40
export const OUT_HEADER = 16
export const ATTR_SIZE = 88
export const ENTRY_OUT = 40 + ATTR_SIZE
export const ATTR_OUT = 16 + ATTR_SIZE
export const DIRENT_HEADER = 24

export interface InHeader {
  len: number
  opcode: number
  unique: bigint
  nodeid: bigint
  uid: number
  gid: number
  pid: number
}

export function readInHeader(b: Buffer): InHeader {
  return {
    len: b.readUInt32LE(0),
    opcode: b.readUInt32LE(4),
    unique: b.readBigUInt64LE(8),
    nodeid: b.readBigUInt64LE(16),
    uid: b.readUInt32LE(24),
    gid: b.readUInt32LE(28),
    pid: b.readUInt32LE(32)
  }
}

export function outHeader(len: number, error: number, unique: bigint): Buffer {
  const b = Buffer.allocUnsafe(OUT_HEADER)
  b.writeUInt32LE(len, 0)
  b.writeInt32LE(error, 4)
  b.writeBigUInt64LE(unique, 8)
  return b
}

/** What a node looks like to the kernel; times in seconds and nanoseconds. */
export interface Attr {
  ino: number
  size: number
  blocks: number
  sec: number
  nsec: number
  mode: number
  nlink: number
  uid: number
  gid: number
  rdev: number
  blksize: number
}

export function writeAttr(b: Buffer, at: number, a: Attr): void {
  b.writeBigUInt64LE(BigInt(a.ino), at)
  b.writeBigUInt64LE(BigInt(a.size), at + 8)
  b.writeBigUInt64LE(BigInt(a.blocks), at + 16)
  const sec = BigInt(Math.max(0, a.sec))
  b.writeBigUInt64LE(sec, at + 24)
  b.writeBigUInt64LE(sec, at + 32)
  b.writeBigUInt64LE(sec, at + 40)
  for (const off of [48, 52, 56]) b.writeUInt32LE(a.nsec, at + off)
  b.writeUInt32LE(a.mode, at + 60)
  b.writeUInt32LE(a.nlink, at + 64)
  b.writeUInt32LE(a.uid, at + 68)
  b.writeUInt32LE(a.gid, at + 72)
  b.writeUInt32LE(a.rdev, at + 76)
  b.writeUInt32LE(a.blksize, at + 80)
  b.writeUInt32LE(0, at + 84)
}

/** fuse_entry_out: the node id and how long the kernel may keep the name and the attributes. */
export function writeEntry(b: Buffer, at: number, nodeid: number, a: Attr, validSec: number): void {
  b.writeBigUInt64LE(BigInt(nodeid), at)
  b.writeBigUInt64LE(0n, at + 8)
  b.writeBigUInt64LE(BigInt(validSec), at + 16)
  b.writeBigUInt64LE(BigInt(validSec), at + 24)
  b.writeUInt32LE(0, at + 32)
  b.writeUInt32LE(0, at + 36)
  writeAttr(b, at + 40, a)
}

export function attrOut(a: Attr, validSec: number): Buffer {
  const b = Buffer.alloc(ATTR_OUT)
  b.writeBigUInt64LE(BigInt(validSec), 0)
  writeAttr(b, 16, a)
  return b
}

/** A fuse_dirent's size for a name of `n` bytes (8-byte aligned). */
export const direntSize = (n: number): number => (DIRENT_HEADER + n + 7) & ~7

export function writeDirent(b: Buffer, at: number, ino: number, off: number, type: number, name: Buffer): number {
  b.writeBigUInt64LE(BigInt(ino), at)
  b.writeBigUInt64LE(BigInt(off), at + 8)
  b.writeUInt32LE(name.length, at + 16)
  b.writeUInt32LE(type, at + 20)
  name.copy(b, at + DIRENT_HEADER)
  const end = direntSize(name.length)
  b.fill(0, at + DIRENT_HEADER + name.length, at + end)
  return end
}

export function statfsOut(blocks: number, files: number): Buffer {
  const b = Buffer.alloc(80)
  b.writeBigUInt64LE(BigInt(blocks), 0)
  b.writeBigUInt64LE(BigInt(files), 24)
  b.writeUInt32LE(4096, 40) // bsize
  b.writeUInt32LE(255, 44) // namelen
  b.writeUInt32LE(4096, 48) // frsize
  return b
}

export interface InitIn {
  major: number
  minor: number
  maxReadahead: number
  flags: number
  flags2: number
}

export function readInitIn(body: Buffer): InitIn {
  const flags = body.readUInt32LE(12)
  const ext = body.length >= 20 && (flags & Init.INIT_EXT) !== 0
  return {
    major: body.readUInt32LE(0),
    minor: body.readUInt32LE(4),
    maxReadahead: body.readUInt32LE(8),
    flags,
    flags2: ext ? body.readUInt32LE(16) : 0
  }
}

export function initOut(o: {
  minor: number
  maxReadahead: number
  flags: number
  flags2?: number
  maxWrite: number
  maxPages: number
  maxStackDepth?: number
}): Buffer {
  const b = Buffer.alloc(64)
  b.writeUInt32LE(FUSE_KERNEL_VERSION, 0)
  b.writeUInt32LE(o.minor, 4)
  b.writeUInt32LE(o.maxReadahead, 8)
  b.writeUInt32LE(o.flags >>> 0, 12)
  b.writeUInt16LE(64, 16) // max_background
  b.writeUInt16LE(48, 18) // congestion_threshold
  b.writeUInt32LE(o.maxWrite, 20)
  b.writeUInt32LE(1, 24) // time_gran: nanoseconds
  b.writeUInt16LE(o.maxPages, 28)
  b.writeUInt32LE((o.flags2 ?? 0) >>> 0, 32)
  b.writeUInt32LE(o.maxStackDepth ?? 0, 36)
  // Before 7.23 the reply was 24 bytes; the kernel takes what its minor knows.
  return o.minor < 23 ? b.subarray(0, 24) : b
}

/** fuse_open_out: the handle, its open flags and, with FOPEN_PASSTHROUGH, the backing id. */
export function openOut(fh: number, openFlags: number, backingId = 0): Buffer {
  const b = Buffer.alloc(16)
  b.writeBigUInt64LE(BigInt(fh), 0)
  b.writeUInt32LE(openFlags, 8)
  b.writeInt32LE(backingId, 12)
  return b
}

/** d_type from a mode. */
export const direntType = (mode: number): number => (mode >>> 12) & 0o17
