import type { FileHandle } from 'node:fs/promises'
import { ConverterError } from '../errors.js'
import type { EntrySource, EntryType, LayerEntry } from '../sources/entry.js'
import { ByteReader } from './byte-reader.js'

const BLOCK = 512
const TYPES: Record<string, EntryType> = { 0: 'file', '\0': 'file', 7: 'file', 1: 'link', 2: 'symlink', 3: 'char', 4: 'block', 5: 'dir', 6: 'fifo' }
const TYPE_NAMES: Record<string, string> = {
  S: 'GNU sparse file', V: 'GNU volume header', M: 'GNU multi-volume continuation', N: 'GNU old long name', D: 'GNU dump directory', A: 'Solaris ACL', E: 'Solaris extended attribute', X: 'POSIX.1-2001 (Sun) extended header'
}

interface Pax {
  records: Map<string, Buffer>
}

/** A streaming reader of ustar, GNU and PAX tars that keeps every byte of names, link targets and xattrs. */
export class TarSource implements EntrySource {
  /** `size` is the file's size when `src` is a file handle, to catch truncation inside skipped bytes. */
  constructor (private readonly src: AsyncIterable<Uint8Array> | FileHandle, readonly where: string, private readonly size?: number) {}

  async * entries (): AsyncGenerator<LayerEntry> {
    const r = new ByteReader(this.src, this.where, this.size)
    let global: Pax = { records: new Map() }
    let local: Pax | undefined
    let longName: Buffer | undefined
    let longLink: Buffer | undefined
    try {
      for (;;) {
        const at = r.position
        const h = await r.read(BLOCK, true)
        if (h === undefined) return
        if (isZero(h)) return
        verifyChecksum(h, at, this.where)
        const flag = String.fromCharCode(h[156] === 0 ? 0x30 : h[156])
        const size = headerSize(h, at, this.where)
        const padded = Math.ceil(size / BLOCK) * BLOCK
        if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
          if (size > 64 * 1024 * 1024) throw new ConverterError('ERR_TAR_BAD_HEADER', `${this.where}: extended header at byte ${at} claims ${size} bytes`)
          const body = Buffer.from((await r.read(padded))!.subarray(0, size))
          if (flag === 'x') local = parsePax(body, at, this.where, local)
          else if (flag === 'g') global = parsePax(body, at, this.where, global)
          else if (flag === 'L') longName = cstr(body)
          else longLink = cstr(body)
          continue
        }
        const type = TYPES[flag]
        if (type === undefined) {
          throw new ConverterError('ERR_TAR_UNSUPPORTED_TYPE', `${this.where}: entry at byte ${at} has unsupported type '${flag}'${TYPE_NAMES[flag] !== undefined ? ` (${TYPE_NAMES[flag]})` : ''}`)
        }
        const entry = makeEntry(h, type, size, mergePax(global, local), longName, longLink, at, this.where)
        local = undefined
        longName = undefined
        longLink = undefined
        if (entry.records.has('GNU.sparse.major') || entry.records.has('GNU.sparse.size')) {
          throw new ConverterError('ERR_TAR_UNSUPPORTED_TYPE', `${this.where}: entry at byte ${at} is a PAX sparse file, which is not supported`)
        }
        const bodySize = entry.bodySize
        let consumed = 0
        entry.entry.readInto = async (dst, off, n) => {
          if (consumed + n > bodySize) throw new ConverterError('ERR_TAR_BAD_HEADER', 'read past the end of an entry')
          await r.readInto(dst, off, n)
          consumed += n
        }
        yield entry.entry
        await r.skip(bodySize - consumed + (Math.ceil(bodySize / BLOCK) * BLOCK - bodySize))
      }
    } finally {
      await r.close()
    }
  }
}

function isZero (b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false
  return true
}

function verifyChecksum (h: Buffer, at: number, where: string): void {
  let unsigned = 0
  let signed = 0
  for (let i = 0; i < BLOCK; i++) {
    const v = i >= 148 && i < 156 ? 0x20 : h[i]
    unsigned += v
    signed += v > 127 ? v - 256 : v
  }
  const stored = parseOctal(h.subarray(148, 156))
  if (stored !== unsigned && stored !== signed) {
    throw new ConverterError('ERR_TAR_CHECKSUM', `${where}: header checksum error at byte ${at} (stored ${Number.isNaN(stored) ? 'garbage' : stored}, computed ${unsigned})`)
  }
}

