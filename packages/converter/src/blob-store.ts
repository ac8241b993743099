import { open, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { RafsError, decompressChunk, type BlobInfo, type ChunkRef, type Digester } from '@nydusjs/rafs'
import { ConverterError } from './errors.js'

/** Reads chunks from blob files in a directory with positional reads, and verifies every one. */
export class LocalBlobStore {
  private readonly handles = new Map<string, Promise<FileHandle>>()

  constructor (private readonly dir: string, private readonly blobs: readonly BlobInfo[], private readonly digester: Digester) {}

  async handle (blob: BlobInfo): Promise<FileHandle> {
    let h = this.handles.get(blob.id)
    if (h === undefined) {
      h = open(join(this.dir, blob.id), 'r').catch((err: NodeJS.ErrnoException) => {
        throw new ConverterError('ERR_BLOB_MISSING', `blob ${blob.id} ${err.code === 'ENOENT' ? 'is not' : 'cannot be opened'} in ${this.dir}${err.code === 'ENOENT' ? '' : `: ${err.message}`}`)
      })
      this.handles.set(blob.id, h)
    }
    return await h
  }

  async readRaw (blob: BlobInfo, offset: number, size: number): Promise<Buffer> {
    const fh = await this.handle(blob)
    const buf = Buffer.allocUnsafe(size)
    let got = 0
    while (got < size) {
      const { bytesRead } = await fh.read(buf, got, size - got, offset + got)
      if (bytesRead === 0) throw new ConverterError('ERR_BLOB_CORRUPT', `blob ${blob.id} ends before byte ${offset + size}`)
      got += bytesRead
    }
    return buf
  }

  /** The chunk's uncompressed bytes, checked against its digest. */
  async readChunk (c: ChunkRef): Promise<Buffer> {
    const blob = this.blobs[c.blobIndex]
    return verifyChunk(await this.readRaw(blob, c.compressedOffset, c.compressedSize), c, blob.id, this.digester)
  }

  async close (): Promise<void> {
    for (const h of this.handles.values()) await h.then(async fh => await fh.close(), () => {})
    this.handles.clear()
  }
}

/** A chunk's raw bytes decompressed and checked against its digest. */
export function verifyChunk (raw: Buffer, c: ChunkRef, blobId: string, digester: Digester): Buffer {
  let data: Buffer
  try {
    data = decompressChunk(raw, c.flags, c.uncompressedSize)
  } catch (err) {
    if (err instanceof RafsError) throw new ConverterError('ERR_BLOB_CORRUPT', `blob ${blobId}, chunk at ${c.compressedOffset}: ${err.message}`)
    throw err
  }
  if (!digester.digest(data).equals(c.digest)) {
    throw new ConverterError('ERR_BLOB_CORRUPT', `blob ${blobId}, chunk at ${c.compressedOffset}: content does not match digest ${c.digest.toString('hex')}`)
  }
  return data
}
