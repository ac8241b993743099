/**
 * Chunk buffers, handed back and reused. Reads otherwise allocate a fresh
 * buffer per chunk and per request, and V8 answers that external memory with
 * a major GC every few dozen MiB: a fifth of the CPU of a 1 GiB read went to
 * the collector before this pool. Buffers come in power-of-two classes from
 * 4 KiB up to the largest request, so a view never pins more than twice its
 * bytes (smaller ones come from Node's own slab). Classes below 32 KiB are
 * blocks of common slabs (SlabBlocks); from 32 KiB up each is a
 * SharedArrayBuffer of its own, so VerifyWorker's thread can decode and hash
 * a chunk where it lies (smaller chunks are decoded on this thread anyway).
 */
export class BufferPool {
  private readonly free = new Map<number, ArrayBufferLike[]>()
  private readonly idle = new Set<ArrayBufferLike>()
  private readonly owned = new WeakSet<ArrayBufferLike>()
  private top: number
  private idleBytes = 0
  private readonly small = new SlabBlocks()
  /** Takes served from a handed-back buffer. */
  get reused(): number {
    return this.reusedLarge + this.small.reused
  }

  private reusedLarge = 0

  /** Bytes allocated since `onChurn` was last called. */
  private churn = 0

  /**
   * `maxSize`: the largest request to pool; at most `maxIdleBytes` wait in the pool (and always 4
   * of the largest class); `onChurn` is called after every CHURN_BYTES of buffers allocated.
   */
  constructor(
    maxSize: number,
    private maxIdleBytes = 8 * 1024 * 1024,
    private readonly onChurn?: () => void
  ) {
    this.top = classOf(Math.max(maxSize, MIN_CLASS))
    this.maxIdleBytes = Math.max(maxIdleBytes, 4 * this.top)
  }

  /** Pools requests up to `maxSize` too (a mount with larger chunks or merged requests); never lower. */
  raiseTop(maxSize: number): void {
    this.top = Math.max(this.top, classOf(Math.max(maxSize, MIN_CLASS)))
    this.maxIdleBytes = Math.max(this.maxIdleBytes, 4 * this.top)
  }

  /** `len` bytes: a view of a pooled buffer, or a fresh buffer when `len` is outside the classes. */
  take(len: number): Buffer {
    if (len < MIN_CLASS / 2 || len > this.top) return Buffer.allocUnsafe(len)
    const size = classOf(len)
    if (size < SHARED_MIN) return this.small.take(size).subarray(0, len)
    let ab = this.free.get(size)?.pop()
    if (ab !== undefined) {
      this.idle.delete(ab)
      this.idleBytes -= size
      this.reusedLarge++
    } else {
      ab = new SharedArrayBuffer(size)
      this.owned.add(ab)
      this.churn += size
      if (this.churn >= CHURN_BYTES) {
        this.churn = 0
        this.onChurn?.()
      }
    }
    return Buffer.from(ab, 0, len)
  }

  /** Forgets the idle buffers, large and small, so the collector can free them (an idle daemon holds none). */
  drain(): void {
    this.free.clear()
    this.idle.clear()
    this.idleBytes = 0
    this.small.drain()
  }

  /**
   * Hands back a buffer from `take` (or a view of one). Nothing may touch it afterwards. Over the
   * idle bound, the buffers idle longest go (whatever their class): refusing the new one instead
   * left the bound full of a class nobody took, and every other class allocated afresh (a shared
   * daemon reading 30 images allocated 7 GB that way).
   */
  give(b: Uint8Array): void {
    const ab = b.buffer
    if (this.small.give(b)) return
    if (!this.owned.has(ab) || this.idle.has(ab) || ab.byteLength > this.maxIdleBytes) return
    while (this.idleBytes + ab.byteLength > this.maxIdleBytes) this.dropOldest()
    let list = this.free.get(ab.byteLength)
    if (list === undefined) this.free.set(ab.byteLength, (list = []))
    list.push(ab)
    this.idle.add(ab)
    this.idleBytes += ab.byteLength
  }

  private dropOldest(): void {
    const old = this.idle.values().next().value!
    this.idle.delete(old)
    this.idleBytes -= old.byteLength
    const list = this.free.get(old.byteLength)!
    list.splice(list.indexOf(old), 1)
  }
}

const MIN_CLASS = 4 * 1024
const CHURN_BYTES = 32 * 1024 * 1024
const SHARED_MIN = 32 * 1024

/** The smallest power of two that holds `len`. */
const classOf = (len: number): number => 2 ** Math.ceil(Math.log2(len))

const SLAB = 256 * 1024

/**
 * The small classes (below SHARED_MIN) as blocks carved from 256 KiB slabs:
 * one plain ArrayBuffer per small chunk costs its allocation plus the
 * collector's bookkeeping of every backing store, together a third of the
 * CPU of a cold read of 2,000 small files. Every block handed back is kept
 * for reuse, so these slabs never hold more than the most small buffers
 * ever in use at once (which the memory LRUs bound).
 */
class SlabBlocks {
  private readonly free = new Map<number, Buffer[]>()
  /** Per class, the slab being cut (blocks are cut as needed: touching a whole slab up front costs its page faults). */
  private readonly cutting = new Map<number, { slab: Buffer; next: number }>()
  /** Per slab: its block size, and which of its blocks are in `free`. */
  private readonly slabs = new WeakMap<ArrayBufferLike, { size: number; idle: Uint8Array }>()
  reused = 0

  /** Forgets the free blocks and the slabs being cut: a slab none of whose blocks is in use is left to the collector. */
  drain(): void {
    this.free.clear()
    this.cutting.clear()
  }

  take(size: number): Buffer {
    const b = this.free.get(size)?.pop()
    if (b === undefined) return this.cut(size)
    this.reused++
    this.slabs.get(b.buffer)!.idle[b.byteOffset / size] = 0
    return b
  }

  /** False: not a block of ours. */
  give(b: Uint8Array): boolean {
    const slab = this.slabs.get(b.buffer)
    if (slab === undefined) return false
    const i = Math.floor(b.byteOffset / slab.size)
    if (slab.idle[i] === 1) return true
    slab.idle[i] = 1
    let list = this.free.get(slab.size)
    if (list === undefined) this.free.set(slab.size, (list = []))
    list.push(Buffer.from(b.buffer, i * slab.size, slab.size))
    return true
  }

  private cut(size: number): Buffer {
    let c = this.cutting.get(size)
    if (c === undefined || c.next + size > SLAB) {
      const slab = Buffer.allocUnsafeSlow(SLAB)
      this.slabs.set(slab.buffer, { size, idle: new Uint8Array(SLAB / size) })
      this.cutting.set(size, (c = { slab, next: 0 }))
    }
    const b = c.slab.subarray(c.next, c.next + size)
    c.next += size
    return b
  }
}
