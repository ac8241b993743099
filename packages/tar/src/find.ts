import { TarError } from './errors.js'
import { BLOCK, cstr, headerSize, isZero, makeEntry, mergePax, parsePax, verifyChecksum, TYPES, type Pax } from './header.js'

/**
 * The body of regular file `path` (a view, no copy) in a tar held in memory,
 * or undefined; the same header parsing as the streaming reader, so a small
 * archive (a bootstrap layer) is read by the one codec too.
 */
export function findTarFile(tar: Buffer, path: string, where: string): Buffer | undefined {
  const want = path.replace(/^\.?\//, '')
  let global: Pax = { records: new Map() }
  let local: Pax | undefined
  let longName: Buffer | undefined
  for (let at = 0; at + BLOCK <= tar.length; ) {
    const h = tar.subarray(at, at + BLOCK)
    if (isZero(h)) return undefined
    verifyChecksum(h, at, where)
    const flag = String.fromCharCode(h[156] === 0 ? 0x30 : h[156])
    const type = TYPES[flag]
    const header =
      type === undefined ? undefined : makeEntry(h, type, headerSize(h, at, where), mergePax(global, local), longName, undefined, at, where)
    const size = header?.bodySize ?? headerSize(h, at, where)
    const body = at + BLOCK
    if (body + size > tar.length)
      throw new TarError('ERR_TAR_TRUNCATED', `${where}: tar entry at byte ${at} claims ${size} bytes past the end`)
    const data = tar.subarray(body, body + size)
    if (flag === 'x') local = parsePax(data, at, where, local)
    else if (flag === 'g') global = parsePax(data, at, where, global)
    else if (flag === 'L') longName = cstr(data)
    else {
      if (header?.entry.type === 'file' && header.entry.path.toString('utf8').replace(/^\.?\//, '') === want) return data
      local = undefined
      longName = undefined
    }
    at = body + Math.ceil(size / BLOCK) * BLOCK
  }
  return undefined
}
