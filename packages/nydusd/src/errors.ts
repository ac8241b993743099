import { NydusError } from '@nydusjs/errors'

export type NydusdErrorCode =
  | 'ERR_CONFIG'
  | 'ERR_BOOTSTRAP'
  | 'ERR_BOOTSTRAP_NOT_FOUND'
  | 'ERR_MOUNT'
  | 'ERR_MOUNT_NOT_FOUND'
  | 'ERR_BAD_ARGUMENT'
  | 'ERR_MOUNTPOINT_BUSY'
  | 'ERR_MOUNTPOINT_STALE'
  | 'ERR_FUSE_MISSING'
  | 'ERR_CHUNK_VERIFY'
  | 'ERR_CHUNK_FETCH'
  | 'ERR_BLOB_CORRUPT'
  | 'ERR_INTERNAL'

export class NydusdError extends NydusError<NydusdErrorCode> {
  constructor(code: NydusdErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
    this.name = 'NydusdError'
  }
}
