import { lstat, open, readdir, readlink, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { ConverterError } from '../errors.js'
import type { EntrySource, EntryType, LayerEntry } from '@nydusjs/tar'

/**
 * A directory as a layer, walked in name order. Node has no xattr API, so a
 * directory source carries no xattrs (convert a tar made with `tar --xattrs` to keep them).
 */
export class DirSource implements EntrySource {
  constructor(readonly where: string) {}

  async *entries(): AsyncGenerator<LayerEntry> {
    const links = new Map<string, Buffer>()
    const stack: Buffer[] = [Buffer.alloc(0)]
    while (stack.length > 0) {
      const rel = stack.pop()!
      const abs = rel.length === 0 ? this.where : join(this.where, rel.toString('latin1'))
      const names = await readdir(Buffer.from(abs, 'latin1'), { encoding: 'buffer' })
      names.sort(Buffer.compare)
      const dirs: Buffer[] = []
      for (const name of names) {
        const path = rel.length === 0 ? name : Buffer.concat([rel, Buffer.from('/'), name])
        const entry = await this.entry(path, links)
        if (entry === undefined) continue
        yield entry.entry
        await entry.close()
        if (entry.entry.type === 'dir') dirs.push(path)
      }
      for (let i = dirs.length - 1; i >= 0; i--) stack.push(dirs[i])
    }
  }

  private async entry(path: Buffer, links: Map<string, Buffer>): Promise<{ entry: LayerEntry; close: () => Promise<void> } | undefined> {
    const abs = Buffer.concat([Buffer.from(this.where + '/', 'latin1'), path])
    const st = await lstat(abs, { bigint: true })
    const type = typeOf(st.mode)
    if (type === undefined) return undefined
    const base: LayerEntry = {
      path,
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size: type === 'file' ? Number(st.size) : 0,
      mtimeSec: Number(st.mtimeNs / 1000000000n),
      mtimeNsec: Number(st.mtimeNs % 1000000000n),
      linkname: Buffer.alloc(0),
      devMajor: Number(((st.rdev >> 8n) & 0xfffn) | ((st.rdev >> 32n) & ~0xfffn)),
      devMinor: Number((st.rdev & 0xffn) | ((st.rdev >> 12n) & ~0xffn)),
      xattrs: new Map(),
      readInto: async () => {}
    }
    if (type === 'symlink') base.linkname = await readlink(abs, { encoding: 'buffer' })
    const key = `${st.dev}:${st.ino}`
    if (type === 'file' && st.nlink > 1n) {
      const first = links.get(key)
      if (first !== undefined) return { entry: { ...base, type: 'link', size: 0, linkname: first }, close: async () => {} }
      links.set(key, path)
    }
    if (type !== 'file') return { entry: base, close: async () => {} }
    let fh: FileHandle | undefined
    let pos = 0
    base.readInto = async (dst, off, n) => {
      fh ??= await open(abs, 'r')
      const { bytesRead } = await fh.read(dst, off, n, pos)
      if (bytesRead !== n) throw new ConverterError('ERR_TAR_TRUNCATED', `${abs.toString()} changed size while it was read`)
      pos += n
    }
    return {
      entry: base,
      close: async () => {
        await fh?.close()
      }
    }
  }
}

function typeOf(mode: bigint): EntryType | undefined {
  switch (Number(mode & 0o170000n)) {
    case 0o100000:
      return 'file'
    case 0o040000:
      return 'dir'
    case 0o120000:
      return 'symlink'
    case 0o020000:
      return 'char'
    case 0o060000:
      return 'block'
    case 0o010000:
      return 'fifo'
    default:
      return undefined
  }
}
