import { NydusError } from '@nydusjs/errors'

export type RegistryErrorCode =
  | 'ERR_BLOB_NOT_FOUND'
  | 'ERR_MANIFEST_NOT_FOUND'
  | 'ERR_BACKEND_HTTP'
  | 'ERR_BACKEND_AUTH'
  | 'ERR_BACKEND_TIMEOUT'
  | 'ERR_BACKEND_SHORT_READ'
  | 'ERR_BACKEND_VERIFY'
  | 'ERR_REGISTRY_REJECTED'
  | 'ERR_REGISTRY_RESPONSE'
  | 'ERR_REGISTRY_REFERENCE'

/** A failure talking to a registry (or any HTTP source); `backend` names the source for logs and metrics. */
export class RegistryError extends NydusError<RegistryErrorCode> {
  readonly backend?: string
  constructor(code: RegistryErrorCode, message: string, options?: { cause?: unknown; backend?: string }) {
    super(code, message, options)
    this.name = 'RegistryError'
    this.backend = options?.backend
  }
}
