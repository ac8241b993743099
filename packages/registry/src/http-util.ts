import type { Dispatcher } from 'undici'
import { RegistryError } from './errors.js'

const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT'])

/** An undici failure as a RegistryError, timeouts told apart. */
export function transportError(label: string, err: unknown, backend: string): RegistryError {
  const e = err as Error & { code?: string }
  return new RegistryError(TIMEOUTS.has(e.code ?? '') ? 'ERR_BACKEND_TIMEOUT' : 'ERR_BACKEND_HTTP', `${label}: ${e.message}`, {
    cause: err,
    backend
  })
}

/**
 * Exactly bytes [offset, offset+length) of a range response, into `dst` when
 * given: from a 206 (whose Content-Range must start at `offset`), or cut from
 * a 200 when the server ignored Range. Streamed: a server that sends the whole
 * blob, or more than was asked for, is never held in memory.
 */
export async function readRange(
  res: Dispatcher.ResponseData<unknown>,
  offset: number,
  length: number,
  what: string,
  backend: string,
  dst?: Buffer
): Promise<Buffer> {
  const whole = res.statusCode === 200
  const start = whole ? undefined : /^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''))?.[1]
  if (start !== undefined && Number(start) !== offset) {
    await res.body.dump().catch(() => {})
    throw new RegistryError('ERR_BACKEND_HTTP', `${what}: asked for bytes from ${offset}, the server sent them from ${start}`, { backend })
  }
  const out = dst ?? Buffer.allocUnsafe(length)
  let skip = whole ? offset : 0
  let got = 0
  for await (const c of res.body as AsyncIterable<Buffer>) {
    let part = c
    if (skip > 0) {
      const s = Math.min(skip, part.length)
      part = part.subarray(s)
      skip -= s
    }
    // Leaving the loop (throw or break) ends the body stream.
    if (!whole && got + part.length > length) {
      throw new RegistryError('ERR_BACKEND_HTTP', `${what} range ${offset}+${length}: the server sent more than ${length} bytes`, {
        backend
      })
    }
    got += part.copy(out, got, 0, Math.min(part.length, length - got))
    // The rest of a whole blob is not wanted; a 206 is read to its end, so its connection is reused.
    if (whole && got === length) break
  }
  if (got !== length) throw new RegistryError('ERR_BACKEND_SHORT_READ', `${what} range ${offset}+${length}: got ${got} bytes`, { backend })
  return out
}
