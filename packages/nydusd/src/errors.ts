export type NydusdErrorCode =
  | 'ERR_CONFIG'
  | 'ERR_BOOTSTRAP'
  | 'ERR_MOUNT'
  | 'ERR_MOUNTPOINT_BUSY'
  | 'ERR_MOUNTPOINT_STALE'
  | 'ERR_FUSE_MISSING'
  | 'ERR_CHUNK_VERIFY'
  | 'ERR_CHUNK_FETCH'

export class NydusdError extends Error {
  readonly code: NydusdErrorCode
  constructor (code: NydusdErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'NydusdError'
    this.code = code
  }
}
