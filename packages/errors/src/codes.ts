import type { ErrorKind, KindStatus } from './kinds.js'

/**
 * Every stable error code of the project and its kind. Codes are the API:
 * callers switch on `code`, never on a message; a new code is added here.
 */
export const CODE_KIND = {
  // arguments and configuration
  ERR_BAD_ARGUMENT: 'invalid-argument',
  ERR_CONFIG: 'config',
  ERR_REGISTRY_REFERENCE: 'invalid-argument',
  // untrusted input that does not parse or verify
  ERR_RAFS_TRUNCATED: 'corrupt',
  ERR_RAFS_BAD_MAGIC: 'corrupt',
  ERR_RAFS_UNSUPPORTED_VERSION: 'unimplemented',
  ERR_RAFS_BAD_SUPERBLOCK: 'corrupt',
  ERR_RAFS_CHECKSUM: 'corrupt',
  ERR_RAFS_BAD_REFERENCE: 'corrupt',
  ERR_RAFS_BAD_INODE: 'corrupt',
  ERR_RAFS_BAD_TREE: 'corrupt',
  ERR_RAFS_MERKLE: 'corrupt',
  ERR_RAFS_CHUNK_DIGEST: 'corrupt',
  ERR_RAFS_BAD_CHUNK: 'corrupt',
  ERR_RAFS_BAD_BLOB: 'corrupt',
  ERR_RAFS_NOT_FOUND: 'not-found',
  ERR_RAFS_UNSUPPORTED: 'unimplemented',
  ERR_TAR_TRUNCATED: 'corrupt',
  ERR_TAR_CHECKSUM: 'corrupt',
  ERR_TAR_BAD_HEADER: 'corrupt',
  ERR_TAR_UNSUPPORTED_TYPE: 'unimplemented',
  ERR_TAR_BAD_PATH: 'corrupt',
  ERR_TAR_BAD_LINK: 'corrupt',
  ERR_SOURCE_DECOMPRESS: 'corrupt',
  ERR_SOURCE_UNKNOWN_TYPE: 'invalid-argument',
  ERR_SOURCE_NOT_FOUND: 'not-found',
  ERR_OCI_LAYOUT: 'corrupt',
  ERR_OCI_DIGEST: 'corrupt',
  ERR_BLOB_MISSING: 'not-found',
  ERR_BLOB_CORRUPT: 'corrupt',
  ERR_CHECK_FAILED: 'corrupt',
  ERR_BOOTSTRAP: 'corrupt',
  ERR_BOOTSTRAP_NOT_FOUND: 'not-found',
  ERR_REGISTRY_RESPONSE: 'corrupt',
  ERR_BACKEND_VERIFY: 'corrupt',
  ERR_CHUNK_VERIFY: 'corrupt',
  // not there
  ERR_BLOB_NOT_FOUND: 'not-found',
  ERR_MANIFEST_NOT_FOUND: 'not-found',
  // sources that fail
  ERR_BACKEND_IO: 'unavailable',
  ERR_BACKEND_HTTP: 'unavailable',
  ERR_BACKEND_SHORT_READ: 'unavailable',
  ERR_BACKEND_CIRCUIT_OPEN: 'unavailable',
  ERR_CHUNK_FETCH: 'unavailable',
  ERR_CACHE_IO: 'unavailable',
  ERR_BACKEND_TIMEOUT: 'deadline-exceeded',
  ERR_BACKEND_AUTH: 'permission-denied',
  ERR_REGISTRY_REJECTED: 'failed-precondition',
  // the host
  ERR_MOUNT: 'failed-precondition',
  ERR_MOUNT_NOT_FOUND: 'not-found',
  ERR_MOUNTPOINT_BUSY: 'failed-precondition',
  ERR_MOUNTPOINT_STALE: 'failed-precondition',
  ERR_FUSE_MISSING: 'unavailable',
  // snapshots (containerd's snapshotter semantics)
  ERR_SNAPSHOT_NOT_FOUND: 'not-found',
  ERR_SNAPSHOT_EXISTS: 'already-exists',
  ERR_SNAPSHOT_IN_USE: 'failed-precondition',
  ERR_INTERNAL: 'internal'
} as const satisfies Record<string, ErrorKind>

export type ErrorCode = keyof typeof CODE_KIND

/**
 * Where a code's errno is not its kind's. A read of a file whose blob or
 * manifest is gone: the file exists, its data cannot be had (EIO, as nydusd).
 */
export const ERRNO_OVERRIDE: Partial<Record<ErrorCode, KindStatus['errno']>> = {
  ERR_BLOB_NOT_FOUND: 'EIO',
  ERR_MANIFEST_NOT_FOUND: 'EIO'
}
