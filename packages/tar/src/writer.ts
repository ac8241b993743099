import type { EntryType, LayerEntry } from './entry.js'

const BLOCK = 512
const FLAGS: Record<EntryType, string> = { file: '0', link: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6' }
const MAX_OCTAL_8 = 0o7777777
const MAX_OCTAL_12 = 0o77777777777

/** What the writer needs of an entry; xattrs as sorted (name, value) pairs. */
export type TarHeader = Pick<LayerEntry, 'path' | 'type' | 'mode' | 'uid' | 'gid' | 'size' | 'mtimeSec' | 'mtimeNsec'> &
  Partial<Pick<LayerEntry, 'linkname' | 'devMajor' | 'devMinor'>> & { xattrs?: ReadonlyArray<[Buffer, Buffer]> }

/** Encodes entries as POSIX pax tars, the format GNU tar extracts losslessly (binary xattrs, nanosecond mtimes). */
export function encodeHeader(h: TarHeader): Buffer {
  const pax: Array<[string, Buffer]> = []
  const name = h.type === 'dir' && h.path[h.path.length - 1] !== 0x2f ? Buffer.concat([h.path, Buffer.from('/')]) : h.path
  const split = splitName(name)
  const binary = !isUtf8(name) || (h.linkname !== undefined && !isUtf8(h.linkname))
  if (split === undefined) pax.push(['path', name])
  const link = h.linkname ?? Buffer.alloc(0)
  if (link.length > 100) pax.push(['linkpath', link])
  if (h.size > MAX_OCTAL_12) pax.push(['size', Buffer.from(String(h.size))])
  if (h.uid > MAX_OCTAL_8) pax.push(['uid', Buffer.from(String(h.uid))])
  if (h.gid > MAX_OCTAL_8) pax.push(['gid', Buffer.from(String(h.gid))])
  if (h.mtimeNsec !== 0 || h.mtimeSec < 0 || h.mtimeSec > MAX_OCTAL_12)
    pax.push(['mtime', Buffer.from(formatTime(h.mtimeSec, h.mtimeNsec))])
  if ((h.devMajor ?? 0) > MAX_OCTAL_8) pax.push(['SCHILY.devmajor', Buffer.from(String(h.devMajor))])
  if ((h.devMinor ?? 0) > MAX_OCTAL_8) pax.push(['SCHILY.devminor', Buffer.from(String(h.devMinor))])
  for (const [k, v] of h.xattrs ?? []) pax.push([`SCHILY.xattr.${k.toString('utf8')}`, v])
  if (binary && pax.some(([k]) => k === 'path' || k === 'linkpath')) pax.unshift(['hdrcharset', Buffer.from('BINARY')])
  const main = ustar({ ...h, name: split ?? ['', name.subarray(0, 100)], link: link.subarray(0, 100) })
  if (pax.length === 0) return main
  const body = Buffer.concat(pax.map(([k, v]) => paxRecord(k, v)))
  const xh = ustar(
    { ...h, type: 'file', size: body.length, mtimeNsec: 0, name: ['', Buffer.from('PaxHeaders/entry')], link: Buffer.alloc(0) },
    'x'
  )
  return Buffer.concat([xh, body, padding(body.length), main])
}

export function padding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK)
}

export const END_OF_ARCHIVE = Buffer.alloc(BLOCK * 2)

function ustar(h: TarHeader & { name: [string | Buffer, Buffer]; link: Buffer }, flag = FLAGS[h.type]): Buffer {
  const b = Buffer.alloc(BLOCK)
  h.name[1].copy(b, 0)
  octal(b, 100, 8, h.mode & 0o7777)
  octal(b, 108, 8, Math.min(h.uid, MAX_OCTAL_8))
  octal(b, 116, 8, Math.min(h.gid, MAX_OCTAL_8))
  octal(b, 124, 12, h.type === 'file' ? Math.min(h.size, MAX_OCTAL_12) : 0)
  octal(b, 136, 12, Math.max(0, Math.min(h.mtimeSec, MAX_OCTAL_12)))
  b.write(flag, 156, 'latin1')
  h.link.copy(b, 157)
  b.write('ustar\x0000', 257, 'latin1')
  octal(b, 329, 8, Math.min(h.devMajor ?? 0, MAX_OCTAL_8))
  octal(b, 337, 8, Math.min(h.devMinor ?? 0, MAX_OCTAL_8))
  if (typeof h.name[0] !== 'string') h.name[0].copy(b, 345)
  b.fill(0x20, 148, 156)
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += b[i]
  octal(b, 148, 7, sum)
  return b
}

function octal(b: Buffer, off: number, len: number, v: number): void {
  b.write(v.toString(8).padStart(len - 1, '0'), off, 'latin1')
  b[off + len - 1] = 0
}

/** The ustar name/prefix split, or undefined when the name needs a pax path. */
function splitName(name: Buffer): [Buffer, Buffer] | undefined {
  if (name.length <= 100) return [Buffer.alloc(0), name]
  for (let i = name.length - 1; i > 0; i--) {
    if (name[i] !== 0x2f) continue
    if (name.length - i - 1 > 100) return undefined
    if (i <= 155 && name.length - i - 1 > 0) return [name.subarray(0, i), name.subarray(i + 1)]
  }
  return undefined
}

function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.byteLength(key) + value.length + 3
  let len = rest + String(rest).length
  if (String(len).length !== String(rest).length) len = rest + String(len).length
  return Buffer.concat([Buffer.from(`${len} ${key}=`), value, Buffer.from('\n')])
}

function formatTime(sec: number, nsec: number): string {
  if (sec >= 0 || nsec === 0) return nsec === 0 ? String(sec) : `${sec}.${String(nsec).padStart(9, '0')}`
  return `-${-sec - 1}.${String(1e9 - nsec).padStart(9, '0')}`
}

function isUtf8(b: Buffer): boolean {
  return Buffer.from(b.toString('utf8'), 'utf8').equals(b)
}