function parseOctal (b: Buffer): number {
  let i = 0
  while (i < b.length && (b[i] === 0x20 || b[i] === 0)) i++
  let v = 0
  let digits = 0
  for (; i < b.length && b[i] >= 0x30 && b[i] <= 0x37; i++, digits++) v = v * 8 + b[i] - 0x30
  for (; i < b.length; i++) if (b[i] !== 0x20 && b[i] !== 0) return Number.NaN
  return digits === 0 ? 0 : v
}

/** Octal, or GNU base-256 when the high bit of the first byte is set. */
function parseNumeric (b: Buffer, field: string, at: number, where: string): number {
  if ((b[0] & 0x80) !== 0) {
    const negative = (b[0] & 0x40) !== 0
    let v = 0
    for (let i = 0; i < b.length; i++) {
      const byte = i === 0 ? b[0] & 0x7f : b[i]
      v = v * 256 + (negative ? 255 - byte : byte)
    }
    if (negative) v = -(v + 1)
    if (!Number.isSafeInteger(v)) throw new ConverterError('ERR_TAR_BAD_HEADER', `${where}: ${field} of entry at byte ${at} is out of range`)
    return v
  }
  const v = parseOctal(b)
  if (Number.isNaN(v)) throw new ConverterError('ERR_TAR_BAD_HEADER', `${where}: ${field} of entry at byte ${at} is not a number`)
  return v
}

function headerSize (h: Buffer, at: number, where: string): number {
  const v = parseNumeric(h.subarray(124, 136), 'size', at, where)
  if (v < 0) throw new ConverterError('ERR_TAR_BAD_HEADER', `${where}: entry at byte ${at} has a negative size`)
  return v
}

function cstr (b: Buffer): Buffer {
  const z = b.indexOf(0)
  return Buffer.from(z === -1 ? b : b.subarray(0, z))
}

function parsePax (body: Buffer, at: number, where: string, base: Pax | undefined): Pax {
  const records = new Map(base?.records ?? [])
  let o = 0
  while (o < body.length) {
    if (body[o] === 0) break
    const sp = body.indexOf(0x20, o)
    const len = sp === -1 ? Number.NaN : Number(body.subarray(o, sp).toString('latin1'))
    if (!Number.isSafeInteger(len) || len <= sp - o + 1 || o + len > body.length || body[o + len - 1] !== 0x0a) {
      throw new ConverterError('ERR_TAR_BAD_HEADER', `${where}: malformed PAX record in the extended header at byte ${at}`)
    }
    const rec = body.subarray(sp + 1, o + len - 1)
    const eq = rec.indexOf(0x3d)
    if (eq <= 0) throw new ConverterError('ERR_TAR_BAD_HEADER', `${where}: PAX record without a key in the extended header at byte ${at}`)
    const key = rec.subarray(0, eq).toString('utf8')
    const value = Buffer.from(rec.subarray(eq + 1))
    if (value.length === 0) records.delete(key)
    else records.set(key, value)
    o += len
  }
  return { records }
}

function mergePax (global: Pax, local: Pax | undefined): Map<string, Buffer> {
  if (local === undefined) return global.records
  return new Map([...global.records, ...local.records])
}

function paxNumber (v: Buffer, key: string, at: number, where: string): number {
  const s = v.toString('latin1')
  const n = Number(s)
  if (!/^-?\d+$/.test(s) || !Number.isSafeInteger(n)) throw new ConverterError('ERR_TAR_BAD_HEADER', `${where}: PAX ${key} of entry at byte ${at} is not an integer: ${JSON.stringify(s)}`)
  return n
}

/** "1700000000.5" or "-1.25" to whole seconds (floor) and nanoseconds. */
function paxTime (v: Buffer, at: number, where: string): [number, number] {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(v.toString('latin1'))
  if (m === null) throw new ConverterError('ERR_TAR_BAD_HEADER', `${where}: PAX mtime of entry at byte ${at} is malformed`)
  const whole = Number(m[2])
  const ns = Number(((m[3] ?? '') + '000000000').slice(0, 9))
  if (m[1] !== '-') return [whole, ns]
  return ns === 0 ? [-whole, 0] : [-whole - 1, 1e9 - ns]
}

function makeEntry (h: Buffer, type: EntryType, headerSz: number, pax: Map<string, Buffer>, longName: Buffer | undefined, longLink: Buffer | undefined, at: number, where: string): { entry: LayerEntry, records: Map<string, Buffer>, bodySize: number } {
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
