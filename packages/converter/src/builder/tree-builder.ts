import { MAX_NAME, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, isDir, nameKey, newInode, type Inode } from '@nydusjs/rafs'
import { ConverterError } from '../errors.js'
import type { EntryType, LayerEntry } from '@nydusjs/tar'

const TYPE_BITS: Record<EntryType, number> = {
  file: S_IFREG,
  link: S_IFREG,
  symlink: S_IFLNK,
  dir: S_IFDIR,
  char: S_IFCHR,
  block: S_IFBLK,
  fifo: S_IFIFO
}

/** Strips leading `/` and `./`, folds `.` and `..`; refuses a path that climbs above the root. */
export function normalisePath(raw: Buffer, where: string): Buffer[] {
  const out: Buffer[] = []
  let start = 0
  for (let i = 0; i <= raw.length; i++) {
    if (i < raw.length && raw[i] !== 0x2f) continue
    const part = raw.subarray(start, i)
    start = i + 1
    if (part.length === 0 || (part.length === 1 && part[0] === 0x2e)) continue
    if (part.length === 2 && part[0] === 0x2e && part[1] === 0x2e) {
      if (out.length === 0)
        throw new ConverterError('ERR_TAR_BAD_PATH', `${where}: path ${JSON.stringify(raw.toString())} climbs above the root with '..'`)
      out.pop()
      continue
    }
    if (part.length > MAX_NAME)
      throw new ConverterError(
        'ERR_TAR_BAD_PATH',
        `${where}: path ${JSON.stringify(raw.toString())} has a component over ${MAX_NAME} bytes`
      )
    if (part.includes(0)) throw new ConverterError('ERR_TAR_BAD_PATH', `${where}: path ${JSON.stringify(raw.toString())} contains NUL`)
    out.push(part)
  }
  return out
}

/** Applies layer entries to a tree with the semantics of `tar -x`: later entries win, parents are implied. */
export class TreeBuilder {
  readonly root: Inode = newInode(S_IFDIR | 0o755)

  constructor(private readonly where: string) {}

  /** Adds one entry; returns the new inode of a regular file (whose chunks the caller fills). */
  add(e: LayerEntry): Inode | undefined {
    const parts = normalisePath(e.path, this.where)
    if (parts.length === 0) {
      if (e.type !== 'dir') throw new ConverterError('ERR_TAR_BAD_PATH', `${this.where}: the root entry is a ${e.type}, not a directory`)
      Object.assign(this.root, this.fields(e))
      return undefined
    }
    const parent = this.parentDir(parts, e.path)
    const name = Buffer.from(parts[parts.length - 1])
    const key = nameKey(name)
    const existing = parent.children!.get(key)
    if (e.type === 'link') {
      const target = this.resolveLink(e)
      parent.children!.set(key, { name, inode: target })
      return undefined
    }
    if (e.type === 'dir' && existing !== undefined && isDir(existing.inode.mode)) {
      Object.assign(existing.inode, this.fields(e))
      return undefined
    }
    const inode = newInode(TYPE_BITS[e.type] | e.mode, this.fields(e))
    if (e.type === 'symlink') inode.target = Buffer.from(e.linkname)
    if (e.type === 'file') inode.size = e.size
    parent.children!.set(key, { name, inode })
    return e.type === 'file' ? inode : undefined
  }

  private fields(e: LayerEntry): Partial<Inode> {
    return {
      mode: TYPE_BITS[e.type] | e.mode,
      uid: e.uid,
      gid: e.gid,
      mtimeSec: e.mtimeSec,
      mtimeNsec: e.mtimeNsec,
      rdevMajor: e.devMajor,
      rdevMinor: e.devMinor,
      xattrs: new Map(e.xattrs)
    }
  }

  private parentDir(parts: Buffer[], raw: Buffer): Inode {
    let cur = this.root
    for (let i = 0; i < parts.length - 1; i++) {
      const key = nameKey(parts[i])
      const next = cur.children!.get(key)
      if (next === undefined) {
        const dir = newInode(S_IFDIR | 0o755)
        cur.children!.set(key, { name: Buffer.from(parts[i]), inode: dir })
        cur = dir
      } else if (isDir(next.inode.mode)) {
        cur = next.inode
      } else {
        throw new ConverterError(
          'ERR_TAR_BAD_PATH',
          `${this.where}: path ${JSON.stringify(raw.toString())} goes through ${JSON.stringify(parts.slice(0, i + 1).join('/'))}, which is not a directory`
        )
      }
    }
    return cur
  }

  private resolveLink(e: LayerEntry): Inode {
    const parts = normalisePath(e.linkname, this.where)
    let cur: Inode | undefined = this.root
    for (const p of parts) cur = cur?.children?.get(nameKey(p))?.inode
    if (cur === undefined || parts.length === 0) {
      throw new ConverterError(
        'ERR_TAR_BAD_LINK',
        `${this.where}: hard link ${JSON.stringify(e.path.toString())} points at ${JSON.stringify(e.linkname.toString())}, which is not in the layer`
      )
    }
    if (isDir(cur.mode))
      throw new ConverterError('ERR_TAR_BAD_LINK', `${this.where}: hard link ${JSON.stringify(e.path.toString())} points at a directory`)
    return cur
  }
}
