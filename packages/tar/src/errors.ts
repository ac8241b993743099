import { NydusError } from '@nydusjs/errors'

export type TarErrorCode = 'ERR_TAR_TRUNCATED' | 'ERR_TAR_CHECKSUM' | 'ERR_TAR_BAD_HEADER' | 'ERR_TAR_UNSUPPORTED_TYPE'

export class TarError extends NydusError<TarErrorCode> {
  constructor(code: TarErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
    this.name = 'TarError'
  }
}
