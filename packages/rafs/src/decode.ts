import { isDir, isLnk, isReg } from './constants.js'
import type { BootstrapReader, InodeRecord } from './reader.js'
import { newInode, type Inode, type RafsTree } from './tree.js'
import { checkStructure } from './validate.js'

/** Decodes the whole bootstrap into a mutable tree (for merge, unpack and tests). */
export function readTree(r: BootstrapReader): RafsTree {
  checkStructure(r)
  const byIno = new Map<number, Inode>()
  const nodes = new Array<Inode>(r.inodeCount)
  for (let i = 0; i < r.inodeCount; i++) {
    const rec = r.inode(i)
    let inode = isDir(rec.mode) ? undefined : byIno.get(rec.ino)
    if (inode === undefined) {
      inode = toInode(r, rec)
      byIno.set(rec.ino, inode)
    }
    nodes[i] = inode
    if (i > 0) nodes[rec.parent].children!.set(rec.name.toString('latin1'), { name: Buffer.from(rec.name), inode })
  }
  const sb = r.sb
  return {
    root: nodes[0],
    blobs: r.blobs(),
    chunkSize: sb.chunkSize,
    compressor: sb.compressor,
    digester: sb.digester,
    layer: sb.layer,
    prefetch: r.prefetch().map(i => r.pathOf(r.inode(i)))
  }
}

function toInode(r: BootstrapReader, rec: InodeRecord): Inode {
  const xattrs = new Map<string, Buffer>()
  for (const [n, v] of r.xattrs(rec)) xattrs.set(n.toString('utf8'), Buffer.from(v))
  return newInode(rec.mode, {
    uid: rec.uid,
    gid: rec.gid,
    mtimeSec: rec.mtimeSec,
    mtimeNsec: rec.mtimeNsec,
    rdevMajor: rec.rdevMajor,
    rdevMinor: rec.rdevMinor,
    size: isReg(rec.mode) ? rec.size : 0,
    xattrs,
    chunks: r.fileChunks(rec).map(c => ({ ...c, digest: Buffer.from(c.digest) })),
    target: isLnk(rec.mode) ? Buffer.from(r.readlink(rec)) : undefined
  })
}
