import { ConverterError } from '../errors.js'

/** Pull-based reads of exact byte counts from an async stream of buffers. */
export class ByteReader {
  private readonly it: AsyncIterator<Uint8Array>
  private head: Buffer = Buffer.alloc(0)
  private ended = false
  position = 0

  constructor (src: AsyncIterable<Uint8Array>, private readonly what: string) {
    this.it = src[Symbol.asyncIterator]()
  }

  /** Fills `dst[off, off+n)`; throws ERR_TAR_TRUNCATED when the stream ends first. */
  async readInto (dst: Uint8Array, off: number, n: number): Promise<void> {
    while (n > 0) {
      if (this.head.length === 0 && !(await this.fill())) this.truncated(n)
      const take = Math.min(n, this.head.length)
      dst.set(this.head.subarray(0, take), off)
      this.head = this.head.subarray(take)
      off += take
      n -= take
      this.position += take
    }
  }

  /** Exactly n bytes; no copy when they sit in one buffer already. Returns undefined at a clean end. */
  async read (n: number, allowEnd = false): Promise<Buffer | undefined> {
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

  async skip (n: number): Promise<void> {
    while (n > 0) {
      if (this.head.length === 0 && !(await this.fill())) this.truncated(n)
      const take = Math.min(n, this.head.length)
      this.head = this.head.subarray(take)
      n -= take
      this.position += take
    }
  }

  /** Lets the source release its resources when we stop early. */
  async close (): Promise<void> {
    if (!this.ended) await this.it.return?.()
    this.ended = true
  }

  private async fill (): Promise<boolean> {
    while (!this.ended) {
      const r = await this.it.next()
      if (r.done === true) { this.ended = true; return false }
      if (r.value.length > 0) {
        this.head = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength)
        return true
      }
    }
    return false
  }

  private truncated (n: number): never {
    throw new ConverterError('ERR_TAR_TRUNCATED', `${this.what} is truncated at byte ${this.position} (${n} more bytes expected)`)
  }
}
