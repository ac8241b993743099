import test from 'ava'
import { BootstrapReader, RafsError, TABLE_PAGE, encodeBootstrap, loadDigester, newInode, S_IFREG, type InodeRecord } from '../src/index.js'
import { sampleTree } from './helpers.js'

const sha256 = await loadDigester('sha256')

/** The sample tree plus 600 files with long names: tables over many pages, names across page boundaries. */
function bigBootstrap(): Buffer {
  const tree = sampleTree()
  const etc = tree.root.children!.get('etc')!.inode
  const passwd = etc.children!.get('passwd')!.inode
  for (let i = 0; i < 600; i++) {
    const name = Buffer.from(`${'long-name-'.repeat(9)}${i.toString().padStart(4, '0')}`)
    const n = i % 2 === 0 ? passwd : newInode(S_IFREG | 0o600, { size: 0 })
    etc.children!.set(name.toString('latin1'), { name, inode: n })
  }
  return encodeBootstrap(tree, sha256).bootstrap
}

/** A file as `pageOut` reads it, counting the reads. */
function fileOf(buf: Buffer): { read: (pos: number, len: number) => Buffer; reads: () => number } {
  let n = 0
  return {
    read: (pos, len) => {
      n++
      return Buffer.from(buf.subarray(pos, pos + len))
    },
    reads: () => n
  }
}

function everything(r: BootstrapReader): unknown[] {
  const out: unknown[] = []
  for (let i = 0; i < r.inodeCount; i++) {
    const rec: InodeRecord = r.inode(i)
    out.push(
      rec,
      r.pathOf(rec).toString('latin1'),
      r.xattrs(rec),
      r.fileChunks(rec),
      (rec.mode & 0o170000) === 0o120000 ? r.readlink(rec) : null
    )
  }
  out.push(r.blobs(), r.prefetch(), r.lookup(`etc/${'long-name-'.repeat(9)}0421`)?.index, r.lookup('etc/missing'))
  return out
}

test('a paged-out reader answers exactly what the in-memory one does, names across pages included', t => {
  const buf = bigBootstrap()
  t.true(buf.length > 20 * TABLE_PAGE)
  const memory = BootstrapReader.open(buf)
  const paged = BootstrapReader.open(Buffer.from(buf))
  const file = fileOf(buf)
  paged.pageOut(file.read, { maxPages: 4 })
  t.deepEqual(everything(paged), everything(memory))
  t.true(file.reads() > 0)
  const e = t.throws(() => paged.buf, { instanceOf: RafsError })
  t.is(e?.code, 'ERR_RAFS_UNSUPPORTED')
})

test('pages are kept up to maxPages: reading the same records again reads no more of the file', t => {
  const buf = bigBootstrap()
  const r = BootstrapReader.open(buf)
  const file = fileOf(buf)
  r.pageOut(file.read, { maxPages: 8 })
  r.inode(0)
  r.inode(1)
  const after = file.reads()
  for (let k = 0; k < 100; k++) r.inode(k % 2)
  t.is(file.reads(), after)
  r.dropPages()
  r.inode(0)
  t.is(file.reads(), after + 1)
})

test('a page changed in the file after opening is refused with ERR_RAFS_CHECKSUM, never served', t => {
  const buf = bigBootstrap()
  const r = BootstrapReader.open(Buffer.from(buf))
  const changed = Buffer.from(buf)
  // Flip a byte in the inode table's third page (record 70's uid).
  const inodeTable = changed.readUInt32LE(48)
  const at = inodeTable + 70 * 128 + 44
  changed[at] ^= 1
  t.is(Math.floor((at - inodeTable) / TABLE_PAGE), 2)
  let closed = 0
  r.pageOut(fileOf(changed).read, { close: () => closed++ })
  t.is(r.inode(1).index, 1, 'other pages still read')
  const e = t.throws(() => r.inode(70), { instanceOf: RafsError })
  t.is(e?.code, 'ERR_RAFS_CHECKSUM')
  t.regex(e!.message, /page 2 of the inode table changed/)
  // A short read (a truncated file) is refused the same way.
  const short = BootstrapReader.open(Buffer.from(buf))
  short.pageOut((pos, len) => buf.subarray(pos, pos + len - 1))
  t.is(t.throws(() => short.inode(0), { instanceOf: RafsError })?.code, 'ERR_RAFS_CHECKSUM')
  r.close()
  r.close()
  t.is(closed, 1)
})
