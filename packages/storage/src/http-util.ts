import type { Dispatcher } from 'undici'
import { StorageError } from './errors.js'

const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT'])

/** An undici failure as a StorageError, timeouts told apart. */
export function transportError (label: string, err: unknown, backend: string): StorageError {
  const e = err as Error & { code?: string }
  return new StorageError(TIMEOUTS.has(e.code ?? '') ? 'ERR_BACKEND_TIMEOUT' : 'ERR_BACKEND_HTTP', `${label}: ${e.message}`, { cause: err, backend })
}

/** Exactly the requested range from a 206, or cut from a 200 when the server ignored Range. */
export async function rangeBody (res: Dispatcher.ResponseData, offset: number, length: number, what: string, backend: string): Promise<Buffer> {
  const body = Buffer.from(await res.body.arrayBuffer())
  const out = res.statusCode === 200 ? body.subarray(offset, offset + length) : body
  if (out.length !== length) throw new StorageError('ERR_BACKEND_SHORT_READ', `${what} range ${offset}+${length}: got ${out.length} bytes`, { backend })
  return out
}
