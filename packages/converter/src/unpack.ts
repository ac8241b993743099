import { open, rename, rm } from 'node:fs/promises'
import {
  isDir,
  isLnk,
  isReg,
  S_IFMT,
  S_IFCHR,
  S_IFBLK,
  S_IFIFO,
  walkTree,
  xattrPairs,
  type Digester,
  type Inode,
  type RafsTree
} from '@nydusjs/rafs'
import type { BlobBackend } from '@nydusjs/storage/local'
import { LocalBlobStore } from './blob-store.js'
import { ConverterError } from './errors.js'
import { tmpName } from './fsutil.js'
import { END_OF_ARCHIVE, encodeHeader, padding, type TarHeader } from '@nydusjs/tar'
import type { EntryType } from '@nydusjs/tar'

const FLUSH = 4 * 1024 * 1024

/** Writes the tree back as a pax tar; every chunk is verified on the way out. Blobs from a directory or a backend. */
export async function unpackToTar(
  tree: RafsTree,
  blobDir: string | BlobBackend,
  digester: Digester,
  output: string
): Promise<{ entries: number; bytes: number }> {
  const store = new LocalBlobStore(blobDir, tree.blobs, digester)
  const tmp = tmpName(output)
  const fh = await open(tmp, 'wx')
  let pending: Buffer[] = []
  let pendingBytes = 0
  let written = 0
  const write = async (b: Buffer): Promise<void> => {
    pending.push(b)
    pendingBytes += b.length
    if (pendingBytes >= FLUSH) await flush()
  }
  const flush = async (): Promise<void> => {
    const data = Buffer.concat(pending, pendingBytes)
    pending = []
    pendingBytes = 0
    for (let off = 0; off < data.length; ) off += (await fh.write(data, off, data.length - off, written + off)).bytesWritten
    written += data.length
  }
  let entries = 0
  try {
    await write(encodeHeader(header(Buffer.from('./'), tree.root, 'dir')))
    const seen = new Map<Inode, Buffer>()
    for (const {
      path,
      dentry: { inode }
    } of walkTree(tree.root)) {
      entries++
      const first = isDir(inode.mode) ? undefined : seen.get(inode)
      if (first !== undefined) {
        await write(encodeHeader({ ...header(path, inode, 'link'), linkname: first, xattrs: [] }))
        continue
      }
      seen.set(inode, path)
      await write(encodeHeader(header(path, inode, typeOf(inode.mode))))
      if (!isReg(inode.mode)) continue
      for (const c of inode.chunks) await write(await store.readChunk(c))
      await write(padding(inode.size))
    }
    await write(END_OF_ARCHIVE)
    await flush()
    await fh.sync()
    await fh.close()
    await rename(tmp, output)
    return { entries, bytes: written }
  } catch (err) {
    await fh.close().catch(() => {})
    await rm(tmp, { force: true })
    throw err
  } finally {
    await store.close()
  }
}

function typeOf(mode: number): EntryType {
  if (isDir(mode)) return 'dir'
  if (isReg(mode)) return 'file'
  if (isLnk(mode)) return 'symlink'
  switch (mode & S_IFMT) {
    case S_IFCHR:
      return 'char'
    case S_IFBLK:
      return 'block'
    case S_IFIFO:
      return 'fifo'
    default:
      throw new ConverterError('ERR_BAD_ARGUMENT', `a socket (mode 0o${mode.toString(8)}) cannot be written to a tar`)
  }
}

function header(path: Buffer, n: Inode, type: EntryType): TarHeader {
  return {
    path,
    type,
    mode: n.mode & 0o7777,
    uid: n.uid,
    gid: n.gid,
    size: type === 'file' ? n.size : 0,
    mtimeSec: n.mtimeSec,
    mtimeNsec: n.mtimeNsec,
    linkname: n.target,
    devMajor: n.rdevMajor,
    devMinor: n.rdevMinor,
    xattrs: xattrPairs(n.xattrs)
  }
}
