import test from 'ava'
import {
  BootstrapReader,
  RafsError,
  bootstrapChecksum,
  checkStructure,
  decodeBlobFooter,
  decodeBlobToc,
  encodeBlobTrailer,
  encodeBootstrap,
  loadDigester,
  mergeLayers,
  readTree,
  validateBootstrap,
  BLOB_FOOTER_SIZE,
  type RafsTree
} from '../src/index.js'
import { sampleTree } from './helpers.js'

const sha256 = await loadDigester('sha256')

function reseal(buf: Buffer): Buffer {
  bootstrapChecksum(buf).copy(buf, 160)
  return buf
}

test('encode then open: lookups, listing, links, xattrs, prefetch', t => {
  const { bootstrap, rootDigest } = encodeBootstrap(sampleTree(), sha256)
  const r = BootstrapReader.open(bootstrap)
  validateBootstrap(r, sha256)
  t.true(r.sb.rootDigest.equals(rootDigest))
  t.deepEqual(
    [...r.children(r.root())].map(c => c.name.toString('latin1')),
    ['big', 'empty', 'etc', 'hardlink', 'link', 'null', 'n\xffm']
  )
  const big = r.lookup('/big')!
  const hard = r.lookup('hardlink')!
  t.is(big.ino, hard.ino)
  t.is(big.nlink, 2)
  t.is(r.lookup('etc')!.nlink, 2)
  t.is(r.root().nlink, 3)
  t.is(r.fileChunks(big).length, 3)
  t.true(r.fileChunks(r.lookup('etc/hosts')!)[0].digest.equals(r.fileChunks(big)[0].digest), 'a shared chunk is one chunk-table entry')
  t.is(r.sb.chunkCount, 6)
  t.is(r.readlink(r.lookup('link')!).toString(), 'etc/passwd')
  t.deepEqual(
    r.xattrs(r.lookup('etc/cap')!).map(([k]) => k.toString()),
    ['security.capability', 'user.a']
  )
  t.is(r.lookup('etc/nothing'), undefined)
  t.is(r.lookup('big/inside'), undefined)
  t.deepEqual(
    r.prefetch().map(i => r.pathOf(r.inode(i)).toString()),
    ['etc/passwd']
  )
  const n = r.lookup(Buffer.from([0x6e, 0xff, 0x6d]))!
  t.is(n.size, 1)
})

test('readTree gives back an equal tree (re-encoding is byte-identical)', t => {
  const a = encodeBootstrap(sampleTree(), sha256).bootstrap
  const tree = readTree(BootstrapReader.open(a))
  t.true(encodeBootstrap(tree, sha256).bootstrap.equals(a))
})

test('any metadata change moves the root digest', t => {
  const base = encodeBootstrap(sampleTree(), sha256).rootDigest
  const edits: Array<(tr: RafsTree) => void> = [
    tr => {
      tr.root.children!.get('etc')!.inode.children!.get('passwd')!.inode.mode ^= 0o001
    },
    tr => {
      tr.root.children!.get('etc')!.inode.uid = 99
    },
    tr => {
      tr.root.children!.get('big')!.inode.mtimeNsec = 6
    },
    tr => {
      tr.root.children!.get('link')!.inode.target = Buffer.from('etc/hosts')
    },
    tr => {
      tr.root.children!.get('etc')!.inode.children!.get('cap')!.inode.xattrs.set('user.a', Buffer.from('c'))
    },
    tr => {
      tr.root.children!.get('null')!.inode.rdevMinor = 5
    },
    tr => {
      tr.root.mode = (tr.root.mode & ~0o777) | 0o700
    },
    tr => {
      tr.root.children!.get('big')!.inode.chunks[2] = tr.root.children!.get('etc')!.inode.children!.get('passwd')!.inode.chunks[0]
    }
  ]
  for (const edit of edits) {
    const tr = sampleTree()
    edit(tr)
    t.false(encodeBootstrap(tr, sha256).rootDigest.equals(base))
  }
})

test('validate catches a tampered record even with a matching checksum', t => {
  const buf = encodeBootstrap(sampleTree(), sha256).bootstrap
  const r0 = BootstrapReader.open(buf)
  const rec = r0.lookup('etc/passwd')!
  const off = r0.sb.tables.inode.offset + rec.index * 128 + 44 // uid
  const bad = reseal(Buffer.from(buf))
  bad.writeUInt32LE(12345, off)
  reseal(bad)
  const r = BootstrapReader.open(bad)
  const err = t.throws(() => validateBootstrap(r, sha256), { instanceOf: RafsError })
  t.is(err?.code, 'ERR_RAFS_MERKLE')
  t.regex(err?.message ?? '', /digest of \/etc \(inode \d+\)/, "a child's metadata is covered by its parent's digest")
})

