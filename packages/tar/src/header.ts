import { TarError } from './errors.js'
import type { EntryType, LayerEntry } from './entry.js'

export const BLOCK = 512

/** The records of a PAX extended header (or the global one). */
export interface Pax {
  records: Map<string, Buffer>
}

export function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false
  return true
}

export function verifyChecksum(h: Buffer, at: number, where: string): void {
  let unsigned = 0
  let signed = 0
  for (let i = 0; i < BLOCK; i++) {
    const v = i >= 148 && i < 156 ? 0x20 : h[i]
    unsigned += v
    signed += v > 127 ? v - 256 : v
  }
  const stored = parseOctal(h.subarray(148, 156))
  if (stored !== unsigned && stored !== signed) {
    throw new TarError(
      'ERR_TAR_CHECKSUM',
      `${where}: header checksum error at byte ${at} (stored ${Number.isNaN(stored) ? 'garbage' : stored}, computed ${unsigned})`
    )
  }
}

export function parseOctal(b: Buffer): number {
  let i = 0
  while (i < b.length && (b[i] === 0x20 || b[i] === 0)) i++
  let v = 0
  let digits = 0
  for (; i < b.length && b[i] >= 0x30 && b[i] <= 0x37; i++, digits++) v = v * 8 + b[i] - 0x30
  for (; i < b.length; i++) if (b[i] !== 0x20 && b[i] !== 0) return Number.NaN
  return digits === 0 ? 0 : v
}

/** Octal, or GNU base-256 when the high bit of the first byte is set. */
export function parseNumeric(b: Buffer, field: string, at: number, where: string): number {
  if ((b[0] & 0x80) !== 0) {
    const negative = (b[0] & 0x40) !== 0
    let v = 0
    for (let i = 0; i < b.length; i++) {
      const byte = i === 0 ? b[0] & 0x7f : b[i]
      v = v * 256 + (negative ? 255 - byte : byte)
    }
    if (negative) v = -(v + 1)
    if (!Number.isSafeInteger(v)) throw new TarError('ERR_TAR_BAD_HEADER', `${where}: ${field} of entry at byte ${at} is out of range`)
    return v
  }
  const v = parseOctal(b)
  if (Number.isNaN(v)) throw new TarError('ERR_TAR_BAD_HEADER', `${where}: ${field} of entry at byte ${at} is not a number`)
  return v
}

export function headerSize(h: Buffer, at: number, where: string): number {
  const v = parseNumeric(h.subarray(124, 136), 'size', at, where)
  if (v < 0) throw new TarError('ERR_TAR_BAD_HEADER', `${where}: entry at byte ${at} has a negative size`)
  return v
}

export function cstr(b: Buffer): Buffer {
  const z = b.indexOf(0)
  return Buffer.from(z === -1 ? b : b.subarray(0, z))
}

export function parsePax(body: Buffer, at: number, where: string, base: Pax | undefined): Pax {
  const records = new Map(base?.records ?? [])
  let o = 0
  while (o < body.length) {
    if (body[o] === 0) break
    const sp = body.indexOf(0x20, o)
    const len = sp === -1 ? Number.NaN : Number(body.subarray(o, sp).toString('latin1'))
    if (!Number.isSafeInteger(len) || len <= sp - o + 1 || o + len > body.length || body[o + len - 1] !== 0x0a) {
      throw new TarError('ERR_TAR_BAD_HEADER', `${where}: malformed PAX record in the extended header at byte ${at}`)
    }
    const rec = body.subarray(sp + 1, o + len - 1)
    const eq = rec.indexOf(0x3d)
    if (eq <= 0) throw new TarError('ERR_TAR_BAD_HEADER', `${where}: PAX record without a key in the extended header at byte ${at}`)
    const key = rec.subarray(0, eq).toString('utf8')
    const value = Buffer.from(rec.subarray(eq + 1))
    if (value.length === 0) records.delete(key)
    else records.set(key, value)
    o += len
  }
  return { records }
}

