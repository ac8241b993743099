import type { FileHandle } from 'node:fs/promises'
import { TarError } from './errors.js'
import type { EntrySource, LayerEntry } from './entry.js'
import { ByteReader } from './byte-reader.js'
import { BLOCK, cstr, headerSize, isZero, makeEntry, mergePax, parsePax, TYPES, verifyChecksum, type Pax } from './header.js'

const TYPE_NAMES: Record<string, string> = {
  S: 'GNU sparse file',
  V: 'GNU volume header',
  M: 'GNU multi-volume continuation',
  N: 'GNU old long name',
  D: 'GNU dump directory',
  A: 'Solaris ACL',
  E: 'Solaris extended attribute',
  X: 'POSIX.1-2001 (Sun) extended header'
}

/** A streaming reader of ustar, GNU and PAX tars that keeps every byte of names, link targets and xattrs. */
export class TarSource implements EntrySource {
  /** `size` is the file's size when `src` is a file handle, to catch truncation inside skipped bytes. */
  constructor(
    private readonly src: AsyncIterable<Uint8Array> | FileHandle,
    readonly where: string,
    private readonly size?: number
  ) {}

  async *entries(): AsyncGenerator<LayerEntry> {
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
          if (size > 64 * 1024 * 1024)
            throw new TarError('ERR_TAR_BAD_HEADER', `${this.where}: extended header at byte ${at} claims ${size} bytes`)
          const body = Buffer.from((await r.read(padded))!.subarray(0, size))
          if (flag === 'x') local = parsePax(body, at, this.where, local)
          else if (flag === 'g') global = parsePax(body, at, this.where, global)
          else if (flag === 'L') longName = cstr(body)
          else longLink = cstr(body)
          continue
        }
        const type = TYPES[flag]
        if (type === undefined) {
          throw new TarError(
            'ERR_TAR_UNSUPPORTED_TYPE',
            `${this.where}: entry at byte ${at} has unsupported type '${flag}'${TYPE_NAMES[flag] !== undefined ? ` (${TYPE_NAMES[flag]})` : ''}`
          )
        }
        const entry = makeEntry(h, type, size, mergePax(global, local), longName, longLink, at, this.where)
        local = undefined
        longName = undefined
        longLink = undefined
        if (entry.records.has('GNU.sparse.major') || entry.records.has('GNU.sparse.size')) {
          throw new TarError('ERR_TAR_UNSUPPORTED_TYPE', `${this.where}: entry at byte ${at} is a PAX sparse file, which is not supported`)
        }
        const bodySize = entry.bodySize
        let consumed = 0
        entry.entry.readInto = async (dst, off, n) => {
          if (consumed + n > bodySize) throw new TarError('ERR_TAR_BAD_HEADER', 'read past the end of an entry')
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
