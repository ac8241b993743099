import { NydusError, withContext } from '@nydusjs/errors'
import { decodeChunk, type BlobInfo, type ChunkRef, type Digester } from '@nydusjs/rafs'
import { LocalFsBackend, type BlobBackend } from '@nydusjs/storage/local'

/**
 * Verified chunks from blob files in a directory (storage's localfs reads) or
 * from any backend, through rafs's one chunk decoder.
 */
export class LocalBlobStore {
  private readonly backend: BlobBackend
  /** A backend passed in stays open: its owner closes it. */
  private readonly owned: boolean

  constructor(
    source: string | BlobBackend,
    private readonly blobs: readonly BlobInfo[],
    private readonly digester: Digester
  ) {
    this.backend = typeof source === 'string' ? new LocalFsBackend(source) : source
    this.owned = typeof source === 'string'
  }

  async readRaw(blob: BlobInfo, offset: number, size: number): Promise<Buffer> {
    return await this.backend.read(blob.id, offset, size)
  }

  /** The chunk's uncompressed bytes, checked against its digest. */
  async readChunk(c: ChunkRef): Promise<Buffer> {
    const blob = this.blobs[c.blobIndex]
    return verifyChunk(await this.readRaw(blob, c.compressedOffset, c.compressedSize), c, blob.id, this.digester)
  }

  async close(): Promise<void> {
    if (this.owned) await this.backend.close()
  }
}

/** A chunk's stored bytes decoded and verified; errors name the blob and keep their code. */
export function verifyChunk(raw: Buffer, c: ChunkRef, blobId: string, digester: Digester): Buffer {
  try {
    return decodeChunk(raw, c, digester)
  } catch (err) {
    throw err instanceof NydusError ? withContext(err, `blob ${blobId}`) : err
  }
}
