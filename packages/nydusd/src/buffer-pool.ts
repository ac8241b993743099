/**
 * Chunk buffers, handed back and reused. Reads otherwise allocate a fresh
 * buffer per chunk and per request, and V8 answers that external memory with
 * a major GC every few dozen MiB: a fifth of the CPU of a 1 GiB read went to
 * the collector before this pool. Buffers come in power-of-two classes from
 * 16 KiB up to the largest chunk, so a view never pins more than twice its
 * bytes. They are shared, so VerifyWorker's thread can decode and hash a chunk
 * where it lies.
 */
export class BufferPool {
  private readonly free = new Map<number, SharedArrayBuffer[]>()
  private readonly idle = new Set<SharedArrayBuffer>()
  private readonly owned = new WeakSet<SharedArrayBuffer>()
  private readonly top: number
  private idleBytes = 0
  /** Takes served from a handed-back buffer. */
  reused = 0

  /** `maxSize`: the largest request to pool; at most `maxIdleBytes` wait in the pool (and always 16 of the largest class). */
  constructor(
    maxSize: number,
    private readonly maxIdleBytes = 32 * 1024 * 1024
  ) {
    this.top = classOf(Math.max(maxSize, MIN_CLASS))
    this.maxIdleBytes = Math.max(maxIdleBytes, 16 * this.top)
  }

  /** `len` bytes: a view of a pooled buffer, or a fresh buffer when `len` is outside the classes. */
  take(len: number): Buffer {
    if (len < MIN_CLASS / 2 || len > this.top) return Buffer.allocUnsafe(len)
    const size = classOf(len)
    let ab = this.free.get(size)?.pop()
    if (ab !== undefined) {
      this.idle.delete(ab)
      this.idleBytes -= size
      this.reused++
    } else {
      ab = new SharedArrayBuffer(size)
      this.owned.add(ab)
    }
    return Buffer.from(ab, 0, len)
  }

  /** Hands back a buffer from `take` (or a view of one). Nothing may touch it afterwards. */
  give(b: Uint8Array): void {
    const ab = b.buffer as SharedArrayBuffer
    if (!this.owned.has(ab) || this.idle.has(ab) || this.idleBytes + ab.byteLength > this.maxIdleBytes) return
    let list = this.free.get(ab.byteLength)
    if (list === undefined) this.free.set(ab.byteLength, (list = []))
    list.push(ab)
    this.idle.add(ab)
    this.idleBytes += ab.byteLength
  }
}

const MIN_CLASS = 16 * 1024

/** The smallest power of two that holds `len`. */
const classOf = (len: number): number => 2 ** Math.ceil(Math.log2(len))
