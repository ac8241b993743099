export { CODE_KIND, ERRNO_OVERRIDE, type ErrorCode } from './codes.js'
export { KIND_STATUS, type ErrorKind, type KindStatus } from './kinds.js'
export { NydusError, errnoOf, errorCode, exitCodeOf, isErrorCode, oneLine, statusOf, withContext } from './nydus-error.js'
