import { NydusError } from '@nydusjs/errors'

export type SnapshotterErrorCode =
  | 'ERR_SNAPSHOT_NOT_FOUND'
  | 'ERR_SNAPSHOT_EXISTS'
  | 'ERR_SNAPSHOT_IN_USE'
  | 'ERR_BAD_ARGUMENT'
  | 'ERR_CONFIG'
  | 'ERR_INTERNAL'

export class SnapshotterError extends NydusError<SnapshotterErrorCode> {
  constructor(code: SnapshotterErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
    this.name = 'SnapshotterError'
  }
}
