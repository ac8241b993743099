import { constants } from 'node:os'

const E = constants.errno

/**
 * The answer to GETXATTR (`get`) or LISTXATTR: the value or the name list,
 * their size when the caller asked with size 0, or an errno.
 */
export function xattrReply(pairs: ReadonlyArray<readonly [Buffer, Uint8Array]>, get: boolean, body: Buffer): Buffer | number {
  const size = body.readUInt32LE(0)
  let value: Buffer
  if (get) {
    const name = cstring(body, 8)
    const hit = pairs.find(([k]) => k.equals(name))
    if (hit === undefined) return E.ENODATA
    value = Buffer.from(hit[1])
  } else value = Buffer.concat(pairs.flatMap(([k]) => [k, Buffer.alloc(1)]))
  if (size === 0) {
    const out = Buffer.alloc(8)
    out.writeUInt32LE(value.length, 0)
    return out
  }
  return value.length > size ? E.ERANGE : value
}

/** The NUL-terminated name at `at` (a view). */
export function cstring(b: Buffer, at: number): Buffer {
  const end = b.indexOf(0, at)
  return b.subarray(at, end < 0 ? b.length : end)
}
