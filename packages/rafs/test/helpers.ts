import { createHash } from 'node:crypto'
import { S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG, newInode, type ChunkRef, type Inode, type RafsTree } from '../src/index.js'

const CHUNK = 0x1000

/** A tree with every inode kind, hard links, xattrs and shared chunks; chunk locations are made up. */
export function sampleTree(): RafsTree {
  const blobId = createHash('sha256').update('blob').digest('hex')
  const chunks: ChunkRef[] = []
  const chunkFor = (content: string, size: number): ChunkRef => {
    const digest = createHash('sha256').update(content).digest()
    const hit = chunks.find(c => c.digest.equals(digest))
    if (hit !== undefined) return hit
    const c: ChunkRef = {
      digest,
      blobIndex: 0,
      flags: 0,
      compressedOffset: chunks.length * CHUNK,
      compressedSize: size,
      uncompressedOffset: chunks.length * CHUNK,
      uncompressedSize: size
    }
    chunks.push(c)
    return c
  }
  const file = (size: number, seed: string): Inode => {
    const n = newInode(S_IFREG | 0o644, { size, mtimeSec: 1_700_000_000, mtimeNsec: 5 })
    for (let off = 0, i = 0; off < size; off += CHUNK, i++) n.chunks.push(chunkFor(`${seed}-${i}`, Math.min(CHUNK, size - off)))
    return n
  }
  const root = newInode(S_IFDIR | 0o755)
  const etc = newInode(S_IFDIR | 0o750, { uid: 1, gid: 2 })
  const shared = file(CHUNK * 2 + 10, 'shared')
  const add = (dir: Inode, name: string | Buffer, inode: Inode): void => {
    const b = typeof name === 'string' ? Buffer.from(name) : name
    dir.children!.set(b.toString('latin1'), { name: b, inode })
  }
  add(root, 'etc', etc)
  add(etc, 'passwd', file(100, 'passwd'))
  add(etc, 'hosts', file(CHUNK, 'shared'))
  add(root, 'big', shared)
  add(root, 'hardlink', shared)
  add(root, 'empty', file(0, 'empty'))
  add(root, 'link', newInode(S_IFLNK | 0o777, { target: Buffer.from('etc/passwd') }))
  add(root, 'null', newInode(S_IFCHR | 0o666, { rdevMajor: 1, rdevMinor: 3 }))
  add(root, Buffer.from([0x6e, 0xff, 0x6d]), file(1, 'latin1'))
  const withX = file(5, 'x')
  withX.xattrs.set('security.capability', Buffer.from('0100000200200000', 'hex'))
  withX.xattrs.set('user.a', Buffer.from('b'))
  add(etc, 'cap', withX)
  const uncompressed = chunks.reduce((s, c) => s + c.uncompressedSize, 0)
  return {
    root,
    blobs: [
      {
        id: blobId,
        compressedSize: chunks.length * CHUNK,
        uncompressedSize: Math.max(uncompressed, chunks.length * CHUNK),
        chunkCount: chunks.length,
        compressor: 'none',
        digester: 'sha256'
      }
    ],
    chunkSize: CHUNK,
    compressor: 'none',
    digester: 'sha256',
    layer: true,
    prefetch: [Buffer.from('etc/passwd'), Buffer.from('missing')]
  }
}