test('a cycle in child ranges is a typed error, not a hang', t => {
  const buf = Buffer.from(encodeBootstrap(sampleTree(), sha256).bootstrap)
  const r0 = BootstrapReader.open(buf)
  const etc = r0.lookup('etc')!
  buf.writeUInt32LE(0, r0.sb.tables.inode.offset + etc.index * 128 + 92) // etc's children start at the root
  reseal(buf)
  const r = BootstrapReader.open(buf)
  t.throws(() => checkStructure(r), { instanceOf: RafsError })
  t.throws(() => readTree(r), { instanceOf: RafsError })
})

test('open refuses bad magic, version, sizes and checksum with stable codes', t => {
  const good = encodeBootstrap(sampleTree(), sha256).bootstrap
  const cases: Array<[string, (b: Buffer) => Buffer, RafsError['code']]> = [
    [
      'magic',
      b => {
        b[0] = 0x58
        return b
      },
      'ERR_RAFS_BAD_MAGIC'
    ],
    [
      'version',
      b => {
        b.writeUInt32LE(9, 8)
        return b
      },
      'ERR_RAFS_UNSUPPORTED_VERSION'
    ],
    ['truncated', b => b.subarray(0, b.length - 1), 'ERR_RAFS_TRUNCATED'],
    ['tiny', b => b.subarray(0, 10), 'ERR_RAFS_TRUNCATED'],
    [
      'checksum',
      b => {
        b[b.length - 1] ^= 1
        return b
      },
      'ERR_RAFS_CHECKSUM'
    ],
    [
      'chunk size',
      b =>
        reseal(
          ((x: Buffer) => {
            x.writeUInt32LE(3000, 16)
            return x
          })(b)
        ),
      'ERR_RAFS_BAD_SUPERBLOCK'
    ],
    [
      'count',
      b =>
        reseal(
          ((x: Buffer) => {
            x.writeUInt32LE(999, 24)
            return x
          })(b)
        ),
      'ERR_RAFS_BAD_SUPERBLOCK'
    ]
  ]
  for (const [what, edit, code] of cases) {
    const err = t.throws(() => BootstrapReader.open(edit(Buffer.from(good))), { instanceOf: RafsError }, what)
    t.is(err?.code, code, what)
  }
})

test('blob trailer round trip; a damaged TOC is refused', t => {
  const toc = [
    { digest: Buffer.alloc(32, 1), flags: 1, compressedOffset: 0, compressedSize: 10, uncompressedOffset: 0, uncompressedSize: 20 }
  ]
  const trailer = encodeBlobTrailer(toc, 10, 'zstd', 'sha256')
  const size = 10 + trailer.length
  const footer = decodeBlobFooter(trailer.subarray(trailer.length - BLOB_FOOTER_SIZE), size)
  t.is(footer.chunkCount, 1)
  t.deepEqual(decodeBlobToc(trailer.subarray(0, footer.tocSize), footer), toc)
  const bad = Buffer.from(trailer)
  bad[3] ^= 1
  t.throws(() => decodeBlobToc(bad.subarray(0, footer.tocSize), footer), { instanceOf: RafsError, code: 'ERR_RAFS_CHECKSUM' } as never)
  t.throws(() => decodeBlobFooter(trailer.subarray(trailer.length - BLOB_FOOTER_SIZE), size + 1), { instanceOf: RafsError })
})

test('merge refuses layers with different chunk sizes', t => {
  const a = sampleTree()
  const b = sampleTree()
  b.chunkSize = 0x2000
  t.throws(() => mergeLayers([a, b]), { instanceOf: RafsError, message: /chunk size/ })
})

test('lookup reads O(depth x log n) records in a 100,000-file directory', t => {
  const tree = sampleTree()
  const dir = tree.root.children!.get('etc')!.inode
  for (let i = 0; i < 100_000; i++) {
    const name = Buffer.from(`f${i.toString().padStart(6, '0')}`)
    dir.children!.set(name.toString('latin1'), { name, inode: tree.root.children!.get('empty')!.inode })
  }
  const r = BootstrapReader.open(encodeBootstrap(tree, sha256).bootstrap)
  let reads = 0
  const orig = r.inode.bind(r)
  r.inode = (i: number) => {
    reads++
    return orig(i)
  }
  t.truthy(r.lookup('etc/f054321'))
  t.true(reads <= 2 * (1 + Math.ceil(Math.log2(100_010)) + 1) + 2, `read ${reads} records`)
})
