import type { FileHandle } from 'node:fs/promises'
import { TarError } from './errors.js'

const FILL = 1024 * 1024
const DIRECT = 64 * 1024

/**
 * Pull-based reads of exact byte counts, from an async stream of buffers or
 * straight from a file (then large reads land in the caller's buffer with no copy).
 */
export class ByteReader {
  private readonly it?: AsyncIterator<Uint8Array>
  private readonly file?: FileHandle
  private filePos = 0
  private head: Buffer = Buffer.alloc(0)
  /** Reused for every fill: callers copy what they keep, so a fill never overwrites live bytes. */
  private fillBuf?: Buffer
  private ended = false
  position = 0

  constructor(
    src: AsyncIterable<Uint8Array> | FileHandle,
    private readonly what: string,
    private readonly fileSize = Infinity
  ) {
    if (Symbol.asyncIterator in src) this.it = src[Symbol.asyncIterator]()
    else this.file = src
  }

  /** Fills `dst[off, off+n)`; throws ERR_TAR_TRUNCATED when the input ends first. */
  async readInto(dst: Uint8Array, off: number, n: number): Promise<void> {
    while (n > 0) {
      if (this.head.length === 0 && this.file !== undefined && n >= DIRECT) {
        const { bytesRead } = await this.file.read(dst, off, n, this.filePos)
        if (bytesRead === 0) this.truncated(n)
        this.filePos += bytesRead
        this.position += bytesRead
        off += bytesRead
        n -= bytesRead
        continue
      }
      if (this.head.length === 0 && !(await this.fill())) this.truncated(n)
      const take = Math.min(n, this.head.length)
      dst.set(this.head.subarray(0, take), off)
      this.head = this.head.subarray(take)
      off += take
      n -= take
      this.position += take
    }
  }

  /** Exactly n bytes, valid until the next call; no copy when they sit in one buffer already. Returns undefined at a clean end. */
  async read(n: number, allowEnd = false): Promise<Buffer | undefined> {
    if (this.head.length === 0 && !(await this.fill())) {
      if (allowEnd) return undefined
      this.truncated(n)
    }
    if (this.head.length >= n) {
      const out = this.head.subarray(0, n)
      this.head = this.head.subarray(n)
      this.position += n
      return out
    }
    const out = Buffer.allocUnsafe(n)
    await this.readInto(out, 0, n)
    return out
  }

  async skip(n: number): Promise<void> {
    const inHead = Math.min(n, this.head.length)
    this.head = this.head.subarray(inHead)
    this.position += inHead
    n -= inHead
    if (n > 0 && this.file !== undefined) {
      if (this.filePos + n > this.fileSize) this.truncated(this.filePos + n - this.fileSize)
      this.filePos += n
      this.position += n
      return
    }
    while (n > 0) {
      if (!(await this.fill())) this.truncated(n)
      const take = Math.min(n, this.head.length)
      this.head = this.head.subarray(take)
      n -= take
      this.position += take
    }
  }

  /** Lets the source release its resources when we stop early. */
  async close(): Promise<void> {
    if (!this.ended) await this.it?.return?.()
    this.ended = true
    await this.file?.close()
  }

  private async fill(): Promise<boolean> {
    if (this.file !== undefined) {
      if (this.ended) return false
      const buf = (this.fillBuf ??= Buffer.allocUnsafeSlow(FILL))
      const { bytesRead } = await this.file.read(buf, 0, FILL, this.filePos)
      this.filePos += bytesRead
      if (bytesRead === 0) {
        this.ended = true
        return false
      }
      this.head = buf.subarray(0, bytesRead)
      return true
    }
    while (!this.ended) {
      const r = await this.it!.next()
      if (r.done === true) {
        this.ended = true
        return false
      }
      if (r.value.length > 0) {
        this.head = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength)
        return true
      }
    }
    return false
  }

  private truncated(n: number): never {
    throw new TarError('ERR_TAR_TRUNCATED', `${this.what} is truncated at byte ${this.position} (${n} more bytes expected)`)
  }
}