export function mergePax(global: Pax, local: Pax | undefined): Map<string, Buffer> {
  if (local === undefined) return global.records
  return new Map([...global.records, ...local.records])
}

export function paxNumber(v: Buffer, key: string, at: number, where: string): number {
  const s = v.toString('latin1')
  const n = Number(s)
  if (!/^-?\d+$/.test(s) || !Number.isSafeInteger(n))
    throw new TarError('ERR_TAR_BAD_HEADER', `${where}: PAX ${key} of entry at byte ${at} is not an integer: ${JSON.stringify(s)}`)
  return n
}

/** "1700000000.5" or "-1.25" to whole seconds (floor) and nanoseconds. */
export function paxTime(v: Buffer, at: number, where: string): [number, number] {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(v.toString('latin1'))
  if (m === null) throw new TarError('ERR_TAR_BAD_HEADER', `${where}: PAX mtime of entry at byte ${at} is malformed`)
  const whole = Number(m[2])
  const ns = Number(((m[3] ?? '') + '000000000').slice(0, 9))
  if (m[1] !== '-') return [whole, ns]
  return ns === 0 ? [-whole, 0] : [-whole - 1, 1e9 - ns]
}

export function makeEntry(
  h: Buffer,
  type: EntryType,
  headerSz: number,
  pax: Map<string, Buffer>,
  longName: Buffer | undefined,
  longLink: Buffer | undefined,
  at: number,
  where: string
): { entry: LayerEntry; records: Map<string, Buffer>; bodySize: number } {
  const ustar = h.subarray(257, 263).equals(Buffer.from('ustar\0', 'latin1'))
  let path = cstr(h.subarray(0, 100))
  if (ustar && h[345] !== 0) path = Buffer.concat([cstr(h.subarray(345, 500)), Buffer.from('/'), path])
  path = pax.get('path') ?? longName ?? path
  const linkname = pax.get('linkpath') ?? longLink ?? cstr(h.subarray(157, 257))
  const num = (o: number, len: number, f: string): number => parseNumeric(h.subarray(o, o + len), f, at, where)
  let mtimeSec = num(136, 12, 'mtime')
  let mtimeNsec = 0
  const pm = pax.get('mtime')
  if (pm !== undefined) [mtimeSec, mtimeNsec] = paxTime(pm, at, where)
  const pnum = (key: string, fallback: () => number): number => {
    const v = pax.get(key)
    return v === undefined ? fallback() : paxNumber(v, key, at, where)
  }
  const size = pnum('size', () => headerSz)
  const xattrs = new Map<string, Buffer>()
  for (const [k, v] of pax) {
    if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice(13), v)
    else if (k.startsWith('LIBARCHIVE.xattr.')) xattrs.set(decodeURIComponent(k.slice(17)), Buffer.from(v.toString('latin1'), 'base64'))
  }
  const isDev = type === 'char' || type === 'block'
  const entry: LayerEntry = {
    path,
    type,
    mode: num(100, 8, 'mode') & 0o7777,
    uid: pnum('uid', () => num(108, 8, 'uid')),
    gid: pnum('gid', () => num(116, 8, 'gid')),
    size: type === 'file' ? size : 0,
    mtimeSec,
    mtimeNsec,
    linkname: Buffer.from(linkname),
    devMajor: isDev ? pnum('SCHILY.devmajor', () => num(329, 8, 'devmajor')) : 0,
    devMinor: isDev ? pnum('SCHILY.devminor', () => num(337, 8, 'devminor')) : 0,
    xattrs,
    readInto: async () => {}
  }
  // Non-file entries may still carry a body (a GNU dumpdir, say); it is skipped.
  return { entry, records: pax, bodySize: size }
}

/** Entry type of a header's flag byte, or undefined for extended and unsupported ones. */
export const TYPES: Record<string, EntryType> = {
  0: 'file',
  '\0': 'file',
  7: 'file',
  1: 'link',
  2: 'symlink',
  3: 'char',
  4: 'block',
  5: 'dir',
  6: 'fifo'
}
