import { NydusError } from '@nydusjs/errors'

export type StorageErrorCode =
  | 'ERR_BLOB_NOT_FOUND'
  | 'ERR_BACKEND_IO'
  | 'ERR_BACKEND_HTTP'
  | 'ERR_BACKEND_AUTH'
  | 'ERR_BACKEND_TIMEOUT'
  | 'ERR_BACKEND_SHORT_READ'
  | 'ERR_BACKEND_VERIFY'
  | 'ERR_BACKEND_CIRCUIT_OPEN'
  | 'ERR_CACHE_IO'
  | 'ERR_MANIFEST_NOT_FOUND'
  | 'ERR_REGISTRY_REJECTED'
  | 'ERR_REGISTRY_RESPONSE'
  | 'ERR_REGISTRY_REFERENCE'

/** A failure of a blob source or the cache; `backend` names the source for logs and metrics. */
export class StorageError extends NydusError<StorageErrorCode> {
  readonly backend?: string
  constructor(code: StorageErrorCode, message: string, options?: { cause?: unknown; backend?: string }) {
    super(code, message, options)
    this.name = 'StorageError'
    this.backend = options?.backend
  }
}
