import {
  CHUNK_FLAG_COMPRESSED,
  checkChunkDigest,
  compressChunk,
  decodeChunk,
  decompressChunk,
  decompressChunkInto,
  type ChunkRef,
  type Digester
} from '@nydusjs/rafs/read'
import { startsAt, type BufferPool } from './buffer-pool.js'
import { type OffloadCount, VerifyWorker } from './verify-worker.js'

/**
 * Decompression and verification of chunks into pooled buffers: large
 * compressed chunks on VerifyWorker's thread (the JS thread goes on serving
 * FUSE), the rest here, both with rafs's one decoder and digest check.
 */
export class ChunkDecoder {
  private readonly verifier?: VerifyWorker
  /** Chunks of this decoder's the thread handled (the thread serves every mount of the process). */
  private readonly onThread: OffloadCount = { n: 0 }

  constructor(
    private readonly pool: BufferPool,
    private readonly digester: Digester,
    readonly validate: boolean,
    verifyThread = true
  ) {
    if (validate && verifyThread) this.verifier = VerifyWorker.shared(digester)
  }

  /** Chunks the verify thread decoded or hashed. */
  get offloaded(): number {
    return this.onThread.n
  }

  async digest(data: Buffer): Promise<Buffer> {
    return await (this.verifier?.digest(data, this.onThread) ?? this.digester.digestAsync(data))
  }

  /** Decompressed and verified on this thread; throws on a mismatch, its buffer back in the pool. */
  decodeHere(c: ChunkRef, piece: Buffer): Buffer {
    if (!this.validate) return this.unpack(c, piece)
    const compressed = (c.flags & CHUNK_FLAG_COMPRESSED) !== 0
    const dst = compressed ? this.pool.take(c.uncompressedSize) : undefined
    try {
      const out = decodeChunk(piece, c, this.digester, dst)
      // Decompressed into a pooled block: never copied (a slab's block pins only its slab, by design).
      return dst !== undefined && startsAt(out, dst) ? out : this.shrink(out)
    } catch (err) {
      if (dst !== undefined) this.pool.give(dst)
      throw err
    }
  }

  /**
   * Decompressed and verified; throws on a mismatch with the buffers it took
   * back in the pool (never `piece`'s: a chain may still be filling it).
   */
  async decode(c: ChunkRef, piece: Buffer): Promise<Buffer> {
    let data: Buffer | undefined
    let dst: Buffer | undefined
    try {
      if (this.verifier !== undefined && (c.flags & CHUNK_FLAG_COMPRESSED) !== 0) {
        dst = this.pool.take(c.uncompressedSize)
        const decoded = await this.verifier.decode(piece, c.flags, c.uncompressedSize, dst, this.onThread)
        data = decoded.data
        checkChunkDigest(decoded.digest, c)
      } else {
        data = this.unpack(c, piece)
        if (this.validate) checkChunkDigest(await this.digest(data), c)
      }
      return data
    } catch (err) {
      const spent = data ?? dst
      if (spent !== undefined && !startsAt(spent, piece)) this.pool.give(spent)
      throw err
    }
  }

  /** Decodes and hashes a small made-up chunk once, so the first real read does not pay for these paths' first call. */
  warmUp(): void {
    const sample = compressChunk(Buffer.alloc(16 * 1024, 1), 'zstd')
    const dst = this.pool.take(16 * 1024)
    this.digester.digest(decompressChunkInto(sample.data, sample.flags, 16 * 1024, dst))
    this.pool.give(dst)
  }

  async close(): Promise<void> {
    await this.verifier?.release()
  }

  /** A raw chunk is a view of its request buffer: copied out when it would pin more than twice its size. */
  private shrink(data: Buffer): Buffer {
    return this.pool.pins(data) > data.length * 2 ? Buffer.from(data) : data
  }

  /** Decompressed (into a pooled buffer) and, stored raw, copied out of a larger request buffer. */
  private unpack(c: ChunkRef, piece: Buffer): Buffer {
    if ((c.flags & CHUNK_FLAG_COMPRESSED) === 0) return this.shrink(decompressChunk(piece, c.flags, c.uncompressedSize))
    const dst = this.pool.take(c.uncompressedSize)
    try {
      return decompressChunkInto(piece, c.flags, c.uncompressedSize, dst)
    } catch (err) {
      this.pool.give(dst)
      throw err
    }
  }
}
