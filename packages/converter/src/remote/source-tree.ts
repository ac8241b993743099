import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, isReg, walkTree, type Digester, type RafsTree } from '@nydusjs/rafs'
import type { EntrySource, EntryType, LayerEntry } from '@nydusjs/tar'
import { normalisePath } from '../builder/tree-builder.js'

/** What `tar -x` of the layers in order (whiteouts applied) leaves at one path. */
export interface Expected {
  type: number
  perm: number
  uid: number
  gid: number
  size: number
  target?: string
  rdev?: string
  xattrs: Map<string, Buffer>
  /** Digests of the content cut at the image's chunk size: equal lists mean equal content. */
  chunks: string[]
  implicit?: boolean
}

const TYPES: Record<EntryType, number> = {
  file: S_IFREG,
  link: S_IFREG,
  symlink: S_IFLNK,
  dir: S_IFDIR,
  char: S_IFCHR,
  block: S_IFBLK,
  fifo: S_IFIFO
}

/**
 * An independent reading of the source: entries applied to a path map, with
 * overlayfs whiteouts and opaque directories, content cut into chunks and hashed.
 */
export class SourceTree {
  readonly paths = new Map<string, Expected>([
    ['', { type: S_IFDIR, perm: 0o755, uid: 0, gid: 0, size: 0, xattrs: new Map(), chunks: [], implicit: true }]
  ])

  constructor(
    private readonly chunkSize: number,
    private readonly digester: Digester
  ) {}

  async applyLayer(source: EntrySource): Promise<void> {
    const thisLayer = new Set<string>()
    for await (const e of source.entries()) {
      const parts = normalisePath(e.path, source.where).map(p => p.toString('latin1'))
      const name = parts.at(-1) ?? ''
      const dir = parts.slice(0, -1).join('/')
      if (name === '.wh..wh..opq') {
        this.remove(dir, false, thisLayer)
        continue
      }
      if (name.startsWith('.wh.')) {
        this.remove(join(dir, name.slice(4)), true, thisLayer)
        continue
      }
      const path = parts.join('/')
      this.implyParents(parts.slice(0, -1))
      const old = this.paths.get(path)
      if (old !== undefined && !(old.type === S_IFDIR && e.type === 'dir')) this.remove(path, true, new Set())
      this.paths.set(path, await this.record(e, source.where))
      thisLayer.add(path)
    }
  }

  private async record(e: LayerEntry, where: string): Promise<Expected> {
    if (e.type === 'link') {
      const t = this.paths.get(
        normalisePath(e.linkname, where)
          .map(p => p.toString('latin1'))
          .join('/')
      )
      if (t !== undefined) return { ...t, xattrs: new Map(t.xattrs) }
    }
    const chunks: string[] = []
    if (e.type === 'file') {
      const buf = Buffer.allocUnsafe(Math.min(this.chunkSize, Math.max(1, e.size)))
      for (let off = 0; off < e.size; off += this.chunkSize) {
        const n = Math.min(this.chunkSize, e.size - off)
        await e.readInto(buf, 0, n)
        chunks.push(this.digester.digest(buf.subarray(0, n)).toString('hex'))
      }
    }
    const dev = e.type === 'char' || e.type === 'block'
    return {
      type: TYPES[e.type],
      perm: e.mode & 0o7777,
      uid: e.uid,
      gid: e.gid,
      size: e.type === 'file' ? e.size : 0,
      target: e.type === 'symlink' ? e.linkname.toString('latin1') : undefined,
      rdev: dev ? `${e.devMajor}:${e.devMinor}` : undefined,
      xattrs: e.xattrs,
      chunks
    }
  }

  private implyParents(parts: string[]): void {
    for (let i = 1; i <= parts.length; i++) {
      const p = parts.slice(0, i).join('/')
      if (!this.paths.has(p))
        this.paths.set(p, { type: S_IFDIR, perm: 0o755, uid: 0, gid: 0, size: 0, xattrs: new Map(), chunks: [], implicit: true })
    }
  }

  /** Removes `path`'s descendants (and itself when `self`) that came from lower layers. */
  private remove(path: string, self: boolean, keep: Set<string>): void {
    const prefix = path === '' ? '' : path + '/'
    for (const k of [...this.paths.keys()]) {
      if (keep.has(k)) continue
      if ((self && k === path) || (k !== path && k.startsWith(prefix) && k !== '')) this.paths.delete(k)
    }
  }
}

/** Every difference between the source's paths and the converted tree, as one line each. */
export function compareTrees(want: SourceTree, tree: RafsTree): string[] {
  const diffs: string[] = []
  const got = new Map<string, Expected>()
  got.set('', expectedOf(tree.root))
  for (const { path, dentry } of walkTree(tree.root)) got.set(path.toString('latin1'), expectedOf(dentry.inode))
  for (const [p, w] of want.paths) {
    const g = got.get(p)
    const where = `/${p}`
    if (g === undefined) {
      diffs.push(`${where}: missing from the converted image`)
      continue
    }
    if (g.type !== w.type) {
      diffs.push(`${where}: type ${typeName(g.type)}, the source has ${typeName(w.type)}`)
      continue
    }
    if (w.implicit === true) continue
    if (g.perm !== w.perm) diffs.push(`${where}: mode ${g.perm.toString(8)}, the source has ${w.perm.toString(8)}`)
    if (g.uid !== w.uid || g.gid !== w.gid) diffs.push(`${where}: owner ${g.uid}:${g.gid}, the source has ${w.uid}:${w.gid}`)
    if (g.size !== w.size) diffs.push(`${where}: size ${g.size}, the source has ${w.size}`)
    if (g.target !== w.target) diffs.push(`${where}: link target ${JSON.stringify(g.target)}, the source has ${JSON.stringify(w.target)}`)
    if (g.rdev !== w.rdev) diffs.push(`${where}: device ${g.rdev}, the source has ${w.rdev}`)
    if (g.chunks.join() !== w.chunks.join()) diffs.push(`${where}: content differs from the source`)
    const names = new Set([...g.xattrs.keys(), ...w.xattrs.keys()])
    for (const n of names) {
      const a = g.xattrs.get(n)
      const b = w.xattrs.get(n)
      if (a === undefined || b === undefined || !a.equals(b))
        diffs.push(
          `${where}: xattr ${n} ${a === undefined ? 'missing' : b === undefined ? 'not in the source' : 'differs from the source'}`
        )
    }
  }
  for (const p of got.keys()) if (!want.paths.has(p)) diffs.push(`/${p}: in the converted image, not in the source`)
  return diffs
}

function expectedOf(i: RafsTree['root']): Expected {
  const type = i.mode & S_IFMT
  const dev = type === S_IFCHR || type === S_IFBLK
  return {
    type,
    perm: i.mode & 0o7777,
    uid: i.uid,
    gid: i.gid,
    size: isReg(i.mode) ? i.size : 0,
    target: type === S_IFLNK ? i.target?.toString('latin1') : undefined,
    rdev: dev ? `${i.rdevMajor}:${i.rdevMinor}` : undefined,
    xattrs: i.xattrs,
    chunks: isReg(i.mode) ? i.chunks.map(c => c.digest.toString('hex')) : []
  }
}

const join = (dir: string, name: string): string => (dir === '' ? name : `${dir}/${name}`)
const typeName = (t: number): string =>
  ({
    [S_IFREG]: 'file',
    [S_IFDIR]: 'directory',
    [S_IFLNK]: 'symlink',
    [S_IFCHR]: 'char device',
    [S_IFBLK]: 'block device',
    [S_IFIFO]: 'fifo'
  })[t] ?? `type ${t.toString(8)}`
