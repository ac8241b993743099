import { NydusError } from '@nydusjs/errors'

/** Stable codes: callers switch on `code`, never on the message. */
export type RafsErrorCode =
  | 'ERR_RAFS_TRUNCATED'
  | 'ERR_RAFS_BAD_MAGIC'
  | 'ERR_RAFS_UNSUPPORTED_VERSION'
  | 'ERR_RAFS_BAD_SUPERBLOCK'
  | 'ERR_RAFS_CHECKSUM'
  | 'ERR_RAFS_BAD_REFERENCE'
  | 'ERR_RAFS_BAD_INODE'
  | 'ERR_RAFS_BAD_TREE'
  | 'ERR_RAFS_MERKLE'
  | 'ERR_RAFS_CHUNK_DIGEST'
  | 'ERR_RAFS_BAD_CHUNK'
  | 'ERR_RAFS_BAD_BLOB'
  | 'ERR_RAFS_NOT_FOUND'
  | 'ERR_RAFS_UNSUPPORTED'

export class RafsError extends NydusError<RafsErrorCode> {
  constructor(code: RafsErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
    this.name = 'RafsError'
  }
}

export function fail(code: RafsErrorCode, message: string): never {
  throw new RafsError(code, message)
}
