/**
 * Chunk-sized buffers, handed back and reused. A cold read of a large file
 * otherwise allocates a fresh MiB or two per chunk, and V8 answers that
 * external memory with a major GC every few dozen MiB: a fifth of the CPU of
 * a 1 GiB read went to the collector before this pool. The buffers are
 * shared, so HashWorker's thread can hash a chunk where it lies.
 */
export class BufferPool {
  private readonly free: SharedArrayBuffer[] = []
  private readonly owned = new WeakSet<SharedArrayBuffer>()
  /** Takes served from a handed-back buffer. */
  reused = 0

  constructor (readonly size: number, private readonly max = 16) {}

  /**
   * `len` bytes: a view of a pooled buffer when `len` is between half the
   * size and the size (so a view never pins more than twice its bytes), else a fresh buffer.
   */
  take (len: number): Buffer {
    if (len > this.size || len * 2 < this.size) return Buffer.allocUnsafe(len)
    let ab = this.free.pop()
    if (ab !== undefined) {
      this.reused++
    } else {
      ab = new SharedArrayBuffer(this.size)
      this.owned.add(ab)
    }
    return Buffer.from(ab, 0, len)
  }

  /** Hands back a buffer from `take` (or a view of one). Nothing may touch it afterwards. */
  give (b: Uint8Array): void {
    const ab = b.buffer as SharedArrayBuffer
    if (!this.owned.has(ab) || this.free.length >= this.max || this.free.includes(ab)) return
    this.free.push(ab)
  }
}
