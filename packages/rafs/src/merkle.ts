/** What a directory's digest covers of one child (see docs/format.md, "The merkle tree"). */
export interface EntryFields {
  name: Buffer
  mode: number
  uid: number
  gid: number
  nlink: number
  size: number
  mtimeSec: number
  mtimeNsec: number
  rdevMajor: number
  rdevMinor: number
  xattrs: ReadonlyArray<[Buffer, Buffer]>
  digest: Buffer
}

export function encodeEntry(e: EntryFields): Buffer {
  let xlen = 4
  for (const [n, v] of e.xattrs) xlen += 6 + n.length + v.length
  // Every byte is written below, so the pooled, unzeroed allocation is safe.
  const buf = Buffer.allocUnsafe(2 + e.name.length + 44 + xlen + e.digest.length)
  let o = buf.writeUInt16LE(e.name.length, 0)
  o += e.name.copy(buf, o)
  o = buf.writeUInt32LE(e.mode >>> 0, o)
  o = buf.writeUInt32LE(e.uid >>> 0, o)
  o = buf.writeUInt32LE(e.gid >>> 0, o)
  o = buf.writeUInt32LE(e.nlink >>> 0, o)
  o = writeU64(buf, e.size, o)
  o = writeI64(buf, e.mtimeSec, o)
  o = buf.writeUInt32LE(e.mtimeNsec >>> 0, o)
  o = buf.writeUInt32LE(e.rdevMajor >>> 0, o)
  o = buf.writeUInt32LE(e.rdevMinor >>> 0, o)
  o = buf.writeUInt32LE(e.xattrs.length, o)
  for (const [n, v] of e.xattrs) {
    o = buf.writeUInt16LE(n.length, o)
    o += n.copy(buf, o)
    o = buf.writeUInt32LE(v.length, o)
    o += v.copy(buf, o)
  }
  e.digest.copy(buf, o)
  return buf
}

export function writeU64(buf: Buffer, v: number, o: number): number {
  buf.writeUInt32LE(v % 0x100000000, o)
  buf.writeUInt32LE(Math.floor(v / 0x100000000), o + 4)
  return o + 8
}

/** Two's complement in two halves: no BigInt allocated per call (one per inode and per merkle entry). */
export function writeI64(buf: Buffer, v: number, o: number): number {
  const t = Math.trunc(v)
  const hi = Math.floor(t / 0x100000000)
  buf.writeUInt32LE(t - hi * 0x100000000, o)
  buf.writeInt32LE(hi, o + 4)
  return o + 8
}

export function readU64(buf: Buffer, o: number): number {
  const hi = buf.readUInt32LE(o + 4)
  if (hi >= 0x200000) return Number.NaN
  return hi * 0x100000000 + buf.readUInt32LE(o)
}

export function readI64(buf: Buffer, o: number): number {
  const hi = buf.readInt32LE(o + 4)
  if (hi >= 0x200000 || hi < -0x200000) return Number.NaN
  return hi * 0x100000000 + buf.readUInt32LE(o)
}
