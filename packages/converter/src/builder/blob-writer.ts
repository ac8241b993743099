import { createHash, randomBytes } from 'node:crypto'
import { open, rm, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { encodeBlobTrailer, type CompressorName, type DigesterName, type TocEntry } from '@nydusjs/rafs'

const FLUSH_BYTES = 8 * 1024 * 1024

/**
 * Appends chunks to a temporary file, hashing as it goes; `commit` names the
 * blob by its sha256. `tap` sees every byte of the blob, in order, as it is
 * appended (a push that overlaps the build). `durable: false` skips the fsync
 * for a blob that only lives until it is pushed.
 */
export class BlobWriter {
  readonly toc: TocEntry[] = []
  private readonly hash = createHash('sha256')
  private pending: Buffer[] = []
  private pendingBytes = 0
  private written = 0
  private uncompressed = 0
  private fh?: FileHandle
  readonly tmpPath: string

  constructor(
    private readonly dir: string,
    private readonly compressor: CompressorName,
    private readonly digester: DigesterName,
    private readonly tap?: (bufs: Buffer[]) => void,
    private readonly durable = true
  ) {
    this.tmpPath = join(dir, `.blob-${randomBytes(6).toString('hex')}.tmp`)
  }

  get size(): number {
    return this.written + this.pendingBytes
  }
  get uncompressedSize(): number {
    return this.uncompressed
  }

  /** Records one chunk; returns its TOC entry (offsets are final). */
  async append(digest: Buffer, data: Buffer, flags: number, uncompressedSize: number): Promise<TocEntry> {
    const e: TocEntry = {
      digest,
      flags,
      compressedOffset: this.size,
      compressedSize: data.length,
      uncompressedOffset: this.uncompressed,
      uncompressedSize
    }
    this.toc.push(e)
    this.uncompressed += uncompressedSize
    this.hash.update(data)
    this.tap?.([data])
    this.pending.push(data)
    this.pendingBytes += data.length
    if (this.pendingBytes >= FLUSH_BYTES) await this.flush()
    return e
  }

  /** Writes the trailer and renames the file to its id; returns the id and size. */
  async commit(): Promise<{ id: string; size: number; path: string }> {
    const trailer = encodeBlobTrailer(this.toc, this.size, this.compressor, this.digester)
    this.hash.update(trailer)
    this.tap?.([trailer])
    this.pending.push(trailer)
    this.pendingBytes += trailer.length
    await this.flush()
    if (this.durable) await this.fh!.sync()
    await this.fh!.close()
    this.fh = undefined
    const id = this.hash.digest('hex')
    const path = join(this.dir, id)
    return { id, size: this.written, path }
  }

  async abort(): Promise<void> {
    await this.fh?.close().catch(() => {})
    this.fh = undefined
    await rm(this.tmpPath, { force: true })
  }

  private async flush(): Promise<void> {
    this.fh ??= await open(this.tmpPath, 'wx')
    const bufs = this.pending
    const n = this.pendingBytes
    this.pending = []
    this.pendingBytes = 0
    const { bytesWritten } = await this.fh.writev(bufs, this.written)
    if (bytesWritten < n) {
      // A short write is rare on a regular file; finish the rest the slow way.
      const rest = Buffer.concat(bufs, n).subarray(bytesWritten)
      for (let off = 0; off < rest.length; )
        off += (await this.fh.write(rest, off, rest.length - off, this.written + bytesWritten + off)).bytesWritten
    }
    this.written += n
  }
}
