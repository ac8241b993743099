import { NydusError } from '@nydusjs/errors'

/** Stable codes for everything the converter reports; the CLI prints `message` on one line. */
export type ConverterErrorCode =
  | 'ERR_TAR_TRUNCATED'
  | 'ERR_TAR_CHECKSUM'
  | 'ERR_TAR_BAD_HEADER'
  | 'ERR_TAR_UNSUPPORTED_TYPE'
  | 'ERR_TAR_BAD_PATH'
  | 'ERR_TAR_BAD_LINK'
  | 'ERR_SOURCE_DECOMPRESS'
  | 'ERR_SOURCE_UNKNOWN_TYPE'
  | 'ERR_SOURCE_NOT_FOUND'
  | 'ERR_OCI_LAYOUT'
  | 'ERR_OCI_DIGEST'
  | 'ERR_BLOB_MISSING'
  | 'ERR_BLOB_CORRUPT'
  | 'ERR_CHECK_FAILED'
  | 'ERR_BAD_ARGUMENT'

export class ConverterError extends NydusError<ConverterErrorCode> {
  constructor(code: ConverterErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
    this.name = 'ConverterError'
  }
}
