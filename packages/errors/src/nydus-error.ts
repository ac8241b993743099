import { constants } from 'node:os'
import { CODE_KIND, ERRNO_OVERRIDE, type ErrorCode } from './codes.js'
import { KIND_STATUS, type ErrorKind, type KindStatus } from './kinds.js'

/** The one error base: a stable `code`, a one-line message, and the `cause` it came from. */
export class NydusError<C extends ErrorCode = ErrorCode> extends Error {
  readonly code: C
  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'NydusError'
    this.code = code
  }

  get kind(): ErrorKind {
    return CODE_KIND[this.code]
  }
}

export function isErrorCode(v: unknown): v is ErrorCode {
  return typeof v === 'string' && Object.hasOwn(CODE_KIND, v)
}

/** The project code of any thrown value (undefined for foreign errors). */
export function errorCode(err: unknown): ErrorCode | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return isErrorCode(code) ? code : undefined
}

/** Where an error surfaces (exit code, errno, HTTP, gRPC); a foreign error is internal. */
export function statusOf(err: unknown): KindStatus & { kind: ErrorKind; code: ErrorCode } {
  const code = errorCode(err) ?? 'ERR_INTERNAL'
  const s = KIND_STATUS[CODE_KIND[code]]
  return { ...s, errno: ERRNO_OVERRIDE[code] ?? s.errno, kind: CODE_KIND[code], code }
}

/** The errno number for a FUSE reply (negate it there). */
export const errnoOf = (err: unknown): number => (constants.errno as Record<string, number>)[statusOf(err).errno]

/**
 * `err` with `context` in front of its message and its code kept, so the
 * user's one line still names what failed first. Foreign errors keep their
 * message and become ERR_INTERNAL unless `fallback` names a better code.
 */
export function withContext(err: unknown, context: string, fallback: ErrorCode = 'ERR_INTERNAL'): NydusError {
  const msg = err instanceof Error ? err.message : String(err)
  return new NydusError(errorCode(err) ?? fallback, `${context}: ${msg}`, { cause: err })
}

/** `MESSAGE [CODE]`: the one line a CLI prints. */
export function oneLine(err: unknown): string {
  const msg = (err instanceof Error ? err.message : String(err))
    .split('\n')
    .map(l => l.trim())
    .filter(Boolean)
    .join('; ')
  const code = errorCode(err)
  return code === undefined ? msg : `${msg} [${code}]`
}

/** The exit code a CLI gives for `code`. */
export const exitCodeOf = (code: ErrorCode): number => KIND_STATUS[CODE_KIND[code]].exit
